//! The room registry: every room Troupe knows, in memory, with each change that matters
//! (creation, status change, removal) journaled to the state directory before it is visible.
//!
//! Must always hold: a status changes only through [`transition`]; a room that reaches
//! `terminated` is removed from memory and journal at once; pings that change nothing durable
//! (same status, same match count) touch memory only, so the hot path does no I/O.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use tokio::sync::watch;

use super::{PingStatus, Room, RoomEvent, RoomStatus, TransitionError, now_ms, transition};
use crate::store::{Journal, StoreError};

/// Errors of registry calls.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No such room in that scheduler.
    #[error("room {room} of scheduler {scheduler} not found")]
    UnknownRoom { scheduler: String, room: String },
    /// The event makes no sense for the room's status; nothing changed.
    #[error("room {room}: {source}")]
    Transition {
        room: String,
        #[source]
        source: TransitionError,
    },
    /// The change could not be journaled; nothing changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a ping did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingOutcome {
    pub from: RoomStatus,
    pub to: RoomStatus,
}

/// Told about every journaled change of a room's status or match count (see
/// [`Registry::on_transition`]).
pub type TransitionHook = Box<dyn Fn(&Room) + Send + Sync>;

pub struct Registry {
    rooms: Mutex<HashMap<String, Room>>,
    journal: Mutex<Journal<Room>>,
    changes: watch::Sender<u64>,
    on_transition: OnceLock<TransitionHook>,
}

impl Registry {
    /// Open the registry journaled at `path`, with the rooms recorded before.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let (journal, records) = Journal::open(path)?;
        Ok(Self {
            rooms: Mutex::new(records.into_iter().collect()),
            journal: Mutex::new(journal),
            changes: watch::channel(0).0,
            on_transition: OnceLock::new(),
        })
    }

    /// Call `hook` with the new record after every journaled status or match-count change (not
    /// for rooms that reach `terminated`: they are gone). It runs on the ping path, after the
    /// registry's lock is released, and must not block. Only the first hook set is kept.
    pub fn on_transition(&self, hook: TransitionHook) {
        let _ = self.on_transition.set(hook);
    }

    /// A receiver that is marked changed whenever a room is added, removed or changes status.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn notify(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Room>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self, room: &Room) -> Result<(), StoreError> {
        self.journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(&room.id, room)
    }

    fn forget(&self, id: &str) -> Result<(), StoreError> {
        let mut journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        journal.remove(id)
    }

    /// Add a new room (journaled before it is visible).
    pub fn insert(&self, room: Room) -> Result<(), StoreError> {
        let mut rooms = self.lock();
        self.persist(&room)?;
        rooms.insert(room.id.clone(), room);
        drop(rooms);
        self.notify();
        Ok(())
    }

    /// Change fields of a room other than its status (address, ports, runtime handle).
    pub fn update(
        &self,
        id: &str,
        change: impl FnOnce(&mut Room),
    ) -> Result<Option<Room>, StoreError> {
        let mut rooms = self.lock();
        let Some(room) = rooms.get(id) else {
            return Ok(None);
        };
        let mut next = room.clone();
        change(&mut next);
        self.persist(&next)?;
        rooms.insert(id.to_string(), next.clone());
        drop(rooms);
        self.notify();
        Ok(Some(next))
    }

    /// Forget a room entirely.
    pub fn remove(&self, id: &str) -> Result<Option<Room>, StoreError> {
        let mut rooms = self.lock();
        if !rooms.contains_key(id) {
            return Ok(None);
        }
        self.forget(id)?;
        let room = rooms.remove(id);
        drop(rooms);
        self.notify();
        Ok(room)
    }

    pub fn get(&self, id: &str) -> Option<Room> {
        self.lock().get(id).cloned()
    }

    /// Rooms of one scheduler (or all), oldest first.
    pub fn list(&self, scheduler: Option<&str>) -> Vec<Room> {
        let mut out: Vec<Room> = self
            .lock()
            .values()
            .filter(|r| scheduler.is_none_or(|s| r.scheduler == s))
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        out
    }

    /// Room counts per scheduler and status.
    pub fn counts(&self) -> BTreeMap<String, BTreeMap<RoomStatus, u32>> {
        let mut out: BTreeMap<String, BTreeMap<RoomStatus, u32>> = BTreeMap::new();
        for room in self.lock().values() {
            *out.entry(room.scheduler.clone())
                .or_default()
                .entry(room.status)
                .or_default() += 1;
        }
        out
    }

    /// Apply a status event to a room. `reason` is recorded when the room ends in `error`.
    /// A room that reaches `terminated` is removed.
    pub fn apply(
        &self,
        scheduler: &str,
        id: &str,
        event: &RoomEvent,
        reason: Option<&str>,
    ) -> Result<PingOutcome, RegistryError> {
        self.change(scheduler, id, |room| {
            let to =
                transition(room.status, event).map_err(|source| RegistryError::Transition {
                    room: id.to_string(),
                    source,
                })?;
            if to == RoomStatus::Error && room.status != RoomStatus::Error {
                room.reason = reason.map(str::to_string);
            }
            Ok(to)
        })
    }

    /// A room reported itself.
    pub fn ping(
        &self,
        scheduler: &str,
        id: &str,
        status: PingStatus,
        running_matches: Option<u32>,
        max_matches: u32,
        metadata: Option<serde_json::Value>,
    ) -> Result<PingOutcome, RegistryError> {
        let event = RoomEvent::Ping {
            status,
            running_matches,
            max_matches,
        };
        self.change(scheduler, id, |room| {
            let to =
                transition(room.status, &event).map_err(|source| RegistryError::Transition {
                    room: id.to_string(),
                    source,
                })?;
            room.last_ping = Some(now_ms());
            if let Some(n) = running_matches {
                room.running_matches = n;
            } else if to != room.status {
                room.running_matches = match to {
                    RoomStatus::Occupied => max_matches,
                    RoomStatus::Ready => 0,
                    _ => room.running_matches,
                };
            }
            if let Some(m) = metadata {
                room.metadata = m;
            }
            Ok(to)
        })
    }

    /// Run `decide` on a copy of the room; it returns the next status. The new record is journaled
    /// only when its status or match count changed, and replaces the old one only then or after.
    fn change(
        &self,
        scheduler: &str,
        id: &str,
        decide: impl FnOnce(&mut Room) -> Result<RoomStatus, RegistryError>,
    ) -> Result<PingOutcome, RegistryError> {
        let unknown = || RegistryError::UnknownRoom {
            scheduler: scheduler.to_string(),
            room: id.to_string(),
        };
        let mut rooms = self.lock();
        let room = rooms
            .get(id)
            .filter(|r| r.scheduler == scheduler)
            .ok_or_else(unknown)?;
        let from = room.status;
        let mut next = room.clone();
        let to = decide(&mut next)?;
        let durable = to != from || next.running_matches != room.running_matches;
        if !durable {
            rooms.insert(id.to_string(), next);
            return Ok(PingOutcome { from, to });
        }
        next.status = to;
        next.status_since = now_ms();
        let recorded = if to == RoomStatus::Terminated {
            self.forget(id)?;
            rooms.remove(id);
            None
        } else {
            self.persist(&next)?;
            rooms.insert(id.to_string(), next.clone());
            Some(next)
        };
        drop(rooms);
        if let (Some(room), Some(hook)) = (recorded, self.on_transition.get()) {
            hook(&room);
        }
        self.notify();
        Ok(PingOutcome { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(id: &str) -> Room {
        Room::pending(id, "arena", "v1", 1)
    }

    #[test]
    fn status_changes_survive_a_reopen_and_terminated_rooms_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rooms.jsonl");
        {
            let reg = Registry::open(&path).unwrap();
            reg.insert(room("arena-a")).unwrap();
            reg.insert(room("arena-b")).unwrap();
            reg.apply("arena", "arena-a", &RoomEvent::Started, None)
                .unwrap();
            reg.ping("arena", "arena-a", PingStatus::Occupied, None, 1, None)
                .unwrap();
            reg.apply("arena", "arena-b", &RoomEvent::Stop, None)
                .unwrap();
            reg.apply("arena", "arena-b", &RoomEvent::Exited { clean: true }, None)
                .unwrap();
        }
        let reg = Registry::open(&path).unwrap();
        let rooms = reg.list(None);
        assert_eq!(rooms.len(), 1);
        assert_eq!(rooms[0].status, RoomStatus::Occupied);
        assert_eq!(rooms[0].running_matches, 1);
    }

    #[test]
    fn the_transition_hook_sees_status_and_match_changes_only() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path().join("r.jsonl")).unwrap();
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        reg.on_transition(Box::new(move |room: &Room| {
            sink.lock()
                .unwrap()
                .push((room.status, room.running_matches))
        }));
        reg.insert(room("arena-a")).unwrap();
        reg.apply("arena", "arena-a", &RoomEvent::Started, None)
            .unwrap();
        reg.ping("arena", "arena-a", PingStatus::Ready, None, 2, None)
            .unwrap();
        reg.ping("arena", "arena-a", PingStatus::Ready, None, 2, None)
            .unwrap();
        reg.ping("arena", "arena-a", PingStatus::Active, Some(1), 2, None)
            .unwrap();
        reg.apply("arena", "arena-a", &RoomEvent::Stop, None)
            .unwrap();
        reg.apply("arena", "arena-a", &RoomEvent::Exited { clean: true }, None)
            .unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            [
                (RoomStatus::Unready, 0),
                (RoomStatus::Ready, 0),
                (RoomStatus::Active, 1),
                (RoomStatus::Terminating, 1),
            ]
        );
    }

    #[test]
    fn a_refused_transition_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path().join("r.jsonl")).unwrap();
        reg.insert(room("arena-a")).unwrap();
        reg.apply("arena", "arena-a", &RoomEvent::Stop, None)
            .unwrap();
        let err = reg
            .ping("arena", "arena-a", PingStatus::Ready, None, 1, None)
            .unwrap_err();
        assert!(matches!(err, RegistryError::Transition { .. }), "{err}");
        assert_eq!(reg.get("arena-a").unwrap().status, RoomStatus::Terminating);
        assert!(matches!(
            reg.ping("other", "arena-a", PingStatus::Ready, None, 1, None),
            Err(RegistryError::UnknownRoom { .. })
        ));
    }
}
