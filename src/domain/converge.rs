//! The convergence step: given a scheduler's target (version, room count, surge) and its rooms,
//! decide which rooms to start and which to remove now. Pure; the executor runs it in a loop,
//! acting and waiting for room changes between steps, so an interrupted rollout resumes from
//! whatever rooms exist.
//!
//! Must always hold: a busy room (`active`, `occupied`, `allocated`) is never removed; rooms of
//! the target version plus free rooms of other versions never exceed target + surge; a free
//! serving room of an old version is removed only while enough other rooms serve.

use crate::domain::room::{Room, RoomStatus};

/// What the rooms of a scheduler should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub version: String,
    pub rooms: u32,
    pub surge: u32,
}

/// What to do now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// New rooms of the target version to start.
    pub start: u32,
    /// Rooms to remove (stop, or forget when already dead), in order.
    pub remove: Vec<String>,
    /// Nothing left to do now: the fleet matches the target, except busy rooms that wait.
    pub done: bool,
    /// What the step is waiting for, for the operation's history.
    pub waiting: Vec<String>,
    /// Busy rooms kept although outdated or above target.
    pub busy_kept: u32,
}

pub fn step(target: &Target, rooms: &[Room]) -> Step {
    let mut out = Step::default();
    let live: Vec<&Room> = rooms.iter().filter(|r| !r.status.is_leaving()).collect();
    let leaving = rooms.len() - live.len();

    // Broken rooms never count: they go first and are replaced.
    let (broken, healthy): (Vec<&Room>, Vec<&Room>) = live
        .into_iter()
        .partition(|r| r.status == RoomStatus::Error);
    out.remove.extend(broken.iter().map(|r| r.id.clone()));

    let (current, old): (Vec<&Room>, Vec<&Room>) = healthy
        .into_iter()
        .partition(|r| r.version == target.version);
    let old_busy = old.iter().filter(|r| r.status.is_busy()).count() as u32;
    let old_free: Vec<&Room> = old
        .iter()
        .copied()
        .filter(|r| !r.status.is_busy())
        .collect();

    // Start: up to the target, within the surge. Busy old rooms are outside the surge budget:
    // they cannot be removed now, and counting them would stall the rollout behind a match.
    let current_n = current.len() as u32;
    let want = target.rooms.saturating_sub(current_n);
    let budget = (target.rooms + target.surge).saturating_sub(current_n + old_free.len() as u32);
    out.start = want.min(budget);
    // A new version proves itself first: while it replaces another and none of its rooms serves
    // yet, only one (the validation room) runs.
    let validated = current.iter().any(|r| r.status.is_serving());
    if !old.is_empty() && !validated {
        out.start = out.start.min(1u32.saturating_sub(current_n));
    }

    // Old rooms that do not serve (still starting) can go at once.
    let mut old_free_sorted = old_free.clone();
    old_free_sorted.sort_by_key(|r| (r.status.removal_rank(), r.created_at));
    let serving = |rs: &[&Room]| rs.iter().filter(|r| r.status.is_serving()).count() as u32;
    let mut serving_total = serving(&current) + serving(&old);
    for r in &old_free_sorted {
        if r.status.is_serving() {
            // A ready old room goes only while the others still cover the target.
            if serving_total > target.rooms {
                serving_total -= 1;
                out.remove.push(r.id.clone());
            }
        } else {
            out.remove.push(r.id.clone());
        }
    }

    // Scale down: free rooms of the target version above the target, broken/starting first,
    // then the newest ready ones.
    let mut extra = current_n.saturating_sub(target.rooms);
    if extra > 0 {
        let mut free: Vec<&Room> = current
            .iter()
            .copied()
            .filter(|r| r.status.removal_rank().is_some())
            .collect();
        free.sort_by(|a, b| {
            (a.status.removal_rank(), std::cmp::Reverse(a.created_at))
                .cmp(&(b.status.removal_rank(), std::cmp::Reverse(b.created_at)))
        });
        for r in free {
            if extra == 0 {
                break;
            }
            out.remove.push(r.id.clone());
            extra -= 1;
        }
    }
    let busy_above = extra;
    out.busy_kept = old_busy + busy_above;

    let starting = current.iter().filter(|r| r.status.is_starting()).count();
    if starting > 0 {
        out.waiting.push(format!("{starting} room(s) starting"));
    }
    if leaving > 0 {
        out.waiting.push(format!("{leaving} room(s) terminating"));
    }
    let old_free_left = old_free.len()
        - out
            .remove
            .iter()
            .filter(|id| old_free.iter().any(|r| &r.id == *id))
            .count();
    if old_free_left > 0 {
        out.waiting.push(format!(
            "{old_free_left} outdated room(s) waiting for new rooms to be ready"
        ));
    }
    if want > out.start {
        out.waiting.push(format!(
            "{} room(s) held back by maxSurge",
            want - out.start
        ));
    }
    out.done = out.start == 0 && out.remove.is_empty() && out.waiting.is_empty();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(id: &str, version: &str, status: RoomStatus, created_at: u64) -> Room {
        Room {
            status,
            ..Room::pending(id, "s", version, created_at)
        }
    }

    fn target(rooms: u32, surge: u32) -> Target {
        Target {
            version: "v2".into(),
            rooms,
            surge,
        }
    }

    use RoomStatus::*;

    #[test]
    fn a_new_scheduler_starts_all_rooms_at_once() {
        let s = step(&target(10, 3), &[]);
        assert_eq!(s.start, 10);
        assert!(!s.done);
    }

    #[test]
    fn a_rollout_starts_only_the_surge_and_keeps_old_rooms_serving() {
        let rooms: Vec<Room> = (0..4)
            .map(|i| room(&format!("o{i}"), "v1", Ready, i))
            .collect();
        let s = step(&target(4, 1), &rooms);
        assert_eq!(s.start, 1);
        assert!(
            s.remove.is_empty(),
            "no old room may go before a new one serves"
        );
    }

    #[test]
    fn a_new_version_starts_with_one_validation_room() {
        let mut rooms: Vec<Room> = (0..10)
            .map(|i| room(&format!("o{i}"), "v1", Ready, i))
            .collect();
        let s = step(&target(10, 3), &rooms);
        assert_eq!(s.start, 1, "one validation room first");
        rooms.push(room("n0", "v2", Unready, 20));
        assert_eq!(
            step(&target(10, 3), &rooms).start,
            0,
            "nothing more until it serves"
        );
        rooms.last_mut().unwrap().status = Ready;
        let s = step(&target(10, 3), &rooms);
        assert_eq!(s.remove.len(), 1, "then the rollout proceeds");
    }

    #[test]
    fn each_ready_new_room_lets_one_old_room_go_oldest_first() {
        let mut rooms: Vec<Room> = (0..4)
            .map(|i| room(&format!("o{i}"), "v1", Ready, i))
            .collect();
        rooms.push(room("n0", "v2", Ready, 10));
        let s = step(&target(4, 1), &rooms);
        assert_eq!(s.remove, vec!["o0".to_string()]);
        assert_eq!(
            s.start, 0,
            "after the removal the surge is used again on the next step"
        );
    }

    #[test]
    fn busy_old_rooms_are_kept_and_do_not_stall_the_rollout() {
        let mut rooms: Vec<Room> = (0..3)
            .map(|i| room(&format!("b{i}"), "v1", Occupied, i))
            .collect();
        rooms.push(room("a", "v1", Allocated, 5));
        let s = step(&target(4, 1), &rooms);
        assert_eq!(s.start, 1, "a validation room first");
        let mut validated = rooms.clone();
        validated.push(room("n-validation", "v2", Ready, 6));
        let s = step(&target(4, 1), &validated);
        assert_eq!(s.start, 3, "busy rooms are outside the surge budget");
        assert!(s.remove.is_empty());
        assert_eq!(s.busy_kept, 4);
        // Once the new rooms serve, the busy ones still stay and the step is done.
        let mut all = rooms.clone();
        all.extend((0..4).map(|i| room(&format!("n{i}"), "v2", Ready, 10 + i)));
        let s = step(&target(4, 1), &all);
        assert!(s.remove.is_empty());
        assert!(s.done, "{s:?}");
    }

    #[test]
    fn scale_down_removes_free_rooms_only_broken_first() {
        let rooms = vec![
            room("r0", "v2", Ready, 0),
            room("r1", "v2", Occupied, 1),
            room("r2", "v2", Ready, 2),
            room("r3", "v2", Unready, 3),
            room("r4", "v2", Allocated, 4),
        ];
        let s = step(&target(1, 1), &rooms);
        assert_eq!(
            s.remove,
            vec!["r3".to_string(), "r2".to_string(), "r0".to_string()]
        );
        assert_eq!(s.busy_kept, 1);
        let rest: Vec<Room> = rooms.into_iter().filter(|r| r.status.is_busy()).collect();
        let s = step(&target(1, 1), &rest);
        assert!(s.done && s.remove.is_empty());
    }

    #[test]
    fn error_rooms_are_removed_and_replaced() {
        let rooms = vec![room("e", "v2", Error, 0), room("r", "v2", Ready, 1)];
        let s = step(&target(2, 1), &rooms);
        assert_eq!(s.remove, vec!["e".to_string()]);
        assert_eq!(s.start, 1);
    }

    #[test]
    fn in_sync_is_done() {
        let rooms = vec![room("a", "v2", Ready, 0), room("b", "v2", Occupied, 1)];
        assert!(step(&target(2, 1), &rooms).done);
        let starting = vec![room("a", "v2", Ready, 0), room("b", "v2", Unready, 1)];
        assert!(!step(&target(2, 1), &starting).done);
    }
}
