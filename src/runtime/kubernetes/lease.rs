//! Leader election on a `coordination.k8s.io/v1` Lease, so that replicas of the controller take
//! turns: one leads (reconciles, runs operations, takes pings, allocates), the others stand by.
//!
//! Must always hold:
//! - Two candidates never both win: every write of the lease carries the resourceVersion read
//!   just before it, so the API server accepts only one of two concurrent writes.
//! - A leader stops leading before anyone can take its lease. It leads until `renew_deadline`
//!   after the *start* of its last successful renewal ([`Leadership::is_leading`] turns false by
//!   itself then, even when the renewal call hangs). A candidate takes a held lease only after
//!   seeing the same resourceVersion for the lease's whole `duration` on its own clock — never
//!   from the times written in the lease, so clock skew between machines does not matter — and
//!   `renew_deadline < duration`.
//! - A leader that stops (SIGTERM) releases the lease: a candidate takes it at its next look,
//!   without waiting for it to expire.
//!
//! The crates on crates.io for this (kube-leader-election, kube-lease-manager) follow older kube
//! releases, and the first documents that it does not fence a leader that cannot renew; this is
//! the small implementation the guarantee above needs.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How a replica takes part in the election.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// The Lease: `namespace/name`.
    pub namespace: String,
    pub name: String,
    /// This replica's name in the lease (`holderIdentity`); unique per process.
    pub identity: String,
    /// How long a lease nobody renews stays held.
    pub duration: Duration,
    /// How long a leader goes on leading without a successful renewal. Below `duration`.
    pub renew_deadline: Duration,
    /// How often the leader renews.
    pub renew_every: Duration,
    /// How often a candidate looks at the lease.
    pub poll_every: Duration,
}

impl LeaseConfig {
    /// The timings of client-go's defaults (15 s, 10 s, renew every 3 s) scaled to `duration`,
    /// with candidates looking at least twice a second, so that a released lease is taken at once.
    pub fn new(namespace: &str, name: &str, identity: &str, duration: Duration) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
            renew_deadline: duration * 2 / 3,
            renew_every: duration / 5,
            poll_every: (duration / 10).min(Duration::from_millis(500)),
        }
    }
}

/// What a replica does with the lease it has just read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// It holds the lease: renew it.
    Renew,
    /// Nobody holds it, or its holder stopped renewing: take it.
    Take,
    /// Someone else holds it.
    Wait,
}

/// `holder` of a lease of `duration` whose resourceVersion has not changed for `unchanged_for`.
fn decide(holder: Option<&str>, me: &str, unchanged_for: Duration, duration: Duration) -> Step {
    match holder {
        None | Some("") => Step::Take,
        Some(h) if h == me => Step::Renew,
        Some(_) if unchanged_for >= duration => Step::Take,
        Some(_) => Step::Wait,
    }
}

/// Whether this replica leads, shared with everything that must stop writing when it does not.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Leadership {
    /// `Some(until)` while leading.
    until: watch::Receiver<Option<Instant>>,
}

impl Leadership {
    /// Whether this replica leads now.
    pub fn is_leading(&self) -> bool {
        self.until.borrow().is_some_and(|t| Instant::now() < t)
    }

    /// Wait until this replica leads.
    pub async fn acquired(&mut self) {
        while !self.is_leading() {
            let deadline = *self.until.borrow_and_update();
            match deadline {
                // Leading, but the deadline passed: a renewal is under way.
                Some(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                None if self.until.changed().await.is_err() => std::future::pending().await,
                None => {}
            }
        }
    }

    /// Wait until this replica no longer leads: its deadline passed without a renewal, the lease
    /// went to someone else, or it was released.
    pub async fn lost(&mut self) {
        loop {
            let deadline = *self.until.borrow_and_update();
            let Some(until) = deadline else { return };
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {
                    if *self.until.borrow() == Some(until) {
                        return;
                    }
                }
                changed = self.until.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Takes part in the election; see the module documentation.
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The lease's resourceVersion as last read, and when it was first read.
    seen: Option<(String, Instant)>,
    until: watch::Sender<Option<Instant>>,
}

impl Elector {
    pub fn new(api: Api<Lease>, config: LeaseConfig) -> (Self, Leadership) {
        let (until, rx) = watch::channel(None);
        let elector = Self {
            api,
            config,
            seen: None,
            until,
        };
        (elector, Leadership { until: rx })
    }

    /// Take part until `stop` is cancelled; then release the lease if this replica holds it.
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            let began = Instant::now();
            // A call that hangs must not outlive the deadline it could extend.
            let attempt = tokio::time::timeout(self.config.renew_deadline, self.attempt());
            let outcome = tokio::select! {
                r = attempt => r,
                _ = stop.cancelled() => break,
            };
            let was_leading = self.until.borrow().is_some();
            match outcome {
                Ok(Ok(true)) => {
                    if !was_leading {
                        info!(lease = %self.config.name, identity = %self.config.identity, "leading");
                    }
                    self.until
                        .send_replace(Some(began + self.config.renew_deadline));
                }
                Ok(Ok(false)) => {
                    if was_leading {
                        warn!(lease = %self.config.name, "the lease went to another replica");
                        self.until.send_replace(None);
                    }
                }
                Ok(Err(e)) => {
                    warn!(lease = %self.config.name, error = %super::api_reason(&e), "cannot read or write the lease");
                }
                Err(_) => warn!(lease = %self.config.name, "the lease call timed out"),
            }
            let pause = if self.until.borrow().is_some() {
                self.config.renew_every
            } else {
                self.config.poll_every
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.cancelled() => break,
            }
        }
        if self.until.borrow().is_some() {
            self.until.send_replace(None);
            self.release().await;
        }
    }

    /// Read the lease and renew or take it when this replica may: whether it leads now.
    async fn attempt(&mut self) -> Result<bool, kube::Error> {
        let now = Instant::now();
        let Some(lease) = self.api.get_opt(&self.config.name).await? else {
            let mut lease = Lease::default();
            lease.meta_mut().name = Some(self.config.name.clone());
            lease.spec = Some(self.held(None, true));
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if super::is_status(&e, |s| s.is_already_exists()) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let version = lease.resource_version().unwrap_or_default();
        let unchanged_for = match &self.seen {
            Some((v, at)) if *v == version => now - *at,
            _ => {
                self.seen = Some((version, now));
                Duration::ZERO
            }
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.config.duration, Duration::from_secs);
        let step = decide(
            spec.holder_identity.as_deref(),
            &self.config.identity,
            unchanged_for,
            duration,
        );
        if step == Step::Wait {
            return Ok(false);
        }
        let mut next = lease;
        next.spec = Some(self.held(Some(spec), step == Step::Take));
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &next)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if super::is_status(&e, |s| s.is_conflict()) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The lease's spec with this replica as its holder, renewed now (`taken`: newly acquired).
    fn held(&self, before: Option<LeaseSpec>, taken: bool) -> LeaseSpec {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let mut spec = before.unwrap_or_default();
        spec.holder_identity = Some(self.config.identity.clone());
        spec.lease_duration_seconds = Some(self.config.duration.as_secs().max(1) as i32);
        spec.renew_time = Some(now.clone());
        if taken {
            spec.acquire_time = Some(now);
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec
    }

    /// Give the lease up, so that a candidate takes it at once.
    async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(&self.config.identity) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(lease = %self.config.name, "lease released"),
            Err(e) => {
                warn!(lease = %self.config.name, error = %super::api_reason(&e), "cannot release the lease; it expires by itself")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_lease_is_taken_when_free_or_expired_and_renewed_by_its_holder() {
        let d = 15 * S;
        assert_eq!(decide(None, "a", Duration::ZERO, d), Step::Take);
        assert_eq!(decide(Some(""), "a", Duration::ZERO, d), Step::Take);
        assert_eq!(decide(Some("a"), "a", 99 * S, d), Step::Renew);
        assert_eq!(decide(Some("b"), "a", 14 * S, d), Step::Wait);
        assert_eq!(decide(Some("b"), "a", 15 * S, d), Step::Take);
    }

    #[test]
    fn a_leader_gives_up_before_a_candidate_may_take_over() {
        let c = LeaseConfig::new("ns", "l", "a", 15 * S);
        assert!(c.renew_deadline < c.duration);
        assert!(
            c.renew_every * 3 <= c.renew_deadline,
            "three renewals fit in the deadline"
        );
        assert!(c.poll_every <= Duration::from_millis(500));
    }

    /// Real time, in tenths of a second: a paused clock would need tokio's test-util, whose clock
    /// takes a lock on every `Instant::now` in every test and bench binary.
    #[tokio::test]
    async fn leadership_ends_by_itself_at_its_deadline() {
        let unit = Duration::from_millis(100);
        let (tx, rx) = watch::channel(None);
        let mut leadership = Leadership { until: rx };
        assert!(!leadership.is_leading());
        tx.send_replace(Some(Instant::now() + 3 * unit));
        leadership.acquired().await;
        assert!(leadership.is_leading());
        let began = Instant::now();
        leadership.lost().await;
        let took = began.elapsed();
        assert!(
            took >= 2 * unit && took < 6 * unit,
            "no renewal: it ends at the deadline ({took:?})"
        );
        assert!(!leadership.is_leading());

        // A renewal moves the deadline; a release ends it at once.
        tx.send_replace(Some(Instant::now() + 3 * unit));
        let renew = {
            let tx = tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(2 * unit).await;
                tx.send_replace(Some(Instant::now() + 30 * unit));
                tokio::time::sleep(2 * unit).await;
                tx.send_replace(None);
            })
        };
        let began = Instant::now();
        leadership.lost().await;
        let took = began.elapsed();
        assert!(
            took >= 4 * unit && took < 10 * unit,
            "renewed, then released ({took:?})"
        );
        renew.await.unwrap();
    }
}
