//! Timeouts: which rooms outstayed their scheduler's `timeouts`, and which allocations were not
//! confirmed in time. Pure: the rooms, their schedulers' specs and the time are passed in; the
//! fleet carries the answers out.
//!
//! Must always hold: a room of a scheduler that is not applied never times out (nothing says how
//! long it may take), and an allocation is given back only after the allocation TTL, whatever
//! its scheduler.

use std::collections::BTreeMap;

use crate::domain::room::{Room, RoomStatus};
use crate::domain::spec::{Duration, Scheduler};

/// What a timeout calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expiry {
    /// The room was allocated and did not confirm in time: it is free again.
    Allocation { scheduler: String, room: String },
    /// The room outstayed a timeout: it fails, with the reason.
    Room {
        scheduler: String,
        room: String,
        reason: String,
    },
}

/// The expiries due at `now` (Unix ms) among `rooms`, given the applied spec of each scheduler
/// and how long an allocation may wait for its confirmation.
pub fn due(
    rooms: &[Room],
    specs: &BTreeMap<String, &Scheduler>,
    now: u64,
    allocation_ttl: std::time::Duration,
) -> Vec<Expiry> {
    let ms = |d: Duration| d.as_std().as_millis() as u64;
    let ttl = allocation_ttl.as_millis() as u64;
    let mut out = Vec::new();
    for room in rooms {
        let age = now.saturating_sub(room.status_since);
        if room.status == RoomStatus::Allocated {
            if age > ttl {
                out.push(Expiry::Allocation {
                    scheduler: room.scheduler.clone(),
                    room: room.id.clone(),
                });
            }
            continue;
        }
        let Some(spec) = specs.get(&room.scheduler) else {
            continue;
        };
        let t = &spec.timeouts;
        let silent = now.saturating_sub(room.last_ping.unwrap_or(room.status_since));
        let reason = match room.status {
            RoomStatus::Pending if age > ms(t.pending) => {
                format!("pending for more than {} (timeouts.pending)", t.pending)
            }
            RoomStatus::Unready if age > ms(t.unready) => format!(
                "no ready ping within {} of starting (timeouts.unready)",
                t.unready
            ),
            s if s.is_serving() && silent > ms(t.ping) => {
                format!("no ping for more than {} (timeouts.ping)", t.ping)
            }
            _ => continue,
        };
        out.push(Expiry::Room {
            scheduler: room.scheduler.clone(),
            room: room.id.clone(),
            reason,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1000;

    fn spec() -> Scheduler {
        let mut s = Scheduler::minimal("arena");
        s.timeouts = serde_json::from_value(serde_json::json!(
            {"pending": "10s", "unready": "20s", "ping": "30s", "terminating": "5s"}
        ))
        .unwrap();
        s
    }

    fn room(id: &str, scheduler: &str, status: RoomStatus, since: u64, ping: Option<u64>) -> Room {
        Room {
            status,
            status_since: since,
            last_ping: ping,
            ..Room::pending(id, scheduler, "v1", 0)
        }
    }

    #[test]
    fn each_status_times_out_after_its_own_timeout_and_not_before() {
        let arena = spec();
        let specs = BTreeMap::from([("arena".to_string(), &arena)]);
        let now = 100 * SEC;
        let ttl = std::time::Duration::from_secs(15);
        // (room, status, since, last ping, the timeout it hits)
        type Case = (
            &'static str,
            RoomStatus,
            u64,
            Option<u64>,
            Option<&'static str>,
        );
        let cases: &[Case] = &[
            (
                "pending-young",
                RoomStatus::Pending,
                now - 10 * SEC,
                None,
                None,
            ),
            (
                "pending-old",
                RoomStatus::Pending,
                now - 11 * SEC,
                None,
                Some("timeouts.pending"),
            ),
            (
                "unready-young",
                RoomStatus::Unready,
                now - 20 * SEC,
                None,
                None,
            ),
            (
                "unready-old",
                RoomStatus::Unready,
                now - 21 * SEC,
                None,
                Some("timeouts.unready"),
            ),
            (
                "ready-pinged",
                RoomStatus::Ready,
                now - 90 * SEC,
                Some(now - 30 * SEC),
                None,
            ),
            (
                "ready-silent",
                RoomStatus::Ready,
                now - 90 * SEC,
                Some(now - 31 * SEC),
                Some("timeouts.ping"),
            ),
            (
                "occupied-never-pinged",
                RoomStatus::Occupied,
                now - 31 * SEC,
                None,
                Some("timeouts.ping"),
            ),
            (
                "terminating",
                RoomStatus::Terminating,
                now - 90 * SEC,
                None,
                None,
            ),
            ("error", RoomStatus::Error, now - 90 * SEC, None, None),
        ];
        let rooms: Vec<Room> = cases
            .iter()
            .map(|(id, status, since, ping, _)| room(id, "arena", *status, *since, *ping))
            .collect();
        let due = due(&rooms, &specs, now, ttl);
        for (id, _, _, _, want) in cases {
            let got = due.iter().find_map(|e| match e {
                Expiry::Room { room, reason, .. } if room == id => Some(reason.as_str()),
                _ => None,
            });
            match (want, got) {
                (None, None) => {}
                (Some(w), Some(g)) => assert!(g.contains(w), "{id}: {g}"),
                _ => panic!("{id}: wanted {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn allocations_expire_after_the_ttl_even_for_a_scheduler_not_applied() {
        let now = 100 * SEC;
        let ttl = std::time::Duration::from_secs(30);
        let rooms = [
            room("kept", "gone", RoomStatus::Allocated, now - 30 * SEC, None),
            room(
                "expired",
                "gone",
                RoomStatus::Allocated,
                now - 31 * SEC,
                None,
            ),
            room("pending", "gone", RoomStatus::Pending, 0, None),
        ];
        assert_eq!(
            due(&rooms, &BTreeMap::new(), now, ttl),
            [Expiry::Allocation {
                scheduler: "gone".into(),
                room: "expired".into()
            }],
            "no other timeout without an applied spec"
        );
    }
}
