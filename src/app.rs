//! The composition root: the one place a server is wired together. `troupe serve`, the router
//! tests and the benchmarks all build their server here, so what they test is what runs.
//!
//! [`Server::open`] opens the state directory's records and builds the controller, the fleet and
//! the HTTP state around a runtime. [`Server::run`] starts every long-running task under one
//! [`Supervisor`] and serves HTTP until shutdown, or until a critical task dies (then it returns
//! the [`TaskFailed`] that names it, and the binary exits non-zero).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::controller::{Controller, ControllerOptions, Fleet, FleetConfig, History};
use crate::http::AppState;
use crate::http::forward::Outbox;
use crate::metrics::Metrics;
use crate::runtime::{Events, Runtime};
use crate::source::{Observed, WatchHandle};
use crate::state::journal::StoreError;
use crate::state::ops::{Operation, Operations};
use crate::supervise::{Supervisor, TaskFailed};

/// First and longest wait between two attempts to adopt the rooms recorded before.
const ADOPT_RETRY_MIN: Duration = Duration::from_millis(500);
const ADOPT_RETRY_MAX: Duration = Duration::from_secs(30);

/// Everything a server is configured with, besides its runtime and its source.
#[derive(Clone)]
pub struct ServerConfig {
    /// Where rooms, operations, revisions and logs are kept across restarts.
    pub state_dir: PathBuf,
    pub fleet: FleetConfig,
    pub controller: ControllerOptions,
    /// Bearer token required on management write routes, when set.
    pub api_token: Option<String>,
    /// Secret authenticating `POST /hooks/git`; webhooks are off without it.
    pub webhook_secret: Option<Vec<u8>>,
}

/// A server, wired and not yet running.
pub struct Server {
    pub controller: Arc<Controller>,
    /// What the HTTP routers are built from.
    pub state: AppState,
    events: Events,
    /// The forwarders' queue, delivered by a supervised task once the server runs.
    outbox: Outbox,
}

/// Where a running server takes its revisions from.
pub struct SourceFeed {
    pub snapshots: watch::Receiver<Observed>,
    /// The watcher's freshness and webhook trigger (`None`: revisions come from elsewhere).
    pub handle: Option<WatchHandle>,
    /// The watcher's task, supervised as critical (`None`: nothing to supervise).
    pub task: Option<JoinHandle<()>>,
}

impl From<crate::source::Watch> for SourceFeed {
    fn from(w: crate::source::Watch) -> Self {
        Self {
            snapshots: w.snapshots,
            handle: Some(w.handle),
            task: Some(w.task),
        }
    }
}

impl Server {
    /// Open the records in `config.state_dir` and build the server around `runtime` and the
    /// events it reports.
    pub fn open(
        config: ServerConfig,
        metrics: Arc<Metrics>,
        runtime: Arc<dyn Runtime>,
        events: Events,
    ) -> Result<Self, StoreError> {
        let fleet = Arc::new(Fleet::open(
            &config.state_dir,
            Arc::clone(&runtime),
            config.fleet,
        )?);
        let ops = Operations::open(config.state_dir.join("operations.jsonl"))?;
        ops.set_recorder(Arc::new(RecordedByRuntime(runtime)));
        let controller = Arc::new(Controller::new(
            Arc::clone(&fleet),
            ops,
            Arc::clone(&metrics),
            config.controller,
            History::open(&config.state_dir)?,
        ));
        let rooms = crate::controller::Rooms::new(Arc::clone(&fleet));
        let (forwarders, outbox) = crate::http::forward::Forwarders::new(metrics);
        let state = AppState {
            rooms,
            forwarders,
            controller: Arc::clone(&controller),
            api_token: config.api_token.map(Arc::from),
            source: None,
            webhook_secret: config.webhook_secret.map(Arc::from),
        };
        Ok(Self {
            controller,
            state,
            events,
            outbox,
        })
    }

    /// Serve HTTP on `listener` and run the controller on `source` until `shutdown` is
    /// cancelled, or until a critical task dies. Rooms are left running either way.
    pub async fn run(
        self,
        listener: tokio::net::TcpListener,
        source: SourceFeed,
        shutdown: CancellationToken,
    ) -> Result<(), ServeError> {
        let Server {
            controller,
            mut state,
            events,
            outbox,
        } = self;
        state.source = source.handle;
        let metrics = Arc::clone(&controller.metrics);
        let mut tasks = Supervisor::new(shutdown.clone(), Some(metrics.task_restarts.clone()));
        tasks.critical(
            "runtime-events",
            pump_runtime_events(
                events,
                Arc::clone(&controller.fleet),
                Arc::clone(&metrics),
                shutdown.clone(),
            ),
        );
        tasks.critical(
            "controller",
            reconcile_after_adoption(Arc::clone(&controller), source.snapshots, shutdown.clone()),
        );
        if let Some(task) = source.task {
            tasks.critical("source-watch", follow(task, shutdown.clone()));
        }
        {
            let (ops, metrics) = (Arc::clone(&controller.ops), Arc::clone(&metrics));
            tasks.restarting("operation-metrics", move || {
                count_operations(ops.subscribe_finished(), Arc::clone(&metrics))
            });
        }
        {
            let (fleet, metrics) = (Arc::clone(&controller.fleet), Arc::clone(&metrics));
            tasks.restarting("forward-delivery", move || {
                outbox
                    .clone()
                    .deliver(Arc::clone(&fleet), Arc::clone(&metrics))
            });
            // Subscribed now, before adoption can change a status; a restart subscribes again.
            let (forwarders, fleet) = (state.forwarders.clone(), Arc::clone(&controller.fleet));
            let mut first = Some(fleet.registry.subscribe_status());
            tasks.restarting("forward-status", move || {
                let changes = first
                    .take()
                    .unwrap_or_else(|| fleet.registry.subscribe_status());
                forwarders.clone().forward_status_changes(changes)
            });
        }
        {
            let (c, token) = (Arc::clone(&controller), shutdown.clone());
            tasks.restarting("samples", move || {
                crate::controller::samples::run(Arc::clone(&c), token.clone())
            });
        }
        {
            let (s, token) = (state.clone(), shutdown.clone());
            tasks.restarting("scheduler-status", move || {
                crate::http::api::report_statuses(s.clone(), token.clone())
            });
        }
        let http = crate::http::serve(listener, crate::http::router(state), shutdown.clone());
        let (http, supervised) = tokio::join!(
            async {
                let r = http.await;
                // An HTTP server that failed takes the rest down with it.
                shutdown.cancel();
                r
            },
            tasks.wait()
        );
        supervised?;
        http.map_err(ServeError::Http)
    }
}

/// Why a running server stopped before it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A critical task ended or panicked.
    #[error(transparent)]
    Task(#[from] TaskFailed),
    /// The HTTP server failed.
    #[error("HTTP server failed: {0}")]
    Http(#[source] std::io::Error),
}

/// Hand every runtime event to the fleet, in order.
async fn pump_runtime_events(
    mut events: Events,
    fleet: Arc<Fleet>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = shutdown.cancelled() => return,
        };
        let Some(event) = event else {
            tracing::error!("the runtime's event stream ended");
            return;
        };
        metrics
            .runtime_events
            .with_label_values(&[event.kind()])
            .inc();
        metrics.runtime_event_queue.set(events.len() as i64);
        fleet.handle_event(event);
    }
}

/// Operations and reconciling start once the rooms recorded before are taken back; until then
/// (a cluster that cannot be reached yet) the rooms API serves from the journal and adoption is
/// retried with backoff.
async fn reconcile_after_adoption(
    controller: Arc<Controller>,
    snapshots: watch::Receiver<Observed>,
    shutdown: CancellationToken,
) {
    let mut delays = crate::supervise::backoff(ADOPT_RETRY_MIN, ADOPT_RETRY_MAX);
    let recorded = loop {
        match controller.fleet.adopt().await {
            Ok(recorded) => break recorded,
            Err(e) => {
                let retry_in = delays.next().unwrap_or(ADOPT_RETRY_MAX);
                tracing::warn!(error = %e, ?retry_in, "cannot adopt the rooms recorded before yet; the rooms API keeps serving");
                tokio::select! {
                    _ = tokio::time::sleep(retry_in) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    };
    if let Some(suspended) = &recorded.suspended {
        adopt_suspensions(&controller, suspended).await;
    }
    if let Err(e) = controller.history.adopt_revisions(recorded.revisions) {
        tracing::error!(error = %e, "cannot journal the revisions recorded in the runtime");
    }
    match controller.ops.import(recorded.operations) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            operations = n,
            "operations taken from the runtime: unknown to the state directory"
        ),
        Err(e) => {
            tracing::error!(error = %e, "cannot journal the operations recorded in the runtime")
        }
    }
    controller
        .ops
        .start(Arc::clone(&controller.fleet) as Arc<dyn crate::state::ops::Executor>);
    controller.run(snapshots, shutdown).await;
}

/// Every change of an operation goes to the runtime too ([`Runtime::record_operation`]).
struct RecordedByRuntime(Arc<dyn Runtime>);

impl crate::state::ops::Recorder for RecordedByRuntime {
    fn record(&self, op: &crate::state::ops::Operation, drop: &[String]) {
        self.0.record_operation(op, drop);
    }
}

/// Take the suspensions the runtime records (before the first reconcile, so that a scheduler
/// suspended under the previous leader is not synced for a moment), and record there the ones
/// only the state directory has (journaled by a Troupe that did not record them yet).
async fn adopt_suspensions(
    controller: &Controller,
    recorded: &std::collections::BTreeMap<String, u64>,
) {
    let own = match controller.history.adopt_suspended(recorded) {
        Ok(own) => own,
        Err(e) => {
            tracing::error!(error = %e, "cannot journal the suspensions recorded in the runtime");
            return;
        }
    };
    for (scheduler, since) in own {
        if let Err(e) = controller
            .fleet
            .runtime
            .record_suspension(&scheduler, Some(since))
            .await
        {
            tracing::warn!(%scheduler, error = %e, "cannot record a suspension where the rooms run; it stays in the state directory");
        }
    }
}

/// Wait for a task spawned elsewhere, passing its panic on; abort it at shutdown.
async fn follow(mut task: JoinHandle<()>, shutdown: CancellationToken) {
    tokio::select! {
        joined = &mut task => {
            if let Err(e) = joined
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        _ = shutdown.cancelled() => task.abort(),
    }
}

/// Count finished operations by kind and outcome, and their durations. A burst that outruns
/// this loop skips operations (counted in `troupe_operation_events_missed_total`) and goes on.
pub async fn count_operations(mut finished: broadcast::Receiver<Operation>, m: Arc<Metrics>) {
    loop {
        let op = match finished.recv().await {
            Ok(op) => op,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "operation metrics fell behind");
                m.operation_events_missed.inc_by(n);
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        m.operations
            .with_label_values(&[op.kind.as_str(), op.status.as_str()])
            .inc();
        if let (Some(s), Some(f)) = (op.started_at, op.finished_at) {
            m.operation_seconds
                .with_label_values(&[op.kind.as_str()])
                .observe((f - s) as f64 / 1000.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ops::{Cause, OpKind};

    /// Regression: the loop that feeds `troupe_operations_total` ended for good on the first
    /// `Lagged` of its broadcast receiver, and the counters froze.
    #[tokio::test]
    async fn operation_metrics_go_on_after_falling_behind() {
        let dir = tempfile::tempdir().unwrap();
        let ops = Operations::open(dir.path().join("ops.jsonl")).unwrap();
        let metrics = Arc::new(Metrics::new());
        let finished = ops.subscribe_finished();
        let cause = || Cause::User { name: "t".into() };
        // More operations finish than the broadcast buffers before the loop first runs.
        for _ in 0..300 {
            let op = ops
                .enqueue("a", OpKind::Heal, cause(), None, false)
                .unwrap();
            ops.cancel(&op.id, "t").unwrap();
        }
        let counter = tokio::spawn(count_operations(finished, Arc::clone(&metrics)));
        let canceled = || {
            metrics
                .operations
                .with_label_values(&["heal", "canceled"])
                .get()
        };
        let op = ops
            .enqueue("a", OpKind::Heal, cause(), None, false)
            .unwrap();
        ops.cancel(&op.id, "t").unwrap();
        let seen = || canceled() + metrics.operation_events_missed.get();
        for _ in 0..10_000 {
            if seen() == 301 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(metrics.operation_events_missed.get() > 0, "it fell behind");
        assert_eq!(
            seen(),
            301,
            "every operation is counted or counted as missed"
        );
        assert!(canceled() > 1, "operations after the lag are counted");
        counter.abort();
    }
}
