//! Runtimes: where rooms actually run. A trait with one implementation per place: [`local`] runs
//! each room as a child process on this machine; [`kubernetes`] runs each as a pod.
//!
//! Must always hold: a runtime never decides anything (which rooms to start or stop comes from
//! operations); it starts, stops and reports. Every room it starts or adopts gets exactly one
//! [`RuntimeEvent::Exited`] when it ends, so the registry never keeps a ghost. Each runtime's
//! constructor returns, beside the runtime, the [`Events`] it reports on: a bounded queue of
//! [`EVENT_QUEUE`] events, on which an exit waits for room rather than being dropped.

pub mod kubernetes;
pub mod local;
pub mod memory;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::Applied;
use crate::domain::room::{Room, RoomPort, RoomStatus};
use crate::domain::spec::Scheduler;

/// Room events a runtime reports, in order; see [`RuntimeEvent`].
pub type Events = tokio::sync::mpsc::Receiver<RuntimeEvent>;

/// Room events a runtime queues for the controller before it waits: a burst of exits in a
/// large fleet fits, and a controller that stops reading slows the runtime down instead of
/// losing an exit.
pub const EVENT_QUEUE: usize = 4096;

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
    /// The room was placed on a machine (a pod scheduled to a node): its address and host ports,
    /// known only now on runtimes that place rooms after creating them. Sent again when they change.
    Placed {
        scheduler: String,
        room: String,
        host: String,
        ports: Vec<RoomPort>,
    },
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

impl RuntimeEvent {
    /// The event's name in metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            RuntimeEvent::Running { .. } => "running",
            RuntimeEvent::Placed { .. } => "placed",
            RuntimeEvent::Exited { .. } => "exited",
            RuntimeEvent::Failed { .. } => "failed",
        }
    }
}

/// Why a runtime did not record an allocation ([`Runtime::confirm_allocation`]).
#[derive(Debug, thiserror::Error)]
pub enum AllocationRefused {
    /// The room is recorded as taken where the rooms run (another replica handed it out), or is
    /// gone: another room may be free.
    #[error("the room is taken or gone")]
    Taken,
    /// The allocation cannot be recorded now (the backend is unreachable, this replica no longer
    /// leads): nothing is handed out, the caller may retry.
    #[error("{0}")]
    Unavailable(String),
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
    /// The runtime's backend (the Kubernetes API server, `/proc`, a pidfd) refused a call.
    #[error("{what}: {source}")]
    Backend {
        /// What was being done: `listing pods`, `adopting room arena-x2k9q: reading /proc`.
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The backend did not answer in time (a cluster that cannot be reached).
    #[error("{0}")]
    Unreachable(String),
    /// The backend refuses rooms of the scheduler as written: its admission (on Kubernetes:
    /// PodSecurity, a ResourceQuota or LimitRange, a webhook, a missing ServiceAccount) said no
    /// to one room's pod. `reason` is the backend's own message.
    #[error("rooms of scheduler {scheduler} are refused: {reason}")]
    Refused { scheduler: String, reason: String },
}

/// A scheduler as `kubectl get` shows it (on Kubernetes, its Scheduler resource's status):
/// sent by the controller now and then, never read back.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SchedulerStatus {
    pub game: String,
    pub version: String,
    pub target_rooms: u32,
    pub total_rooms: u32,
    /// Allocated, occupied or active.
    pub busy_rooms: u32,
    /// Rooms by status, every status present (a merge leaves no stale count behind).
    pub rooms: BTreeMap<&'static str, u32>,
    pub suspended: bool,
    pub in_git: bool,
    /// `<kind> <id> <status>` of the latest operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_operation: Option<String>,
}

/// What a runtime's backend knows without any state of Troupe's: rooms found running and
/// scheduler specs recorded there (see [`Runtime::discover`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Discovered {
    pub rooms: Vec<Room>,
    /// Applied specs by scheduler name, as recorded by [`Runtime::record_scheduler`].
    pub schedulers: BTreeMap<String, Applied>,
    /// Suspended schedulers with when they were suspended (Unix ms), as recorded by
    /// [`Runtime::record_suspension`]; `None` from a runtime that does not record them.
    pub suspended: Option<BTreeMap<String, u64>>,
    /// Operations as recorded by [`Runtime::record_operation`] (the latest of each scheduler).
    pub operations: Vec<crate::domain::operation::Operation>,
    /// Revisions seen, as recorded by [`Runtime::record_revisions`].
    pub revisions: Vec<crate::state::history::RevisionRecord>,
}

/// The variable a room finds its port `name` in: `TROUPE_PORT_<NAME>`, upper-cased, every
/// character a variable name cannot hold (`-`, `.`) as `_`.
pub fn port_env_name(name: &str) -> String {
    let suffix: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("TROUPE_PORT_{suffix}")
}

/// What [`Runtime::adopt`] saw where the rooms run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Adopted {
    /// Ids of the recorded rooms still running, watched from now on; the others are gone.
    pub alive: Vec<String>,
    /// `(scheduler, room)` of everything found running for a room, adopted or not, as far as
    /// this runtime can tell what is its own (the Kubernetes runtime: every pod under its
    /// namespace prefix; the local runtime: processes of recorded rooms).
    pub found: Vec<(String, String)>,
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

    /// After a restart: take back the rooms recorded before it, and say what else runs. Stops
    /// nothing: the controller decides what to stop ([`crate::domain::adoption::strays`]) and
    /// asks [`Runtime::remove_stray`].
    async fn adopt(&self, rooms: &[Room]) -> Result<Adopted, RuntimeError>;

    /// Stop at once, without grace, what runs for `room` of `scheduler` although no running
    /// room owns it (an adoption's stray). Nothing running for it is not an error.
    async fn remove_stray(&self, scheduler: &str, room: &str) -> Result<(), RuntimeError>;

    /// A room's status or match count changed (`from`: its status before): keep a copy where the
    /// rooms run, so the fleet can be rebuilt from there alone. Called on the registry's status
    /// path: must return at once (queue the write). By default nothing is kept.
    fn record(&self, _room: &Room, _from: RoomStatus) {}

    /// `room` was just allocated: record it where the rooms run before the allocation is
    /// answered, so that no other replica can hand it out too (on Kubernetes: the pod's status
    /// label, written with its resourceVersion as a precondition). [`Runtime::record`] is not
    /// called for allocations of a runtime that confirms them. By default the registry's journal
    /// is the only record needed (one machine).
    async fn confirm_allocation(&self, _room: &Room) -> Result<(), AllocationRefused> {
        Ok(())
    }

    /// Returns once every write [`Runtime::record`] and [`Runtime::record_scheduler`] queued has
    /// been sent (or given up): a controller that stops hands the next one a cluster that says
    /// what it knew. Callers bound the wait. By default nothing is queued.
    async fn flush(&self) {}

    /// A scheduler's applied spec changed (`None`: removed). Same rules as [`Runtime::record`].
    fn record_scheduler(&self, _name: &str, _applied: Option<&Applied>) {}

    /// An operation changed (created, started, an event, finished): recorded where the rooms
    /// run, with `drop` the ids of older operations of its scheduler no longer to keep there.
    /// Same rules as [`Runtime::record`]: queued, newest per operation wins. By default nothing.
    fn record_operation(&self, _op: &crate::domain::operation::Operation, _drop: &[String]) {}

    /// The revisions seen changed (newest first, bounded): queued, newest wins; by default
    /// nothing.
    fn record_revisions(&self, _revisions: &[crate::state::history::RevisionRecord]) {}

    /// The summary of scheduler `name` changed. Queued, newest wins; by default nothing.
    fn record_status(&self, _name: &str, _status: &SchedulerStatus) {}

    /// A person suspended syncing scheduler `name` (`Some(since_ms)`) or resumed it (`None`):
    /// recorded where the rooms run before it is answered, so that a controller that takes over
    /// keeps it. By default nothing is recorded (the controller's journal is the record).
    async fn record_suspension(
        &self,
        _name: &str,
        _since_ms: Option<u64>,
    ) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// Record writes ([`Runtime::record`], [`Runtime::record_scheduler`]) queued and not sent
    /// yet: a gauge, so that a backend that cannot keep up shows. By default none.
    fn pending_records(&self) -> usize {
        0
    }

    /// Whether the backend would admit rooms of `scheduler` as written, asked without starting
    /// one (on Kubernetes: a server-side dry run of one room's pod in the scheduler's namespace,
    /// which it creates when missing, as the first room's start would). A refusal is
    /// [`RuntimeError::Refused`] with the backend's reason. Called once before an operation
    /// creates rooms of a version not applied yet, never per room. By default every scheduler is
    /// admitted: runtimes without admission have nothing to ask.
    async fn check_admission(&self, _scheduler: &Scheduler) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// Rooms and applied specs as recorded by [`Runtime::record`] and
    /// [`Runtime::record_scheduler`], read back from where the rooms run. By default, nothing.
    async fn discover(&self) -> Result<Discovered, RuntimeError> {
        Ok(Discovered::default())
    }
}
