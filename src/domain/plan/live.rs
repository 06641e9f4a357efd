//! Live state as the planner sees it: per scheduler, the spec Troupe currently targets and the
//! rooms that run. Built from the applied specs and the registry ([`LiveState::of`]); plain data, no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::Applied;
use crate::domain::room::{Room, RoomStatus};
use crate::domain::spec::Scheduler;

/// All live schedulers, by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveState {
    pub schedulers: BTreeMap<String, LiveScheduler>,
}

impl LiveState {
    /// Live state from applied schedulers and their rooms (rooms of no applied scheduler are
    /// left out: there is nothing to plan them against).
    pub fn of(applied: BTreeMap<String, Applied>, rooms: Vec<Room>) -> Self {
        let mut by_scheduler: BTreeMap<String, Vec<LiveRoom>> = BTreeMap::new();
        for r in rooms {
            by_scheduler
                .entry(r.scheduler.clone())
                .or_default()
                .push(LiveRoom {
                    id: r.id,
                    version: r.version,
                    status: r.status,
                });
        }
        let schedulers = applied
            .into_iter()
            .map(|(name, a)| {
                let rooms = by_scheduler.remove(&name).unwrap_or_default();
                (
                    name,
                    LiveScheduler {
                        applied: a.spec,
                        target_rooms: a.target_rooms,
                        rooms,
                    },
                )
            })
            .collect();
        Self { schedulers }
    }
}

/// One live scheduler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveScheduler {
    /// The spec the last operation applied; what the rooms are being driven to.
    pub applied: Scheduler,
    /// Rooms the scheduler should have now: `roomsReplicas`, or the autoscaler's target.
    pub target_rooms: u32,
    /// Rooms that are not terminated yet.
    pub rooms: Vec<LiveRoom>,
}

/// The part of a room the planner looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveRoom {
    pub id: String,
    pub version: String,
    pub status: RoomStatus,
}
