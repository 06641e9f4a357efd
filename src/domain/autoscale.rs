//! The autoscaler's arithmetic: how many rooms a scheduler should have for its occupancy.
//!
//! Pure. Policies: `roomOccupancy` keeps a fraction of match slots free, `fixedBuffer` keeps a
//! number of free rooms above the busy ones. Must always hold: the result lies within
//! `min`..=`max` (`max: -1`: no ceiling), and a scale-down happens only when the policy allows it
//! (occupancy: the needed free slots are a small enough part of the free slots there are).

use crate::domain::room::{Room, RoomStatus};
use crate::domain::spec::{Autoscaling, PolicyKind};

/// What the autoscaler looks at, counted over a scheduler's rooms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Occupancy {
    /// Rooms that count: not leaving, not broken.
    pub rooms: u32,
    /// Rooms with a match or handed to a matchmaker (active, occupied, allocated).
    pub busy: u32,
    /// Matches being played, an unconfirmed allocation counting as one.
    pub running_matches: u32,
}

impl Occupancy {
    pub fn of(rooms: &[Room]) -> Self {
        let mut o = Occupancy::default();
        for r in rooms
            .iter()
            .filter(|r| !r.status.is_leaving() && r.status != RoomStatus::Error)
        {
            o.rooms += 1;
            if r.status.is_busy() {
                o.busy += 1;
            }
            o.running_matches += match r.status {
                RoomStatus::Allocated => r.running_matches.max(1),
                _ => r.running_matches,
            };
        }
        o
    }
}

/// The autoscaler's answer, with its inputs spelled out for the operation history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub target: u32,
    pub reason: String,
}

/// Rooms the scheduler should have, given its `current` target.
pub fn decide(a: &Autoscaling, max_matches: u32, o: &Occupancy, current: u32) -> Decision {
    let max_matches = max_matches.max(1);
    let (wanted, mut reason) = match a.policy.kind {
        PolicyKind::RoomOccupancy => {
            let p =
                a.policy
                    .parameters
                    .room_occupancy
                    .unwrap_or(crate::domain::spec::RoomOccupancy {
                        ready_target: 0.5,
                        down_threshold: 0.9,
                    });
            let slots = (f64::from(o.running_matches) / (1.0 - p.ready_target)).ceil();
            let desired = (slots / f64::from(max_matches)).ceil() as u32;
            let reason = format!(
                "roomOccupancy: {} running matches, readyTarget {}, maxMatches {max_matches} → {desired} rooms",
                o.running_matches, p.ready_target
            );
            if desired < current {
                let needed_free = (f64::from(desired * max_matches) * p.ready_target).ceil();
                let free = f64::from((current * max_matches).saturating_sub(o.running_matches));
                if free == 0.0 || needed_free / free > p.down_threshold {
                    let why = format!(
                        "{reason}; kept at {current}: needed free slots {needed_free} / free slots {free} above downThreshold {}",
                        p.down_threshold
                    );
                    return clamp(a, current, why);
                }
            }
            (desired, reason)
        }
        PolicyKind::FixedBuffer => {
            let amount = a.policy.parameters.fixed_buffer.map_or(1, |f| f.amount);
            let desired = o.busy + amount;
            (
                desired,
                format!(
                    "fixedBuffer: {} busy rooms + {amount} free → {desired} rooms",
                    o.busy
                ),
            )
        }
    };
    reason.push_str(&format!(" (from {current})"));
    clamp(a, wanted, reason)
}

fn clamp(a: &Autoscaling, wanted: u32, reason: String) -> Decision {
    let target = a.clamp(wanted);
    let reason = if target != wanted {
        format!(
            "{reason}; clamped to {target} by min {} / max {}",
            a.min, a.max
        )
    } else {
        reason
    };
    Decision { target, reason }
}

/// One autoscaled scheduler, as the autoscaler sees it on a tick.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    pub scheduler: &'a str,
    pub autoscaling: &'a Autoscaling,
    pub max_matches: u32,
    /// Its room target now.
    pub target: u32,
    pub occupancy: Occupancy,
    /// It has an operation pending or running: the autoscaler waits for it.
    pub busy: bool,
    /// When it last scaled down (Unix ms; the controller's start when it never did, so that a
    /// restart never scales down early).
    pub last_scale_down: u64,
}

/// A change of room target the autoscaler asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scale {
    pub scheduler: String,
    pub from: u32,
    pub to: u32,
    pub reason: String,
}

impl Scale {
    pub fn is_down(&self) -> bool {
        self.to < self.from
    }
}

/// The scales due at `now` (Unix ms): every scheduler without an operation in flight whose
/// policy moves its target, a scale-down only once its `cooldown` has passed since the last one.
pub fn scales(observed: &[Observed<'_>], now: u64) -> Vec<Scale> {
    observed
        .iter()
        .filter(|o| !o.busy && o.autoscaling.enabled)
        .filter_map(|o| {
            let d = decide(o.autoscaling, o.max_matches, &o.occupancy, o.target);
            let cooldown = o.autoscaling.cooldown.as_std().as_millis() as u64;
            let cooled = now.saturating_sub(o.last_scale_down) >= cooldown;
            (d.target > o.target || (d.target < o.target && cooled)).then(|| Scale {
                scheduler: o.scheduler.to_string(),
                from: o.target,
                to: d.target,
                reason: d.reason,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::spec::{Duration, FixedBuffer, Policy, PolicyParameters, RoomOccupancy};

    fn occupancy(ready_target: f64, down_threshold: f64, min: u32, max: i64) -> Autoscaling {
        Autoscaling {
            enabled: true,
            min,
            max,
            cooldown: Duration::from_secs(60),
            policy: Policy {
                kind: PolicyKind::RoomOccupancy,
                parameters: PolicyParameters {
                    room_occupancy: Some(RoomOccupancy {
                        ready_target,
                        down_threshold,
                    }),
                    fixed_buffer: None,
                },
            },
        }
    }

    fn buffer(amount: u32, min: u32, max: i64) -> Autoscaling {
        Autoscaling {
            policy: Policy {
                kind: PolicyKind::FixedBuffer,
                parameters: PolicyParameters {
                    room_occupancy: None,
                    fixed_buffer: Some(FixedBuffer { amount }),
                },
            },
            ..occupancy(0.5, 0.9, min, max)
        }
    }

    fn occ(rooms: u32, busy: u32, running_matches: u32) -> Occupancy {
        Occupancy {
            rooms,
            busy,
            running_matches,
        }
    }

    #[test]
    fn room_occupancy_table() {
        // (policy, maxMatches, occupancy, current target, expected target)
        let cases = [
            (
                "grows with matches",
                occupancy(0.3, 0.9, 2, 200),
                1,
                occ(10, 10, 10),
                10,
                15,
            ),
            (
                "multi-match rooms hold several",
                occupancy(0.3, 0.9, 2, 200),
                4,
                occ(10, 10, 20),
                10,
                8,
            ),
            (
                "idle fleet shrinks to min",
                occupancy(0.3, 0.9, 2, 200),
                1,
                occ(10, 0, 0),
                10,
                2,
            ),
            ("ceiling", occupancy(0.5, 0.9, 1, 5), 1, occ(5, 5, 5), 5, 5),
            (
                "no ceiling with -1",
                occupancy(0.5, 0.9, 1, -1),
                1,
                occ(500, 500, 500),
                500,
                1000,
            ),
            (
                "down only when free slots are plentiful",
                occupancy(0.5, 0.5, 1, 100),
                1,
                occ(10, 6, 6),
                13,
                13,
            ),
            (
                "down when they are",
                occupancy(0.5, 0.9, 1, 100),
                1,
                occ(10, 6, 6),
                13,
                12,
            ),
            (
                "no free slot: no scale-down",
                occupancy(0.1, 0.9, 1, 100),
                1,
                occ(4, 4, 4),
                4,
                5,
            ),
        ];
        for (name, a, max_matches, o, current, want) in cases {
            let d = decide(&a, max_matches, &o, current);
            assert_eq!(d.target, want, "{name}: {}", d.reason);
        }
    }

    #[test]
    fn fixed_buffer_keeps_free_rooms_above_busy_ones() {
        assert_eq!(decide(&buffer(5, 2, 100), 1, &occ(10, 8, 8), 10).target, 13);
        assert_eq!(decide(&buffer(5, 2, 100), 1, &occ(10, 0, 0), 10).target, 5);
        assert_eq!(decide(&buffer(5, 2, 10), 1, &occ(10, 8, 8), 10).target, 10);
    }

    #[test]
    fn allocated_rooms_count_as_a_match() {
        let rooms: Vec<Room> = [
            RoomStatus::Allocated,
            RoomStatus::Ready,
            RoomStatus::Occupied,
            RoomStatus::Error,
        ]
        .into_iter()
        .enumerate()
        .map(|(i, status)| Room {
            status,
            running_matches: u32::from(status == RoomStatus::Occupied),
            ..Room::pending(&format!("r{i}"), "s", "v", 0)
        })
        .collect();
        assert_eq!(Occupancy::of(&rooms), occ(3, 2, 2));
    }

    #[test]
    fn scales_wait_for_operations_and_scale_downs_wait_for_the_cooldown() {
        let a = buffer(2, 1, 50);
        let busy_rooms = |busy| Occupancy {
            rooms: 10,
            busy,
            running_matches: busy,
        };
        let observed = |name, target, busy_now, op, last| Observed {
            scheduler: name,
            autoscaling: &a,
            max_matches: 1,
            target,
            occupancy: busy_rooms(busy_now),
            busy: op,
            last_scale_down: last,
        };
        let now = 1_000_000;
        let cooldown = a.cooldown.as_std().as_millis() as u64;
        let got = scales(
            &[
                observed("up", 5, 8, false, now),
                observed("up-but-busy", 5, 8, true, 0),
                observed("down-cooled", 10, 1, false, now - cooldown),
                observed("down-too-soon", 10, 1, false, now - cooldown + 1),
                observed("steady", 5, 3, false, 0),
            ],
            now,
        );
        let moves: Vec<(&str, u32, u32)> = got
            .iter()
            .map(|s| (s.scheduler.as_str(), s.from, s.to))
            .collect();
        assert_eq!(moves, [("up", 5, 10), ("down-cooled", 10, 3)]);
        assert!(got[1].is_down() && !got[0].is_down());
    }
}
