//! Operations: units of work on one scheduler (create, update, rollout, scale, delete, heal),
//! queued, run and remembered.
//!
//! Must always hold: operations of one scheduler run one at a time, in the order they were
//! enqueued; different schedulers run in parallel. Every state change of an operation is
//! journaled before it is visible, so a `kill -9` loses no history and an operation that was
//! running is resumed (its executor works from live state, so running it again is safe).
//! History is bounded: the oldest finished operations are forgotten past [`MAX_HISTORY`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use std::panic::AssertUnwindSafe;

use async_trait::async_trait;
use futures_util::FutureExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::clock::now_ms;
pub use crate::domain::operation::{Cause, OpError, OpEvent, OpKind, OpStatus, Operation};
use crate::domain::spec::{Declared, Scheduler};
use crate::state::journal::{Journal, StoreError};

/// Finished operations kept in history (all schedulers together).
pub const MAX_HISTORY: usize = 2_000;
/// Events kept per operation; a long wait does not grow an operation without bound.
pub const MAX_EVENTS: usize = 200;

/// Operations of one scheduler kept where the rooms run, when a [`Recorder`] is set.
pub const KEPT_IN_RECORD: usize = 10;

/// Where every change of an operation is also recorded: the Kubernetes runtime's cluster, so
/// that a replica taking over knows the history and resumes what was running.
pub trait Recorder: Send + Sync + 'static {
    /// `op` changed; `drop`: older operations of its scheduler no longer to keep there.
    fn record(&self, op: &Operation, drop: &[String]);
}

/// Errors of operation calls.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// No operation with that id.
    #[error("operation {0} not found")]
    NotFound(String),
    /// The operation has finished already.
    #[error("operation {id} is {status} and cannot be canceled")]
    Finished { id: String, status: &'static str },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What runs an operation. Only the executor talks to a runtime.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Run `op` to completion; `ctx` carries cancellation and the event log. Must be safe to run
    /// again after a crash: it works from live state, not from what a previous run did.
    async fn execute(&self, op: &Operation, ctx: &OpContext) -> Result<String, OpError>;
}

/// What a running operation can see and say.
pub struct OpContext {
    pub cancel: CancellationToken,
    ops: Arc<Operations>,
    id: String,
}

impl OpContext {
    /// Add an event to the operation's history (journaled).
    pub fn event(&self, message: impl Into<String>) {
        self.ops.add_event(&self.id, message.into());
    }
}

/// Retry delays of a journal write an operation's progress depends on.
const STORE_RETRY_MIN: std::time::Duration = std::time::Duration::from_millis(100);
const STORE_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(10);

/// Frees a scheduler's worker slot however its worker ends (a panic, an abort at shutdown), so
/// that the scheduler can get a new worker; disarmed when the worker deregisters itself.
struct WorkerGuard {
    ops: Arc<Operations>,
    scheduler: String,
    armed: bool,
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        if self.armed {
            let mut inner = self.ops.lock();
            inner.workers.remove(&self.scheduler);
            inner.running.remove(&self.scheduler);
        }
    }
}

/// Summary of how many operations there are per scheduler and status.
pub type OpCounts = BTreeMap<String, BTreeMap<OpStatus, u32>>;

struct Inner {
    ops: BTreeMap<String, Operation>,
    running: HashMap<String, (String, CancellationToken)>,
    workers: HashSet<String>,
    next: u64,
}

/// The operation queue and history.
pub struct Operations {
    inner: Mutex<Inner>,
    journal: Mutex<Journal<Operation>>,
    /// Journal writes that failed (the change they carried was not made).
    store_failures: std::sync::atomic::AtomicU64,
    executor: OnceLock<Arc<dyn Executor>>,
    recorder: OnceLock<Arc<dyn Recorder>>,
    changes: watch::Sender<u64>,
    finished: tokio::sync::broadcast::Sender<Operation>,
}

impl Operations {
    /// Open the history journaled at `path`. Operations that were running when the previous
    /// process died are set back to pending; [`Operations::start`] resumes them.
    pub fn open(path: impl AsRef<Path>) -> Result<Arc<Self>, StoreError> {
        let (mut journal, mut ops) = Journal::<Operation>::open(path)?;
        let now = now_ms();
        for op in ops.values_mut() {
            if op.status == OpStatus::Running {
                op.status = OpStatus::Pending;
                op.events.push(OpEvent {
                    at: now,
                    message: "controller restarted: resuming".into(),
                });
                journal.put(&op.id, op)?;
            }
        }
        let next = ops
            .keys()
            .filter_map(|id| id.strip_prefix("op-")?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        Ok(Arc::new(Self {
            inner: Mutex::new(Inner {
                ops,
                running: HashMap::new(),
                workers: HashSet::new(),
                next,
            }),
            journal: Mutex::new(journal),
            store_failures: Default::default(),
            executor: OnceLock::new(),
            recorder: OnceLock::new(),
            changes: watch::channel(0).0,
            finished: tokio::sync::broadcast::channel(256).0,
        }))
    }

    /// Set the executor and start workers for every scheduler with pending operations.
    pub fn start(self: &Arc<Self>, executor: Arc<dyn Executor>) {
        let _ = self.executor.set(executor);
        let schedulers: HashSet<String> = self
            .lock()
            .ops
            .values()
            .filter(|o| o.status == OpStatus::Pending)
            .map(|o| o.scheduler.clone())
            .collect();
        for s in schedulers {
            self.ensure_worker(&s);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Journal `op`, then make it visible: the only way an operation changes. Called with the
    /// operations locked (lock order everywhere: operations, then journal). On a failed write
    /// nothing changes, the failure is logged and counted, and the error returned.
    fn commit(&self, inner: &mut Inner, op: Operation) -> Result<(), StoreError> {
        let mut journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = journal.put(&op.id, &op) {
            self.store_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(op = %op.id, error = %e, "cannot journal operation; it is left as it was");
            return Err(e);
        }
        if let Some(recorder) = self.recorder.get() {
            let drop = if op.status.is_finished() {
                beyond_record(&inner.ops, &op)
            } else {
                vec![]
            };
            recorder.record(&op, &drop);
        }
        inner.ops.insert(op.id.clone(), op);
        Ok(())
    }

    /// Record every change from now on with `recorder` too (set once).
    pub fn set_recorder(&self, recorder: Arc<dyn Recorder>) {
        let _ = self.recorder.set(recorder);
    }

    /// Take the operations recorded where the rooms run that this history does not have (a
    /// replica that takes over, with an empty disk): journaled as they were, and one that was
    /// pending or running is pending here, for [`Operations::start`] to resume. New operations
    /// are numbered after them. Returns how many were taken.
    pub fn import(&self, recorded: Vec<Operation>) -> Result<usize, StoreError> {
        let mut inner = self.lock();
        let now = now_ms();
        let mut taken = 0;
        for mut op in recorded {
            if inner.ops.contains_key(&op.id) {
                continue;
            }
            if let Some(n) = op
                .id
                .strip_prefix("op-")
                .and_then(|n| n.parse::<u64>().ok())
            {
                inner.next = inner.next.max(n + 1);
            }
            if !op.status.is_finished() {
                if op.status == OpStatus::Running {
                    op.events.push(OpEvent {
                        at: now,
                        message: "the controller that ran it stopped: resuming".into(),
                    });
                }
                op.status = OpStatus::Pending;
            }
            self.commit(&mut inner, op)?;
            taken += 1;
        }
        drop(inner);
        if taken > 0 {
            self.notify();
        }
        Ok(taken)
    }

    /// Journal writes that failed since start.
    pub fn store_failures(&self) -> u64 {
        self.store_failures
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn notify(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Marked changed on every operation change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Every operation that finishes, as it finishes.
    pub fn subscribe_finished(&self) -> tokio::sync::broadcast::Receiver<Operation> {
        self.finished.subscribe()
    }

    /// Queue an operation; it runs after the scheduler's earlier ones.
    pub fn enqueue(
        self: &Arc<Self>,
        scheduler: &str,
        kind: OpKind,
        cause: Cause,
        spec: Option<Scheduler>,
        force: bool,
    ) -> Result<Operation, StoreError> {
        self.push(scheduler, kind, cause, spec, None, force, None)
    }

    /// [`Operations::enqueue`] of a spec declared at `declared` in the revision it comes from,
    /// so that what goes wrong with it can say where to look.
    pub fn enqueue_declared(
        self: &Arc<Self>,
        scheduler: &str,
        kind: OpKind,
        cause: Cause,
        spec: Option<Scheduler>,
        declared: Option<Declared>,
        force: bool,
    ) -> Result<Operation, StoreError> {
        self.push(scheduler, kind, cause, spec, declared, force, None)
    }

    /// Queue a scale of an autoscaled scheduler to `target` rooms.
    pub fn enqueue_scale(
        self: &Arc<Self>,
        scheduler: &str,
        target: u32,
        cause: Cause,
    ) -> Result<Operation, StoreError> {
        self.push(
            scheduler,
            OpKind::Scale,
            cause,
            None,
            None,
            false,
            Some(target),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        self: &Arc<Self>,
        scheduler: &str,
        kind: OpKind,
        cause: Cause,
        spec: Option<Scheduler>,
        declared: Option<Declared>,
        force: bool,
        target: Option<u32>,
    ) -> Result<Operation, StoreError> {
        let op = {
            let mut inner = self.lock();
            let id = format!("op-{:010}", inner.next);
            let now = now_ms();
            let op = Operation {
                id: id.clone(),
                scheduler: scheduler.to_string(),
                kind,
                cause,
                status: OpStatus::Pending,
                created_at: now,
                started_at: None,
                finished_at: None,
                spec,
                declared,
                force,
                target,
                error: None,
                admission: None,
                events: vec![],
            };
            self.commit(&mut inner, op.clone())?;
            inner.next += 1;
            op
        };
        tracing::info!(scheduler, op = %op.id, kind = kind.as_str(), "operation queued");
        self.notify();
        self.ensure_worker(scheduler);
        Ok(op)
    }

    pub fn get(&self, id: &str) -> Option<Operation> {
        self.lock().ops.get(id).cloned()
    }

    /// Operations, newest first, optionally of one scheduler.
    pub fn list(&self, scheduler: Option<&str>, limit: usize) -> Vec<Operation> {
        self.lock()
            .ops
            .values()
            .rev()
            .filter(|o| scheduler.is_none_or(|s| o.scheduler == s))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Whether the scheduler has an operation pending or running.
    pub fn busy(&self, scheduler: &str) -> bool {
        let inner = self.lock();
        inner.workers.contains(scheduler)
            || inner
                .ops
                .values()
                .any(|o| o.scheduler == scheduler && !o.status.is_finished())
    }

    /// The newest operation of a scheduler.
    pub fn latest(&self, scheduler: &str) -> Option<Operation> {
        self.lock()
            .ops
            .values()
            .rev()
            .find(|o| o.scheduler == scheduler)
            .cloned()
    }

    pub fn counts(&self) -> OpCounts {
        let mut out: OpCounts = BTreeMap::new();
        for op in self.lock().ops.values() {
            *out.entry(op.scheduler.clone())
                .or_default()
                .entry(op.status)
                .or_default() += 1;
        }
        out
    }

    /// Cancel a pending or running operation. A running one stops at its next consistent point.
    /// The cancel is journaled before anything changes: a failed write cancels nothing.
    pub fn cancel(&self, id: &str, by: &str) -> Result<Operation, OpsError> {
        let mut inner = self.lock();
        let mut op = inner
            .ops
            .get(id)
            .cloned()
            .ok_or_else(|| OpsError::NotFound(id.to_string()))?;
        let now = now_ms();
        match op.status {
            OpStatus::Pending => {
                op.status = OpStatus::Canceled;
                op.finished_at = Some(now);
                op.events.push(OpEvent {
                    at: now,
                    message: format!("canceled by {by} before it started"),
                });
                self.commit(&mut inner, op.clone())?;
                drop(inner);
                self.notify();
                let _ = self.finished.send(op.clone());
                Ok(op)
            }
            OpStatus::Running => {
                op.events.push(OpEvent {
                    at: now,
                    message: format!("cancel requested by {by}"),
                });
                self.commit(&mut inner, op.clone())?;
                if let Some((_, token)) = inner
                    .running
                    .get(&op.scheduler)
                    .filter(|(rid, _)| rid == id)
                {
                    token.cancel();
                }
                drop(inner);
                self.notify();
                Ok(op)
            }
            s => Err(OpsError::Finished {
                id: id.to_string(),
                status: s.as_str(),
            }),
        }
    }

    /// Add an event to an operation, journaled first. An event that cannot be journaled is
    /// logged and counted, and the operation goes on: its history misses one line.
    fn add_event(&self, id: &str, message: String) {
        let mut inner = self.lock();
        let Some(mut op) = inner.ops.get(id).cloned() else {
            return;
        };
        // Repeating the same wait message every step says nothing new.
        if op.events.last().is_some_and(|e| e.message == message) {
            return;
        }
        op.events.push(OpEvent {
            at: now_ms(),
            message,
        });
        if op.events.len() > MAX_EVENTS {
            op.events.remove(1);
        }
        if self.commit(&mut inner, op).is_ok() {
            drop(inner);
            self.notify();
        }
    }

    fn ensure_worker(self: &Arc<Self>, scheduler: &str) {
        if self.executor.get().is_none() {
            return;
        }
        if !self.lock().workers.insert(scheduler.to_string()) {
            return;
        }
        let this = Arc::clone(self);
        let s = scheduler.to_string();
        tokio::spawn(
            async move { this.work(&s).await }
                .instrument(tracing::info_span!("worker", scheduler = %scheduler)),
        );
    }

    /// Run the scheduler's pending operations one after the other, then exit. An executor that
    /// panics fails its operation (with the panic's message) and the worker goes on with the
    /// next one; whatever ends the worker, its scheduler is free for a new one.
    async fn work(self: Arc<Self>, scheduler: &str) {
        let Some(executor) = self.executor.get().cloned() else {
            self.lock().workers.remove(scheduler);
            return;
        };
        let mut guard = WorkerGuard {
            ops: Arc::clone(&self),
            scheduler: scheduler.to_string(),
            armed: true,
        };
        loop {
            let Some((op, cancel)) = self.next_pending(scheduler).await else {
                guard.armed = false;
                return;
            };
            let ctx = OpContext {
                cancel,
                ops: Arc::clone(&self),
                id: op.id.clone(),
            };
            let span = tracing::info_span!("op", op = %op.id, kind = op.kind.as_str());
            tracing::info!(parent: &span, "operation started");
            let run = AssertUnwindSafe(executor.execute(&op, &ctx)).catch_unwind();
            let result = match run.instrument(span.clone()).await {
                Ok(result) => result,
                Err(panic) => {
                    let message = crate::supervise::panic_message(&*panic);
                    tracing::error!(parent: &span, panic = %message, "operation panicked");
                    Err(OpError::Failed(format!("internal error: {message}")))
                }
            };
            let mut delays = crate::supervise::backoff(STORE_RETRY_MIN, STORE_RETRY_MAX);
            loop {
                // Recording the outcome may compact the journal (a rewrite and an fsync): done on
                // the blocking pool, never on an async thread.
                let (this, id, outcome) = (Arc::clone(&self), op.id.clone(), result.clone());
                let recorded = tokio::task::spawn_blocking(move || this.finish(&id, outcome)).await;
                if matches!(recorded, Ok(Ok(()))) {
                    break;
                }
                // The outcome must be recorded before the next operation may start.
                tokio::time::sleep(delays.next().unwrap_or(STORE_RETRY_MAX)).await;
            }
            self.lock().running.remove(scheduler);
        }
    }

    /// Mark the scheduler's next pending operation running (journaled first) and hand it out with
    /// its cancel token; `None` (and the worker deregistered, under the same lock) when there is
    /// none. A journal that refuses the write is retried with backoff.
    async fn next_pending(&self, scheduler: &str) -> Option<(Operation, CancellationToken)> {
        let mut delays = crate::supervise::backoff(STORE_RETRY_MIN, STORE_RETRY_MAX);
        loop {
            {
                let mut inner = self.lock();
                let Some(mut op) = inner
                    .ops
                    .values()
                    .find(|o| o.scheduler == scheduler && o.status == OpStatus::Pending)
                    .cloned()
                else {
                    inner.workers.remove(scheduler);
                    drop(inner);
                    // `busy` just turned false: subscribers waiting for that must hear it.
                    self.notify();
                    return None;
                };
                op.status = OpStatus::Running;
                op.started_at = Some(now_ms());
                if self.commit(&mut inner, op.clone()).is_ok() {
                    let cancel = CancellationToken::new();
                    inner
                        .running
                        .insert(scheduler.to_string(), (op.id.clone(), cancel.clone()));
                    drop(inner);
                    self.notify();
                    return Some((op, cancel));
                }
            }
            tokio::time::sleep(delays.next().unwrap_or(STORE_RETRY_MAX)).await;
        }
    }

    /// Record how an operation ended (journaled first; on a failed write nothing changes).
    fn finish(&self, id: &str, result: Result<String, OpError>) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let Some(mut op) = inner.ops.get(id).cloned() else {
            return Ok(());
        };
        let now = now_ms();
        op.finished_at = Some(now);
        match result {
            Ok(summary) => {
                op.status = OpStatus::Succeeded;
                op.events.push(OpEvent {
                    at: now,
                    message: summary,
                });
            }
            Err(OpError::Canceled) => {
                op.status = OpStatus::Canceled;
                op.events.push(OpEvent {
                    at: now,
                    message: "canceled; the fleet was left consistent".into(),
                });
            }
            Err(OpError::Failed(reason)) => {
                op.status = OpStatus::Failed;
                op.events.push(OpEvent {
                    at: now,
                    message: format!("failed: {reason}"),
                });
                op.error = Some(reason);
            }
            Err(OpError::Refused { message, refusal }) => {
                op.status = OpStatus::Failed;
                op.events.push(OpEvent {
                    at: now,
                    message: format!("failed: {message}"),
                });
                op.error = Some(message);
                op.admission = Some(refusal);
            }
        }
        self.commit(&mut inner, op.clone())?;
        tracing::info!(scheduler = %op.scheduler, op = %op.id, status = op.status.as_str(), "operation finished");
        let evicted = Self::evict(&mut inner);
        {
            let mut journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
            let mut result = Ok(());
            for id in &evicted {
                result = result.and_then(|_| journal.remove(id));
            }
            if result.is_ok() && journal.wants_compaction() {
                result = journal.compact(inner.ops.iter());
            }
            // Forgetting old history is housekeeping: a failure leaves it in the journal, to be
            // forgotten again after the next restart.
            if let Err(e) = result {
                tracing::error!(error = %e, "cannot journal the end of old operations");
            }
        }
        drop(inner);
        self.notify();
        let _ = self.finished.send(op);
        Ok(())
    }

    /// Forget the oldest finished operations beyond the history bound.
    fn evict(inner: &mut Inner) -> Vec<String> {
        let finished = inner
            .ops
            .values()
            .filter(|o| o.status.is_finished())
            .count();
        if finished <= MAX_HISTORY {
            return vec![];
        }
        let victims: Vec<String> = inner
            .ops
            .values()
            .filter(|o| o.status.is_finished())
            .take(finished - MAX_HISTORY)
            .map(|o| o.id.clone())
            .collect();
        for id in &victims {
            inner.ops.remove(id);
        }
        victims
    }
}

/// The operations of `op`'s scheduler that fall out of the record now that `op` finished: the
/// finished ones after the newest [`KEPT_IN_RECORD`], a few at a time (each finish pushes one
/// out; a few more heal a drop that was lost).
fn beyond_record(ops: &BTreeMap<String, Operation>, op: &Operation) -> Vec<String> {
    let mut ids: Vec<&String> = ops
        .values()
        .filter(|o| o.scheduler == op.scheduler && o.status.is_finished() && o.id != op.id)
        .map(|o| &o.id)
        .collect();
    // Ids sort in enqueue order; newest first. `op` itself is one of the kept.
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids.into_iter()
        .skip(KEPT_IN_RECORD - 1)
        .take(KEPT_IN_RECORD)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Records when each operation runs; waits `hold` (or until canceled) before succeeding.
    struct Recorder {
        log: Mutex<Vec<(String, &'static str)>>,
        hold: Duration,
    }

    impl Recorder {
        fn new(hold: Duration) -> Arc<Self> {
            Arc::new(Self {
                log: Mutex::new(vec![]),
                hold,
            })
        }
    }

    #[async_trait]
    impl Executor for Recorder {
        async fn execute(&self, op: &Operation, ctx: &OpContext) -> Result<String, OpError> {
            self.log.lock().unwrap().push((op.id.clone(), "start"));
            ctx.event("working");
            let result = tokio::select! {
                _ = tokio::time::sleep(self.hold) => Ok("done".to_string()),
                _ = ctx.cancel.cancelled() => Err(OpError::Canceled),
            };
            self.log.lock().unwrap().push((op.id.clone(), "end"));
            result
        }
    }

    async fn wait_finished(ops: &Operations, id: &str) -> Operation {
        for _ in 0..500 {
            if let Some(op) = ops.get(id).filter(|o| o.status.is_finished()) {
                return op;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("operation {id} did not finish");
    }

    fn heal(ops: &Arc<Operations>, scheduler: &str) -> Operation {
        let cause = Cause::User {
            name: "test".into(),
        };
        ops.enqueue(scheduler, OpKind::Heal, cause, None, false)
            .unwrap()
    }

    /// Every change of an operation as a recorder saw it: id, status, ids dropped.
    #[derive(Default)]
    struct Seen(Mutex<Vec<(String, OpStatus, Vec<String>)>>);

    impl super::Recorder for Seen {
        fn record(&self, op: &Operation, drop: &[String]) {
            self.0
                .lock()
                .unwrap()
                .push((op.id.clone(), op.status, drop.to_vec()));
        }
    }

    /// A replica taking over with an empty disk gets the history from the record, resumes what
    /// was running there, numbers new operations after it, and records every change, the
    /// finished operations beyond the kept ones dropped from the record.
    #[tokio::test]
    async fn recorded_operations_are_imported_resumed_and_recorded_again() {
        let dir = tempfile::tempdir().unwrap();
        let before = Operations::open(dir.path().join("before.jsonl")).unwrap();
        let mut recorded: Vec<Operation> = (0..KEPT_IN_RECORD + 2)
            .map(|_| {
                let mut op = heal(&before, "arena");
                op.status = OpStatus::Succeeded;
                op
            })
            .collect();
        let mut running = heal(&before, "arena");
        running.status = OpStatus::Running;
        running.events.push(OpEvent {
            at: 1,
            message: "starting 1 room(s)".into(),
        });
        recorded.push(running.clone());

        let ops = Operations::open(dir.path().join("ops.jsonl")).unwrap();
        let seen = Arc::new(Seen::default());
        ops.set_recorder(seen.clone());
        assert_eq!(ops.import(recorded.clone()).unwrap(), recorded.len());
        assert_eq!(
            ops.import(recorded.clone()).unwrap(),
            0,
            "known ones are skipped"
        );
        let resumed = ops.get(&running.id).unwrap();
        assert_eq!(resumed.status, OpStatus::Pending);
        assert_eq!(
            resumed.events[0].message, "starting 1 room(s)",
            "history kept"
        );
        assert!(resumed.events.last().unwrap().message.contains("resuming"));
        let next = heal(&ops, "racer");
        assert!(next.id > running.id, "{} after {}", next.id, running.id);

        ops.start(Recorder::new(Duration::ZERO));
        wait_finished(&ops, &running.id).await;
        wait_finished(&ops, &next.id).await;
        let seen = seen.0.lock().unwrap();
        let (_, _, dropped) = seen
            .iter()
            .rev()
            .find(|(id, status, _)| id == &running.id && status.is_finished())
            .expect("the finish is recorded");
        // Newest first: the resumed one and KEPT_IN_RECORD - 1 before it are kept.
        assert_eq!(
            dropped,
            &vec![
                recorded[2].id.clone(),
                recorded[1].id.clone(),
                recorded[0].id.clone()
            ],
        );
        assert!(
            seen.iter()
                .any(|(id, status, _)| id == &next.id && *status == OpStatus::Pending)
        );
    }

    #[tokio::test]
    async fn one_schedulers_operations_run_in_order_one_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let ops = Operations::open(dir.path().join("ops.jsonl")).unwrap();
        let rec = Recorder::new(Duration::from_millis(30));
        ops.start(rec.clone());
        let a: Vec<Operation> = (0..3).map(|_| heal(&ops, "a")).collect();
        let b = heal(&ops, "b");
        for op in a.iter().chain([&b]) {
            assert_eq!(
                wait_finished(&ops, &op.id).await.status,
                OpStatus::Succeeded
            );
        }
        let log = rec.log.lock().unwrap().clone();
        let a_events: Vec<&(String, &str)> = log
            .iter()
            .filter(|(id, _)| a.iter().any(|o| &o.id == id))
            .collect();
        let expected: Vec<(String, &str)> = a
            .iter()
            .flat_map(|o| [(o.id.clone(), "start"), (o.id.clone(), "end")])
            .collect();
        assert_eq!(
            a_events.into_iter().cloned().collect::<Vec<_>>(),
            expected,
            "in order, never overlapping"
        );
        // b ran beside a's operations, not after all of them.
        let b_start = log
            .iter()
            .position(|(id, ev)| id == &b.id && *ev == "start")
            .unwrap();
        let last_a_end = log
            .iter()
            .rposition(|(id, ev)| id == &a[2].id && *ev == "end")
            .unwrap();
        assert!(b_start < last_a_end, "schedulers run in parallel: {log:?}");
    }

    #[tokio::test]
    async fn a_running_operation_is_canceled_and_a_pending_one_never_starts() {
        let dir = tempfile::tempdir().unwrap();
        let ops = Operations::open(dir.path().join("ops.jsonl")).unwrap();
        let rec = Recorder::new(Duration::from_secs(30));
        ops.start(rec.clone());
        let running = heal(&ops, "a");
        let pending = heal(&ops, "a");
        while ops.get(&running.id).unwrap().status != OpStatus::Running {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            ops.cancel(&pending.id, "test").unwrap().status,
            OpStatus::Canceled
        );
        ops.cancel(&running.id, "test").unwrap();
        assert_eq!(
            wait_finished(&ops, &running.id).await.status,
            OpStatus::Canceled
        );
        assert!(matches!(
            ops.cancel(&running.id, "test"),
            Err(OpsError::Finished { .. })
        ));
        assert!(
            rec.log
                .lock()
                .unwrap()
                .iter()
                .all(|(id, _)| id != &pending.id),
            "the pending one never ran"
        );
    }

    #[tokio::test]
    async fn after_a_crash_a_running_operation_is_resumed_and_history_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops.jsonl");
        let id = {
            let ops = Operations::open(&path).unwrap();
            let rec = Recorder::new(Duration::from_secs(30));
            ops.start(rec);
            let op = heal(&ops, "a");
            while ops.get(&op.id).unwrap().status != OpStatus::Running {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            op.id
            // Dropped here while running: what a kill -9 leaves in the journal.
        };
        let ops = Operations::open(&path).unwrap();
        let op = ops.get(&id).unwrap();
        assert_eq!(op.status, OpStatus::Pending);
        assert!(op.events.iter().any(|e| e.message.contains("resuming")));
        ops.start(Recorder::new(Duration::from_millis(1)));
        let done = wait_finished(&ops, &id).await;
        assert_eq!(done.status, OpStatus::Succeeded);
        assert!(
            done.events.iter().any(|e| e.message == "working"),
            "events of both runs kept"
        );
        assert_eq!(
            heal(&ops, "a").id,
            format!("op-{:010}", 2),
            "ids continue after a restart"
        );
    }

    /// Panics in its first operation, succeeds afterwards.
    struct PanicsOnce(std::sync::atomic::AtomicBool);

    #[async_trait]
    impl Executor for PanicsOnce {
        async fn execute(&self, _: &Operation, _: &OpContext) -> Result<String, OpError> {
            if !self.0.swap(true, std::sync::atomic::Ordering::SeqCst) {
                panic!("executor bug");
            }
            Ok("done".into())
        }
    }

    /// Regression: a panicking executor took its worker down with the scheduler still listed in
    /// `workers`, so that scheduler never ran another operation.
    #[tokio::test]
    async fn a_panicking_executor_fails_its_operation_and_the_scheduler_runs_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let ops = Operations::open(dir.path().join("ops.jsonl")).unwrap();
        ops.start(Arc::new(PanicsOnce(Default::default())));
        let first = heal(&ops, "a");
        let failed = wait_finished(&ops, &first.id).await;
        assert_eq!(failed.status, OpStatus::Failed);
        assert_eq!(
            failed.error.as_deref(),
            Some("internal error: executor bug")
        );
        let second = heal(&ops, "a");
        assert_eq!(
            wait_finished(&ops, &second.id).await.status,
            OpStatus::Succeeded
        );
        assert!(!ops.busy("a"));
    }

    /// Regression: a cancel changed the operation in memory before journaling it, so a failed
    /// write showed a cancel that a restart would forget.
    #[tokio::test]
    async fn a_cancel_that_cannot_be_journaled_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops.jsonl");
        let ops = Operations::open(&path).unwrap();
        let op = heal(&ops, "a");
        ops.journal.lock().unwrap().fail_after = Some(0);
        let err = ops.cancel(&op.id, "test").unwrap_err();
        assert!(matches!(err, OpsError::Store(_)), "{err}");
        assert_eq!(ops.get(&op.id).unwrap(), op, "memory unchanged");
        assert_eq!(ops.store_failures(), 1);
        ops.journal.lock().unwrap().fail_after = None;
        drop(ops);
        let reopened = Operations::open(&path).unwrap();
        assert_eq!(reopened.get(&op.id).unwrap().status, OpStatus::Pending);
    }

    /// Regression: operation events were pushed in memory and then journaled (or not).
    #[tokio::test]
    async fn an_event_that_cannot_be_journaled_is_not_shown() {
        let dir = tempfile::tempdir().unwrap();
        let ops = Operations::open(dir.path().join("ops.jsonl")).unwrap();
        let op = heal(&ops, "a");
        ops.journal.lock().unwrap().fail_after = Some(0);
        ops.add_event(&op.id, "lost".into());
        assert!(ops.get(&op.id).unwrap().events.is_empty());
        ops.journal.lock().unwrap().fail_after = None;
        ops.add_event(&op.id, "kept".into());
        assert_eq!(ops.get(&op.id).unwrap().events.len(), 1);
    }

    /// Regression: the worker left `workers` after the last notification, so a subscriber
    /// waiting for `busy` to turn false could wait for ever.
    #[tokio::test]
    async fn subscribers_hear_when_a_scheduler_stops_being_busy() {
        let dir = tempfile::tempdir().unwrap();
        let ops = Operations::open(dir.path().join("ops.jsonl")).unwrap();
        ops.start(Recorder::new(Duration::from_millis(20)));
        let mut changes = ops.subscribe();
        heal(&ops, "a");
        let idle = tokio::time::timeout(Duration::from_secs(5), async {
            while ops.busy("a") {
                changes.changed().await.unwrap();
            }
        })
        .await;
        assert!(idle.is_ok(), "no notification once the scheduler was idle");
    }

    #[tokio::test]
    async fn history_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops.jsonl");
        let ops = Operations::open(&path).unwrap();
        ops.start(Recorder::new(Duration::ZERO));
        let mut last = String::new();
        for _ in 0..MAX_HISTORY + 20 {
            last = heal(&ops, "a").id;
        }
        wait_finished(&ops, &last).await;
        let kept = ops.list(None, usize::MAX);
        assert_eq!(kept.len(), MAX_HISTORY);
        assert_eq!(kept[0].id, last, "the newest are kept");
        drop(ops);
        assert_eq!(
            Operations::open(&path)
                .unwrap()
                .list(None, usize::MAX)
                .len(),
            MAX_HISTORY
        );
    }
}
