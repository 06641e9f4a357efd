//! Supervision of the server's long-running tasks: every one has a name, a span and a policy.
//!
//! - **Critical** tasks (the controller, the runtime's event pump, the source watch) are the
//!   server: when one ends or panics before shutdown, [`Supervisor::wait`] returns
//!   [`TaskFailed`] naming it, and `troupe serve` stops with a non-zero exit instead of serving a
//!   dead controller behind a green `/readyz`. Everything they own is journaled, so a process
//!   supervisor (systemd, the kubelet) starting the server again loses nothing.
//! - **Restarting** tasks (metrics feeds, samples) are conveniences: when one ends or panics it is
//!   started again after a backoff with jitter ([`backoff`]), and every restart is counted.
//!
//! Must always hold: no task outlives the supervisor's shutdown token by more than its own
//! reaction to it, and no task ends without a log line that names it.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::FutureExt;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// First wait before a restarting task starts again.
const RESTART_MIN_DELAY: Duration = Duration::from_millis(100);
/// Longest wait between two restarts of a task that keeps failing.
const RESTART_MAX_DELAY: Duration = Duration::from_secs(30);
/// A task that ran this long before it ended starts again after the shortest delay: it was
/// healthy, and its end is news rather than a crash loop.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// How long tasks get to finish after shutdown before they are aborted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The one retry schedule of the server: exponential from `min` to `max`, with jitter, without
/// end. Used wherever something is retried (adoption, restarts, journal writes).
pub fn backoff(min: Duration, max: Duration) -> impl Iterator<Item = Duration> + Send {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build()
}

/// A critical task ended before shutdown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task {task} {how}; the server stops")]
pub struct TaskFailed {
    pub task: &'static str,
    /// `ended` or `panicked: <message>`.
    pub how: String,
}

/// Owns the server's long-running tasks.
pub struct Supervisor {
    tasks: JoinSet<Result<(), TaskFailed>>,
    shutdown: CancellationToken,
    restarts: Option<prometheus::IntCounterVec>,
}

impl Supervisor {
    /// Tasks stop when `shutdown` is cancelled. `restarts` (labelled by task) counts restarts.
    pub fn new(shutdown: CancellationToken, restarts: Option<prometheus::IntCounterVec>) -> Self {
        Self {
            tasks: JoinSet::new(),
            shutdown,
            restarts,
        }
    }

    /// The token every task should stop on.
    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Run `task`; if it ends or panics before shutdown, the server stops.
    pub fn critical<F>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let shutdown = self.shutdown.clone();
        let span = tracing::info_span!("task", task = name);
        self.tasks.spawn(
            async move {
                let how = match AssertUnwindSafe(task).catch_unwind().await {
                    Ok(()) => "ended".to_string(),
                    Err(panic) => format!("panicked: {}", panic_message(&*panic)),
                };
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                tracing::error!(how = %how, "critical task stopped; the server stops");
                Err(TaskFailed { task: name, how })
            }
            .instrument(span),
        );
    }

    /// Run the task `make` builds, and build and run it again (after a backoff) whenever it ends
    /// or panics before shutdown.
    pub fn restarting<M, F>(&mut self, name: &'static str, mut make: M)
    where
        M: FnMut() -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let shutdown = self.shutdown.clone();
        let restarts = self.restarts.clone();
        let span = tracing::info_span!("task", task = name);
        self.tasks.spawn(
            async move {
                let mut delays = backoff(RESTART_MIN_DELAY, RESTART_MAX_DELAY);
                loop {
                    let started = tokio::time::Instant::now();
                    let how = tokio::select! {
                        r = AssertUnwindSafe(make()).catch_unwind() => match r {
                            Ok(()) => "ended".to_string(),
                            Err(panic) => format!("panicked: {}", panic_message(&*panic)),
                        },
                        _ = shutdown.cancelled() => return Ok(()),
                    };
                    if shutdown.is_cancelled() {
                        return Ok(());
                    }
                    if started.elapsed() >= HEALTHY_RUN {
                        delays = backoff(RESTART_MIN_DELAY, RESTART_MAX_DELAY);
                    }
                    let delay = delays.next().unwrap_or(RESTART_MAX_DELAY);
                    tracing::warn!(how = %how, retry_in = ?delay, "task stopped; starting it again");
                    if let Some(c) = &restarts {
                        c.with_label_values(&[name]).inc();
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => return Ok(()),
                    }
                }
            }
            .instrument(span),
        );
    }

    /// Wait until shutdown (then for every task to finish), or until a critical task fails
    /// (then cancel the others and return which one).
    pub async fn wait(mut self) -> Result<(), TaskFailed> {
        loop {
            tokio::select! {
                joined = self.tasks.join_next() => match joined {
                    None => return Ok(()),
                    Some(Ok(Ok(()))) => {}
                    Some(Ok(Err(failed))) => {
                        self.shutdown.cancel();
                        self.tasks.shutdown().await;
                        return Err(failed);
                    }
                    // Tasks catch their own panics; a join error is an abort at shutdown.
                    Some(Err(_)) => {}
                },
                _ = self.shutdown.cancelled() => {
                    let drain = async { while self.tasks.join_next().await.is_some() {} };
                    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
                        tracing::warn!(left = self.tasks.len(), "tasks still running after the shutdown grace: aborted");
                    }
                    self.tasks.shutdown().await;
                    return Ok(());
                }
            }
        }
    }
}

/// The text of a panic's payload (`panic!("...")` gives a `&str` or a `String`).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic".into())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    const LIMIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn a_critical_task_that_panics_stops_the_supervisor_naming_it() {
        let mut sup = Supervisor::new(CancellationToken::new(), None);
        let shutdown = sup.shutdown();
        sup.critical("steady", async move { shutdown.cancelled().await });
        sup.critical("controller", async { panic!("boom") });
        let failed = tokio::time::timeout(LIMIT, sup.wait())
            .await
            .expect("the supervisor noticed")
            .unwrap_err();
        assert_eq!(failed.task, "controller");
        assert_eq!(failed.how, "panicked: boom");
    }

    #[tokio::test]
    async fn a_critical_task_that_returns_early_is_a_failure_too() {
        let mut sup = Supervisor::new(CancellationToken::new(), None);
        sup.critical("events", async {});
        let failed = tokio::time::timeout(LIMIT, sup.wait())
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!((failed.task, failed.how.as_str()), ("events", "ended"));
    }

    #[tokio::test]
    async fn a_restarting_task_is_started_again_and_counted() {
        let restarts =
            prometheus::IntCounterVec::new(prometheus::Opts::new("restarts", "test"), &["task"])
                .unwrap();
        let token = CancellationToken::new();
        let mut sup = Supervisor::new(token.clone(), Some(restarts.clone()));
        let runs = Arc::new(AtomicU32::new(0));
        let seen = Arc::clone(&runs);
        let stop = token.clone();
        sup.restarting("flaky", move || {
            let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
            let stop = stop.clone();
            async move {
                if n == 3 {
                    stop.cancel();
                    return;
                }
                panic!("run {n} failed");
            }
        });
        tokio::time::timeout(LIMIT, sup.wait())
            .await
            .unwrap()
            .expect("a shutdown is not a failure");
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(restarts.with_label_values(&["flaky"]).get(), 2);
    }

    #[tokio::test]
    async fn shutdown_ends_the_wait_once_every_task_has_stopped() {
        let token = CancellationToken::new();
        let mut sup = Supervisor::new(token.clone(), None);
        let stopped = Arc::new(AtomicU32::new(0));
        for name in ["a", "b"] {
            let (t, s) = (token.clone(), Arc::clone(&stopped));
            sup.critical(name, async move {
                t.cancelled().await;
                s.fetch_add(1, Ordering::SeqCst);
            });
        }
        token.cancel();
        tokio::time::timeout(LIMIT, sup.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stopped.load(Ordering::SeqCst), 2);
    }
}
