//! Watching a source: publish each new revision (or new failure) on a `tokio::sync::watch`
//! channel.
//!
//! Git sources are polled: a cheap look at the branch's sha first, a full read only when it moved.
//! Directory sources are watched with `notify` (debounced, since an editor's save is several
//! events) and polled as well, because file-system events can be lost (network file systems,
//! overflowing queues). A [`WatchHandle`] makes the watcher check at once (webhooks) and shows
//! how fresh the source is ([`SourceStatus`]). Must hold:
//! - A value is published only when it differs from the last one: a new revision, or a failure
//!   whose text changed. Receivers never see the same revision twice in a row.
//! - A failure does not end the watch: it is published, retried with backoff, and the next good
//!   revision is published when it comes. What the receiver does with a failure (keep the last
//!   good revision) is its business.
//! - Failures back off exponentially (doubling from the poll interval up to [`MAX_BACKOFF`]); a
//!   success resets the delay; a trigger checks at once, whatever the delay.
//! - [`SourceStatus`] is updated after every check, successful or not, so staleness is visible.
//! - Blocking reads run on `spawn_blocking`; the task ends when every receiver is dropped.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, watch as channel};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use super::{Snapshot, Source, SourceError};

/// Quiet time after a file-system event before reading: an editor's save is several events.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// Longest a stream of events can postpone a read.
const DEBOUNCE_MAX: Duration = Duration::from_secs(2);
/// Ceiling of the retry delay after repeated failures (unless the poll interval is longer): a
/// git host that is down is not hammered, and is noticed back within minutes.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Doublings of the delay beyond which it cannot grow anyway (keeps the multiplication small).
const MAX_DOUBLINGS: u32 = 16;

/// What the watcher publishes: `None` before the first read, then the latest snapshot or failure.
pub type Observed = Option<Result<Snapshot, Arc<SourceError>>>;

/// How fresh the source is: served by `GET /api/v1/revision` as `source`. Times are Unix
/// milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    /// The source, as [`Source::describe`] puts it (never with credentials).
    pub source: String,
    /// The branch followed, once known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The revision the last successful check saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// When the last check started.
    pub last_attempt: Option<u64>,
    /// Checks completed since the watch began (polls, triggers and retries alike).
    pub checks: u64,
    /// When a check last succeeded.
    pub last_success: Option<u64>,
    /// Failed checks since the last success.
    pub consecutive_failures: u32,
    /// The last failure, while it lasts.
    pub last_error: Option<String>,
    /// When the next check is due (a trigger can make it sooner).
    pub next_attempt: Option<u64>,
}

/// A running watch: the snapshots, a handle for the HTTP layer, and the task.
pub struct Watch {
    pub snapshots: channel::Receiver<Observed>,
    pub handle: WatchHandle,
    pub task: JoinHandle<()>,
}

/// Check now, and read how fresh the source is. Cheap to clone.
#[derive(Clone)]
pub struct WatchHandle {
    status: channel::Receiver<SourceStatus>,
    trigger: Arc<Notify>,
}

impl WatchHandle {
    /// The latest status.
    pub fn status(&self) -> SourceStatus {
        self.status.borrow().clone()
    }

    /// Make the watcher check now. Triggers while a check runs are folded into one more check
    /// right after it, so a push that lands mid-fetch is not missed.
    pub fn trigger(&self) {
        self.trigger.notify_one();
    }
}

/// Watch `source`, checking every `poll`. The first value is published right away.
pub fn watch(source: Arc<dyn Source>, poll: Duration) -> Watch {
    let (tx, rx) = channel::channel(None);
    let described = source.describe();
    let (status_tx, status_rx) = channel::channel(SourceStatus {
        source: described.clone(),
        ..SourceStatus::default()
    });
    let trigger = Arc::new(Notify::new());
    let span = tracing::info_span!("source_watch", source = %described);
    let task =
        tokio::spawn(run(source, poll, tx, status_tx, Arc::clone(&trigger)).instrument(span));
    Watch {
        snapshots: rx,
        handle: WatchHandle {
            status: status_rx,
            trigger,
        },
        task,
    }
}

/// What was published last; the watcher's whole state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Published {
    #[default]
    Nothing,
    Revision(String),
    Failure(String),
}

impl Published {
    /// Whether a full read is needed, given the revision a cheap peek saw (if the source has one).
    fn needs_load(&self, peeked: Option<&str>) -> bool {
        !matches!((self, peeked), (Published::Revision(last), Some(now)) if last == now)
    }

    /// What to publish after an outcome: `None` when it is what receivers already have.
    fn next(&self, outcome: &Result<Snapshot, Arc<SourceError>>) -> Option<Published> {
        let next = match outcome {
            Ok(snapshot) => Published::Revision(snapshot.revision.clone()),
            Err(err) => Published::Failure(error_chain(err.as_ref())),
        };
        (next != *self).then_some(next)
    }
}

/// `outer: cause: root cause`, so two failures compare by everything a user would read.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// Delay before the next check: the poll interval, doubled per consecutive failure up to a ceiling.
fn next_delay(poll: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return poll;
    }
    let factor = 1u32 << failures.min(MAX_DOUBLINGS);
    poll.saturating_mul(factor).min(MAX_BACKOFF.max(poll))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The status after a check that started at `started`: `Ok` with the revision seen (if any).
fn after_check(
    mut status: SourceStatus,
    started: u64,
    outcome: Result<Option<String>, String>,
    branch: Option<String>,
) -> SourceStatus {
    status.last_attempt = Some(started);
    status.checks += 1;
    if branch.is_some() {
        status.branch = branch;
    }
    match outcome {
        Ok(revision) => {
            status.last_success = Some(now_ms());
            status.consecutive_failures = 0;
            status.last_error = None;
            if revision.is_some() {
                status.revision = revision;
            }
        }
        Err(error) => {
            status.consecutive_failures = status.consecutive_failures.saturating_add(1);
            status.last_error = Some(error);
        }
    }
    status
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SourceError> + Send + 'static,
) -> Result<T, SourceError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|join| Err(SourceError::Crashed(join.to_string())))
}

/// What one check found.
enum Checked {
    /// The peek saw the revision receivers already have.
    Unchanged(String),
    /// A full read (or a failed peek).
    Read(Result<Snapshot, Arc<SourceError>>),
}

impl Checked {
    /// For [`SourceStatus`]: the revision seen, or the failure's text.
    fn summary(&self) -> Result<Option<String>, String> {
        match self {
            Checked::Unchanged(rev) => Ok(Some(rev.clone())),
            Checked::Read(Ok(snapshot)) => Ok(Some(snapshot.revision.clone())),
            Checked::Read(Err(err)) => Err(error_chain(err.as_ref())),
        }
    }
}

/// One check: a cheap peek, then a full read unless the peek shows nothing new.
async fn check(source: &Arc<dyn Source>, last: &Published) -> Checked {
    let peek = {
        let source = Arc::clone(source);
        blocking(move || source.peek_revision()).await
    };
    match peek {
        Err(err) => return Checked::Read(Err(Arc::new(err))),
        Ok(Some(peeked)) if !last.needs_load(Some(&peeked)) => return Checked::Unchanged(peeked),
        Ok(_) => {}
    }
    let source = Arc::clone(source);
    Checked::Read(blocking(move || source.load()).await.map_err(Arc::new))
}

async fn run(
    source: Arc<dyn Source>,
    poll: Duration,
    tx: channel::Sender<Observed>,
    status: channel::Sender<SourceStatus>,
    trigger: Arc<Notify>,
) {
    // Bounded at one: a pending "something changed" is all the loop needs to know.
    let (events_tx, mut events) = mpsc::channel::<()>(1);
    let _fs_watcher = source.watch_root().and_then(|root| match fs_watcher(&root, events_tx) {
        Ok(w) => Some(w),
        Err(err) => {
            tracing::warn!(error = %err, root = %root.display(), "cannot watch the directory; polling only");
            None
        }
    });

    let mut last = Published::Nothing;
    let mut failures = 0u32;
    loop {
        let started = now_ms();
        let checked = check(&source, &last).await;
        let branch = {
            let source = Arc::clone(&source);
            tokio::task::spawn_blocking(move || source.branch())
                .await
                .ok()
                .flatten()
        };
        let summary = checked.summary();
        failures = if summary.is_ok() {
            0
        } else {
            failures.saturating_add(1)
        };
        let delay = next_delay(poll, failures);
        status.send_modify(|s| {
            *s = after_check(std::mem::take(s), started, summary, branch);
            s.next_attempt =
                Some(now_ms().saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)));
        });
        if let Checked::Read(outcome) = checked {
            if let Some(next) = last.next(&outcome) {
                match &outcome {
                    Ok(snapshot) => {
                        tracing::info!(revision = %snapshot.revision, files = snapshot.files.len(), "new revision")
                    }
                    Err(err) => {
                        tracing::warn!(error = %error_chain(err.as_ref()), "cannot read the source")
                    }
                }
                last = next;
                if tx.send(Some(outcome)).is_err() {
                    return;
                }
            } else if failures > 0 {
                tracing::debug!(failures, retry_in = ?delay, "the source still cannot be read");
            }
        }
        tokio::select! {
            () = tx.closed() => return,
            () = tokio::time::sleep(delay) => {}
            () = trigger.notified() => tracing::debug!("check triggered"),
            Some(()) = events.recv() => debounce(&mut events).await,
        }
    }
}

/// Wait until events stop for [`DEBOUNCE`] (but no longer than [`DEBOUNCE_MAX`]).
async fn debounce(events: &mut mpsc::Receiver<()>) {
    let deadline = Instant::now() + DEBOUNCE_MAX;
    while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, events.recv()).await {
        if Instant::now() >= deadline {
            break;
        }
    }
}

fn fs_watcher(
    root: &std::path::Path,
    events: mpsc::Sender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Our own reads show up as access events; anything else (including a watcher error,
        // which may mean lost events) is worth a look.
        let relevant = event.map_or(true, |e| !matches!(e.kind, EventKind::Access(_)));
        if relevant {
            // Full means a check is already pending; closed means the watch is over.
            let _ = events.try_send(());
        }
    })?;
    watcher.watch(root, RecursiveMode::Recursive)?;
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(revision: &str) -> Result<Snapshot, Arc<SourceError>> {
        Ok(Snapshot {
            revision: revision.into(),
            files: Vec::new(),
            commit: None,
        })
    }

    fn failure(subpath: &str) -> Result<Snapshot, Arc<SourceError>> {
        Err(Arc::new(SourceError::SubpathNotFound {
            subpath: subpath.into(),
            revision: "abc".into(),
        }))
    }

    #[test]
    fn peek_skips_the_load_only_when_the_revision_is_already_published() {
        let published = Published::Revision("a".into());
        assert!(!published.needs_load(Some("a")));
        assert!(published.needs_load(Some("b")));
        assert!(published.needs_load(None), "no cheap check: always read");
        assert!(Published::Nothing.needs_load(Some("a")));
        assert!(
            Published::Failure("x".into()).needs_load(Some("a")),
            "retry after a failure"
        );
    }

    #[test]
    fn only_changes_are_published() {
        let first = Published::Nothing
            .next(&snapshot("a"))
            .expect("first revision is news");
        assert_eq!(first.next(&snapshot("a")), None);
        let failed = first.next(&failure("x")).expect("a failure is news");
        assert_eq!(
            failed.next(&failure("x")),
            None,
            "the same failure again is not"
        );
        assert!(
            failed.next(&failure("y")).is_some(),
            "a different failure is"
        );
        assert_eq!(
            failed.next(&snapshot("a")),
            Some(Published::Revision("a".into())),
            "recovery is news"
        );
    }

    #[test]
    fn status_counts_failures_until_a_success() {
        let fresh = SourceStatus::default();
        let failed = after_check(fresh, 10, Err("down".into()), None);
        let failed = after_check(failed, 20, Err("still down".into()), Some("main".into()));
        assert_eq!(failed.consecutive_failures, 2);
        assert_eq!(failed.last_error.as_deref(), Some("still down"));
        assert_eq!(failed.last_attempt, Some(20));
        assert_eq!(failed.last_success, None);
        assert_eq!(failed.branch.as_deref(), Some("main"));
        let ok = after_check(failed, 30, Ok(Some("abc".into())), None);
        assert_eq!(ok.consecutive_failures, 0);
        assert_eq!(ok.last_error, None);
        assert!(ok.last_success.is_some());
        assert_eq!(ok.revision.as_deref(), Some("abc"));
        assert_eq!(ok.branch.as_deref(), Some("main"), "a known branch is kept");
    }

    #[test]
    fn failures_back_off_up_to_a_ceiling() {
        let poll = Duration::from_secs(2);
        assert_eq!(next_delay(poll, 0), poll);
        assert_eq!(next_delay(poll, 1), Duration::from_secs(4));
        assert_eq!(next_delay(poll, 20), MAX_BACKOFF);
        assert_eq!(
            next_delay(Duration::from_secs(120), 3),
            MAX_BACKOFF,
            "a slow poll backs off up to the ceiling too"
        );
        let slower = Duration::from_secs(600);
        assert_eq!(
            next_delay(slower, 3),
            slower,
            "never faster than the poll interval"
        );
    }
}
