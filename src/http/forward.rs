//! Forwarders: per-scheduler webhooks that hear about room status changes, room events and
//! player events, as JSON.
//!
//! Must always hold: nothing on the rooms API waits for a receiver. Events go through a bounded
//! queue ([`QUEUE`]); when it is full the event is dropped and counted, never blocking the caller.
//! Each delivery has the forwarder's timeout and a bounded number of retries with backoff; at
//! most [`IN_FLIGHT`] deliveries run at once, so a dead receiver costs a few tasks, not the queue.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};

use crate::clock::now_ms;
use crate::controller::Fleet;
use crate::metrics::Metrics;

/// Events waiting for delivery; beyond this they are dropped (and counted).
pub const QUEUE: usize = 10_000;
/// Deliveries running at once.
pub const IN_FLIGHT: usize = 64;
/// Attempts per delivery, with exponential backoff and jitter from [`FIRST_BACKOFF`].
pub const ATTEMPTS: u32 = 3;
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest pause between two attempts of one delivery.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// One event for a scheduler's forwarders.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub scheduler: String,
    pub room: String,
    /// `roomStatus`, `roomEvent` or `playerEvent`.
    pub kind: &'static str,
    /// Unix milliseconds.
    pub at: u64,
    pub payload: serde_json::Value,
}

impl Event {
    pub fn new(
        scheduler: &str,
        room: &str,
        kind: &'static str,
        payload: serde_json::Value,
    ) -> Self {
        Self {
            scheduler: scheduler.into(),
            room: room.into(),
            kind,
            at: now_ms(),
            payload,
        }
    }
}

/// The sending side, cheap to clone.
#[derive(Clone)]
pub struct Forwarders {
    tx: mpsc::Sender<Event>,
    metrics: Arc<Metrics>,
}

/// The receiving side: the queue [`Outbox::deliver`] empties. Shared, so that a delivery loop
/// started again after a failure takes the events still queued.
#[derive(Clone)]
pub struct Outbox(Arc<tokio::sync::Mutex<mpsc::Receiver<Event>>>);

impl Forwarders {
    /// The sending side and the queue it fills; nothing is delivered until something runs
    /// [`Outbox::deliver`] (the server does, supervised).
    pub fn new(metrics: Arc<Metrics>) -> (Self, Outbox) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let outbox = Outbox(Arc::new(tokio::sync::Mutex::new(rx)));
        (Self { tx, metrics }, outbox)
    }

    /// Queue an event; never waits. A full queue drops it.
    pub fn send(&self, event: Event) {
        match self.tx.try_send(event) {
            Ok(()) => self.metrics.forward_queue.inc(),
            Err(_) => self.metrics.forwarded.with_label_values(&["dropped"]).inc(),
        }
    }

    /// Turn every room status change `changes` brings into a `roomStatus` event, until the
    /// registry goes away.
    pub async fn forward_status_changes(
        self,
        mut changes: tokio::sync::broadcast::Receiver<crate::state::registry::StatusChange>,
    ) {
        loop {
            match changes.recv().await {
                Ok(c) => {
                    let payload = serde_json::json!({"from": c.from, "to": c.to});
                    self.send(Event::new(&c.scheduler, &c.room, "roomStatus", payload));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    self.metrics
                        .forwarded
                        .with_label_values(&["dropped"])
                        .inc_by(n);
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

impl Outbox {
    /// Deliver queued events to the forwarders of each event's scheduler (as applied now), at
    /// most [`IN_FLIGHT`] at a time, until every sender is gone.
    pub async fn deliver(self, fleet: Arc<Fleet>, metrics: Arc<Metrics>) {
        let mut rx = self.0.lock().await;
        deliver_all(&mut rx, &fleet, &metrics).await
    }
}

async fn deliver_all(rx: &mut mpsc::Receiver<Event>, fleet: &Fleet, metrics: &Arc<Metrics>) {
    let http = reqwest::Client::new();
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(event) = rx.recv().await {
        metrics.forward_queue.dec();
        let Some(applied) = fleet.applied(&event.scheduler) else {
            continue;
        };
        for f in applied.spec.forwarders {
            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let (http, metrics, event) = (http.clone(), Arc::clone(metrics), event.clone());
            tokio::spawn(async move {
                deliver(&http, &f.url, f.timeout.as_std(), &event, &metrics).await;
                drop(permit);
            });
        }
    }
}

async fn deliver(
    http: &reqwest::Client,
    url: &str,
    timeout: Duration,
    event: &Event,
    metrics: &Metrics,
) {
    let mut delays = crate::supervise::backoff(FIRST_BACKOFF, MAX_BACKOFF);
    for attempt in 1..=ATTEMPTS {
        let result = http.post(url).timeout(timeout).json(event).send().await;
        match result {
            Ok(resp) if resp.status().is_success() => {
                metrics.forwarded.with_label_values(&["delivered"]).inc();
                return;
            }
            outcome => {
                let why = match outcome {
                    Ok(resp) => format!("status {}", resp.status()),
                    Err(e) => e.to_string(),
                };
                if attempt == ATTEMPTS {
                    tracing::warn!(scheduler = %event.scheduler, room = %event.room, url, error = %why, "event not delivered");
                    metrics.forwarded.with_label_values(&["failed"]).inc();
                    return;
                }
                metrics.forwarded.with_label_values(&["retried"]).inc();
                tokio::time::sleep(delays.next().unwrap_or(MAX_BACKOFF)).await;
            }
        }
    }
}
