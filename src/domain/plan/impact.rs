//! What a change does to a scheduler's rooms: how many are created, replaced, removed, and how
//! many busy ones are left running until they are free.
//!
//! Must hold (promise 1): a busy room (`active`, `occupied`, `allocated`) is never counted as
//! removed now. It is either replaced when free (a retired room of an old version or in error)
//! or kept above the target; either way it shows in `kept_busy`. Rooms already leaving
//! (`terminating`, `terminated`) are not part of the fleet and are ignored.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::live::LiveRoom;
use crate::domain::room::RoomStatus;

/// Room counts a change moves. See [`assess`] for how they are computed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Impact {
    /// New rooms on top of the ones replaced: the fleet grows by this much.
    pub create: u32,
    /// Rooms of an old version (or in error) retired with a successor of the target version.
    /// Busy ones among them are replaced only once free, and are also counted in `kept_busy`.
    pub replace: u32,
    /// Free rooms removed without a successor (scale-down, delete), worst first
    /// (broken rooms, then starting ones, then free ones).
    pub remove: u32,
    /// Busy rooms the change would retire or that are above the target: left running until free.
    pub kept_busy: u32,
}

impl Impact {
    pub fn is_empty(&self) -> bool {
        *self == Impact::default()
    }
}

/// A scheduler's fleet, sorted by what a change can do with each room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Rooms of the target version, busy.
    pub current_busy: u32,
    /// Rooms of the target version, not busy, not in error.
    pub current_free: u32,
    /// Rooms of another version, busy: retired once free.
    pub outdated_busy: u32,
    /// Rooms of another version, not busy and not in error: can be retired now.
    pub outdated_free: u32,
    /// Rooms in error, whatever their version: always retired (never busy).
    pub error: u32,
}

impl Tally {
    /// Sort `rooms` against the version the fleet should run.
    pub fn of(rooms: &[LiveRoom], version: &str) -> Tally {
        VersionCounts::of(rooms).tally(version)
    }

    /// Rooms that are part of the fleet (not leaving).
    pub fn fleet(&self) -> u32 {
        self.current() + self.retired()
    }

    fn current(&self) -> u32 {
        self.current_busy + self.current_free
    }

    /// Rooms that must go whatever the target: old version or in error.
    fn retired(&self) -> u32 {
        self.outdated_busy + self.outdated_free + self.error
    }
}

/// A fleet as counts by (version, status), sorted: what the planner and the plan id need to know
/// about rooms, computed in one pass over them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionCounts<'a>(pub Vec<(&'a str, RoomStatus, u32)>);

impl<'a> VersionCounts<'a> {
    pub fn of(rooms: &'a [LiveRoom]) -> Self {
        let mut counts: Vec<(&str, RoomStatus, u32)> = Vec::new();
        for r in rooms {
            // A fleet has a handful of (version, status) pairs; comparing the status first keeps
            // string comparisons to about one per room.
            match counts
                .iter_mut()
                .find(|(v, s, _)| *s == r.status && *v == r.version)
            {
                Some((_, _, n)) => *n += 1,
                None => counts.push((&r.version, r.status, 1)),
            }
        }
        counts.sort_unstable();
        VersionCounts(counts)
    }

    /// Sort the fleet against the version it should run.
    pub fn tally(&self, version: &str) -> Tally {
        let mut t = Tally::default();
        for &(v, status, n) in self.0.iter().filter(|(_, s, _)| !s.is_leaving()) {
            let slot = match (v == version, status.is_busy()) {
                _ if status == RoomStatus::Error => &mut t.error,
                (true, true) => &mut t.current_busy,
                (true, false) => &mut t.current_free,
                (false, true) => &mut t.outdated_busy,
                (false, false) => &mut t.outdated_free,
            };
            *slot += n;
        }
        t
    }
}

/// What reaching `target` rooms of the tallied version takes.
///
/// Rooms of the target version are kept up to `target`. Every retired room (old version or
/// error) goes; as many as the fleet needs get a successor (`replace`), busy ones first, since a
/// busy room must stay until free and its successor keeps capacity meanwhile. The rest are
/// removed if free, or wait if busy. If more rooms of the target version run than `target`, free
/// ones are removed and busy ones kept.
///
/// Returns the impact and whether any of it can happen now: something to create, a free room
/// to remove, or a free room to replace. Work that only waits on busy rooms is not actionable.
pub fn assess(t: &Tally, target: u32) -> (Impact, bool) {
    let mut i = Impact::default();
    let needed = target.saturating_sub(t.current());
    i.replace = t.retired().min(needed);
    i.create = needed - i.replace;
    let busy_replaced = t.outdated_busy.min(i.replace);
    let free_replaced = i.replace - busy_replaced;
    i.remove = t.outdated_free + t.error - free_replaced;
    // Every busy retired room waits, with a successor or without.
    i.kept_busy = t.outdated_busy;
    let excess = t.current().saturating_sub(target);
    let removable = excess.min(t.current_free);
    i.remove += removable;
    i.kept_busy += excess - removable;
    let actionable = i.create > 0 || i.remove > 0 || free_replaced > 0;
    (i, actionable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::room::RoomStatus::*;

    fn rooms(spec: &[(&str, RoomStatus, u32)]) -> Vec<LiveRoom> {
        let mut out = Vec::new();
        for (version, status, n) in spec {
            for _ in 0..*n {
                out.push(LiveRoom {
                    id: format!("r{}", out.len()),
                    version: version.to_string(),
                    status: *status,
                });
            }
        }
        out
    }

    /// Rooms as (version, status, count).
    type Fleet = [(&'static str, RoomStatus, u32)];

    fn imp(create: u32, replace: u32, remove: u32, kept_busy: u32) -> Impact {
        Impact {
            create,
            replace,
            remove,
            kept_busy,
        }
    }

    #[test]
    fn impact_table() {
        // (case, rooms, target, impact, actionable)
        let cases: &[(&str, &Fleet, u32, Impact, bool)] = &[
            (
                "in sync",
                &[("v1", Ready, 3), ("v1", Occupied, 1)],
                4,
                imp(0, 0, 0, 0),
                false,
            ),
            ("scale up", &[("v1", Ready, 4)], 6, imp(2, 0, 0, 0), true),
            (
                "scale down keeps busy",
                &[("v1", Ready, 3), ("v1", Occupied, 3)],
                2,
                imp(0, 0, 3, 1),
                true,
            ),
            (
                "scale down all busy",
                &[("v1", Occupied, 4)],
                2,
                imp(0, 0, 0, 2),
                false,
            ),
            (
                "rollout",
                &[("v0", Ready, 3), ("v0", Occupied, 1)],
                4,
                imp(0, 4, 0, 1),
                true,
            ),
            (
                "rollout only busy left",
                &[("v1", Ready, 3), ("v0", Allocated, 1)],
                4,
                imp(0, 1, 0, 1),
                false,
            ),
            (
                "rollout and scale up",
                &[("v0", Ready, 4)],
                6,
                imp(2, 4, 0, 0),
                true,
            ),
            (
                "rollout and scale down",
                &[("v0", Ready, 3), ("v0", Active, 1)],
                2,
                imp(0, 2, 2, 1),
                true,
            ),
            (
                "missing rooms",
                &[("v1", Ready, 3)],
                5,
                imp(2, 0, 0, 0),
                true,
            ),
            (
                "crashed room",
                &[("v1", Ready, 3), ("v1", Error, 1)],
                4,
                imp(0, 1, 0, 0),
                true,
            ),
            (
                "leaving rooms ignored",
                &[("v1", Ready, 2), ("v0", Terminating, 2)],
                2,
                imp(0, 0, 0, 0),
                false,
            ),
            (
                "starting rooms count",
                &[("v1", Pending, 1), ("v1", Unready, 1)],
                2,
                imp(0, 0, 0, 0),
                false,
            ),
            (
                "delete",
                &[("v1", Ready, 2), ("v1", Occupied, 1), ("v1", Error, 1)],
                0,
                imp(0, 0, 3, 1),
                true,
            ),
        ];
        for (case, spec, target, want, actionable) in cases {
            let t = Tally::of(&rooms(spec), "v1");
            assert_eq!(assess(&t, *target), (*want, *actionable), "{case}");
        }
    }
}
