//! What adoption stops after a restart: rooms found running that no running room owns.

use std::collections::HashSet;

use crate::domain::room::Room;

/// Something running where the rooms run that adoption stops, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stray {
    pub scheduler: String,
    pub room: String,
    /// No recorded room owns it (its scheduler has recorded rooms): nothing would ever report on
    /// it or stop it.
    pub unrecorded: bool,
}

/// Which of the rooms found running (`(scheduler, room)` of each: pods, processes) adoption
/// stops: those of a scheduler with recorded rooms that no recorded room owns, and those of
/// recorded rooms that did not survive as rooms (`alive` holds those that did; a process whose
/// record never got its reference is one). Rooms of schedulers without any recorded room are
/// left alone: the state that knows them is elsewhere (a controller being rebuilt takes them back
/// through discovery first).
pub fn strays(found: &[(String, String)], rooms: &[Room], alive: &[String]) -> Vec<Stray> {
    let known: HashSet<&str> = rooms.iter().map(|r| r.scheduler.as_str()).collect();
    let recorded: HashSet<(&str, &str)> = rooms
        .iter()
        .map(|r| (r.scheduler.as_str(), r.id.as_str()))
        .collect();
    let alive: HashSet<&str> = alive.iter().map(String::as_str).collect();
    found
        .iter()
        .filter_map(|(scheduler, room)| {
            let recorded = recorded.contains(&(scheduler.as_str(), room.as_str()));
            let unrecorded = known.contains(scheduler.as_str()) && !recorded;
            let finished = recorded && !alive.contains(room.as_str());
            (unrecorded || finished).then(|| Stray {
                scheduler: scheduler.clone(),
                room: room.clone(),
                unrecorded,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adoption_stops_unrecorded_and_finished_rooms_of_known_schedulers_only() {
        let rooms = [
            Room::pending("arena-a", "arena", "v1", 0),
            Room::pending("arena-b", "arena", "v1", 0),
        ];
        let pod = |s: &str, r: &str| (s.to_string(), r.to_string());
        let found = [
            pod("arena", "arena-a"),
            pod("arena", "arena-b"),
            pod("arena", "arena-x"),
            pod("racer", "racer-y"),
        ];
        let got = strays(&found, &rooms, &["arena-a".to_string()]);
        assert_eq!(
            got,
            [
                Stray {
                    scheduler: "arena".into(),
                    room: "arena-b".into(),
                    unrecorded: false
                },
                Stray {
                    scheduler: "arena".into(),
                    room: "arena-x".into(),
                    unrecorded: true
                },
            ]
        );
    }
}
