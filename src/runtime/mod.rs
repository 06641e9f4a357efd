//! Runtimes: where rooms actually run. A trait with one implementation per place: [`local`] runs
//! each room as a child process on this machine; Kubernetes runs each as a pod.
//!
//! Must always hold: a runtime never decides anything (which rooms to start or stop comes from
//! operations); it starts, stops and reports. Every room it starts or adopts gets exactly one
//! [`RuntimeEvent::Exited`] when it ends, so the registry never keeps a ghost. Events go to the
//! bounded `tokio::sync::mpsc::Sender<RuntimeEvent>` each runtime is constructed with.

pub mod local;

use std::sync::Arc;

use async_trait::async_trait;

use crate::rooms::{Room, RoomPort};
use crate::spec::Scheduler;

/// What a runtime needs to start one room.
#[derive(Debug, Clone)]
pub struct StartRoom {
    pub scheduler: Arc<Scheduler>,
    pub room_id: String,
    /// The room's token (`TROUPE_ROOM_TOKEN`).
    pub token: String,
    /// Base URL of the rooms API (`TROUPE_ROOMS_URL`).
    pub rooms_url: String,
}

/// A room the runtime has started (or found still running).
#[derive(Debug, Clone, PartialEq)]
pub struct Started {
    pub host: String,
    pub ports: Vec<RoomPort>,
    pub runtime_ref: String,
}

/// What a runtime reports about rooms, asynchronously.
#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeEvent {
    /// The room's process or pod is running.
    Running { scheduler: String, room: String },
    /// The room ended. `clean`: exit status 0, or it had been asked to stop.
    Exited {
        scheduler: String,
        room: String,
        clean: bool,
        reason: String,
    },
    /// The room cannot run (cannot start, image cannot be pulled, unschedulable) with the reason.
    Failed {
        scheduler: String,
        room: String,
        reason: String,
    },
}

/// Errors of a runtime call.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The scheduler cannot run on this runtime as written (e.g. no `local.command`).
    #[error("scheduler {scheduler} cannot run on the {runtime} runtime: {reason}")]
    Unsupported {
        scheduler: String,
        runtime: &'static str,
        reason: String,
    },
    /// No free host port is left in the scheduler's `portRange`.
    #[error("no free port left in portRange {start}..{end} of scheduler {scheduler}")]
    PortsExhausted {
        scheduler: String,
        start: u16,
        end: u16,
    },
    /// Starting the room failed.
    #[error("starting room {room} failed: {reason}")]
    Start { room: String, reason: String },
    /// Stopping the room failed.
    #[error("stopping room {room} failed: {reason}")]
    Stop { room: String, reason: String },
    /// The runtime's backend could not be reached or answered with an error.
    #[error("{0}")]
    Backend(String),
}

/// A place rooms run.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Short name for logs and status (`local`, `kubernetes`).
    fn name(&self) -> &'static str;

    /// Start one room; returns once it is created (not once it is ready). Its progress arrives as
    /// [`RuntimeEvent`]s.
    async fn start(&self, req: StartRoom) -> Result<Started, RuntimeError>;

    /// Ask a room to stop: SIGTERM (or pod deletion) now, a hard kill after `grace`. Returns
    /// at once; the end arrives as [`RuntimeEvent::Exited`].
    async fn stop(&self, room: &Room, grace: std::time::Duration) -> Result<(), RuntimeError>;

    /// After a restart: take back the rooms recorded before it. Returns the ids of the rooms
    /// still running (and watches them from now on); the others are gone.
    async fn adopt(&self, rooms: &[Room]) -> Result<Vec<String>, RuntimeError>;
}
