//! The state directory's durable records: an append-only journal of keyed JSON records.
//!
//! Why a journal: a `kill -9` can land between any two instructions. Each record is one `write(2)`
//! of one line, so the file always holds every record whose write returned; a line torn by a crash
//! mid-write is the last one and is skipped on replay. Replay keeps the last value per key.
//! Compaction rewrites the live records to a temporary file and renames it over the journal, so
//! the journal is always either the old or the new file, never half of one. A busy owner rewrites
//! in two phases ([`Journal::begin_rewrite`]): the snapshot is written without its lock while
//! writes go on, and what they wrote meanwhile follows the snapshot in the new file.
//!
//! Must always hold: the file never grows past [`COMPACT_FACTOR`] times the bytes of its live
//! records plus [`COMPACT_SLACK_BYTES`] for longer than one write (or one running rewrite), as
//! long as its owner compacts when [`Journal::wants_compaction`] says so (every owner does, after
//! the write that crossed the line, with its records in memory up to date).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Errors reading or writing the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The journal file could not be opened, read or written.
    #[error("state file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A record could not be encoded.
    #[error("encoding a record for {path}: {source}")]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Serialize, Deserialize)]
struct Line<V> {
    k: String,
    #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
    v: Option<V>,
}

/// An append-only journal of `key → value` records.
pub struct Journal<V> {
    path: PathBuf,
    file: File,
    /// Bytes in the file.
    bytes: u64,
    /// Bytes of each key's newest line: what a compaction would keep.
    live: HashMap<String, u64>,
    live_bytes: u64,
    /// What was written since the running rewrite's snapshot, if one runs.
    rewriting: Option<Tail>,
    /// After a failed rewrite, the next is not tried before the file reaches this size, so that
    /// a full disk does not turn every write into a rewrite.
    retry_at_bytes: u64,
    /// Tests set it to make writes fail, as a full or broken disk would: `Some(n)` lets `n` more
    /// writes through, then fails every one.
    #[cfg(test)]
    pub(crate) fail_after: Option<u32>,
    _values: PhantomData<V>,
}

/// Compact when the file is this many times larger than its live records (plus the slack): a
/// compaction rewrites the live records once, so at most one byte is rewritten per byte appended.
pub const COMPACT_FACTOR: u64 = 2;
/// Bytes a journal may hold beyond [`COMPACT_FACTOR`] times its live records, so that a small,
/// busy journal (a few rooms pinging status changes) is not rewritten on every few writes.
pub const COMPACT_SLACK_BYTES: u64 = 4 << 20;

impl<V: Serialize + DeserializeOwned> Journal<V> {
    /// Open (or create) the journal at `path` and replay it.
    pub fn open(path: impl AsRef<Path>) -> Result<(Self, BTreeMap<String, V>), StoreError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io)?;
        }
        let mut records = BTreeMap::new();
        let mut live = HashMap::new();
        let mut lines = 0;
        if path.exists() {
            let reader = BufReader::new(File::open(&path).map_err(io)?);
            for line in reader.lines() {
                let line = line.map_err(io)?;
                lines += 1;
                // A torn last line (crash mid-write) or a foreign line is skipped, not fatal.
                let Ok(rec) = serde_json::from_str::<Line<V>>(&line) else {
                    tracing::warn!(path = %path.display(), line = lines, "skipping unreadable journal line");
                    continue;
                };
                match rec.v {
                    Some(v) => {
                        live.insert(rec.k.clone(), line.len() as u64 + 1);
                        records.insert(rec.k, v);
                    }
                    None => {
                        live.remove(&rec.k);
                        records.remove(&rec.k);
                    }
                };
            }
        }
        drop_torn_tail(&path).map_err(io)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let bytes = file.metadata().map_err(io)?.len();
        let live_bytes = live.values().sum();
        let mut journal = Self {
            path,
            file,
            bytes,
            live,
            live_bytes,
            rewriting: None,
            retry_at_bytes: 0,
            #[cfg(test)]
            fail_after: None,
            _values: PhantomData,
        };
        if journal.wants_compaction() {
            journal.compact(records.iter())?;
        }
        Ok((journal, records))
    }

    /// Record the value of `key`.
    pub fn put(&mut self, key: &str, value: &V) -> Result<(), StoreError> {
        self.append(&Line {
            k: key.to_string(),
            v: Some(value),
        })
    }

    /// Record that `key` is gone.
    pub fn remove(&mut self, key: &str) -> Result<(), StoreError> {
        self.append(&Line::<&V> {
            k: key.to_string(),
            v: None,
        })
    }

    fn append<T: Serialize>(&mut self, line: &Line<T>) -> Result<(), StoreError> {
        let mut buf = serde_json::to_vec(line).map_err(|source| StoreError::Encode {
            path: self.path.clone(),
            source,
        })?;
        buf.push(b'\n');
        #[cfg(test)]
        if let Some(n) = self.fail_after.as_mut()
            && std::mem::replace(n, n.saturating_sub(1)) == 0
        {
            return Err(StoreError::Io {
                path: self.path.clone(),
                source: std::io::Error::other("injected write failure"),
            });
        }
        self.file.write_all(&buf).map_err(|source| StoreError::Io {
            path: self.path.clone(),
            source,
        })?;
        let len = buf.len() as u64;
        self.bytes += len;
        if let Some(tail) = &mut self.rewriting {
            tail.bytes.extend_from_slice(&buf);
            tail.lines
                .push((line.k.clone(), line.v.is_some().then_some(len)));
        }
        let old = if line.v.is_some() {
            match self.live.get_mut(&line.k) {
                Some(size) => std::mem::replace(size, len),
                None => {
                    self.live.insert(line.k.clone(), len);
                    0
                }
            }
        } else {
            self.live.remove(&line.k).unwrap_or(0)
        };
        self.live_bytes = self.live_bytes - old + if line.v.is_some() { len } else { 0 };
        Ok(())
    }

    /// Whether the file has grown enough beyond its live records to be worth compacting.
    /// Never while a rewrite runs: that rewrite is the compaction.
    pub fn wants_compaction(&self) -> bool {
        self.rewriting.is_none()
            && self.bytes >= self.retry_at_bytes
            && self.bytes > self.live_bytes * COMPACT_FACTOR + COMPACT_SLACK_BYTES
    }

    /// Where the journal is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the file now.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Rewrite the journal to hold exactly `records`, in one go (the owner's lock held
    /// throughout). See [`Journal::begin_rewrite`] for a rewrite that runs beside writes; while
    /// one runs, this does nothing (that rewrite is the compaction).
    pub fn compact<'a>(
        &mut self,
        records: impl Iterator<Item = (&'a String, &'a V)>,
    ) -> Result<(), StoreError>
    where
        V: 'a,
    {
        let Some(rewrite) = self.begin_rewrite() else {
            return Ok(());
        };
        let written = rewrite.write(records);
        self.finish_rewrite(written)
    }

    /// Start rewriting the journal while it keeps taking writes: write a snapshot of the records
    /// as they are now with [`Rewrite::write`] (no lock needed), then hand the result to
    /// [`Journal::finish_rewrite`]. Every record put or removed in between goes to the journal as
    /// usual and is also kept aside, to follow the snapshot in the new file. `None` when a rewrite
    /// is already running.
    pub fn begin_rewrite(&mut self) -> Option<Rewrite> {
        if self.rewriting.is_some() {
            return None;
        }
        self.rewriting = Some(Tail::default());
        Some(Rewrite {
            path: self.path.clone(),
        })
    }

    /// Whether a rewrite started by [`Journal::begin_rewrite`] has not finished yet.
    pub fn rewriting(&self) -> bool {
        self.rewriting.is_some()
    }

    /// End the running rewrite: append what was written since its snapshot and put the new file
    /// in place of the journal. When the snapshot could not be written, the journal stays the old
    /// file, which holds every record, and the error is returned.
    pub fn finish_rewrite(
        &mut self,
        written: Result<Written, StoreError>,
    ) -> Result<(), StoreError> {
        let tail = self.rewriting.take().unwrap_or_default();
        let tmp = self.path.with_extension("compact");
        let io = |source| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        let result = written.and_then(|Written { mut file, mut live }| {
            file.write_all(&tail.bytes).map_err(io)?;
            file.sync_all().map_err(io)?;
            fs::rename(&tmp, &self.path).map_err(io)?;
            for (key, len) in tail.lines {
                match len {
                    Some(len) => live.insert(key, len),
                    None => live.remove(&key),
                };
            }
            Ok(live)
        });
        let live = match result {
            Ok(live) => live,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                self.retry_at_bytes = self.bytes + COMPACT_SLACK_BYTES;
                return Err(e);
            }
        };
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        self.bytes = self.file.metadata().map_err(io)?.len();
        self.live_bytes = live.values().sum();
        self.live = live;
        Ok(())
    }
}

/// Records written while a rewrite runs: the bytes, and each line's key and length (`None` for a
/// removal), to follow the snapshot in the new file.
#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
    lines: Vec<(String, Option<u64>)>,
}

/// A rewrite of a journal in progress (see [`Journal::begin_rewrite`]).
pub struct Rewrite {
    path: PathBuf,
}

/// A snapshot written by [`Rewrite::write`], ready to replace the journal.
pub struct Written {
    file: File,
    live: HashMap<String, u64>,
}

impl Rewrite {
    /// The journal being rewritten.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write `records` (the journal's live records as of [`Journal::begin_rewrite`]) to the new
    /// file.
    pub fn write<'a, V: Serialize + 'a>(
        &self,
        records: impl Iterator<Item = (&'a String, &'a V)>,
    ) -> Result<Written, StoreError> {
        let io = |source| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        let tmp = self.path.with_extension("compact");
        let mut out = std::io::BufWriter::new(File::create(&tmp).map_err(io)?);
        let mut live = HashMap::new();
        for (k, v) in records {
            let mut buf = serde_json::to_vec(&Line {
                k: k.clone(),
                v: Some(v),
            })
            .map_err(|source| StoreError::Encode {
                path: self.path.clone(),
                source,
            })?;
            buf.push(b'\n');
            out.write_all(&buf).map_err(io)?;
            live.insert(k.clone(), buf.len() as u64);
        }
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        Ok(Written { file, live })
    }
}

/// Cut a last line that a crash left without its newline, so the next record starts clean.
fn drop_torn_tail(path: &Path) -> std::io::Result<()> {
    let Ok(bytes) = fs::read(path) else {
        return Ok(());
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    OpenOptions::new()
        .write(true)
        .open(path)?
        .set_len(keep as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_keeps_the_last_value_and_forgets_removed_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        {
            let (mut j, recs) = Journal::<u32>::open(&path).unwrap();
            assert!(recs.is_empty());
            j.put("a", &1).unwrap();
            j.put("b", &2).unwrap();
            j.put("a", &3).unwrap();
            j.remove("b").unwrap();
        }
        let (_, recs) = Journal::<u32>::open(&path).unwrap();
        assert_eq!(
            recs.into_iter().collect::<Vec<_>>(),
            vec![("a".to_string(), 3)]
        );
    }

    #[test]
    fn a_line_torn_by_a_crash_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        fs::write(&path, "{\"k\":\"a\",\"v\":1}\n{\"k\":\"b\",\"v\":").unwrap();
        let (mut j, recs) = Journal::<u32>::open(&path).unwrap();
        assert_eq!(recs.len(), 1);
        j.put("c", &5).unwrap();
        drop(j);
        let (_, recs) = Journal::<u32>::open(&path).unwrap();
        assert_eq!(
            recs.get("c"),
            Some(&5),
            "records after a torn line must survive"
        );
    }

    #[test]
    fn a_journal_rewritten_in_place_stays_a_small_multiple_of_its_live_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let (mut j, _) = Journal::<String>::open(&path).unwrap();
        let mut live = BTreeMap::new();
        let value = "x".repeat(200);
        let mut compactions = 0;
        for i in 0..200_000 {
            let key = format!("room-{}", i % 100);
            j.put(&key, &value).unwrap();
            live.insert(key, value.clone());
            if j.wants_compaction() {
                j.compact(live.iter()).unwrap();
                compactions += 1;
            }
        }
        let size = fs::metadata(&path).unwrap().len();
        assert_eq!(size, j.bytes(), "the journal counts what it wrote");
        assert!(
            size <= COMPACT_SLACK_BYTES + 2 * 100 * 230,
            "{size} bytes for 100 live records"
        );
        assert!(compactions >= 8, "{compactions} compactions");
        drop(j);
        let (_, recs) = Journal::<String>::open(&path).unwrap();
        assert_eq!(recs, live);
    }

    #[test]
    fn compaction_keeps_exactly_the_live_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let (mut j, _) = Journal::<u32>::open(&path).unwrap();
        for i in 0..100 {
            j.put("x", &i).unwrap();
        }
        let live: BTreeMap<String, u32> = [("x".to_string(), 99)].into();
        j.compact(live.iter()).unwrap();
        j.put("y", &1).unwrap();
        drop(j);
        assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 2);
        let (_, recs) = Journal::<u32>::open(&path).unwrap();
        assert_eq!(recs.get("x"), Some(&99));
        assert_eq!(recs.get("y"), Some(&1));
    }

    #[test]
    fn records_written_during_a_rewrite_follow_its_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let (mut j, _) = Journal::<u32>::open(&path).unwrap();
        for i in 0..10 {
            j.put("a", &i).unwrap();
        }
        j.put("b", &2).unwrap();
        let snapshot: BTreeMap<String, u32> = [("a".to_string(), 9), ("b".to_string(), 2)].into();
        let rewrite = j.begin_rewrite().unwrap();
        assert!(j.begin_rewrite().is_none(), "one rewrite at a time");
        j.put("c", &7).unwrap();
        let written = rewrite.write(snapshot.iter());
        j.put("a", &10).unwrap();
        j.remove("b").unwrap();
        j.finish_rewrite(written).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().count(),
            5,
            "snapshot, then what came after:\n{text}"
        );
        assert_eq!(
            j.bytes(),
            text.len() as u64,
            "the journal counts the new file"
        );
        j.put("d", &1).unwrap();
        drop(j);
        let (_, recs) = Journal::<u32>::open(&path).unwrap();
        let want: BTreeMap<String, u32> = [
            ("a".to_string(), 10),
            ("c".to_string(), 7),
            ("d".to_string(), 1),
        ]
        .into();
        assert_eq!(recs, want);
    }

    #[test]
    fn a_failed_rewrite_keeps_the_journal_and_waits_before_trying_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let (mut j, _) = Journal::<String>::open(&path).unwrap();
        let value = "x".repeat(1000);
        while !j.wants_compaction() {
            j.put("a", &value).unwrap();
        }
        let before = fs::read(&path).unwrap();
        let rewrite = j.begin_rewrite().unwrap();
        drop(rewrite);
        j.finish_rewrite(Err(StoreError::Io {
            path: path.clone(),
            source: std::io::Error::other("disk full"),
        }))
        .unwrap_err();
        assert_eq!(fs::read(&path).unwrap(), before, "the journal is untouched");
        assert!(!path.with_extension("compact").exists());
        j.put("a", &value).unwrap();
        assert!(!j.wants_compaction(), "not retried on the next write");
        for _ in 0..(COMPACT_SLACK_BYTES / 1000) {
            j.put("a", &value).unwrap();
        }
        assert!(
            j.wants_compaction(),
            "retried once the journal grew further"
        );
    }

    /// A `kill -9` in the middle of a rewrite (snapshot written, not renamed yet) loses nothing:
    /// the journal is still the old file, which got every record, and the half-done snapshot
    /// is ignored and overwritten by the next rewrite.
    #[test]
    fn a_crash_during_a_rewrite_leaves_the_journal_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let (mut j, _) = Journal::<u32>::open(&path).unwrap();
        j.put("a", &1).unwrap();
        let rewrite = j.begin_rewrite().unwrap();
        let snapshot: BTreeMap<String, u32> = [("a".to_string(), 1)].into();
        let _written = rewrite.write(snapshot.iter()).unwrap();
        j.put("b", &2).unwrap();
        drop(j); // the process dies here: no finish_rewrite
        assert!(
            path.with_extension("compact").exists(),
            "the snapshot was left behind"
        );
        let (mut j, recs) = Journal::<u32>::open(&path).unwrap();
        let want: BTreeMap<String, u32> = [("a".to_string(), 1), ("b".to_string(), 2)].into();
        assert_eq!(recs, want);
        j.compact(recs.iter()).unwrap();
        drop(j);
        let (_, recs) = Journal::<u32>::open(&path).unwrap();
        assert_eq!(recs, want, "the next rewrite replaced the stale snapshot");
    }
}
