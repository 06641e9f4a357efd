//! The state directory's durable records: an append-only journal of keyed JSON records.
//!
//! Why a journal: a `kill -9` can land between any two instructions. Each record is one `write(2)`
//! of one line, so the file always holds every record whose write returned; a line torn by a crash
//! mid-write is the last one and is skipped on replay. Replay keeps the last value per key.
//! Compaction rewrites the live records to a temporary file and renames it over the journal, so
//! the journal is always either the old or the new file, never half of one.

use std::collections::BTreeMap;
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
    /// Lines in the file, to decide when compaction pays off.
    lines: usize,
    _values: PhantomData<V>,
}

/// Compact when the file holds this many times more lines than live records (plus slack), so a
/// busy journal is rewritten rarely and stays within a small multiple of its live size.
const COMPACT_FACTOR: usize = 4;
const COMPACT_SLACK: usize = 1024;

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
                    Some(v) => records.insert(rec.k, v),
                    None => records.remove(&rec.k),
                };
            }
        }
        drop_torn_tail(&path).map_err(io)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let mut journal = Self {
            path,
            file,
            lines,
            _values: PhantomData,
        };
        if journal.lines > records.len() * COMPACT_FACTOR + COMPACT_SLACK {
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
        self.file.write_all(&buf).map_err(|source| StoreError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.lines += 1;
        Ok(())
    }

    /// Whether the journal has grown enough against `live` records to be worth compacting.
    pub fn wants_compaction(&self, live: usize) -> bool {
        self.lines > live * COMPACT_FACTOR + COMPACT_SLACK
    }

    /// Rewrite the journal to hold exactly `records`.
    pub fn compact<'a>(
        &mut self,
        records: impl Iterator<Item = (&'a String, &'a V)>,
    ) -> Result<(), StoreError>
    where
        V: 'a,
    {
        let io = |source| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        let tmp = self.path.with_extension("compact");
        let mut out = std::io::BufWriter::new(File::create(&tmp).map_err(io)?);
        let mut n = 0;
        for (k, v) in records {
            let buf = serde_json::to_vec(&Line {
                k: k.clone(),
                v: Some(v),
            })
            .map_err(|source| StoreError::Encode {
                path: self.path.clone(),
                source,
            })?;
            out.write_all(&buf)
                .and_then(|_| out.write_all(b"\n"))
                .map_err(io)?;
            n += 1;
        }
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        fs::rename(&tmp, &self.path).map_err(io)?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        self.lines = n;
        Ok(())
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
}
