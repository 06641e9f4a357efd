//! Sources of desired state: the scheduler files of one revision, from a git repository (local,
//! or remote and fetched into a cache) or a plain directory, and a watcher that notices new
//! revisions.
//!
//! This is an adapter around the spec layer: it reads bytes and names revisions; it never parses
//! YAML (that is [`crate::domain::spec::load_documents`]). Must hold:
//! - A [`Snapshot`] is one consistent revision: every file comes from the same commit (git) or the
//!   same read of the directory, and its `revision` changes whenever any file's path or content
//!   does (and only then, for a directory).
//! - A git source reads *committed* content only: uncommitted edits in a work tree are invisible.
//! - No credential ever appears in an error, a log line or [`Source::describe`].
//! - Files and directories whose name starts with `.` are skipped (`.git`, `.github/workflows`
//!   are not scheduler files), as is anything not ending in `.yaml`/`.yml`. Files are sorted by path.

mod dir;
mod git;
mod remote;
mod watch;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::domain::spec::SourceFile;
pub use dir::DirSource;
pub use git::GitSource;
pub use remote::{DEFAULT_TOKEN_USERNAME, GitAuth, GitUrl, RemoteSource, Token, strip_userinfo};
pub use watch::{DEBOUNCE, Observed, SourceStatus, Watch, WatchHandle, error_chain, watch};

/// One revision of the desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Commit sha for git; `dir-` and a short content hash for a directory.
    pub revision: String,
    /// Scheduler files, sorted by path. Paths use `/` and are relative to the directory the
    /// files were read from (below the sub-path), so the same tree gives the same paths from git
    /// and from disk.
    pub files: Vec<SourceFile>,
    /// The commit, for a git source.
    pub commit: Option<CommitInfo>,
}

/// The commit a git snapshot was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitInfo {
    /// Full hex sha.
    pub sha: String,
    /// `Name <email>` of the author.
    pub author: String,
    /// Full commit message, trailing whitespace trimmed.
    pub message: String,
    /// Commit time, seconds since the Unix epoch.
    pub time: i64,
}

/// Where desired state comes from. Calls block (disk, git); async callers use `spawn_blocking`.
pub trait Source: Send + Sync + 'static {
    /// Read the current revision in full.
    fn load(&self) -> Result<Snapshot, SourceError>;

    /// One line for logs and the CLI, e.g. `git /srv/fleets (branch main, path prod)`.
    fn describe(&self) -> String;

    /// The current revision if it can be learnt without reading every file (git: the sha the
    /// branch points to); `None` when only a full [`Source::load`] can tell.
    fn peek_revision(&self) -> Result<Option<String>, SourceError> {
        Ok(None)
    }

    /// A directory whose file-system events may mean a new revision (directory sources).
    fn watch_root(&self) -> Option<PathBuf> {
        None
    }

    /// The branch followed, when there is one and it is known (a remote's default branch is
    /// known after the first check). Webhooks use it to ignore pushes to other branches.
    fn branch(&self) -> Option<String> {
        None
    }
}

/// Why a source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The path given as source does not exist or cannot be read.
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A scheduler file is not valid UTF-8 text.
    #[error("{path}: not UTF-8 text")]
    NotUtf8 { path: String },
    /// The repository cannot be opened (corrupt, permissions, not a repository any more).
    #[error("cannot open git repository {}", repo.display())]
    OpenRepository {
        repo: PathBuf,
        #[source]
        source: git2::Error,
    },
    /// The branch (or other ref) asked for does not exist.
    #[error("branch {branch:?} not found in {}", repo.display())]
    BranchNotFound {
        repo: PathBuf,
        branch: String,
        #[source]
        source: git2::Error,
    },
    /// HEAD points to a branch with no commit yet (a fresh repository).
    #[error("{} has no commit yet on its current branch", repo.display())]
    NoCommit {
        repo: PathBuf,
        #[source]
        source: git2::Error,
    },
    /// The sub-path does not exist in the revision, or is not a directory.
    #[error("sub-path {subpath:?} is not a directory in revision {revision}")]
    SubpathNotFound { subpath: String, revision: String },
    /// The sub-path is absolute or climbs out of the source root (`..`).
    #[error("invalid sub-path {subpath:?}: expected a relative path inside the source")]
    InvalidSubpath { subpath: String },
    /// `--branch` was given but the source is a plain directory.
    #[error("{} is not the top of a git repository, so a branch cannot be selected", path.display())]
    BranchWithoutGit { path: PathBuf },
    /// Reading the source panicked or was cancelled (a bug; reported rather than ending the watch).
    #[error("reading the source failed unexpectedly: {0}")]
    Crashed(String),
    /// The source looks like a URL but cannot be used as one (unknown scheme, a password in it).
    #[error("invalid repository URL {url}: {reason}")]
    InvalidUrl { url: String, reason: &'static str },
    /// The remote could not be reached or the transfer failed (network, protocol, timeout).
    #[error("cannot fetch from {url}")]
    Fetch {
        /// Without credentials.
        url: String,
        #[source]
        source: git2::Error,
    },
    /// The remote wants credentials that are not configured, or refused the configured ones.
    #[error("authentication to {url} failed: {reason}")]
    Auth { url: String, reason: &'static str },
    /// The SSH server's host key is not in `~/.ssh/known_hosts` (or does not match it).
    #[error(
        "the SSH host key of {url} is unknown or does not match ~/.ssh/known_hosts \
         (add it with ssh-keyscan after checking its fingerprint)"
    )]
    HostKey {
        url: String,
        #[source]
        source: git2::Error,
    },
    /// The remote's HEAD names no branch, and none was chosen.
    #[error("{url} has no default branch (HEAD); choose one with --branch")]
    NoRemoteHead { url: String },
    /// The branch asked for does not exist on the remote.
    #[error("branch {branch:?} not found in {url}")]
    RemoteBranchNotFound { url: String, branch: String },
    /// The local clone cache of a remote cannot be created or written.
    #[error("cannot use the clone cache {}", path.display())]
    Cache {
        path: PathBuf,
        #[source]
        source: git2::Error,
    },
    /// Any other git failure while reading objects of a revision.
    #[error("git: cannot {action} in {}", repo.display())]
    Git {
        repo: PathBuf,
        action: &'static str,
        #[source]
        source: git2::Error,
    },
}

/// Open the source at `path`: its committed git history when `path` is the top of a git
/// repository (work tree or bare), the files on disk otherwise. `subpath` selects a directory
/// inside it; `branch` (git only) defaults to the branch HEAD points to.
pub fn open(
    path: &Path,
    branch: Option<&str>,
    subpath: Option<&str>,
) -> Result<Box<dyn Source>, SourceError> {
    let subpath = subpath.map(normalize_subpath).transpose()?.flatten();
    if git::is_repository_top(path) {
        return Ok(Box::new(GitSource {
            repo: path.to_path_buf(),
            branch: branch.map(str::to_string),
            subpath,
        }));
    }
    if branch.is_some() {
        return Err(SourceError::BranchWithoutGit {
            path: path.to_path_buf(),
        });
    }
    let root = match &subpath {
        Some(sub) => path.join(sub),
        None => path.to_path_buf(),
    };
    Ok(Box::new(DirSource { root }))
}

/// Where a source is, as given on the command line: a remote repository's URL or a local path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// Cloned into a cache and fetched.
    Remote(GitUrl),
    /// A git repository (work tree or bare) or a directory of files.
    Local(PathBuf),
}

impl Location {
    /// A URL (`https://`, `http://`, `ssh://`, `git://`, `file://`, `user@host:path`) is remote;
    /// anything else is a path. Errors never repeat a password found in `raw`.
    pub fn parse(raw: &str) -> Result<Self, SourceError> {
        Ok(match GitUrl::parse(raw)? {
            Some(url) => Location::Remote(url),
            None => Location::Local(PathBuf::from(raw)),
        })
    }
}

/// What a remote source needs besides its URL.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Each remote is cloned into its own directory below this one.
    pub cache_root: PathBuf,
    pub auth: GitAuth,
}

/// Open the source at `location`: [`open`] for a path, a [`RemoteSource`] for a URL.
pub fn open_location(
    location: &Location,
    branch: Option<&str>,
    subpath: Option<&str>,
    remote: &RemoteOptions,
) -> Result<Box<dyn Source>, SourceError> {
    match location {
        Location::Local(path) => open(path, branch, subpath),
        Location::Remote(url) => Ok(Box::new(RemoteSource::new(
            url.clone(),
            branch.map(str::to_string),
            subpath.map(normalize_subpath).transpose()?.flatten(),
            &remote.cache_root,
            remote.auth.clone(),
        ))),
    }
}

/// `./fleets/prod/` → `fleets/prod`; empty or `.` → none. Refuses absolute paths and `..`.
fn normalize_subpath(raw: &str) -> Result<Option<String>, SourceError> {
    let invalid = || SourceError::InvalidSubpath {
        subpath: raw.to_string(),
    };
    if raw.starts_with('/') || raw.starts_with('\\') {
        return Err(invalid());
    }
    let mut parts = Vec::new();
    for part in raw.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => return Err(invalid()),
            p => parts.push(p),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// Whether a path relative to the source root (with `/` separators) is a scheduler file that
/// sources deliver: a `.yaml`/`.yml` file outside hidden directories.
fn wanted(relative: &str) -> bool {
    crate::domain::spec::load::is_scheduler_file(relative)
        && !relative.split('/').any(|part| part.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subpaths_are_normalized_and_confined() {
        assert_eq!(
            normalize_subpath("./fleets/prod/").unwrap(),
            Some("fleets/prod".to_string())
        );
        assert_eq!(normalize_subpath(".").unwrap(), None);
        assert_eq!(normalize_subpath("").unwrap(), None);
        assert!(matches!(
            normalize_subpath("../etc"),
            Err(SourceError::InvalidSubpath { .. })
        ));
        assert!(matches!(
            normalize_subpath("/etc"),
            Err(SourceError::InvalidSubpath { .. })
        ));
    }

    #[test]
    fn only_visible_yaml_files_are_wanted() {
        assert!(wanted("arena.yaml"));
        assert!(wanted("eu/arena.YML"));
        assert!(!wanted("README.md"));
        assert!(!wanted(".github/workflows/ci.yml"));
        assert!(!wanted(".hidden.yaml"));
    }
}
