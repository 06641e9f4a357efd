//! Room counts over the last hour, per scheduler: a ring buffer of [`CAPACITY`] samples taken
//! every [`SAMPLE_INTERVAL`] by [`run`] (started by `troupe serve`), read by the dashboard's chart
//! through `GET /api/v1/schedulers/{s}/history`.
//!
//! Must always hold: memory is bounded — at most [`CAPACITY`] samples per scheduler, and the
//! series of a scheduler that is neither applied, declared nor holding rooms is dropped at the
//! next sample. Nothing here is persisted: a restarted server starts a new hour.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::Controller;
use crate::clock::now_ms;
use crate::domain::room::{RoomCounts, tally};

/// Time between two samples: fine enough to see a rollout or a scale-up in the chart.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(10);
/// Samples kept per scheduler: one hour at [`SAMPLE_INTERVAL`].
pub const CAPACITY: usize = 360;

/// One sample of one scheduler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// Unix milliseconds.
    pub at: u64,
    #[serde(flatten)]
    pub counts: RoomCounts,
}

/// The ring buffers of every scheduler.
#[derive(Debug, Default)]
pub struct Samples(Mutex<BTreeMap<String, VecDeque<Sample>>>);

impl Samples {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, VecDeque<Sample>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record one sample at `at` for every scheduler in `known` or in `counts` (a known scheduler
    /// with no rooms gets a zero sample); forget the series of every other scheduler.
    pub fn record(
        &self,
        at: u64,
        mut counts: BTreeMap<String, RoomCounts>,
        known: &BTreeSet<String>,
    ) {
        let names: BTreeSet<String> = known.iter().chain(counts.keys()).cloned().collect();
        let mut series = self.lock();
        series.retain(|name, _| names.contains(name));
        for name in names {
            let counts = counts.remove(&name).unwrap_or_default();
            let ring = series.entry(name).or_default();
            if ring.len() == CAPACITY {
                ring.pop_front();
            }
            ring.push_back(Sample { at, counts });
        }
    }

    /// A scheduler's samples, oldest first (empty when it has none yet).
    pub fn series(&self, scheduler: &str) -> Vec<Sample> {
        self.lock()
            .get(scheduler)
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Take one sample of every scheduler the controller knows.
pub fn sample_now(controller: &Controller) {
    let counts = tally(&controller.fleet.registry.list(None));
    let known: BTreeSet<String> = controller
        .fleet
        .applied_all()
        .into_keys()
        .chain(controller.desired_schedulers().into_iter().map(|s| s.name))
        .collect();
    controller.samples.record(now_ms(), counts, &known);
}

/// Sample every [`SAMPLE_INTERVAL`] (the first one at once) until `shutdown`.
pub async fn run(controller: Arc<Controller>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => sample_now(&controller),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::room::{Room, RoomStatus};

    fn room(id: &str, scheduler: &str, status: RoomStatus, matches: u32) -> Room {
        let mut r = Room::pending(id, scheduler, "v1", 1);
        r.status = status;
        r.running_matches = matches;
        r
    }

    #[test]
    fn tally_counts_statuses_busy_rooms_and_matches() {
        let rooms = [
            room("a-1", "a", RoomStatus::Ready, 0),
            room("a-2", "a", RoomStatus::Occupied, 1),
            room("a-3", "a", RoomStatus::Active, 2),
            room("a-4", "a", RoomStatus::Allocated, 0),
            room("b-1", "b", RoomStatus::Pending, 0),
        ];
        let t = tally(&rooms);
        let a = &t["a"];
        assert_eq!((a.total, a.busy, a.running_matches), (4, 3, 3));
        assert_eq!(a.rooms[&RoomStatus::Ready], 1);
        assert_eq!((t["b"].total, t["b"].busy), (1, 0));
    }

    #[test]
    fn a_series_keeps_the_last_hour_and_forgotten_schedulers_are_dropped() {
        let samples = Samples::default();
        let known: BTreeSet<String> = ["a".to_string(), "b".to_string()].into();
        for i in 0..CAPACITY as u64 + 5 {
            let counts = tally(&[room("a-1", "a", RoomStatus::Ready, 0)]);
            samples.record(i, counts, &known);
        }
        let a = samples.series("a");
        assert_eq!(a.len(), CAPACITY);
        assert_eq!(a[0].at, 5, "the oldest samples go first");
        assert_eq!(a.last().map(|s| s.counts.total), Some(1));
        let b = samples.series("b");
        assert_eq!(
            b.len(),
            CAPACITY,
            "a known scheduler with no rooms gets zeros"
        );
        assert_eq!(b[0].counts, RoomCounts::default());

        samples.record(1_000, BTreeMap::new(), &["a".to_string()].into());
        assert!(samples.series("b").is_empty(), "b is gone");
        assert_eq!(samples.series("a").len(), CAPACITY);
    }
}
