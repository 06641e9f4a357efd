//! Watching a source: publish each new revision (or new failure) on a `tokio::sync::watch`
//! channel.
//!
//! Git sources are polled: a cheap look at the branch's sha first, a full read only when it moved.
//! Directory sources are watched with `notify` (debounced, since an editor's save is several
//! events) and polled as well, because file-system events can be lost (network file systems,
//! overflowing queues). Must hold:
//! - A value is published only when it differs from the last one: a new revision, or a failure
//!   whose text changed. Receivers never see the same revision twice in a row.
//! - A failure does not end the watch: it is published, retried with backoff, and the next good
//!   revision is published when it comes. What the receiver does with a failure (keep the last
//!   good revision) is its business.
//! - Blocking reads run on `spawn_blocking`; the task ends when every receiver is dropped.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch as channel};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use super::{Snapshot, Source, SourceError};

/// Quiet time after a file-system event before reading: an editor's save is several events.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// Longest a stream of events can postpone a read.
const DEBOUNCE_MAX: Duration = Duration::from_secs(2);
/// Ceiling of the retry delay after repeated failures (unless the poll interval is longer).
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the watcher publishes: `None` before the first read, then the latest snapshot or failure.
pub type Observed = Option<Result<Snapshot, Arc<SourceError>>>;

/// Watch `source`, checking every `poll`. The first value is published right away.
pub fn watch(
    source: Arc<dyn Source>,
    poll: Duration,
) -> (channel::Receiver<Observed>, JoinHandle<()>) {
    let (tx, rx) = channel::channel(None);
    let span = tracing::info_span!("source_watch", source = %source.describe());
    let handle = tokio::spawn(run(source, poll, tx).instrument(span));
    (rx, handle)
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
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
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
    let factor = 1u32 << failures.min(6);
    poll.saturating_mul(factor).min(MAX_BACKOFF.max(poll))
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SourceError> + Send + 'static,
) -> Result<T, SourceError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|join| Err(SourceError::Crashed(join.to_string())))
}

/// One check: `None` when the peek shows nothing new, else the outcome of a full read.
async fn check(
    source: &Arc<dyn Source>,
    last: &Published,
) -> Option<Result<Snapshot, Arc<SourceError>>> {
    let peek = {
        let source = Arc::clone(source);
        blocking(move || source.peek_revision()).await
    };
    match peek {
        Err(err) => return Some(Err(Arc::new(err))),
        Ok(peeked) if !last.needs_load(peeked.as_deref()) => return None,
        Ok(_) => {}
    }
    let source = Arc::clone(source);
    Some(blocking(move || source.load()).await.map_err(Arc::new))
}

async fn run(source: Arc<dyn Source>, poll: Duration, tx: channel::Sender<Observed>) {
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
        if let Some(outcome) = check(&source, &last).await {
            failures = if outcome.is_ok() {
                0
            } else {
                failures.saturating_add(1)
            };
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
            }
        }
        tokio::select! {
            () = tx.closed() => return,
            () = tokio::time::sleep(next_delay(poll, failures)) => {}
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
    fn failures_back_off_up_to_a_ceiling() {
        let poll = Duration::from_secs(2);
        assert_eq!(next_delay(poll, 0), poll);
        assert_eq!(next_delay(poll, 1), Duration::from_secs(4));
        assert_eq!(next_delay(poll, 20), MAX_BACKOFF);
        let slow = Duration::from_secs(120);
        assert_eq!(
            next_delay(slow, 3),
            slow,
            "never faster than the poll interval"
        );
    }
}
