//! Rooms: the record Troupe keeps of every room, its status machine, and its token. The
//! registry that holds them is [`crate::state::registry`].
//!
//! Must always hold: a room's status only changes through [`status::transition`]; a room
//! that is busy (`active`, `occupied`, `allocated`) is never chosen for removal by a rollout,
//! scale-down or heal.

pub mod status;
pub mod token;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::spec::Protocol;
pub use status::{PingStatus, RoomEvent, RoomStatus, TransitionError, transition};

/// One port a room was given: the declared name and protocol, and the host port it listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

/// Everything Troupe knows about one room. Persisted, so a restarted controller re-adopts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Room {
    pub id: String,
    pub scheduler: String,
    /// Template version the room runs (see [`crate::domain::spec::Scheduler::version`]).
    pub version: String,
    pub status: RoomStatus,
    #[serde(default)]
    pub running_matches: u32,
    /// Address game clients connect to.
    pub host: String,
    pub ports: Vec<RoomPort>,
    /// Unix milliseconds.
    pub created_at: u64,
    /// Unix milliseconds of the last status change.
    pub status_since: u64,
    /// Unix milliseconds of the last ping, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ping: Option<u64>,
    /// Why the room is in `error` (exit status, last log line, expired ping, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Free-form metadata the room sent with its pings.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub metadata: serde_json::Value,
    /// Players in the room, by the ids its player events gave. Part of the room: when the room
    /// goes, its players stop counting with it.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub players: std::collections::BTreeSet<String>,
    /// The runtime's handle on the room (process id and start time locally, pod name on Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_ref: Option<String>,
}

impl Room {
    /// A room just recorded, before its process or pod exists.
    pub fn pending(id: &str, scheduler: &str, version: &str, now: u64) -> Self {
        Self {
            id: id.to_string(),
            scheduler: scheduler.to_string(),
            version: version.to_string(),
            status: RoomStatus::Pending,
            running_matches: 0,
            host: String::new(),
            ports: vec![],
            created_at: now,
            status_since: now,
            last_ping: None,
            reason: None,
            metadata: serde_json::Value::Null,
            players: Default::default(),
            runtime_ref: None,
        }
    }
}

/// A scheduler's rooms counted: the one way rooms are counted for metrics, the dashboard, the
/// management API and the history chart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomCounts {
    /// Rooms by status.
    pub rooms: BTreeMap<RoomStatus, u32>,
    /// All rooms, whatever their status.
    pub total: u32,
    /// Rooms where a match is (or is about to be) played: active, occupied, allocated.
    pub busy: u32,
    /// Matches running in all rooms together.
    pub running_matches: u32,
}

impl RoomCounts {
    /// Count one more room.
    pub fn add(&mut self, room: &Room) {
        *self.rooms.entry(room.status).or_default() += 1;
        self.total += 1;
        if room.status.is_busy() {
            self.busy += 1;
        }
        self.running_matches += room.running_matches;
    }
}

/// Counts per scheduler of `rooms`.
pub fn tally<'a>(rooms: impl IntoIterator<Item = &'a Room>) -> BTreeMap<String, RoomCounts> {
    let mut out: BTreeMap<String, RoomCounts> = BTreeMap::new();
    for room in rooms {
        out.entry(room.scheduler.clone()).or_default().add(room);
    }
    out
}
