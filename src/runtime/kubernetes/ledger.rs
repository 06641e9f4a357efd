//! Allocations recorded in the cluster before they are answered, many in one write.
//!
//! Each scheduler's namespace holds [`SHARDS`] ConfigMaps `troupe-allocations-N`; a room's entry
//! (room → the time it was allocated, Unix ms) is in the shard its name hashes to. The API server
//! takes a few hundred writes a second on a small control plane; one write per allocation would
//! make that the ceiling of allocation. So allocations of one shard that arrive while its previous
//! write is in flight wait for the next one, which carries them all (group commit), and each is
//! answered once that write succeeded. A write is a merge patch of the entries that change only,
//! and the shards are written side by side.
//!
//! Must always hold:
//! - An allocation is answered only after a write that holds its entry succeeded. Every write is a
//!   merge patch carrying the namespace's resourceVersion as a precondition, so a write based on
//!   a stale copy fails (409) and is redone from a fresh read: no entry is ever lost to a
//!   concurrent writer.
//! - An entry this replica neither wrote nor read back at start-up belongs to another replica
//!   (one that still believes it leads): the allocation of that room is refused as taken.
//! - An entry goes only once a newer status of its room has landed on the pod (the queue's write
//!   with a later `status-since`), or its pod is gone: at every moment the cluster holds the
//!   room's newest durable status in one of the two places. Discovery takes the newer of the
//!   two. The annotation holds at most one entry per live pod.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::oneshot;

use super::{Inner, api_reason, is_status};
use crate::runtime::AllocationRefused;

/// Shards per scheduler: writes in flight side by side, each a quarter of the entries.
pub const SHARDS: usize = 4;
/// The label that marks the shards (with Troupe's `managed-by`).
pub const LABEL_ALLOCATIONS: &str = "troupe.dev/allocations";
/// Writes of one batch before it is refused as "the shard kept changing".
const ATTEMPTS: usize = 8;

/// Room → when it was allocated (Unix ms).
pub type Entries = BTreeMap<String, u64>;

/// The name of shard `i`.
pub fn shard_name(i: usize) -> String {
    format!("troupe-allocations-{i}")
}

/// The shard of `room`: FNV-1a of its name, so that every replica, of every version, agrees.
pub fn shard_of(room: &str) -> usize {
    let hash = room.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % SHARDS as u64) as usize
}

/// The entries of one shard (an unreadable value is skipped).
pub fn entries_of(shard: &ConfigMap) -> Entries {
    shard
        .data
        .iter()
        .flatten()
        .filter_map(|(room, at)| Some((room.clone(), at.parse().ok()?)))
        .collect()
}

/// What one write changes: `(accepted per add, the entries after it)`. Pure.
///
/// `entries` is the annotation as read; `ours` the entries this replica wrote or read back;
/// `adds` the allocations to record; `drops` rooms whose newer status landed at `since`; `alive`
/// whether a room's pod still exists.
fn merge(
    mut entries: Entries,
    ours: &Entries,
    adds: &[(String, u64)],
    drops: &[(String, u64)],
    alive: impl Fn(&str) -> bool,
) -> (Vec<bool>, Entries) {
    let adding: HashSet<&str> = adds.iter().map(|(r, _)| r.as_str()).collect();
    entries.retain(|room, _| adding.contains(room.as_str()) || alive(room));
    for (room, landed) in drops {
        if let Some(at) = entries.get(room)
            && *at <= *landed
            && ours.get(room) == Some(at)
        {
            entries.remove(room);
        }
    }
    let accepted = adds
        .iter()
        .map(|(room, at)| match entries.get(room) {
            Some(held) if ours.get(room) != Some(held) => false,
            _ => {
                entries.insert(room.clone(), *at);
                true
            }
        })
        .collect();
    (accepted, entries)
}

type Answer = oneshot::Sender<Result<(), AllocationRefused>>;

/// One shard's book.
#[derive(Default)]
struct Book {
    /// The shard as last written, with its resourceVersion after that write.
    known: Option<(String, Entries)>,
    /// Entries this replica wrote or read back: it may replace or drop them.
    ours: Entries,
    adds: Vec<(String, u64, Answer)>,
    drops: Vec<(String, u64)>,
    /// A write is under way; its writer takes what waits when it is done.
    writing: bool,
}

/// Every shard's book, by namespace and shard.
#[derive(Default)]
pub struct Ledger {
    books: Mutex<HashMap<(String, usize), Book>>,
}

impl Ledger {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, usize), Book>> {
        self.books.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Entries read back from the cluster at start-up: this replica may replace and drop them.
    pub(super) fn adopt(&self, namespace: &str, entries: Entries) {
        let mut books = self.lock();
        for (room, at) in entries {
            let book = books
                .entry((namespace.to_owned(), shard_of(&room)))
                .or_default();
            book.ours.insert(room, at);
            book.known = None;
        }
    }

    /// Create (or read) the shards of a namespace Troupe just started using, so that its first
    /// allocations do not wait for that. Best effort: a shard that fails is created by its first
    /// write.
    pub(super) async fn prepare(&self, client: &kube::Client, namespace: &str) {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        for shard in 0..SHARDS {
            let Ok(known) = read_or_create(&api, &shard_name(shard)).await else {
                continue;
            };
            let mut books = self.lock();
            let book = books.entry((namespace.to_owned(), shard)).or_default();
            if !book.writing && book.known.is_none() {
                book.known = Some(known);
            }
        }
    }

    /// Record `room`'s allocation at `at`; returns once it is in the cluster, or why not. The
    /// writes run on a task of their own: a caller that goes away (a matchmaker that hung up)
    /// cannot leave the namespace's writer half done.
    pub(super) async fn record(
        inner: &Arc<Inner>,
        namespace: &str,
        room: &str,
        at: u64,
    ) -> Result<(), AllocationRefused> {
        let (tx, rx) = oneshot::channel();
        let key = (namespace.to_owned(), shard_of(room));
        let write = {
            let mut books = inner.ledger.lock();
            let book = books.entry(key.clone()).or_default();
            book.adds.push((room.to_owned(), at, tx));
            !std::mem::replace(&mut book.writing, true)
        };
        if write {
            Self::spawn_write(inner, key);
        }
        rx.await.unwrap_or_else(|_| {
            Err(AllocationRefused::Unavailable(
                "the allocation's write was abandoned".into(),
            ))
        })
    }

    /// A status of `room` newer than its allocation landed on its pod at `since`: its entry may
    /// go (with the namespace's next write, started now when none is under way).
    pub(super) fn landed(inner: &Arc<Inner>, namespace: &str, room: &str, since: u64) {
        let key = (namespace.to_owned(), shard_of(room));
        let write = {
            let mut books = inner.ledger.lock();
            let Some(book) = books.get_mut(&key) else {
                return;
            };
            if book.ours.get(room).is_none_or(|at| *at > since) {
                return;
            }
            book.drops.push((room.to_owned(), since));
            !std::mem::replace(&mut book.writing, true)
        };
        if write {
            Self::spawn_write(inner, key);
        }
    }

    fn spawn_write(inner: &Arc<Inner>, key: (String, usize)) {
        let inner = Arc::clone(inner);
        tokio::spawn(async move { inner.ledger.write(&inner, &key).await });
    }

    /// Write what waits for shard `key`, batch after batch, until nothing does. Only one task at
    /// a time per shard (the one whose caller set `writing`).
    async fn write(&self, inner: &Inner, key: &(String, usize)) {
        let namespace = key.0.as_str();
        loop {
            let (adds, drops, known, ours) = {
                let mut books = self.lock();
                let book = books.entry(key.clone()).or_default();
                if book.adds.is_empty() && book.drops.is_empty() {
                    book.writing = false;
                    return;
                }
                (
                    std::mem::take(&mut book.adds),
                    std::mem::take(&mut book.drops),
                    book.known.take(),
                    book.ours.clone(),
                )
            };
            let wanted: Vec<(String, u64)> =
                adds.iter().map(|(r, at, _)| (r.clone(), *at)).collect();
            let began = std::time::Instant::now();
            let result = write_batch(inner, key, known, &ours, &wanted, &drops).await;
            tracing::debug!(%namespace, shard = key.1, adds = wanted.len(), drops = drops.len(),
                took = ?began.elapsed(), ok = result.is_ok(), "allocations recorded");
            let mut books = self.lock();
            let book = books.entry(key.clone()).or_default();
            match result {
                Ok((version, entries, accepted)) => {
                    book.ours.retain(|room, at| entries.get(room) == Some(at));
                    for ((room, at, answer), ok) in adds.into_iter().zip(accepted) {
                        if ok {
                            book.ours.insert(room, at);
                            let _ = answer.send(Ok(()));
                        } else {
                            let _ = answer.send(Err(AllocationRefused::Taken));
                        }
                    }
                    book.known = Some((version, entries));
                }
                Err(why) => {
                    // Drops are kept for the next write; the allocations are refused.
                    book.drops.extend(drops);
                    for (_, _, answer) in adds {
                        let _ = answer.send(Err(AllocationRefused::Unavailable(why.clone())));
                    }
                    if book.adds.is_empty() {
                        book.writing = false;
                        return;
                    }
                }
            }
        }
    }
}

/// One batch: read (unless `known` is fresh; creating the shard when it is missing), merge,
/// write the entries that change with the resourceVersion read; a conflict reads again. The
/// shard's new resourceVersion, its entries, and which adds were accepted.
async fn write_batch(
    inner: &Inner,
    (namespace, shard): &(String, usize),
    mut known: Option<(String, Entries)>,
    ours: &Entries,
    adds: &[(String, u64)],
    drops: &[(String, u64)],
) -> Result<(String, Entries, Vec<bool>), String> {
    let api: Api<ConfigMap> = Api::namespaced(inner.client.clone(), namespace);
    let name = shard_name(*shard);
    for _ in 0..ATTEMPTS {
        let (version, before) = match known.take() {
            Some(k) => k,
            None => match read_or_create(&api, &name).await {
                Ok(k) => k,
                Err(e) => return Err(api_reason(&e)),
            },
        };
        let alive = |room: &str| {
            inner
                .pods
                .get(&kube::runtime::reflector::ObjectRef::new(room).within(namespace))
                .is_some()
        };
        let (accepted, after) = merge(before.clone(), ours, adds, drops, alive);
        // Only what changes: a room's time, or null for a room that goes.
        let mut data = serde_json::Map::new();
        for (room, at) in &after {
            if before.get(room) != Some(at) {
                data.insert(room.clone(), at.to_string().into());
            }
        }
        for room in before.keys().filter(|r| !after.contains_key(*r)) {
            data.insert(room.clone(), serde_json::Value::Null);
        }
        if data.is_empty() {
            return Ok((version, after, accepted));
        }
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": version},
            "data": data,
        });
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(cm) => return Ok((cm.resource_version().unwrap_or_default(), after, accepted)),
            Err(e) if is_status(&e, |s| s.is_conflict()) => continue,
            Err(e) => return Err(api_reason(&e)),
        }
    }
    Err(format!("{namespace}/{name} kept changing"))
}

/// A shard as the API server has it, created empty when missing: its resourceVersion and entries.
async fn read_or_create(
    api: &Api<ConfigMap>,
    name: &str,
) -> Result<(String, Entries), kube::Error> {
    if let Some(cm) = api.get_opt(name).await? {
        return Ok((cm.resource_version().unwrap_or_default(), entries_of(&cm)));
    }
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_owned());
    cm.metadata.labels = Some(
        [
            (
                super::pod::MANAGED_BY.to_owned(),
                super::pod::MANAGER.to_owned(),
            ),
            (LABEL_ALLOCATIONS.to_owned(), "true".to_owned()),
        ]
        .into(),
    );
    match api.create(&PostParams::default(), &cm).await {
        Ok(cm) => Ok((cm.resource_version().unwrap_or_default(), Entries::new())),
        Err(e) if is_status(&e, |s| s.is_already_exists()) => {
            let cm = api.get(name).await?;
            Ok((cm.resource_version().unwrap_or_default(), entries_of(&cm)))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(list: &[(&str, u64)]) -> Entries {
        list.iter().map(|(r, at)| (r.to_string(), *at)).collect()
    }

    fn adds(list: &[(&str, u64)]) -> Vec<(String, u64)> {
        list.iter().map(|(r, at)| (r.to_string(), *at)).collect()
    }

    #[test]
    fn rooms_spread_over_the_shards_and_keep_theirs() {
        let mut seen = [0usize; SHARDS];
        for i in 0..400 {
            seen[shard_of(&format!("arena-{i:05}"))] += 1;
        }
        assert!(seen.iter().all(|n| (60..140).contains(n)), "{seen:?}");
        // Pinned (FNV-1a, computed apart): replicas of different versions must agree.
        assert_eq!(shard_of("arena-abcde"), 2);
        assert_eq!(shard_of("room-1"), 0);
        assert_eq!(shard_name(2), "troupe-allocations-2");
    }

    #[test]
    fn another_replicas_entry_refuses_the_room_and_ours_are_replaced() {
        let read = entries(&[("a", 10), ("b", 20)]);
        let ours = entries(&[("a", 10)]);
        let (accepted, written) = merge(
            read,
            &ours,
            &adds(&[("a", 30), ("b", 31), ("c", 32)]),
            &[],
            |_| true,
        );
        assert_eq!(accepted, [true, false, true], "b is another replica's");
        assert_eq!(written, entries(&[("a", 30), ("b", 20), ("c", 32)]));
    }

    #[test]
    fn an_entry_goes_only_after_a_newer_status_landed_and_with_its_pod() {
        let read = entries(&[("a", 10), ("b", 20), ("gone", 5), ("theirs", 1)]);
        let ours = entries(&[("a", 10), ("b", 20), ("gone", 5)]);
        let drops = adds(&[("a", 15), ("b", 19), ("theirs", 99)]);
        let (_, written) = merge(read, &ours, &[], &drops, |room| room != "gone");
        assert_eq!(
            written,
            entries(&[("b", 20), ("theirs", 1)]),
            "a's newer status landed; b's landed status is older than its allocation; another \
             replica's entry is not ours to drop; a room without a pod has no entry"
        );
    }
}
