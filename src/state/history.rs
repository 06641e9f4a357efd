//! What the controller remembers across restarts besides rooms and operations: the revisions it
//! saw (valid or not, applied or not) and the schedulers a person suspended.
//!
//! Must hold: both survive `kill -9` (journaled before visible); the revision list is bounded to
//! the newest [`MAX_REVISIONS`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::state::journal::{Journal, StoreError};

/// Revisions remembered.
pub const MAX_REVISIONS: usize = 200;

/// One revision Troupe saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionRecord {
    pub id: String,
    /// Author and first line of the message, for git commits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Unix milliseconds when first seen.
    pub seen_at: u64,
    /// Number of validation errors; 0 for a good revision.
    pub errors: usize,
    /// Schedulers it declares (good revisions).
    pub schedulers: usize,
    /// Unix milliseconds when it became the revision that runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<u64>,
}

struct Inner {
    revisions: BTreeMap<String, RevisionRecord>,
    revisions_journal: Journal<RevisionRecord>,
    suspended: BTreeMap<String, u64>,
    suspended_journal: Journal<u64>,
}

pub struct History(Mutex<Inner>);

impl History {
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        let (revisions_journal, revisions) = Journal::open(state_dir.join("revisions.jsonl"))?;
        let (suspended_journal, suspended) = Journal::open(state_dir.join("suspended.jsonl"))?;
        Ok(Self(Mutex::new(Inner {
            revisions,
            revisions_journal,
            suspended,
            suspended_journal,
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record that a revision was seen (once per revision) and, when `good`, that it now runs.
    /// Returns whether the list changed.
    pub fn seen(
        &self,
        id: &str,
        commit: Option<String>,
        errors: usize,
        schedulers: usize,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let now = now_ms();
        let mut rec = inner.revisions.get(id).cloned().unwrap_or(RevisionRecord {
            id: id.to_string(),
            commit,
            seen_at: now,
            errors,
            schedulers,
            applied_at: None,
        });
        if errors == 0 && rec.applied_at.is_none() {
            rec.applied_at = Some(now);
        }
        if inner.revisions.get(id) == Some(&rec) {
            return Ok(false);
        }
        inner.revisions_journal.put(id, &rec)?;
        inner.revisions.insert(id.to_string(), rec);
        Self::bound(&mut inner)?;
        Ok(true)
    }

    /// Take the revisions recorded where the rooms run that this journal does not have (a
    /// replica that takes over learns what its predecessor saw).
    pub fn adopt_revisions(&self, recorded: Vec<RevisionRecord>) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for rec in recorded {
            if inner.revisions.contains_key(&rec.id) {
                continue;
            }
            inner.revisions_journal.put(&rec.id, &rec)?;
            inner.revisions.insert(rec.id.clone(), rec);
        }
        Self::bound(&mut inner)
    }

    /// Forget the oldest revisions past [`MAX_REVISIONS`]; compact the journal when it asks.
    fn bound(inner: &mut Inner) -> Result<(), StoreError> {
        while inner.revisions.len() > MAX_REVISIONS {
            let oldest = inner
                .revisions
                .values()
                .min_by_key(|r| r.seen_at)
                .map(|r| r.id.clone());
            let Some(oldest) = oldest else { break };
            inner.revisions_journal.remove(&oldest)?;
            inner.revisions.remove(&oldest);
        }
        if inner.revisions_journal.wants_compaction() {
            let Inner {
                revisions,
                revisions_journal,
                ..
            } = inner;
            revisions_journal.compact(revisions.iter())?;
        }
        Ok(())
    }

    /// Revisions, newest first.
    pub fn revisions(&self) -> Vec<RevisionRecord> {
        let mut out: Vec<RevisionRecord> = self.lock().revisions.values().cloned().collect();
        out.sort_by(|a, b| b.seen_at.cmp(&a.seen_at).then(b.id.cmp(&a.id)));
        out
    }

    /// Suspend applying git changes to a scheduler since `since_ms` (`Some`), or resume (`None`).
    pub fn set_suspended(&self, scheduler: &str, since_ms: Option<u64>) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if let Some(since) = since_ms {
            inner.suspended_journal.put(scheduler, &since)?;
            inner.suspended.insert(scheduler.to_string(), since);
        } else if inner.suspended.remove(scheduler).is_some() {
            inner.suspended_journal.remove(scheduler)?;
        }
        Ok(())
    }

    /// Take the suspensions recorded where the rooms run (a replica that takes over learns the
    /// ones its predecessor recorded). Returns the ones this journal has and they do not, with
    /// their times: journaled by a Troupe that did not record them there yet, for the caller to
    /// carry over.
    pub fn adopt_suspended(
        &self,
        recorded: &BTreeMap<String, u64>,
    ) -> Result<BTreeMap<String, u64>, StoreError> {
        for (scheduler, since) in recorded {
            if self.lock().suspended.get(scheduler) != Some(since) {
                self.set_suspended(scheduler, Some(*since))?;
            }
        }
        Ok(self
            .suspended()
            .into_iter()
            .filter(|(s, _)| !recorded.contains_key(s))
            .collect())
    }

    pub fn is_suspended(&self, scheduler: &str) -> bool {
        self.lock().suspended.contains_key(scheduler)
    }

    /// Suspended schedulers with when they were suspended (Unix milliseconds).
    pub fn suspended(&self) -> BTreeMap<String, u64> {
        self.lock().suspended.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_and_suspensions_survive_a_reopen_and_stay_bounded() {
        let dir = tempfile::tempdir().unwrap();
        {
            let h = History::open(dir.path()).unwrap();
            h.seen("bad", None, 2, 0).unwrap();
            h.seen("good", Some("ana: scale".into()), 0, 3).unwrap();
            h.seen("good", Some("ana: scale".into()), 0, 3).unwrap();
            h.set_suspended("arena", Some(1)).unwrap();
            h.set_suspended("racer", Some(2)).unwrap();
            h.set_suspended("racer", None).unwrap();
        }
        let h = History::open(dir.path()).unwrap();
        let revs = h.revisions();
        assert_eq!(revs.len(), 2);
        let good = revs.iter().find(|r| r.id == "good").unwrap();
        assert!(good.applied_at.is_some());
        assert!(
            revs.iter()
                .find(|r| r.id == "bad")
                .unwrap()
                .applied_at
                .is_none()
        );
        assert!(h.is_suspended("arena") && !h.is_suspended("racer"));
        for i in 0..MAX_REVISIONS + 5 {
            h.seen(&format!("r{i}"), None, 0, 1).unwrap();
        }
        assert_eq!(h.revisions().len(), MAX_REVISIONS);
    }

    #[test]
    fn revisions_recorded_elsewhere_are_added_once_journaled_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(dir.path()).unwrap();
        assert!(h.seen("mine", None, 0, 1).unwrap());
        assert!(
            !h.seen("mine", None, 0, 1).unwrap(),
            "seen again: no change"
        );
        let theirs: Vec<RevisionRecord> = (0..MAX_REVISIONS + 3)
            .map(|i| RevisionRecord {
                id: format!("r{i}"),
                commit: None,
                seen_at: i as u64,
                errors: 0,
                schedulers: 1,
                applied_at: Some(i as u64),
            })
            .collect();
        h.adopt_revisions(theirs).unwrap();
        let revs = h.revisions();
        assert_eq!(revs.len(), MAX_REVISIONS);
        assert!(revs.iter().any(|r| r.id == "mine"), "the newest is kept");
        assert!(!revs.iter().any(|r| r.id == "r0"), "the oldest went");
        drop(h);
        assert_eq!(
            History::open(dir.path()).unwrap().revisions(),
            revs,
            "journaled"
        );
    }

    #[test]
    fn suspensions_recorded_in_the_cluster_are_taken_and_the_journal_s_own_returned() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(dir.path()).unwrap();
        h.set_suspended("arena", Some(1)).unwrap();
        h.set_suspended("racer", Some(2)).unwrap();
        let recorded = BTreeMap::from([("racer".to_string(), 5), ("duel".to_string(), 7)]);
        let own = h.adopt_suspended(&recorded).unwrap();
        assert_eq!(own, BTreeMap::from([("arena".to_string(), 1)]));
        let all = BTreeMap::from([
            ("arena".to_string(), 1),
            ("duel".to_string(), 7),
            ("racer".to_string(), 5),
        ]);
        assert_eq!(h.suspended(), all);
        drop(h);
        assert_eq!(
            History::open(dir.path()).unwrap().suspended(),
            all,
            "journaled"
        );
    }
}
