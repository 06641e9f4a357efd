//! Directory source: scheduler files as they are on disk now (no git involved).
//!
//! Must hold: the revision is a pure function of the delivered files (paths and contents), so an
//! unchanged directory always yields the same revision and any change yields a new one. Symbolic
//! links to directories are followed, but never deeper than [`MAX_DEPTH`] (a link cycle ends).

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Snapshot, Source, SourceError, SourceFile, wanted};

/// Deepest directory nesting read below the root; deeper is surely a link cycle.
const MAX_DEPTH: usize = 32;
/// Hex characters of the content hash kept in a directory revision (48 bits: plenty to tell the
/// revisions of one directory apart).
const REVISION_HEX_LEN: usize = 12;

/// The scheduler files below `root` on disk. `root` may also be a single file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSource {
    pub root: PathBuf,
}

impl DirSource {
    fn collect(
        &self,
        dir: &Path,
        prefix: &str,
        depth: usize,
        out: &mut Vec<SourceFile>,
    ) -> Result<(), SourceError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SourceError::Io { path, source }
        };
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let relative = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let path = entry.path();
            // `metadata` follows links: a linked directory or file counts as what it points to.
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                if depth < MAX_DEPTH {
                    self.collect(&path, &relative, depth + 1, out)?;
                }
            } else if meta.is_file() && wanted(&relative) {
                out.push(read_file(&path, relative)?);
            }
        }
        Ok(())
    }
}

fn read_file(path: &Path, relative: String) -> Result<SourceFile, SourceError> {
    let bytes = fs::read(path).map_err(|source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let contents = String::from_utf8(bytes).map_err(|_| SourceError::NotUtf8 {
        path: relative.clone(),
    })?;
    Ok(SourceFile {
        path: relative,
        contents,
    })
}

/// `dir-` and a short sha256 of every path and content, each length-prefixed so no two different
/// file sets hash the same bytes.
pub(super) fn revision_of(files: &[SourceFile]) -> String {
    let mut hash = Sha256::new();
    for file in files {
        for part in [file.path.as_bytes(), file.contents.as_bytes()] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part);
        }
    }
    let hex = hex::encode(hash.finalize());
    format!("dir-{}", &hex[..REVISION_HEX_LEN])
}

impl Source for DirSource {
    fn load(&self) -> Result<Snapshot, SourceError> {
        let meta = fs::metadata(&self.root).map_err(|source| SourceError::Io {
            path: self.root.clone(),
            source,
        })?;
        let mut files = Vec::new();
        if meta.is_file() {
            // A single file given as source: delivered as is, whatever its extension says.
            let name = self
                .root
                .file_name()
                .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
            files.push(read_file(&self.root, name)?);
        } else {
            self.collect(&self.root, "", 0, &mut files)?;
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Snapshot {
            revision: revision_of(&files),
            files,
            commit: None,
        })
    }

    fn describe(&self) -> String {
        format!("directory {}", self.root.display())
    }

    fn watch_root(&self) -> Option<PathBuf> {
        Some(self.root.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        fs::write(path, text).expect("write");
    }

    #[test]
    fn reads_visible_yaml_files_sorted_with_a_content_revision() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "b.yaml", "name: b\n");
        write(dir.path(), "eu/a.yml", "name: a\n");
        write(dir.path(), "notes.md", "hello\n");
        write(dir.path(), ".github/workflows/ci.yml", "on: push\n");
        let source = DirSource {
            root: dir.path().to_path_buf(),
        };
        let first = source.load().expect("load");
        let paths: Vec<&str> = first.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["b.yaml", "eu/a.yml"]);
        assert!(first.revision.starts_with("dir-") && first.revision.len() == 4 + REVISION_HEX_LEN);
        assert_eq!(
            source.load().expect("reload").revision,
            first.revision,
            "same content, same revision"
        );

        write(dir.path(), "notes.md", "ignored change\n");
        assert_eq!(source.load().expect("reload").revision, first.revision);
        write(dir.path(), "eu/a.yml", "name: a2\n");
        assert_ne!(source.load().expect("reload").revision, first.revision);
    }

    #[test]
    fn renaming_a_file_changes_the_revision() {
        let a = [SourceFile {
            path: "a.yaml".into(),
            contents: "x".into(),
        }];
        let b = [SourceFile {
            path: "b.yaml".into(),
            contents: "x".into(),
        }];
        assert_ne!(revision_of(&a), revision_of(&b));
        // Length prefixes: moving bytes between path and contents is a different revision.
        let c = [SourceFile {
            path: "a.yamlx".into(),
            contents: String::new(),
        }];
        assert_ne!(revision_of(&a), revision_of(&c));
    }

    #[test]
    fn a_single_file_can_be_the_source() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "arena.yaml", "name: a\n");
        let snap = DirSource {
            root: dir.path().join("arena.yaml"),
        }
        .load()
        .expect("load");
        assert_eq!(snap.files.len(), 1);
        assert_eq!(snap.files[0].path, "arena.yaml");
    }

    #[test]
    fn missing_root_is_an_io_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = DirSource {
            root: dir.path().join("nope"),
        }
        .load()
        .expect_err("missing");
        assert!(matches!(err, SourceError::Io { .. }), "{err:?}");
    }

    #[test]
    fn non_utf8_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("bad.yaml"), [0xff, 0xfe, 0x00]).expect("write");
        let err = DirSource {
            root: dir.path().to_path_buf(),
        }
        .load()
        .expect_err("not utf-8");
        assert_eq!(err.to_string(), "bad.yaml: not UTF-8 text");
    }
}
