//! The queue of writes that make the cluster alone enough to rebuild the fleet: each room's status
//! on its pod, each applied spec on its scheduler's namespace, each operation in its scheduler's
//! operations ConfigMap.
//!
//! Must always hold: pushing never waits and never does I/O (it runs on the registry's status
//! path, under pings); the queue holds at most one write per pod, per namespace and per
//! operation — a newer write replaces an older one not yet sent — so it is bounded by the number
//! of rooms, schedulers and operations kept, and the cluster always ends up with the newest value. At most one write per
//! target is in flight at a time, so two writes of one pod never land out of order.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::domain::room::RoomStatus;

/// Where a write goes: an object of a scheduler's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub namespace: String,
    pub object: Object,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Object {
    /// A room's pod, by name.
    Pod(String),
    /// The namespace itself.
    Namespace,
    /// An operation's entry in the operations ConfigMap, by operation id.
    Operation(String),
    /// The scheduler's Scheduler resource (its status).
    Status,
    /// The controller's revisions ConfigMap (in the controller's own namespace).
    Revisions,
}

/// One write, with how often it was tried.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub what: What,
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum What {
    /// A room's status (label), when it changed (annotation), and its match count.
    Room {
        status: RoomStatus,
        since_ms: u64,
        matches: u32,
    },
    /// A scheduler's applied spec (JSON), or its removal.
    Scheduler {
        scheduler: String,
        applied: Option<String>,
    },
    /// The revisions seen, JSON.
    Revisions(String),
    /// A scheduler's summary, for its Scheduler resource's status.
    Status {
        scheduler: String,
        status: serde_json::Value,
    },
    /// An operation (JSON), and older operations of its scheduler to drop from the record.
    Operation {
        scheduler: String,
        record: String,
        drop: Vec<String>,
    },
}

#[derive(Default)]
struct Writes {
    pending: HashMap<Target, Write>,
    in_flight: HashSet<Target>,
}

/// Writes waiting to be sent, newest per target, and the targets being written.
#[derive(Default)]
pub struct Queue {
    writes: Mutex<Writes>,
    wake: Notify,
    /// A write finished: a drain waiting looks again.
    landed: Notify,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Writes> {
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue a write; it replaces any write for the same target not sent yet.
    pub fn push(&self, target: Target, what: What) {
        self.lock()
            .pending
            .insert(target, Write { what, attempts: 0 });
        self.wake.notify_one();
    }

    /// Queue a failed write again, unless a newer one for its target arrived meanwhile.
    pub fn retry(&self, target: Target, write: Write) {
        self.lock().pending.entry(target).or_insert(write);
        self.wake.notify_one();
    }

    /// Everything waiting whose target is not being written, taken out of the queue and marked
    /// in flight until [`Queue::done`].
    pub fn take(&self) -> Vec<(Target, Write)> {
        let mut w = self.lock();
        let Writes { pending, in_flight } = &mut *w;
        let ready: Vec<Target> = pending
            .keys()
            .filter(|t| !in_flight.contains(*t))
            .cloned()
            .collect();
        ready
            .into_iter()
            .filter_map(|t| {
                let write = pending.remove(&t)?;
                in_flight.insert(t.clone());
                Some((t, write))
            })
            .collect()
    }

    /// The write of `target` has landed (or failed): the next one may go.
    pub fn done(&self, target: &Target) {
        self.lock().in_flight.remove(target);
        self.landed.notify_waiters();
        self.wake.notify_one();
    }

    /// Returns once nothing waits and nothing is in flight.
    pub async fn drained(&self) {
        loop {
            let landed = self.landed.notified();
            {
                let w = self.lock();
                if w.pending.is_empty() && w.in_flight.is_empty() {
                    return;
                }
            }
            landed.await;
        }
    }

    /// Writes that have not landed yet: waiting, or taken by the writer and not done.
    pub fn depth(&self) -> usize {
        let w = self.lock();
        w.pending.len() + w.in_flight.len()
    }

    /// Wait until something was pushed since the last wait.
    pub async fn wait(&self) {
        self.wake.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(status: RoomStatus) -> What {
        What::Room {
            status,
            since_ms: 1,
            matches: 0,
        }
    }

    fn target(pod: &str) -> Target {
        Target {
            namespace: "arena".into(),
            object: Object::Pod(pod.into()),
        }
    }

    #[test]
    fn the_newest_write_per_target_wins_and_a_retry_never_overwrites_it() {
        let q = Queue::default();
        q.push(target("a"), room(RoomStatus::Unready));
        q.push(target("a"), room(RoomStatus::Ready));
        q.push(target("b"), room(RoomStatus::Ready));
        assert_eq!(q.depth(), 2);
        let mut taken = q.take();
        taken.sort_by(|x, y| format!("{:?}", x.0.object).cmp(&format!("{:?}", y.0.object)));
        assert_eq!(taken[0].1.what, room(RoomStatus::Ready));
        q.done(&target("a"));

        q.push(target("a"), room(RoomStatus::Occupied));
        q.retry(
            target("a"),
            Write {
                what: room(RoomStatus::Ready),
                attempts: 1,
            },
        );
        assert_eq!(q.take()[0].1.what, room(RoomStatus::Occupied));
    }

    /// The writer takes every waiting write at once and sends them a few at a time: a depth of
    /// only the writes not taken read 0 while hundreds were still to be sent.
    #[test]
    fn depth_counts_writes_taken_until_they_are_done() {
        let q = Queue::default();
        q.push(target("a"), room(RoomStatus::Ready));
        q.push(target("b"), room(RoomStatus::Ready));
        let taken = q.take();
        assert_eq!(q.depth(), 2, "taken, not landed");
        q.push(target("a"), room(RoomStatus::Occupied));
        assert_eq!(
            q.depth(),
            3,
            "a's next write waits behind the one in flight"
        );
        for (t, _) in &taken {
            q.done(t);
        }
        assert_eq!(q.depth(), 1);
        let _ = q.take();
        q.done(&target("a"));
        assert_eq!(q.depth(), 0);
    }

    /// Two writes of one pod must never be in flight together: the later could land first.
    #[tokio::test]
    async fn a_target_being_written_waits_and_a_drain_waits_for_every_write() {
        let q = std::sync::Arc::new(Queue::default());
        q.push(target("a"), room(RoomStatus::Ready));
        assert_eq!(q.take().len(), 1);
        q.push(target("a"), room(RoomStatus::Occupied));
        assert!(q.take().is_empty(), "a is in flight");
        let drained = tokio::spawn({
            let q = q.clone();
            async move { q.drained().await }
        });
        tokio::task::yield_now().await;
        q.done(&target("a"));
        let next = q.take();
        assert_eq!(
            next[0].1.what,
            room(RoomStatus::Occupied),
            "a's next write goes now"
        );
        tokio::task::yield_now().await;
        assert!(!drained.is_finished(), "a write is still in flight");
        q.done(&target("a"));
        drained.await.unwrap();
    }
}
