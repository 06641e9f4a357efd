//! The room status machine: which events move a room from which status to which.
//!
//! Pure and total: every (status, event) pair either yields the next status or a
//! [`TransitionError`] naming both, so a nonsensical report (a `ready` ping from a room being
//! terminated) is refused instead of silently applied. `terminated` is final; so is `error`
//! for the room's own reports (the room is replaced, not revived).

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum RoomStatus {
    /// Created, not running yet.
    Pending,
    /// Running, no ready ping yet.
    Unready,
    /// Running and free: no match.
    Ready,
    /// Some matches running, room for more (only with `maxMatches > 1`).
    Active,
    /// Full: as many matches as `maxMatches`.
    Occupied,
    /// Handed to a matchmaker, not yet confirmed by the room.
    Allocated,
    /// Being stopped.
    Terminating,
    /// Stopped; final.
    Terminated,
    /// Failed to start, crashed, or stopped pinging.
    Error,
}

impl RoomStatus {
    pub const ALL: [RoomStatus; 9] = [
        RoomStatus::Pending,
        RoomStatus::Unready,
        RoomStatus::Ready,
        RoomStatus::Active,
        RoomStatus::Occupied,
        RoomStatus::Allocated,
        RoomStatus::Terminating,
        RoomStatus::Terminated,
        RoomStatus::Error,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            RoomStatus::Pending => "pending",
            RoomStatus::Unready => "unready",
            RoomStatus::Ready => "ready",
            RoomStatus::Active => "active",
            RoomStatus::Occupied => "occupied",
            RoomStatus::Allocated => "allocated",
            RoomStatus::Terminating => "terminating",
            RoomStatus::Terminated => "terminated",
            RoomStatus::Error => "error",
        }
    }

    /// A match is (or is about to be) played here: no rollout, scale-down or heal may delete it.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            RoomStatus::Active | RoomStatus::Occupied | RoomStatus::Allocated
        )
    }

    /// The room can take players now or is playing: it counts as available capacity.
    pub fn is_serving(&self) -> bool {
        matches!(self, RoomStatus::Ready) || self.is_busy()
    }

    /// Still starting up.
    pub fn is_starting(&self) -> bool {
        matches!(self, RoomStatus::Pending | RoomStatus::Unready)
    }

    /// On its way out or gone: not part of the fleet any more.
    pub fn is_leaving(&self) -> bool {
        matches!(self, RoomStatus::Terminating | RoomStatus::Terminated)
    }

    /// Order in which free rooms are removed: broken first, then starting, then ready.
    /// Busy rooms have no rank: they are never picked.
    pub fn removal_rank(&self) -> Option<u8> {
        match self {
            RoomStatus::Error => Some(0),
            RoomStatus::Pending | RoomStatus::Unready => Some(1),
            RoomStatus::Ready => Some(2),
            _ => None,
        }
    }
}

impl fmt::Display for RoomStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a room may say about itself in a ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PingStatus {
    Ready,
    Active,
    Occupied,
    Terminating,
    Terminated,
}

/// Something that happens to a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEvent {
    /// The runtime saw the room's process or pod running.
    Started,
    /// The room reported itself. `running_matches`, when given, decides ready/active/occupied;
    /// `matches_before` is the count Troupe knew before, so an allocated multi-match room confirms
    /// its allocation only when a match is added.
    Ping {
        status: PingStatus,
        running_matches: Option<u32>,
        max_matches: u32,
        matches_before: u32,
    },
    /// A matchmaker was handed the room.
    Allocate,
    /// An allocation was not confirmed in time.
    AllocationExpired,
    /// Troupe asked the room to stop.
    Stop,
    /// The room's process ended; `clean` when it exited with status 0 or after being asked to stop.
    Exited { clean: bool },
    /// The runtime or a health check gave up on the room.
    Failed,
}

/// A transition that makes no sense; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("room is {from}: cannot apply {event}")]
pub struct TransitionError {
    pub from: RoomStatus,
    pub event: String,
}

impl RoomEvent {
    fn describe(&self) -> String {
        match self {
            RoomEvent::Started => "runtime start".into(),
            RoomEvent::Ping {
                status,
                running_matches,
                ..
            } => match running_matches {
                Some(n) => format!("ping {} with {n} running matches", ping_name(*status)),
                None => format!("ping {}", ping_name(*status)),
            },
            RoomEvent::Allocate => "allocation".into(),
            RoomEvent::AllocationExpired => "allocation expiry".into(),
            RoomEvent::Stop => "stop".into(),
            RoomEvent::Exited { .. } => "process exit".into(),
            RoomEvent::Failed => "failure".into(),
        }
    }
}

fn ping_name(s: PingStatus) -> &'static str {
    match s {
        PingStatus::Ready => "ready",
        PingStatus::Active => "active",
        PingStatus::Occupied => "occupied",
        PingStatus::Terminating => "terminating",
        PingStatus::Terminated => "terminated",
    }
}

/// The status a playing room is in, from its match count.
fn by_matches(running: u32, max: u32) -> RoomStatus {
    if running == 0 {
        RoomStatus::Ready
    } else if running >= max.max(1) {
        RoomStatus::Occupied
    } else {
        RoomStatus::Active
    }
}

/// Apply `event` to a room in status `from`.
pub fn transition(from: RoomStatus, event: &RoomEvent) -> Result<RoomStatus, TransitionError> {
    use RoomStatus::*;
    let refuse = || {
        Err(TransitionError {
            from,
            event: event.describe(),
        })
    };
    match (from, event) {
        (Terminated, _) => refuse(),
        (Error, RoomEvent::Stop) => Ok(Terminating),
        (Error, RoomEvent::Exited { .. } | RoomEvent::Failed) => Ok(Error),
        (Error, _) => refuse(),

        (Pending, RoomEvent::Started) => Ok(Unready),
        (_, RoomEvent::Started) => Ok(from),

        (
            Terminating,
            RoomEvent::Ping {
                status: PingStatus::Terminating | PingStatus::Terminated,
                ..
            },
        ) => Ok(Terminating),
        (Terminating, RoomEvent::Ping { .. }) => refuse(),
        (
            _,
            RoomEvent::Ping {
                status: PingStatus::Terminating | PingStatus::Terminated,
                ..
            },
        ) => Ok(Terminating),
        (
            _,
            RoomEvent::Ping {
                status,
                running_matches,
                max_matches,
                matches_before,
            },
        ) => {
            let claimed = match (running_matches, status) {
                (Some(n), _) => by_matches(*n, *max_matches),
                (None, PingStatus::Ready) => Ready,
                (None, PingStatus::Active) => Active,
                (None, _) => Occupied,
            };
            // An allocated room keeps reporting what it had until its players arrive: it stays
            // allocated until a match is added (or it says it is occupied).
            let confirmed = match running_matches {
                Some(n) => *n > *matches_before,
                None => claimed != Ready,
            };
            if from == Allocated && !confirmed {
                Ok(Allocated)
            } else {
                Ok(claimed)
            }
        }

        (Ready | Active, RoomEvent::Allocate) => Ok(Allocated),
        (_, RoomEvent::Allocate) => refuse(),
        (Allocated, RoomEvent::AllocationExpired) => Ok(Ready),
        (_, RoomEvent::AllocationExpired) => Ok(from),

        (Terminating, RoomEvent::Stop) => Ok(Terminating),
        (_, RoomEvent::Stop) => Ok(Terminating),

        (Terminating, RoomEvent::Exited { .. }) => Ok(Terminated),
        (_, RoomEvent::Exited { clean: true }) => Ok(Terminated),
        (_, RoomEvent::Exited { clean: false }) => Ok(Error),

        (Terminating, RoomEvent::Failed) => Ok(Terminating),
        (_, RoomEvent::Failed) => Ok(Error),
    }
}

#[cfg(test)]
mod tests {
    use super::RoomStatus::*;
    use super::*;

    fn ping(status: PingStatus, running: Option<u32>, max: u32) -> RoomEvent {
        RoomEvent::Ping {
            status,
            running_matches: running,
            max_matches: max,
            matches_before: 0,
        }
    }

    #[test]
    fn an_allocated_multi_match_room_confirms_only_when_a_match_is_added() {
        let keep = RoomEvent::Ping {
            status: PingStatus::Active,
            running_matches: Some(2),
            max_matches: 4,
            matches_before: 2,
        };
        assert_eq!(transition(Allocated, &keep).unwrap(), Allocated);
        let added = RoomEvent::Ping {
            status: PingStatus::Active,
            running_matches: Some(3),
            max_matches: 4,
            matches_before: 2,
        };
        assert_eq!(transition(Allocated, &added).unwrap(), Active);
    }

    #[test]
    fn a_room_starts_goes_ready_and_fills_up() {
        let mut s = Pending;
        s = transition(s, &RoomEvent::Started).unwrap();
        assert_eq!(s, Unready);
        s = transition(s, &ping(PingStatus::Ready, None, 1)).unwrap();
        assert_eq!(s, Ready);
        s = transition(s, &ping(PingStatus::Occupied, None, 1)).unwrap();
        assert_eq!(s, Occupied);
        s = transition(s, &ping(PingStatus::Ready, None, 1)).unwrap();
        assert_eq!(s, Ready);
    }

    #[test]
    fn running_matches_decide_between_ready_active_and_occupied() {
        assert_eq!(
            transition(Ready, &ping(PingStatus::Ready, Some(0), 3)).unwrap(),
            Ready
        );
        assert_eq!(
            transition(Ready, &ping(PingStatus::Ready, Some(2), 3)).unwrap(),
            Active
        );
        assert_eq!(
            transition(Active, &ping(PingStatus::Active, Some(3), 3)).unwrap(),
            Occupied
        );
        assert_eq!(
            transition(Occupied, &ping(PingStatus::Occupied, Some(1), 3)).unwrap(),
            Active
        );
    }

    #[test]
    fn an_allocated_room_stays_allocated_until_it_confirms() {
        let s = transition(Ready, &RoomEvent::Allocate).unwrap();
        assert_eq!(s, Allocated);
        assert_eq!(
            transition(s, &ping(PingStatus::Ready, None, 1)).unwrap(),
            Allocated
        );
        assert_eq!(
            transition(s, &ping(PingStatus::Occupied, None, 1)).unwrap(),
            Occupied
        );
        assert_eq!(transition(s, &RoomEvent::AllocationExpired).unwrap(), Ready);
        assert!(transition(Occupied, &RoomEvent::Allocate).is_err());
        assert!(transition(Pending, &RoomEvent::Allocate).is_err());
    }

    #[test]
    fn nonsense_is_refused() {
        let err = transition(Terminating, &ping(PingStatus::Ready, None, 1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "room is terminating: cannot apply ping ready"
        );
        assert!(transition(Terminated, &ping(PingStatus::Ready, None, 1)).is_err());
        assert!(transition(Terminated, &RoomEvent::Started).is_err());
        assert!(transition(Error, &ping(PingStatus::Ready, None, 1)).is_err());
    }

    #[test]
    fn exits_end_in_terminated_or_error() {
        assert_eq!(
            transition(Terminating, &RoomEvent::Exited { clean: false }).unwrap(),
            Terminated
        );
        assert_eq!(
            transition(Ready, &RoomEvent::Exited { clean: true }).unwrap(),
            Terminated
        );
        assert_eq!(
            transition(Occupied, &RoomEvent::Exited { clean: false }).unwrap(),
            Error
        );
        assert_eq!(transition(Unready, &RoomEvent::Failed).unwrap(), Error);
        assert_eq!(transition(Error, &RoomEvent::Stop).unwrap(), Terminating);
    }

    #[test]
    fn busy_rooms_have_no_removal_rank() {
        for s in RoomStatus::ALL {
            assert_eq!(
                s.removal_rank().is_none(),
                s.is_busy() || s.is_leaving(),
                "{s}"
            );
        }
        assert!(Error.removal_rank() < Pending.removal_rank());
        assert!(Unready.removal_rank() < Ready.removal_rank());
    }
}
