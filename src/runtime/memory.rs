//! The in-memory runtime: rooms that exist only as records. A room "starts" at once (reported
//! running), gets host ports from its scheduler's `portRange`, and "ends" when it is stopped.
//!
//! For the router and controller tests, where real processes add nothing but time; end-to-end
//! tests keep the local and Kubernetes runtimes. Must hold, like every runtime: every room it
//! starts or adopts gets exactly one [`RuntimeEvent::Exited`] when it ends.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{Adopted, Runtime, RuntimeError, RuntimeEvent, StartRoom, Started};
use crate::domain::room::{Room, RoomPort};

/// Name of this runtime in logs, errors and status.
const RUNTIME_NAME: &str = "memory";

/// Rooms as records, nothing running.
pub struct MemoryRuntime {
    events: mpsc::Sender<RuntimeEvent>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Running rooms: id → (scheduler, host ports).
    rooms: BTreeMap<String, (String, Vec<u16>)>,
    /// Host ports in use, across schedulers.
    ports: BTreeSet<u16>,
    /// The reason every start fails with, while set.
    fail_starts: Option<String>,
}

impl MemoryRuntime {
    /// An in-memory runtime and the events it reports.
    pub fn new() -> (Self, super::Events) {
        let (events, rx) = mpsc::channel(super::EVENT_QUEUE);
        let runtime = Self {
            events,
            state: Mutex::new(State::default()),
        };
        (runtime, rx)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Make every start fail with `reason` (`None`: starts succeed again), as a runtime whose
    /// rooms cannot run would.
    pub fn fail_starts(&self, reason: Option<&str>) {
        self.lock().fail_starts = reason.map(str::to_string);
    }

    /// Ids of the rooms running now.
    pub fn running(&self) -> Vec<String> {
        self.lock().rooms.keys().cloned().collect()
    }

    /// Run a room no record owns, as a controller that crashed between starting a room and
    /// recording it leaves behind.
    pub fn run_unrecorded(&self, scheduler: &str, room: &str) {
        self.lock()
            .rooms
            .insert(room.to_string(), (scheduler.to_string(), vec![]));
    }

    /// End a room as if its process had exited by itself.
    pub async fn crash(&self, room: &str) {
        let gone = self.lock().release(room);
        if let Some(scheduler) = gone {
            self.send(RuntimeEvent::Exited {
                scheduler,
                room: room.to_string(),
                clean: false,
                reason: "exited with status 1".into(),
            })
            .await;
        }
    }

    async fn send(&self, event: RuntimeEvent) {
        // A receiver that is gone has stopped listening: nobody is left to tell.
        let _ = self.events.send(event).await;
    }
}

impl State {
    /// Forget a running room and free its ports; its scheduler, if it was running.
    fn release(&mut self, room: &str) -> Option<String> {
        let (scheduler, ports) = self.rooms.remove(room)?;
        for p in ports {
            self.ports.remove(&p);
        }
        Some(scheduler)
    }
}

#[async_trait]
impl Runtime for MemoryRuntime {
    fn name(&self) -> &'static str {
        RUNTIME_NAME
    }

    async fn start(&self, req: StartRoom) -> Result<Started, RuntimeError> {
        let scheduler = &req.scheduler;
        let declared: Vec<_> = scheduler.spec.ports().collect();
        let ports = {
            let mut state = self.lock();
            if let Some(reason) = &state.fail_starts {
                return Err(RuntimeError::Start {
                    room: req.room_id.clone(),
                    reason: reason.clone(),
                });
            }
            let range = scheduler.port_range;
            let free: Vec<u16> = (range.start..range.end)
                .filter(|p| !state.ports.contains(p))
                .take(declared.len())
                .collect();
            if free.len() < declared.len() {
                return Err(RuntimeError::PortsExhausted {
                    scheduler: scheduler.name.clone(),
                    start: range.start,
                    end: range.end,
                });
            }
            state.ports.extend(&free);
            state
                .rooms
                .insert(req.room_id.clone(), (scheduler.name.clone(), free.clone()));
            free
        };
        self.send(RuntimeEvent::Running {
            scheduler: scheduler.name.clone(),
            room: req.room_id.clone(),
        })
        .await;
        Ok(Started {
            host: "127.0.0.1".into(),
            ports: declared
                .iter()
                .zip(ports)
                .map(|(d, port)| RoomPort {
                    name: d.name.clone(),
                    protocol: d.protocol,
                    port,
                })
                .collect(),
            runtime_ref: format!("{RUNTIME_NAME}:{}", req.room_id),
        })
    }

    async fn stop(&self, room: &Room, _grace: std::time::Duration) -> Result<(), RuntimeError> {
        let gone = self.lock().release(&room.id);
        if let Some(scheduler) = gone {
            self.send(RuntimeEvent::Exited {
                scheduler,
                room: room.id.clone(),
                clean: true,
                reason: "stopped".into(),
            })
            .await;
        }
        Ok(())
    }

    async fn adopt(&self, rooms: &[Room]) -> Result<Adopted, RuntimeError> {
        let state = self.lock();
        let alive: Vec<String> = rooms
            .iter()
            .filter(|r| state.rooms.contains_key(&r.id))
            .map(|r| r.id.clone())
            .collect();
        let found = state
            .rooms
            .iter()
            .map(|(room, (scheduler, _))| (scheduler.clone(), room.clone()))
            .collect();
        Ok(Adopted { alive, found })
    }

    async fn remove_stray(&self, _scheduler: &str, room: &str) -> Result<(), RuntimeError> {
        self.lock().release(room);
        Ok(())
    }
}
