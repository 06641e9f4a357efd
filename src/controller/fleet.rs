//! The fleet: the schedulers Troupe has applied, their rooms, and the runtime they run on.
//! Implements [`Executor`]: it is the only code that starts or stops rooms.
//!
//! Must always hold: a room is recorded (journaled, `pending`) before its process or pod is
//! created, so a crash between the two leaves a record to adopt, never an unknown room; a busy
//! room is stopped only by a forced delete; every operation works from live state, so running
//! it again after a crash finishes what the first run started.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;

use crate::clock::now_ms;
use crate::domain::Applied;
use crate::domain::admission::{self, Refusal};
use crate::domain::adoption::strays;
use crate::domain::converge::{self, Target};
use crate::domain::plan::LiveState;
use crate::domain::room::token::room_token;
use crate::domain::room::{Room, RoomEvent, RoomStatus};
use crate::domain::spec::Scheduler;
use crate::domain::timeouts::{self, Expiry};
use crate::runtime::{Runtime, RuntimeError, RuntimeEvent, StartRoom};
use crate::state::journal::{Journal, StoreError};
use crate::state::ops::{OpContext, OpError, OpKind, Operation};
use crate::state::{Registry, RegistryError};

/// Rooms an operation starts at once: enough to keep a Kubernetes API server or the local
/// blocking pool busy (the `kube_scale` baseline posts pods with 32 clients), few enough that a
/// 1,000-room step does not open 1,000 requests or threads at the same time.
const START_CONCURRENCY: usize = 32;
/// How often an operation re-checks its rooms when nothing told it to.
const STEP_TICK: Duration = Duration::from_millis(500);
/// After a change of the rooms, how long an operation lets more changes come before its next
/// step: a thousand pods starting are a few thousand room events, and each step lists every
/// room of the scheduler.
const STEP_COALESCE: Duration = Duration::from_millis(50);

/// What a runtime records besides rooms and applied specs, read back at adoption.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Suspended schedulers, since when (`None`: the runtime records none).
    pub suspended: Option<BTreeMap<String, u64>>,
    /// Operations, the latest of each scheduler.
    pub operations: Vec<Operation>,
    /// Revisions seen.
    pub revisions: Vec<crate::state::history::RevisionRecord>,
}

/// Why the rooms recorded before could not be taken back yet (retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    /// The runtime could not be asked what runs.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    /// What it said could not be recorded.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Settings of the fleet that come from `troupe serve`.
#[derive(Clone)]
pub struct FleetConfig {
    /// Secret room tokens are derived from.
    pub secret: Vec<u8>,
    /// Base URL rooms reach the rooms API at.
    pub rooms_url: String,
    /// How long an allocated room has to confirm (go active or occupied) before it is free again.
    pub allocation_ttl: Duration,
}

pub struct Fleet {
    pub registry: Arc<Registry>,
    pub runtime: Arc<dyn Runtime>,
    config: FleetConfig,
    applied: Mutex<BTreeMap<String, Applied>>,
    journal: Mutex<Journal<Applied>>,
    /// The rooms recorded before this start (journal, runtime) have been taken back.
    adopted: std::sync::atomic::AtomicBool,
}

impl Fleet {
    /// Open the fleet recorded in `state_dir`.
    pub fn open(
        state_dir: &Path,
        runtime: Arc<dyn Runtime>,
        config: FleetConfig,
    ) -> Result<Self, StoreError> {
        let registry = Arc::new(Registry::open(state_dir.join("rooms.jsonl"))?);
        // Every status change is also kept where the rooms run (on Kubernetes: on the pod), so
        // a controller that lost its state directory can rebuild the fleet from there.
        let recorder = Arc::clone(&runtime);
        registry.on_transition(Box::new(move |room: &Room, from| {
            recorder.record(room, from)
        }));
        let (journal, applied) = Journal::open(state_dir.join("schedulers.jsonl"))?;
        Ok(Self {
            registry,
            runtime,
            config,
            applied: Mutex::new(applied),
            journal: Mutex::new(journal),
            adopted: Default::default(),
        })
    }

    pub fn config(&self) -> &FleetConfig {
        &self.config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Applied>> {
        self.applied.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn applied(&self, name: &str) -> Option<Applied> {
        self.lock().get(name).cloned()
    }

    /// `matchAllocation.maxMatches` of an applied scheduler, without copying its spec (the ping
    /// path asks on every ping).
    pub fn max_matches(&self, name: &str) -> Option<u32> {
        self.lock()
            .get(name)
            .map(|a| a.spec.match_allocation.max_matches)
    }

    pub fn applied_all(&self) -> BTreeMap<String, Applied> {
        self.lock().clone()
    }

    /// Record `applied` as what the scheduler is driven to (`None`: forget the scheduler).
    pub fn set_applied(&self, name: &str, applied: Option<Applied>) -> Result<(), StoreError> {
        let mut map = self.lock();
        let mut journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        match applied {
            Some(a) => {
                journal.put(name, &a)?;
                self.runtime.record_scheduler(name, Some(&a));
                map.insert(name.to_string(), a);
            }
            None => {
                journal.remove(name)?;
                self.runtime.record_scheduler(name, None);
                map.remove(name);
            }
        }
        Ok(())
    }

    /// Change the room target of an applied scheduler (the autoscaler's knob).
    pub fn set_target(&self, name: &str, rooms: u32) -> Result<(), StoreError> {
        match self.applied(name) {
            Some(mut a) => {
                a.target_rooms = rooms;
                self.set_applied(name, Some(a))
            }
            None => Ok(()),
        }
    }

    /// Live state for the planner.
    pub fn live_state(&self) -> LiveState {
        LiveState::of(self.applied_all(), self.registry.list(None))
    }

    /// Take from the runtime what the state directory does not know: applied schedulers and
    /// rooms recorded where the rooms run (a controller whose state directory was lost, or a
    /// new one pointed at a running fleet). Returns how many of each were taken.
    async fn discover(&self) -> Result<(usize, usize, Recorded), AdoptError> {
        let found = self.runtime.discover().await?;
        let mut schedulers = 0;
        for (name, applied) in found.schedulers {
            if self.applied(&name).is_some() {
                continue;
            }
            self.set_applied(&name, Some(applied))?;
            schedulers += 1;
        }
        let mut rooms = 0;
        for room in found.rooms {
            if self.registry.get(&room.id).is_some() {
                continue;
            }
            self.registry.insert(room)?;
            rooms += 1;
        }
        let recorded = Recorded {
            suspended: found.suspended,
            operations: found.operations,
            revisions: found.revisions,
        };
        Ok((schedulers, rooms, recorded))
    }

    /// After a restart: take back the rooms still running; the others are marked gone. Returns
    /// what else the runtime records, for the controller to take.
    pub async fn adopt(&self) -> Result<Recorded, AdoptError> {
        let (schedulers, rooms, recorded) = self.discover().await?;
        if schedulers + rooms > 0 {
            tracing::info!(
                schedulers,
                rooms,
                "taken from the runtime: unknown to the state directory"
            );
        }
        let rooms = self.registry.list(None);
        let adopted = self.runtime.adopt(&rooms).await?;
        for stray in strays(&adopted.found, &rooms, &adopted.alive) {
            let (scheduler, room) = (&stray.scheduler, &stray.room);
            tracing::warn!(%scheduler, %room, unrecorded = stray.unrecorded, "stopping what runs for a room no running room is recorded for");
            if let Err(e) = self.runtime.remove_stray(scheduler, room).await {
                tracing::warn!(%scheduler, %room, error = %e, "cannot stop a stray room");
            }
        }
        let alive: HashSet<String> = adopted.alive.into_iter().collect();
        for room in rooms.iter().filter(|r| !alive.contains(&r.id)) {
            let gone = room.runtime_ref.is_none() || room.status == RoomStatus::Terminating;
            if gone && room.status != RoomStatus::Error {
                logged(
                    "forget a room that is gone",
                    &room.id,
                    self.registry.remove(&room.id),
                );
            } else if room.status != RoomStatus::Error {
                logged(
                    "record a room that ended while the controller was down",
                    &room.id,
                    self.registry.apply(
                        &room.scheduler,
                        &room.id,
                        &RoomEvent::Exited { clean: false },
                        Some("room ended while the controller was down"),
                    ),
                );
                logged(
                    "clear the process of a room that ended",
                    &room.id,
                    self.registry.update(&room.id, |r| r.runtime_ref = None),
                );
            }
        }
        tracing::info!(
            rooms = rooms.len(),
            adopted = alive.len(),
            "rooms adopted after start"
        );
        self.adopted
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(recorded)
    }

    /// Whether the rooms recorded before this start have been taken back. Until then a room or a
    /// scheduler not known yet may still come from the runtime (a state directory rebuilt from
    /// the cluster): "not found" is not an answer to give.
    pub fn adopted(&self) -> bool {
        self.adopted.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Apply what the runtime reports to the registry.
    pub fn handle_event(&self, event: RuntimeEvent) {
        match event {
            RuntimeEvent::Running { scheduler, room } => {
                logged(
                    "record a room running",
                    &room,
                    self.registry
                        .apply(&scheduler, &room, &RoomEvent::Started, None),
                );
            }
            RuntimeEvent::Placed {
                scheduler,
                room,
                host,
                ports,
            } => {
                if self
                    .registry
                    .get(&room)
                    .is_some_and(|r| r.scheduler == scheduler)
                {
                    logged(
                        "record where a room was placed",
                        &room,
                        self.registry.update(&room, |r| {
                            r.host = host;
                            r.ports = ports;
                        }),
                    );
                }
            }
            RuntimeEvent::Exited {
                scheduler,
                room,
                clean,
                reason,
            } => {
                tracing::info!(%scheduler, %room, clean, %reason, "room ended");
                let exited = self.registry.apply(
                    &scheduler,
                    &room,
                    &RoomEvent::Exited { clean },
                    Some(&reason),
                );
                if logged("record a room's end", &room, exited)
                    .is_some_and(|out| out.to == RoomStatus::Error)
                {
                    logged(
                        "clear the process of a room that ended",
                        &room,
                        self.registry.update(&room, |r| r.runtime_ref = None),
                    );
                }
            }
            RuntimeEvent::Failed {
                scheduler,
                room,
                reason,
            } => {
                tracing::warn!(%scheduler, %room, %reason, "room failed");
                logged(
                    "record a room's failure",
                    &room,
                    self.registry
                        .apply(&scheduler, &room, &RoomEvent::Failed, Some(&reason)),
                );
            }
        }
    }

    /// Mark rooms that outstayed their scheduler's timeouts as failed, with the reason, and give
    /// back allocations that were not confirmed in time ([`timeouts::due`] decides). Returns
    /// the allocations given back.
    pub fn check_timeouts(&self, now: u64) -> u32 {
        let applied = self.applied_all();
        let specs = applied.iter().map(|(n, a)| (n.clone(), &a.spec)).collect();
        let rooms = self.registry.list(None);
        let mut expired = 0;
        for expiry in timeouts::due(&rooms, &specs, now, self.config.allocation_ttl) {
            match expiry {
                Expiry::Allocation { scheduler, room } => {
                    tracing::info!(%scheduler, %room, "allocation not confirmed in time: room is free again");
                    let given_back =
                        self.registry
                            .apply(&scheduler, &room, &RoomEvent::AllocationExpired, None);
                    if logged("give back an allocation", &room, given_back).is_some() {
                        expired += 1;
                    }
                }
                Expiry::Room {
                    scheduler,
                    room,
                    reason,
                } => {
                    tracing::warn!(%scheduler, %room, %reason, "room timed out");
                    logged(
                        "record a room's timeout",
                        &room,
                        self.registry
                            .apply(&scheduler, &room, &RoomEvent::Failed, Some(&reason)),
                    );
                }
            }
        }
        expired
    }

    fn new_room_id(&self, scheduler: &str) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        loop {
            let mut bytes = [0u8; 5];
            getrandom::fill(&mut bytes).expect("the OS random source works");
            let suffix: String = bytes
                .iter()
                .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
                .collect();
            let id = format!("{scheduler}-{suffix}");
            if self.registry.get(&id).is_none() {
                return id;
            }
        }
    }

    /// Record a new room, then start it. Returns its id, or why it could not start.
    async fn start_room(&self, spec: &Arc<Scheduler>, version: &str) -> Result<String, String> {
        let id = self.new_room_id(&spec.name);
        let now = now_ms();
        let room = Room::pending(&id, &spec.name, version, now);
        self.registry.insert(room).map_err(|e| e.to_string())?;
        let req = StartRoom {
            scheduler: Arc::clone(spec),
            room_id: id.clone(),
            token: room_token(&self.config.secret, &spec.name, &id),
            rooms_url: self.config.rooms_url.clone(),
        };
        let started = match self.runtime.start(req).await {
            Ok(started) => started,
            Err(e) => {
                let reason = e.to_string();
                logged(
                    "record a room that failed to start",
                    &id,
                    self.registry
                        .apply(&spec.name, &id, &RoomEvent::Failed, Some(&reason)),
                );
                return Err(reason);
            }
        };
        let recorded = self.registry.update(&id, |r| {
            // A runtime that places rooms later reports the address by `Placed`, which
            // may have come first: never overwrite it.
            if r.host.is_empty() {
                r.host = started.host.clone();
                r.ports = started.ports.clone();
            }
            // An exit reported before this point already cleared the room's process.
            if r.status != RoomStatus::Error {
                r.runtime_ref = Some(started.runtime_ref.clone());
            }
        });
        match recorded {
            Ok(Some(_)) => Ok(id),
            Ok(None) => Err(format!("room {id} was forgotten while it started")),
            Err(e) => {
                // A room whose process is not recorded would be killed as unknown by the next
                // controller: stop it now and fail the operation with the reason instead.
                let reason = format!("cannot record the process of room {id}: {e}");
                tracing::error!(room = %id, %reason, "stopping the room it started");
                let room = Room {
                    runtime_ref: Some(started.runtime_ref),
                    ..Room::pending(&id, &spec.name, version, now)
                };
                if let Err(e) = self.runtime.stop(&room, Duration::ZERO).await {
                    tracing::warn!(room = %id, error = %e, "stopping the unrecorded room failed");
                }
                Err(reason)
            }
        }
    }

    /// Stop a room (or forget it when it has no process left).
    pub async fn stop_room(&self, room: &Room, grace: Duration) {
        if room.runtime_ref.is_none() {
            logged(
                "forget a room with no process",
                &room.id,
                self.registry.remove(&room.id),
            );
            return;
        }
        if self
            .registry
            .apply(&room.scheduler, &room.id, &RoomEvent::Stop, None)
            .is_err()
        {
            return;
        }
        if let Err(e) = self.runtime.stop(room, grace).await {
            tracing::warn!(room = %room.id, error = %e, "stopping room failed");
        }
    }

    /// Drive the scheduler's rooms to its applied target.
    async fn converge(&self, name: &str, ctx: &OpContext) -> Result<String, OpError> {
        let mut changes = self.registry.subscribe();
        let mut started: HashSet<String> = HashSet::new();
        let (mut n_started, mut n_removed) = (0u32, 0u32);
        loop {
            if ctx.cancel.is_cancelled() {
                return Err(OpError::Canceled);
            }
            let Some(applied) = self.applied(name) else {
                return Err(OpError::Failed(format!("scheduler {name} is not applied")));
            };
            let rooms = self.registry.list(Some(name));
            // Fail fast: a room this operation started broke before it ever served (it never
            // pinged). One that served and broke since is drift: replaced like any other.
            if let Some(bad) = rooms.iter().find(|r| {
                started.contains(&r.id) && r.status == RoomStatus::Error && r.last_ping.is_none()
            }) {
                return Err(OpError::Failed(format!(
                    "room {} failed: {}",
                    bad.id,
                    bad.reason.as_deref().unwrap_or("unknown reason")
                )));
            }
            let target = Target {
                version: applied.version.clone(),
                rooms: applied.target_rooms,
                surge: applied.spec.surge_rooms(applied.target_rooms),
            };
            let step = converge::step(&target, &rooms);
            if step.done {
                let mut summary = format!(
                    "{} room(s) of version {} ({} started, {} removed)",
                    applied.target_rooms, applied.version, n_started, n_removed
                );
                if step.busy_kept > 0 {
                    summary.push_str(&format!(
                        "; {} busy room(s) kept until their matches end",
                        step.busy_kept
                    ));
                }
                return Ok(summary);
            }
            let grace = applied.spec.spec.grace();
            for id in &step.remove {
                if let Some(room) = rooms.iter().find(|r| &r.id == id) {
                    self.stop_room(room, grace).await;
                    n_removed += 1;
                }
            }
            if step.start > 0 {
                ctx.event(format!(
                    "starting {} room(s) of version {}",
                    step.start, applied.version
                ));
                let spec = Arc::new(applied.spec.clone());
                let starts = (0..step.start).map(|_| self.start_room(&spec, &applied.version));
                let results: Vec<_> = futures_util::stream::iter(starts)
                    .buffer_unordered(START_CONCURRENCY)
                    .collect()
                    .await;
                for result in results {
                    match result {
                        Ok(id) => {
                            started.insert(id);
                            n_started += 1;
                        }
                        Err(reason) => return Err(OpError::Failed(reason)),
                    }
                }
            }
            if !step.waiting.is_empty() {
                ctx.event(format!("waiting: {}", step.waiting.join(", ")));
            }
            next_step(&mut changes, ctx).await;
        }
    }

    /// Drain and remove a scheduler: free rooms now, busy rooms when their matches end
    /// (or now, when forced).
    async fn delete(&self, name: &str, force: bool, ctx: &OpContext) -> Result<String, OpError> {
        let mut changes = self.registry.subscribe();
        let grace = self
            .applied(name)
            .map(|a| a.spec.spec.grace())
            .unwrap_or_default();
        loop {
            if ctx.cancel.is_cancelled() {
                return Err(OpError::Canceled);
            }
            let rooms = self.registry.list(Some(name));
            if rooms.is_empty() {
                self.set_applied(name, None)
                    .map_err(|e| OpError::Failed(e.to_string()))?;
                return Ok(format!("scheduler {name} deleted"));
            }
            let mut busy = 0;
            for room in rooms.iter().filter(|r| !r.status.is_leaving()) {
                if room.status.is_busy() && !force {
                    busy += 1;
                } else {
                    self.stop_room(room, grace).await;
                }
            }
            if busy > 0 {
                ctx.event(format!(
                    "waiting for {busy} busy room(s) to finish their matches"
                ));
            }
            next_step(&mut changes, ctx).await;
        }
    }

    /// Ask the runtime whether it admits rooms of `version` before the first is started (and
    /// before the version is applied: a refused version never becomes the one rooms are
    /// driven to, so the old version's rooms are left alone). Once per operation.
    async fn admit(&self, op: &Operation, spec: &Scheduler, version: &str) -> Result<(), OpError> {
        match self.runtime.check_admission(spec).await {
            Ok(()) => Ok(()),
            Err(RuntimeError::Refused { reason, .. }) => {
                let refusal = Refusal {
                    declared: op.declared.clone(),
                    reason,
                };
                let message = refusal.op_error(&op.scheduler, version);
                tracing::warn!(scheduler = %op.scheduler, %version, error = %message, "rooms refused");
                Err(OpError::Refused { message, refusal })
            }
            Err(e) => Err(OpError::Failed(format!(
                "checking that rooms of version {version} are admitted: {e}"
            ))),
        }
    }

    /// A rollout failed before any room of its version served: its version is not fit to run, so
    /// the scheduler goes back to the version it replaced (whose rooms were kept running).
    fn fall_back(
        &self,
        name: &str,
        failed: &Applied,
        old: &Scheduler,
        reason: &str,
        ctx: &OpContext,
    ) -> Result<(), OpError> {
        let served = self
            .registry
            .list(Some(name))
            .iter()
            .any(|r| r.version == failed.version && r.status.is_serving());
        if served {
            return Ok(());
        }
        let back = Applied {
            version: old.version(),
            target_rooms: failed.target_rooms,
            spec: old.clone(),
            previous: None,
        };
        ctx.event(format!(
            "version {} failed validation ({reason}); keeping version {}",
            failed.version, back.version
        ));
        self.set_applied(name, Some(back))
            .map_err(|e| OpError::Failed(e.to_string()))
    }
}

#[async_trait]
impl crate::state::ops::Executor for Fleet {
    async fn execute(&self, op: &Operation, ctx: &OpContext) -> Result<String, OpError> {
        match op.kind {
            OpKind::Delete => self.delete(&op.scheduler, op.force, ctx).await,
            OpKind::Heal => self.converge(&op.scheduler, ctx).await,
            OpKind::Scale if op.spec.is_none() => {
                let target = op
                    .target
                    .ok_or_else(|| OpError::Failed("scale without a target".into()))?;
                ctx.event(format!("target {target} room(s)"));
                self.set_target(&op.scheduler, target)
                    .map_err(|e| OpError::Failed(e.to_string()))?;
                self.converge(&op.scheduler, ctx).await
            }
            OpKind::Create | OpKind::Update | OpKind::Rollout | OpKind::Scale => {
                let spec = op
                    .spec
                    .clone()
                    .ok_or_else(|| OpError::Failed("operation has no spec".into()))?;
                let previous = self.applied(&op.scheduler);
                let version = spec.version();
                let applied_version = previous.as_ref().map(|p| p.version.as_str());
                if admission::op_needs_check(op.kind, Some(&version), applied_version) {
                    self.admit(op, &spec, &version).await?;
                }
                let fallback = match &previous {
                    Some(p) if p.version == version => p.previous.clone(),
                    Some(p) => Some(Box::new(p.spec.clone())),
                    None => None,
                };
                let applied = Applied {
                    version,
                    target_rooms: spec.target_rooms(previous.as_ref().map(|p| p.target_rooms)),
                    spec,
                    previous: fallback,
                };
                if previous.as_ref() != Some(&applied) {
                    ctx.event(format!(
                        "applying version {} with {} room(s)",
                        applied.version, applied.target_rooms
                    ));
                    self.set_applied(&op.scheduler, Some(applied.clone()))
                        .map_err(|e| OpError::Failed(e.to_string()))?;
                }
                let result = self.converge(&op.scheduler, ctx).await;
                if let (Err(OpError::Failed(reason)), Some(old)) = (&result, &applied.previous) {
                    self.fall_back(&op.scheduler, &applied, old, reason, ctx)?;
                }
                result
            }
        }
    }
}

/// The value of a registry change, or `None` with a log line saying what could not be done. A
/// refused transition (the room had moved on, say stopped before its start was reported) is
/// expected and logged at debug level; a journal that refused the write is an error (counted by
/// the registry, in `troupe_store_write_failures_total`).
fn logged<T, E: Into<RegistryError>>(what: &str, room: &str, result: Result<T, E>) -> Option<T> {
    match result.map_err(Into::into) {
        Ok(v) => Some(v),
        Err(e @ (RegistryError::Transition { .. } | RegistryError::UnknownRoom { .. })) => {
            tracing::debug!(%room, error = %e, "cannot {what}");
            None
        }
        Err(e @ RegistryError::Store(_)) => {
            tracing::error!(%room, error = %e, "cannot {what}");
            None
        }
    }
}

/// Wait until an operation's next step is due: its rooms changed (then [`STEP_COALESCE`] more,
/// so that a burst of room events makes one step, not one per event), [`STEP_TICK`] passed, or
/// it was canceled.
async fn next_step(changes: &mut tokio::sync::watch::Receiver<u64>, ctx: &OpContext) {
    tokio::select! {
        _ = changes.changed() => {
            tokio::select! {
                _ = tokio::time::sleep(STEP_COALESCE) => {}
                _ = ctx.cancel.cancelled() => {}
            }
            // What changed meanwhile is in the step about to be taken.
            changes.borrow_and_update();
        }
        _ = tokio::time::sleep(STEP_TICK) => {}
        _ = ctx.cancel.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::local::{LocalConfig, LocalRuntime};

    fn sleeper() -> Scheduler {
        let mut s = Scheduler::minimal("arena");
        s.rooms_replicas = Some(1);
        s.port_range = crate::domain::spec::PortRange {
            start: 27100,
            end: 27200,
        };
        s.local = Some(crate::domain::spec::LocalSpec {
            command: vec!["sleep".into(), "30".into()],
            env: vec![],
        });
        s
    }

    /// Regression: when the room's process could not be recorded, the failure was dropped and
    /// the start reported a success; the next controller then killed the room as never recorded.
    #[tokio::test]
    async fn a_room_whose_process_cannot_be_recorded_is_stopped_and_its_start_fails() {
        let dir = tempfile::tempdir().unwrap();
        let (runtime, mut events) =
            LocalRuntime::new(LocalConfig::for_current_exe(dir.path()).unwrap());
        let runtime = Arc::new(runtime);
        let fleet = Fleet::open(
            dir.path(),
            runtime,
            FleetConfig {
                secret: b"s".to_vec(),
                rooms_url: "http://127.0.0.1:1".into(),
                allocation_ttl: Duration::from_secs(30),
            },
        )
        .unwrap();
        // The `pending` record goes through; the record of its process does not.
        fleet.registry.fail_writes_after(Some(1));
        let spec = Arc::new(sleeper());
        let err = fleet.start_room(&spec, "v1").await.unwrap_err();
        assert!(err.contains("cannot record the process of room"), "{err}");
        // The process it started is stopped, not left for the next controller to kill.
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match events.recv().await {
                    Some(RuntimeEvent::Exited { room, .. }) => return room,
                    Some(_) => continue,
                    None => panic!("runtime events ended"),
                }
            }
        })
        .await
        .expect("the unrecorded room was stopped");
        assert!(ended.starts_with("arena-"), "{ended}");
        assert!(fleet.registry.store_failures() >= 1);
    }
}
