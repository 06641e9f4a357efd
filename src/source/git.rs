//! Git source: the committed tree of one branch of a local repository (bare or with a work tree).
//!
//! Must hold: only committed objects are read — never the work tree or the index — so what is
//! loaded is exactly what a revision sha names, and a half-saved file in an editor is invisible.
//! The repository is opened per call: `git2::Repository` is not `Sync`, and opening is cheap next
//! to reading a tree.

use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository, Tree};

use super::{CommitInfo, Snapshot, Source, SourceError, SourceFile, wanted};

/// Git file mode of a symbolic link; links are not followed (their target is outside the commit).
const SYMLINK_MODE: i32 = 0o120000;

/// The committed scheduler files of a branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSource {
    /// Top of the repository: the work tree (holding `.git`) or the bare repository directory.
    pub repo: PathBuf,
    /// Branch (or any ref git can resolve by short name); `None`: the branch HEAD points to.
    pub branch: Option<String>,
    /// Directory inside the tree that holds the scheduler files; `None`: the whole tree.
    pub subpath: Option<String>,
}

/// Whether `path` is itself the top of a git repository (not merely inside one).
pub(super) fn is_repository_top(path: &Path) -> bool {
    // `Repository::open` does not search parent directories, which is the point.
    Repository::open(path).is_ok()
}

impl GitSource {
    fn open(&self) -> Result<Repository, SourceError> {
        Repository::open(&self.repo).map_err(|source| SourceError::OpenRepository {
            repo: self.repo.clone(),
            source,
        })
    }

    /// The commit the branch points to now.
    fn head_commit(&self, repo: &Repository) -> Result<Oid, SourceError> {
        // A branch, a tag, a commit sha or any revision expression (`main~1`).
        let object = match &self.branch {
            Some(branch) => repo
                .resolve_reference_from_short_name(branch)
                .and_then(|r| r.peel(ObjectType::Any))
                .or_else(|_| repo.revparse_single(branch))
                .map_err(|source| SourceError::BranchNotFound {
                    repo: self.repo.clone(),
                    branch: branch.clone(),
                    source,
                })?,
            None => repo
                .head()
                .and_then(|r| r.peel(ObjectType::Any))
                .map_err(|source| SourceError::NoCommit {
                    repo: self.repo.clone(),
                    source,
                })?,
        };
        let commit = object
            .peel_to_commit()
            .map_err(|source| self.git("resolve the branch to a commit", source))?;
        Ok(commit.id())
    }

    fn git(&self, action: &'static str, source: git2::Error) -> SourceError {
        SourceError::Git {
            repo: self.repo.clone(),
            action,
            source,
        }
    }
}

/// `git WHERE (branch B, path P)`: how every git-backed source describes itself.
pub(super) fn describe_git(location: &str, branch: Option<&str>, subpath: Option<&str>) -> String {
    let mut out = format!("git {location}");
    match (branch, subpath) {
        (None, None) => {}
        (Some(b), None) => out.push_str(&format!(" (branch {b})")),
        (None, Some(p)) => out.push_str(&format!(" (path {p})")),
        (Some(b), Some(p)) => out.push_str(&format!(" (branch {b}, path {p})")),
    }
    out
}

/// Reads the scheduler files of one commit: the one piece of code every git-backed source
/// (local repository, clone cache of a remote) uses to turn a commit into a [`Snapshot`].
pub(super) struct CommitReader<'r> {
    pub repo: &'r Repository,
    /// Where `repo` is, for error messages.
    pub path: &'r Path,
}

impl CommitReader<'_> {
    fn git(&self, action: &'static str, source: git2::Error) -> SourceError {
        SourceError::Git {
            repo: self.path.to_path_buf(),
            action,
            source,
        }
    }

    /// The files of commit `oid` below `subpath`, sorted, with the commit's details.
    pub fn snapshot(&self, oid: Oid, subpath: Option<&str>) -> Result<Snapshot, SourceError> {
        let repo = self.repo;
        let commit = repo
            .find_commit(oid)
            .map_err(|e| self.git("read the commit", e))?;
        let revision = oid.to_string();
        let mut tree = commit
            .tree()
            .map_err(|e| self.git("read the commit's tree", e))?;
        if let Some(sub) = subpath {
            let not_found = || SourceError::SubpathNotFound {
                subpath: sub.to_string(),
                revision: revision.clone(),
            };
            let entry = tree.get_path(Path::new(sub)).map_err(|_| not_found())?;
            if entry.kind() != Some(ObjectType::Tree) {
                return Err(not_found());
            }
            tree = repo
                .find_tree(entry.id())
                .map_err(|e| self.git("read a tree", e))?;
        }
        let mut files = Vec::new();
        self.collect(&tree, "", &mut files)?;
        files.sort_by(|a, b| a.path.cmp(&b.path));

        let author = commit.author();
        let info = CommitInfo {
            sha: revision.clone(),
            author: format!(
                "{} <{}>",
                String::from_utf8_lossy(author.name_bytes()),
                String::from_utf8_lossy(author.email_bytes())
            ),
            message: String::from_utf8_lossy(commit.message_bytes())
                .trim_end()
                .to_string(),
            time: commit.time().seconds(),
        };
        Ok(Snapshot {
            revision,
            files,
            commit: Some(info),
        })
    }

    /// Every wanted blob under `tree`, depth first, paths relative to the walk's root.
    fn collect(
        &self,
        tree: &Tree<'_>,
        prefix: &str,
        out: &mut Vec<SourceFile>,
    ) -> Result<(), SourceError> {
        for entry in tree.iter() {
            // Names that are not UTF-8 cannot be scheduler files (or hold any).
            let Ok(name) = std::str::from_utf8(entry.name_bytes()) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let path = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            };
            match entry.kind() {
                Some(ObjectType::Tree) => {
                    let sub = self
                        .repo
                        .find_tree(entry.id())
                        .map_err(|e| self.git("read a tree", e))?;
                    self.collect(&sub, &path, out)?;
                }
                Some(ObjectType::Blob) if entry.filemode() != SYMLINK_MODE && wanted(&path) => {
                    let blob = self
                        .repo
                        .find_blob(entry.id())
                        .map_err(|e| self.git("read a file", e))?;
                    let contents = String::from_utf8(blob.content().to_vec())
                        .map_err(|_| SourceError::NotUtf8 { path: path.clone() })?;
                    out.push(SourceFile { path, contents });
                }
                // Submodules (commits), links and other files are not scheduler files.
                _ => {}
            }
        }
        Ok(())
    }
}

impl Source for GitSource {
    fn load(&self) -> Result<Snapshot, SourceError> {
        let repo = self.open()?;
        let oid = self.head_commit(&repo)?;
        CommitReader {
            repo: &repo,
            path: &self.repo,
        }
        .snapshot(oid, self.subpath.as_deref())
    }

    fn describe(&self) -> String {
        describe_git(
            &self.repo.display().to_string(),
            self.branch.as_deref(),
            self.subpath.as_deref(),
        )
    }

    fn peek_revision(&self) -> Result<Option<String>, SourceError> {
        let repo = self.open()?;
        Ok(Some(self.head_commit(&repo)?.to_string()))
    }

    fn branch(&self) -> Option<String> {
        if let Some(b) = &self.branch {
            return Some(b.strip_prefix("refs/heads/").unwrap_or(b).to_string());
        }
        let repo = self.open().ok()?;
        let head = repo.find_reference("HEAD").ok()?;
        let target = head.symbolic_target().ok().flatten()?;
        target.strip_prefix("refs/heads/").map(str::to_string)
    }
}
