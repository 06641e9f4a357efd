//! The room registry: every room Troupe knows, in memory, with each change that matters
//! (creation, status change, removal) journaled to the state directory before it is visible.
//!
//! Must always hold: a status changes only through [`transition`]; a room that reaches
//! `terminated` is removed from memory and journal at once; pings that change nothing durable
//! (same status, same match count) touch memory only, so the hot path does no I/O.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::watch;

use crate::clock::now_ms;
use crate::domain::room::{
    PingStatus, Room, RoomCounts, RoomEvent, RoomStatus, TransitionError, tally, transition,
};
use crate::state::journal::{Journal, StoreError};

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

/// A room's status changed (`from` is `None` for a new room).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub scheduler: String,
    pub room: String,
    pub from: Option<RoomStatus>,
    pub to: RoomStatus,
}

/// Status changes buffered for slow listeners before they lag (and count what they missed).
const STATUS_CHANGES: usize = 4096;

/// Where a free room stands in the allocation order: partly used rooms first (most matches
/// first), then empty ones, oldest first.
type FreeKey = (bool, std::cmp::Reverse<u32>, u64, String);

fn free_key(r: &Room) -> Option<FreeKey> {
    matches!(r.status, RoomStatus::Ready | RoomStatus::Active).then(|| {
        (
            r.status != RoomStatus::Active,
            std::cmp::Reverse(r.running_matches),
            r.created_at,
            r.id.clone(),
        )
    })
}

/// Rooms by id, plus an index of the free ones per scheduler so that allocation picks a room
/// without scanning the fleet. Every change goes through `put` and `take`, which keep both.
#[derive(Default)]
struct Rooms {
    by_id: HashMap<String, Room>,
    free: HashMap<String, std::collections::BTreeSet<FreeKey>>,
}

impl Rooms {
    fn get(&self, id: &str) -> Option<&Room> {
        self.by_id.get(id)
    }

    fn contains_key(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    fn values(&self) -> impl Iterator<Item = &Room> {
        self.by_id.values()
    }

    fn put(&mut self, room: Room) {
        self.take(&room.id.clone());
        if let Some(key) = free_key(&room) {
            self.free
                .entry(room.scheduler.clone())
                .or_default()
                .insert(key);
        }
        self.by_id.insert(room.id.clone(), room);
    }

    fn take(&mut self, id: &str) -> Option<Room> {
        let room = self.by_id.remove(id)?;
        if let Some(key) = free_key(&room)
            && let Some(set) = self.free.get_mut(&room.scheduler)
        {
            set.remove(&key);
        }
        Some(room)
    }

    /// The first free room in allocation order among `schedulers`.
    fn first_free(&self, schedulers: &[&str]) -> Option<&str> {
        schedulers
            .iter()
            .filter_map(|s| self.free.get(*s)?.first())
            .min()
            .map(|(_, _, _, id)| id.as_str())
    }
}
/// The match count a ping leaves a room with, going to status `to`: the count it reports, or
/// when it reports none and its status changes, what the new status implies.
fn pinged_matches(room: &Room, to: RoomStatus, reported: Option<u32>, max_matches: u32) -> u32 {
    match reported {
        Some(n) => n,
        None if to != room.status => match to {
            RoomStatus::Occupied => max_matches,
            RoomStatus::Ready => 0,
            _ => room.running_matches,
        },
        None => room.running_matches,
    }
}

/// Told about every journaled change of a room's status or match count (see
/// [`Registry::on_transition`]): the new record and the status it had before.
pub type TransitionHook = Box<dyn Fn(&Room, RoomStatus) + Send + Sync>;

pub struct Registry {
    rooms: Mutex<Rooms>,
    journal: Arc<Mutex<Journal<Room>>>,
    /// The thread writing the running compaction's snapshot, if one runs.
    compaction: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Tests hold a compaction before it writes its snapshot until they send on this.
    #[cfg(test)]
    compaction_gate: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    /// Journal writes that failed (each refused the change it carried).
    store_failures: std::sync::atomic::AtomicU64,
    changes: watch::Sender<u64>,
    statuses: tokio::sync::broadcast::Sender<StatusChange>,
    on_transition: OnceLock<TransitionHook>,
}

impl Registry {
    /// Open the registry journaled at `path`, with the rooms recorded before.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let (journal, records) = Journal::open(path)?;
        Ok(Self {
            rooms: Mutex::new({
                let mut rooms = Rooms::default();
                for (_, room) in records {
                    rooms.put(room);
                }
                rooms
            }),
            journal: Arc::new(Mutex::new(journal)),
            compaction: Mutex::new(None),
            #[cfg(test)]
            compaction_gate: Mutex::new(None),
            store_failures: Default::default(),
            changes: watch::channel(0).0,
            statuses: tokio::sync::broadcast::channel(STATUS_CHANGES).0,
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

    /// Every status change, as it happens.
    pub fn subscribe_status(&self) -> tokio::sync::broadcast::Receiver<StatusChange> {
        self.statuses.subscribe()
    }

    fn status_changed(&self, room: &Room, from: Option<RoomStatus>) {
        let _ = self.statuses.send(StatusChange {
            scheduler: room.scheduler.clone(),
            room: room.id.clone(),
            from,
            to: room.status,
        });
    }

    fn notify(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rooms> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self, room: &Room) -> Result<(), StoreError> {
        let result = self
            .journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(&room.id, room);
        self.count_failure(result)
    }

    fn forget(&self, id: &str) -> Result<(), StoreError> {
        let result = self
            .journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.count_failure(result)
    }

    fn count_failure(&self, result: Result<(), StoreError>) -> Result<(), StoreError> {
        if let Err(e) = &result {
            self.store_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(error = %e, "cannot journal a room change; it was not made");
        }
        result
    }

    /// Journal writes that failed since start.
    pub fn store_failures(&self) -> u64 {
        self.store_failures
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Make journal writes fail after `n` more (tests of what a broken disk does).
    #[cfg(test)]
    pub(crate) fn fail_writes_after(&self, n: Option<u32>) {
        self.journal.lock().unwrap().fail_after = n;
    }

    /// Rewrite the journal to the rooms in memory once it has grown enough: called after every
    /// journaled change, with memory already holding it, so the snapshot loses nothing. A server
    /// that runs for weeks keeps its journal near the size of its fleet. Under the lock this only
    /// copies the rooms; a thread writes them out while pings and allocations go on, and the
    /// journal appends what they changed meanwhile (see [`Journal::begin_rewrite`]). A failed
    /// rewrite leaves the old journal, which stays correct, and is tried again once the journal
    /// has grown further. Kept out of line, so that the ping path that changes nothing durable
    /// stays small.
    #[inline(never)]
    fn compact_if_due(&self, rooms: &Rooms) {
        let rewrite = {
            let mut journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
            if !journal.wants_compaction() {
                return;
            }
            match journal.begin_rewrite() {
                Some(rewrite) => rewrite,
                None => return,
            }
        };
        let snapshot = rooms.by_id.clone();
        #[cfg(test)]
        let gate = self.compaction_gate.lock().unwrap().take();
        let journal = Arc::clone(&self.journal);
        let path = rewrite.path().to_path_buf();
        let write = move || {
            #[cfg(test)]
            if let Some(gate) = gate {
                let _ = gate.recv();
            }
            let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                rewrite.write(snapshot.iter())
            }))
            .unwrap_or_else(|_| {
                Err(StoreError::Io {
                    path,
                    source: std::io::Error::other("the rewrite panicked"),
                })
            });
            let finished = journal
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .finish_rewrite(written);
            if let Err(e) = finished {
                tracing::error!(error = %e, "cannot compact the rooms journal; it keeps growing until a retry succeeds");
            }
        };
        let mut running = self.compaction.lock().unwrap_or_else(|p| p.into_inner());
        // The previous compaction has finished (the journal started this one).
        running.take();
        match std::thread::Builder::new()
            .name("rooms-compaction".into())
            .spawn(write)
        {
            Ok(handle) => *running = Some(handle),
            Err(e) => {
                tracing::error!(error = %e, "cannot start a thread to compact the rooms journal");
                let mut journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
                let path = journal.path().to_path_buf();
                let _ = journal.finish_rewrite(Err(StoreError::Io { path, source: e }));
            }
        }
    }

    /// Wait until the running compaction, if any, has finished.
    pub fn settle(&self) {
        let handle = self
            .compaction
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    /// Hold the next compaction before it writes its snapshot, until the returned sender sends
    /// (or is dropped).
    #[cfg(test)]
    fn hold_next_compaction(&self) -> std::sync::mpsc::Sender<()> {
        let (release, gate) = std::sync::mpsc::channel();
        *self.compaction_gate.lock().unwrap() = Some(gate);
        release
    }

    /// Add a new room (journaled before it is visible).
    pub fn insert(&self, room: Room) -> Result<(), StoreError> {
        let mut rooms = self.lock();
        self.persist(&room)?;
        self.status_changed(&room, None);
        rooms.put(room);
        self.compact_if_due(&rooms);
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
        rooms.put(next.clone());
        self.compact_if_due(&rooms);
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
        let room = rooms.take(id);
        self.compact_if_due(&rooms);
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

    /// Room counts per scheduler, counted under the lock (no room is copied).
    pub fn counts(&self) -> BTreeMap<String, RoomCounts> {
        tally(self.lock().values())
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

    /// A room reported itself. A ping that changes nothing durable (same status, same match
    /// count) updates the room in place, under the lock, without copying it: the hot path.
    pub fn ping(
        &self,
        scheduler: &str,
        id: &str,
        status: PingStatus,
        running_matches: Option<u32>,
        max_matches: u32,
        metadata: Option<serde_json::Value>,
    ) -> Result<PingOutcome, RegistryError> {
        // The status a ping takes the room to, or why it is refused.
        let next = |room: &Room| {
            let event = RoomEvent::Ping {
                status,
                running_matches,
                max_matches,
                matches_before: room.running_matches,
            };
            transition(room.status, &event).map_err(|source| RegistryError::Transition {
                room: id.to_string(),
                source,
            })
        };
        {
            let mut rooms = self.lock();
            let room = rooms
                .by_id
                .get_mut(id)
                .filter(|r| r.scheduler == scheduler)
                .ok_or_else(|| RegistryError::UnknownRoom {
                    scheduler: scheduler.to_string(),
                    room: id.to_string(),
                })?;
            let to = next(room)?;
            if to == room.status
                && pinged_matches(room, to, running_matches, max_matches) == room.running_matches
            {
                // Its free-index key (status, matches, age, id) is unchanged: it keeps its place.
                room.last_ping = Some(now_ms());
                if let Some(m) = metadata {
                    room.metadata = m;
                }
                return Ok(PingOutcome { from: to, to });
            }
        }
        self.change(scheduler, id, |room| {
            let to = next(room)?;
            room.last_ping = Some(now_ms());
            room.running_matches = pinged_matches(room, to, running_matches, max_matches);
            if let Some(m) = metadata {
                room.metadata = m;
            }
            Ok(to)
        })
    }

    /// A player joined (`join`) or left a room. Idempotent; journaled when the set changed.
    /// Returns the number of players now in the room.
    pub fn player(
        &self,
        scheduler: &str,
        id: &str,
        join: bool,
        player: &str,
    ) -> Result<usize, RegistryError> {
        let mut rooms = self.lock();
        let room = rooms
            .get(id)
            .filter(|r| r.scheduler == scheduler)
            .ok_or_else(|| RegistryError::UnknownRoom {
                scheduler: scheduler.to_string(),
                room: id.to_string(),
            })?;
        let mut next = room.clone();
        let changed = if join {
            next.players.insert(player.to_string())
        } else {
            next.players.remove(player)
        };
        if changed {
            self.persist(&next)?;
            let n = next.players.len();
            rooms.put(next);
            self.compact_if_due(&rooms);
            return Ok(n);
        }
        Ok(room.players.len())
    }

    /// Hand one free room of one of `schedulers` to a caller: atomically (the choice and the
    /// transition happen under one lock, so no room is ever handed out twice) and durably (the
    /// `allocated` status is journaled before the room is returned). Packs multi-match rooms:
    /// a partly used room (`active`, most matches first) before an empty one (oldest first).
    pub fn allocate(&self, schedulers: &[&str]) -> Result<Option<Room>, StoreError> {
        let mut rooms = self.lock();
        let best = rooms.first_free(schedulers).map(str::to_string);
        let Some(id) = best else { return Ok(None) };
        let Some(mut room) = rooms.get(&id).cloned() else {
            return Ok(None);
        };
        // Ready and active rooms always accept an allocation (the filter above).
        let Ok(next) = transition(room.status, &RoomEvent::Allocate) else {
            return Ok(None);
        };
        let from = room.status;
        room.status = next;
        room.status_since = now_ms();
        self.persist(&room)?;
        self.status_changed(&room, Some(from));
        rooms.put(room.clone());
        self.compact_if_due(&rooms);
        drop(rooms);
        if let Some(hook) = self.on_transition.get() {
            hook(&room, from);
        }
        self.notify();
        Ok(Some(room))
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
            // Same status and match count: the room keeps its place in the free index.
            if let Some(slot) = rooms.by_id.get_mut(id) {
                *slot = next;
            }
            return Ok(PingOutcome { from, to });
        }
        next.status = to;
        next.status_since = now_ms();
        let recorded = if to == RoomStatus::Terminated {
            self.forget(id)?;
            rooms.take(id);
            None
        } else {
            self.persist(&next)?;
            rooms.put(next.clone());
            Some(next.clone())
        };
        if to != from {
            self.status_changed(&next, Some(from));
        }
        self.compact_if_due(&rooms);
        drop(rooms);
        if let (Some(room), Some(hook)) = (recorded, self.on_transition.get()) {
            hook(&room, from);
        }
        self.notify();
        Ok(PingOutcome { from, to })
    }
}

/// A registry that goes away lets its compaction finish first: a reopened journal must not be
/// renamed over afterwards.
impl Drop for Registry {
    fn drop(&mut self) {
        self.settle();
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
    fn allocation_packs_partly_used_rooms_and_never_gives_a_room_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let reg = Registry::open(&path).unwrap();
        for (id, status, matches) in [
            ("arena-a", RoomStatus::Ready, 0),
            ("arena-b", RoomStatus::Active, 1),
            ("arena-c", RoomStatus::Active, 2),
            ("arena-d", RoomStatus::Occupied, 4),
        ] {
            reg.insert(Room {
                status,
                running_matches: matches,
                ..room(id)
            })
            .unwrap();
        }
        let order: Vec<String> = std::iter::from_fn(|| reg.allocate(&["arena"]).unwrap())
            .map(|r| r.id)
            .collect();
        assert_eq!(order, ["arena-c", "arena-b", "arena-a"]);
        assert!(reg.allocate(&["arena"]).unwrap().is_none());
        assert!(reg.allocate(&["other"]).unwrap().is_none());
        drop(reg);
        let reg = Registry::open(&path).unwrap();
        assert_eq!(
            reg.list(None)
                .iter()
                .filter(|r| r.status == RoomStatus::Allocated)
                .count(),
            3,
            "allocations survive a restart"
        );
    }

    #[test]
    fn the_transition_hook_sees_status_and_match_changes_only() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path().join("r.jsonl")).unwrap();
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        reg.on_transition(Box::new(move |room: &Room, from| {
            sink.lock()
                .unwrap()
                .push((from, room.status, room.running_matches))
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
                (RoomStatus::Pending, RoomStatus::Unready, 0),
                (RoomStatus::Unready, RoomStatus::Ready, 0),
                (RoomStatus::Ready, RoomStatus::Active, 1),
                (RoomStatus::Active, RoomStatus::Terminating, 1),
            ]
        );
    }

    /// Regression: the journal was compacted only when opened, so a server under steady pings
    /// grew it by hundreds of megabytes a minute until its next restart.
    #[test]
    fn the_rooms_journal_stays_bounded_while_rooms_ping_status_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rooms.jsonl");
        let reg = Registry::open(&path).unwrap();
        let ids: Vec<String> = (0..50).map(|i| format!("arena-{i:02}")).collect();
        for id in &ids {
            reg.insert(room(id)).unwrap();
            reg.apply("arena", id, &RoomEvent::Started, None).unwrap();
        }
        for round in 0..2_000 {
            let status = if round % 2 == 0 {
                PingStatus::Occupied
            } else {
                PingStatus::Ready
            };
            for id in &ids {
                reg.ping("arena", id, status, None, 1, None).unwrap();
            }
        }
        reg.settle();
        let size = std::fs::metadata(&path).unwrap().len();
        let bound = crate::state::journal::COMPACT_SLACK_BYTES + 64 * 1024;
        assert!(size < bound, "rooms.jsonl is {size} bytes for 50 rooms");
        drop(reg);
        let reg = Registry::open(&path).unwrap();
        assert_eq!(reg.list(None).len(), 50, "no room lost by a compaction");
        assert!(
            reg.list(None).iter().all(|r| r.status == RoomStatus::Ready),
            "the newest status of every room survives"
        );
    }

    /// A compaction used to rewrite the whole journal under the registry's lock, stalling every
    /// ping and allocation meanwhile: it now writes its snapshot beside them.
    #[test]
    fn a_compaction_runs_beside_pings_and_keeps_what_they_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rooms.jsonl");
        let reg = Registry::open(&path).unwrap();
        let ids: Vec<String> = (0..20).map(|i| format!("arena-{i:02}")).collect();
        for id in &ids {
            reg.insert(room(id)).unwrap();
            reg.apply("arena", id, &RoomEvent::Started, None).unwrap();
        }
        let release = reg.hold_next_compaction();
        let flip = |round: usize| {
            if round.is_multiple_of(2) {
                PingStatus::Occupied
            } else {
                PingStatus::Ready
            }
        };
        let mut round = 0;
        while !reg.journal.lock().unwrap().rewriting() {
            for id in &ids {
                reg.ping("arena", id, flip(round), None, 1, None).unwrap();
            }
            round += 1;
        }
        // The snapshot is held: these go on, journaled, and must follow it in the new file.
        reg.insert(room("arena-new")).unwrap();
        reg.remove("arena-00").unwrap();
        for id in &ids[1..] {
            reg.ping("arena", id, flip(round), None, 1, None).unwrap();
        }
        let last = reg.get("arena-01").unwrap().status;
        assert!(
            reg.journal.lock().unwrap().rewriting(),
            "the compaction is still held"
        );
        release.send(()).unwrap();
        reg.settle();
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(
            size < 64 * 1024,
            "rooms.jsonl is {size} bytes after its compaction"
        );
        drop(reg);
        let reg = Registry::open(&path).unwrap();
        assert!(
            reg.get("arena-new").is_some(),
            "a room added meanwhile survives"
        );
        assert!(
            reg.get("arena-00").is_none(),
            "a room removed meanwhile stays removed"
        );
        assert_eq!(reg.get("arena-01").unwrap().status, last);
        assert_eq!(reg.list(None).len(), 20);
    }

    #[test]
    fn a_ping_that_changes_nothing_durable_updates_memory_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let reg = Registry::open(&path).unwrap();
        reg.insert(room("arena-a")).unwrap();
        reg.apply("arena", "arena-a", &RoomEvent::Started, None)
            .unwrap();
        reg.ping("arena", "arena-a", PingStatus::Ready, None, 1, None)
            .unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        let meta = serde_json::json!({"map": "dust"});
        let out = reg
            .ping(
                "arena",
                "arena-a",
                PingStatus::Ready,
                Some(0),
                1,
                Some(meta.clone()),
            )
            .unwrap();
        assert_eq!((out.from, out.to), (RoomStatus::Ready, RoomStatus::Ready));
        let r = reg.get("arena-a").unwrap();
        assert_eq!(r.metadata, meta, "metadata taken");
        assert!(r.last_ping.is_some());
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            size,
            "nothing journaled"
        );
        assert_eq!(
            reg.allocate(&["arena"]).unwrap().map(|r| r.id).as_deref(),
            Some("arena-a"),
            "still in the free index"
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
