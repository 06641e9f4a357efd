//! Live state as the planner sees it: per scheduler, the spec Troupe currently targets and the
//! rooms that run. Built by the controller from its registry; plain data, no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::rooms::RoomStatus;
use crate::spec::Scheduler;

/// All live schedulers, by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveState {
    pub schedulers: BTreeMap<String, LiveScheduler>,
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
