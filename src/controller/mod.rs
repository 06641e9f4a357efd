//! The controller: turns the newest good revision into operations.
//!
//! A loop and a state machine: observe (a new snapshot from the source, a room change, a tick)
//! → load and validate the revision → `plan(desired, live)` → enqueue one operation per change
//! (in `auto` sync mode; in `manual` mode only after approval). Must always hold: a revision with
//! any error changes nothing and the last good one keeps running; nothing is planned before the
//! first revision loaded (an empty view never deletes a fleet); a scheduler whose operation failed
//! or was canceled is left alone until a new revision or an explicit apply.

pub mod fleet;
pub mod rooms;
pub mod samples;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::domain::plan::saved::SavedPlan;
use crate::domain::plan::{self, Action, Plan, PlanOptions};
use crate::domain::spec::{Declared, Located, Scheduler, load_documents};
use crate::domain::{Applied, admission, autoscale, reconcile};
use crate::metrics::Metrics;
use crate::source::{CommitInfo, Observed, Snapshot};
pub use crate::state::history::{History, RevisionRecord};
use crate::state::ops::{Cause, OpKind, OpStatus, Operation, Operations};
pub use fleet::{Fleet, FleetConfig};
pub use rooms::{AllocateError, Rooms};

/// Least time between two reconciles: bursts of room changes are planned once.
const RECONCILE_MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Health checks (timeouts) run this often.
const HEALTH_TICK: Duration = Duration::from_secs(1);

/// Whether new revisions apply by themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "camelCase")]
pub enum SyncMode {
    /// Apply every new good revision.
    Auto,
    /// Plan every new revision and wait for `troupe apply` (or the API) to approve the plan.
    Manual,
}

/// Why a suspension did not change.
#[derive(Debug, thiserror::Error)]
pub enum SuspendError {
    /// The runtime could not record it (the API server): retry.
    #[error("cannot record the suspension where the rooms run: {0}")]
    Unrecorded(#[source] crate::runtime::RuntimeError),
    #[error(transparent)]
    Journal(crate::state::journal::StoreError),
}

#[derive(Debug, Clone)]
pub struct ControllerOptions {
    pub prune: bool,
    pub sync: SyncMode,
    /// How often the autoscaler looks at occupancy.
    pub autoscale_interval: Duration,
}

/// The revision currently applied.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionInfo {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitInfo>,
    /// Unix milliseconds when Troupe first saw it.
    pub seen_at: u64,
    pub schedulers: usize,
}

/// The newest revision, when it could not be used.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionError {
    /// Revision id, when the source could be read at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    pub message: String,
    pub errors: Vec<Located>,
    pub at: u64,
}

/// What the controller knows about desired state; served by the management API.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredState {
    /// The last good revision: what runs.
    pub revision: Option<RevisionInfo>,
    #[serde(skip)]
    pub schedulers: Vec<Scheduler>,
    /// Where each scheduler of the last good revision is declared, by name.
    #[serde(skip)]
    pub declared: BTreeMap<String, Declared>,
    /// The newest revision's problems, while it keeps the last good one running.
    pub error: Option<RevisionError>,
    /// The current plan: last good revision against live state.
    pub plan: Option<Plan>,
    /// Unix milliseconds of the last explicit apply (lifts holds on failed schedulers).
    pub last_apply_at: u64,
    /// Reconciles completed since the controller started. A client that read `n` and then sees
    /// `n + 1` knows the controller has since planned and acted on everything it held when
    /// the client read `n` (tests wait on it instead of sleeping).
    pub reconciles: u64,
}

pub struct Controller {
    pub fleet: Arc<Fleet>,
    pub ops: Arc<Operations>,
    pub metrics: Arc<Metrics>,
    pub options: ControllerOptions,
    /// Revisions seen and schedulers suspended.
    pub history: History,
    /// Room counts over the last hour, per scheduler (filled by [`samples::run`]).
    pub samples: samples::Samples,
    state: Mutex<DesiredState>,
    reconciled: watch::Sender<bool>,
    /// When each scheduler was last scaled down (Unix ms), for the cooldown. Starts at the
    /// controller's start, so a restart never scales down early.
    scaled_down: Mutex<std::collections::HashMap<String, u64>>,
    started_at: u64,
    /// Bumped when the revision, its error, the plan or a suspension changes.
    changes: watch::Sender<u64>,
    /// Cancelled when [`Controller::run`] returns: long-lived readers (event streams) end with it.
    stopping: CancellationToken,
}

/// Errors of an explicit apply.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// No good revision has been loaded yet.
    #[error("no revision loaded yet")]
    NoRevision,
    /// The plan the caller approved is not the current plan any more.
    #[error("plan {given} is stale: the current plan is {current} (git or live state moved)")]
    StalePlan { given: String, current: String },
    /// A saved plan cannot be applied whatever the state (expired, unknown format).
    #[error("{0}")]
    Invalid(String),
    /// Git or live state moved since the saved plan was made.
    #[error("plan {plan} is stale: {}", .moved.join("; "))]
    Moved { plan: String, moved: Vec<String> },
    /// A scheduler of the plan has an operation pending or running.
    #[error(
        "scheduler {scheduler} has an operation pending or running; apply again when it has finished"
    )]
    Busy { scheduler: String },
    #[error(transparent)]
    Store(#[from] crate::state::journal::StoreError),
}

impl Controller {
    pub fn new(
        fleet: Arc<Fleet>,
        ops: Arc<Operations>,
        metrics: Arc<Metrics>,
        options: ControllerOptions,
        history: History,
    ) -> Self {
        Self {
            fleet,
            ops,
            metrics,
            options,
            history,
            samples: samples::Samples::default(),
            state: Mutex::new(DesiredState::default()),
            reconciled: watch::channel(false).0,
            scaled_down: Mutex::new(Default::default()),
            started_at: now_ms(),
            changes: watch::channel(0).0,
            stopping: CancellationToken::new(),
        }
    }

    /// A receiver marked changed whenever the revision, its error, the plan or a scheduler's
    /// suspension changes (rooms and operations have their own: `registry` and `ops`).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Suspend (or resume) applying git changes to scheduler `name`. Recorded where the rooms
    /// run first (on Kubernetes, the namespace), so that a controller that takes over keeps it;
    /// if that fails nothing changed.
    pub async fn set_suspended(&self, name: &str, suspended: bool) -> Result<(), SuspendError> {
        let since = suspended.then(crate::clock::now_ms);
        self.fleet
            .runtime
            .record_suspension(name, since)
            .await
            .map_err(SuspendError::Unrecorded)?;
        self.history
            .set_suspended(name, since)
            .map_err(SuspendError::Journal)?;
        self.notify_changed();
        Ok(())
    }

    /// Whether the rooms recorded before this start have been taken back (see
    /// [`Fleet::adopted`]).
    pub fn adopted(&self) -> bool {
        self.fleet.adopted()
    }

    /// Hand scheduler `name`'s summary to the runtime, which shows it where the rooms run.
    pub fn record_status(&self, name: &str, status: &crate::runtime::SchedulerStatus) {
        self.fleet.runtime.record_status(name, status);
    }

    /// Tell subscribers that what [`Controller::subscribe`] covers changed.
    pub fn notify_changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Cancelled once the controller has stopped.
    pub fn stopping(&self) -> CancellationToken {
        self.stopping.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DesiredState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn desired(&self) -> DesiredState {
        self.lock().clone()
    }

    /// Desired specs of the last good revision.
    pub fn desired_schedulers(&self) -> Vec<Scheduler> {
        self.lock().schedulers.clone()
    }

    /// The applied spec of one scheduler.
    pub fn applied(&self, name: &str) -> Option<Applied> {
        self.fleet.applied(name)
    }

    /// Every applied scheduler.
    pub fn applied_all(&self) -> std::collections::BTreeMap<String, Applied> {
        self.fleet.applied_all()
    }

    /// Live state as the planner sees it.
    pub fn live_state(&self) -> crate::domain::plan::LiveState {
        self.fleet.live_state()
    }

    /// Record writes waiting to go where the rooms run.
    pub fn pending_records(&self) -> usize {
        self.fleet.runtime.pending_records()
    }

    /// True once a revision was loaded and planned (readiness).
    pub fn ready(&self) -> bool {
        *self.reconciled.borrow()
    }

    /// Take a snapshot from the source: a good revision replaces the desired state; a bad one is
    /// recorded and changes nothing.
    pub fn load(&self, snapshot: Result<Snapshot, Arc<crate::source::SourceError>>) {
        let now = now_ms();
        let snapshot = match snapshot {
            Ok(s) => s,
            Err(e) => {
                let message = crate::source::error_chain(e.as_ref());
                tracing::warn!(error = %message, "source cannot be read; keeping the last good revision");
                self.metrics.revisions.with_label_values(&["error"]).inc();
                self.lock().error = Some(RevisionError {
                    revision: None,
                    message,
                    errors: vec![],
                    at: now,
                });
                self.notify_changed();
                return;
            }
        };
        let commit = snapshot
            .commit
            .as_ref()
            .map(|c| format!("{}: {}", c.author, first_line(&c.message)));
        let loaded = load_documents(&snapshot.files);
        let (errors, schedulers) = match &loaded {
            Ok(docs) => (0, docs.len()),
            Err(e) => (e.0.len(), 0),
        };
        match self
            .history
            .seen(&snapshot.revision, commit, errors, schedulers)
        {
            Ok(true) => self
                .fleet
                .runtime
                .record_revisions(&self.history.revisions()),
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "cannot record the revision"),
        }
        match loaded {
            Ok(docs) => {
                tracing::info!(revision = %snapshot.revision, schedulers = docs.len(), "revision loaded");
                self.metrics.revisions.with_label_values(&["ok"]).inc();
                self.metrics.revision_invalid.set(0.0);
                let mut state = self.lock();
                let same = state
                    .revision
                    .as_ref()
                    .is_some_and(|r| r.id == snapshot.revision);
                if !same {
                    state.revision = Some(RevisionInfo {
                        id: snapshot.revision.clone(),
                        commit: snapshot.commit.clone(),
                        seen_at: now,
                        schedulers: docs.len(),
                    });
                }
                state.declared = docs
                    .iter()
                    .map(|d| (d.scheduler.name.clone(), d.declared()))
                    .collect();
                state.schedulers = docs.into_iter().map(|d| d.scheduler).collect();
                state.error = None;
            }
            Err(err) => {
                for e in &err.0 {
                    tracing::warn!(revision = %snapshot.revision, error = %e, "invalid revision");
                }
                self.metrics.revisions.with_label_values(&["invalid"]).inc();
                self.metrics.revision_invalid.set(1.0);
                self.lock().error = Some(RevisionError {
                    revision: Some(snapshot.revision.clone()),
                    message: format!(
                        "revision {} has {} error(s); the last good revision keeps running",
                        snapshot.revision,
                        err.0.len()
                    ),
                    errors: err.0,
                    at: now,
                });
            }
        }
        self.notify_changed();
    }

    /// The plan of the last good revision against live state now, without acting on it.
    pub fn current_plan(&self) -> Option<Plan> {
        let (desired, revision) = {
            let s = self.lock();
            (s.schedulers.clone(), s.revision.as_ref()?.id.clone())
        };
        let live = self.fleet.live_state();
        let opts = PlanOptions {
            prune: self.options.prune,
            revision: Some(revision),
        };
        let mut plan = plan::plan(&desired, &live, &opts);
        self.mark_refused(&mut plan);
        if self.fleet.runtime.name() == crate::runtime::local::RUNTIME_NAME {
            for change in plan.changes.iter_mut() {
                if let Some(desired) = &change.desired {
                    change.ignored_locally = crate::domain::spec::ignored_locally(desired);
                }
            }
        }
        Some(plan)
    }

    /// Show on each change the refusal its version already met: the server's plan asks the
    /// runtime nothing (a dry run per plan would put the API server's latency into every
    /// reconcile), it shows what its operations were told, from their journaled history.
    fn mark_refused(&self, plan: &mut Plan) {
        for change in plan.changes.iter_mut() {
            if admission::change_needs_check(change) {
                let latest = self.ops.latest(&change.scheduler);
                change.admission = admission::known_refusal(change, latest.as_ref());
            }
        }
    }

    /// Plan the last good revision against live state, store the plan, and act on it:
    /// observe the facts, let [`reconcile::decide`] choose the operations, queue them.
    pub fn reconcile(&self) {
        let Some(plan) = self.current_plan() else {
            return;
        };
        let (hold_since, commit) = {
            let s = self.lock();
            let rev = s.revision.as_ref();
            (
                rev.map_or(0, |r| r.seen_at).max(s.last_apply_at),
                rev.and_then(|r| r.commit.as_ref())
                    .map(|c| format!("{}: {}", c.author, first_line(&c.message))),
            )
        };
        for (name, a) in self.fleet.applied_all() {
            self.metrics
                .rooms_desired
                .with_label_values(&[&name])
                .set(f64::from(a.target_rooms));
        }
        let named = plan.changes.iter().map(|c| c.scheduler.clone());
        let names: std::collections::BTreeSet<String> = named.collect();
        let facts = reconcile::Facts {
            auto: self.options.sync == SyncMode::Auto,
            suspended: names
                .iter()
                .filter(|s| self.history.is_suspended(s))
                .cloned()
                .collect(),
            busy: names.iter().filter(|s| self.ops.busy(s)).cloned().collect(),
            held: names
                .iter()
                .filter(|s| self.held(s, hold_since))
                .cloned()
                .collect(),
            revision: Some(Cause::Revision {
                revision: plan.revision.clone().unwrap_or_default(),
                commit,
            }),
        };
        let waiting = reconcile::waiting(&plan, &facts);
        let repairs = self.repairs(&waiting);
        for e in reconcile::decide(&plan, repairs.as_ref(), &facts) {
            let declared = self.declared(&e.scheduler, e.kind);
            if let Err(err) =
                self.ops
                    .enqueue_declared(&e.scheduler, e.kind, e.cause, e.spec, declared, false)
            {
                tracing::error!(scheduler = %e.scheduler, error = %err, "cannot enqueue operation");
            }
        }
        let new_plan = {
            let mut s = self.lock();
            let new_plan = s.plan.as_ref().is_none_or(|p| p.id != plan.id);
            s.plan = Some(plan);
            s.reconciles += 1;
            new_plan
        };
        if new_plan {
            self.notify_changed();
        }
        self.reconciled.send_replace(true);
    }

    /// Let the autoscaler look at every autoscaled scheduler and queue a scale where its target
    /// should move ([`autoscale::scales`] decides; scale-downs wait for the cooldown).
    pub fn autoscale(&self, now: u64) {
        let applied = self.fleet.applied_all();
        let rooms = self.fleet.registry.list(None);
        let last_down = self
            .scaled_down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let observed: Vec<autoscale::Observed<'_>> = applied
            .iter()
            .filter_map(|(name, a)| {
                let autoscaling = a.spec.autoscaling.as_ref()?;
                let own: Vec<_> = rooms
                    .iter()
                    .filter(|r| &r.scheduler == name)
                    .cloned()
                    .collect();
                Some(autoscale::Observed {
                    scheduler: name,
                    autoscaling,
                    max_matches: a.spec.match_allocation.max_matches,
                    target: a.target_rooms,
                    occupancy: autoscale::Occupancy::of(&own),
                    busy: self.ops.busy(name),
                    last_scale_down: *last_down.get(name).unwrap_or(&self.started_at),
                })
            })
            .collect();
        for scale in autoscale::scales(&observed, now) {
            tracing::info!(scheduler = %scale.scheduler, from = scale.from, to = scale.to, reason = %scale.reason, "autoscaling");
            let cause = Cause::Autoscaler {
                reason: scale.reason.clone(),
            };
            match self.ops.enqueue_scale(&scale.scheduler, scale.to, cause) {
                Ok(_) if scale.is_down() => {
                    self.scaled_down
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(scale.scheduler, now);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(scheduler = %scale.scheduler, error = %e, "cannot enqueue operation")
                }
            }
        }
    }

    /// The repairs live schedulers `names` need against their own applied spec.
    fn repairs(&self, names: &[String]) -> Option<Plan> {
        if names.is_empty() {
            return None;
        }
        let mut live = self.fleet.live_state();
        live.schedulers.retain(|name, _| names.contains(name));
        let applied: Vec<Scheduler> = live
            .schedulers
            .values()
            .map(|l| l.applied.clone())
            .collect();
        Some(plan::plan(&applied, &live, &PlanOptions::default()))
    }

    /// Apply a saved plan: exactly its changes, or nothing when it expired, when git or the live
    /// state of a scheduler it changes moved since it was made, or when one of those schedulers
    /// has an operation pending or running (one apply per scheduler at a time).
    pub fn apply_saved(&self, saved: &SavedPlan, user: &str) -> Result<Vec<Operation>, ApplyError> {
        saved.check(now_ms()).map_err(ApplyError::Invalid)?;
        let current = self.current_plan().ok_or(ApplyError::NoRevision)?;
        let moved = plan::staleness(&saved.plan, &current);
        if !moved.is_empty() {
            return Err(ApplyError::Moved {
                plan: saved.plan.id.clone(),
                moved,
            });
        }
        let changes: Vec<_> = saved
            .plan
            .changes
            .iter()
            .filter(|c| c.action != Action::Orphan)
            .collect();
        if let Some(busy) = changes.iter().find(|c| self.ops.busy(&c.scheduler)) {
            return Err(ApplyError::Busy {
                scheduler: busy.scheduler.clone(),
            });
        }
        self.lock().last_apply_at = now_ms();
        tracing::info!(plan = %saved.plan.id, user, changes = changes.len(), "saved plan applied");
        let mut ops = Vec::new();
        for c in changes {
            let cause = Cause::Plan {
                plan: saved.plan.id.clone(),
                revision: saved.plan.revision.clone(),
                user: user.to_string(),
            };
            let kind = reconcile::op_kind(c.action);
            ops.push(self.ops.enqueue_declared(
                &c.scheduler,
                kind,
                cause,
                c.desired.clone(),
                self.declared(&c.scheduler, kind),
                false,
            )?);
        }
        Ok(ops)
    }

    /// Where the last good revision declares `scheduler`, for an operation of `kind` that
    /// applies its spec (a heal or a delete applies none).
    fn declared(&self, scheduler: &str, kind: OpKind) -> Option<Declared> {
        if matches!(kind, OpKind::Heal | OpKind::Delete) {
            return None;
        }
        self.lock().declared.get(scheduler).cloned()
    }

    /// A scheduler whose latest operation failed or was canceled since `since` waits for a new
    /// revision or an explicit apply, instead of retrying in a loop.
    fn held(&self, scheduler: &str, since: u64) -> bool {
        self.ops.latest(scheduler).is_some_and(|op| {
            matches!(op.status, OpStatus::Failed | OpStatus::Canceled) && op.created_at >= since
        })
    }

    /// Approve the current plan (manual mode), or retry held schedulers now (auto mode).
    /// With `plan_id`, refuses when the current plan is a different one.
    /// With `force`, deletions do not wait for busy rooms: their matches are cut short.
    pub fn apply(
        &self,
        plan_id: Option<&str>,
        user: &str,
        force: bool,
    ) -> Result<Plan, ApplyError> {
        self.reconcile();
        let (plan, revision) = {
            let mut s = self.lock();
            let plan = s.plan.clone().ok_or(ApplyError::NoRevision)?;
            if let Some(given) = plan_id
                && given != plan.id
            {
                return Err(ApplyError::StalePlan {
                    given: given.to_string(),
                    current: plan.id.clone(),
                });
            }
            s.last_apply_at = now_ms();
            (
                plan,
                s.revision
                    .as_ref()
                    .map(|r| r.id.clone())
                    .unwrap_or_default(),
            )
        };
        tracing::info!(plan = %plan.id, %revision, user, "plan approved");
        for change in &plan.changes {
            if matches!(change.action, Action::Orphan | Action::Converge)
                || self.ops.busy(&change.scheduler)
            {
                continue;
            }
            let kind = reconcile::op_kind(change.action);
            self.ops.enqueue_declared(
                &change.scheduler,
                kind,
                Cause::User {
                    name: user.to_string(),
                },
                change.desired.clone(),
                self.declared(&change.scheduler, kind),
                force && change.action == Action::Delete,
            )?;
        }
        self.reconcile();
        Ok(plan)
    }

    /// Run until `shutdown`: take snapshots, react to room and operation changes, check health.
    pub async fn run(
        self: Arc<Self>,
        mut snapshots: watch::Receiver<Observed>,
        shutdown: CancellationToken,
    ) {
        let _stopping = self.stopping.clone().drop_guard();
        let mut rooms = self.fleet.registry.subscribe();
        let mut ops = self.ops.subscribe();
        let mut autoscale = tokio::time::interval(self.options.autoscale_interval);
        autoscale.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut health = tokio::time::interval(HEALTH_TICK);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if let Some(s) = snapshots.borrow_and_update().clone() {
            self.load(s);
        }
        loop {
            self.reconcile();
            tokio::time::sleep(RECONCILE_MIN_INTERVAL).await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let snapshot = snapshots.borrow_and_update().clone();
                    if let Some(s) = snapshot {
                        self.load(s);
                    }
                }
                _ = rooms.changed() => {}
                _ = ops.changed() => {}
                _ = autoscale.tick() => self.autoscale(now_ms()),
                _ = health.tick() => {
                    let expired = self.fleet.check_timeouts(now_ms());
                    self.metrics.allocations_expired.inc_by(u64::from(expired));
                }
            }
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}
