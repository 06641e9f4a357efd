//! Remote git source: a repository reached by URL (`https://`, `http://`, `ssh://`,
//! `user@host:path`, `file://`), cloned bare into a cache directory and fetched incrementally.
//!
//! Must hold:
//! - Credentials come from [`GitAuth`] only (files or environment, read by the CLI); a URL with a
//!   password in it is refused, and every URL this module puts in a message, an error or
//!   [`Source::describe`] is [`GitUrl::shown`], without its user part.
//! - Only the followed branch is fetched (`+refs/heads/B:refs/remotes/origin/B`, no tags), into a
//!   cache that survives restarts, so a fetch after a push transfers the new objects only.
//! - What is read is the committed tree of the fetched commit, by the same [`CommitReader`] as a
//!   local repository.
//! - [`Source::peek_revision`] only connects and lists the remote's refs: nothing is downloaded
//!   while the branch has not moved.
//! - SSH host keys are checked by libgit2 against `~/.ssh/known_hosts`; an unknown host is refused.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once};

use git2::{AutotagOption, Cred, CredentialType, Direction, FetchOptions, Oid, Remote, Repository};
use sha2::{Digest, Sha256};

use super::git::{CommitReader, describe_git};
use super::{Snapshot, Source, SourceError};

/// User name sent with a token when none is configured: what GitHub expects for app and
/// fine-grained tokens; GitLab and Gitea accept any user name with a token.
pub const DEFAULT_TOKEN_USERNAME: &str = "x-access-token";
/// User name for SSH when the URL names none (`ssh://host/x` rather than `ssh://git@host/x`).
const DEFAULT_SSH_USERNAME: &str = "git";
/// How long connecting to a remote may take before the attempt fails (and is retried later).
const CONNECT_TIMEOUT_MS: i32 = 10_000;
/// How long a remote may stay silent during a transfer before the attempt fails.
const SERVER_TIMEOUT_MS: i32 = 60_000;
/// Hex digits of the URL's sha256 naming its cache directory.
const CACHE_NAME_HEX_LEN: usize = 16;
/// Where fetched branches are kept in the cache.
const TRACKING_PREFIX: &str = "refs/remotes/origin/";

/// A token that never prints.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl Token {
    pub fn new(token: impl Into<Arc<str>>) -> Self {
        Self(token.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

/// How to authenticate to remotes. Filled by the CLI from files and the environment only.
#[derive(Debug, Clone, Default)]
pub struct GitAuth {
    /// HTTPS token, sent as the password of basic auth.
    pub token: Option<Token>,
    /// User name sent with the token (default [`DEFAULT_TOKEN_USERNAME`]).
    pub username: Option<String>,
    /// Private key file for SSH remotes.
    pub ssh_key: Option<PathBuf>,
}

/// A remote repository's URL, as given and as it may be shown.
#[derive(Clone, PartialEq, Eq)]
pub struct GitUrl {
    raw: String,
    shown: String,
}

impl std::fmt::Debug for GitUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GitUrl({})", self.shown)
    }
}

impl std::fmt::Display for GitUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// URL schemes read as remote repositories.
const SCHEMES: &[&str] = &["https", "http", "ssh", "git", "file"];

impl GitUrl {
    /// `Some` when `raw` names a remote repository: `scheme://…` with a git scheme, or the scp
    /// form `user@host:path`. A password in the URL is refused (credentials come from files or
    /// the environment, never from the command line).
    pub fn parse(raw: &str) -> Result<Option<Self>, SourceError> {
        let shown = strip_userinfo(raw);
        if let Some((scheme, rest)) = raw.split_once("://") {
            if !SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) {
                return Err(SourceError::InvalidUrl {
                    url: shown,
                    reason: "unsupported scheme: expected https, http, ssh, git or file",
                });
            }
            let authority = rest.split('/').next().unwrap_or_default();
            if let Some((userinfo, _)) = authority.rsplit_once('@')
                && userinfo.contains(':')
            {
                return Err(SourceError::InvalidUrl {
                    url: shown,
                    reason: "credentials in the URL are not accepted: put the token in \
                             --git-token-file or TROUPE_GIT_TOKEN",
                });
            }
            return Ok(Some(Self {
                raw: raw.to_string(),
                shown,
            }));
        }
        // scp form: `user@host:path`, with the `:` before any `/` (else it is a local path).
        let scp = raw.split_once(':').is_some_and(|(head, _)| {
            !head.contains('/')
                && head
                    .split_once('@')
                    .is_some_and(|(user, host)| !user.is_empty() && !host.is_empty())
        });
        Ok(scp.then(|| Self {
            raw: raw.to_string(),
            shown,
        }))
    }

    /// The URL without its user part: what every message shows.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The cache directory of this URL under `cache_root`.
    pub fn cache_dir(&self, cache_root: &Path) -> PathBuf {
        let hex = hex::encode(Sha256::digest(self.raw.as_bytes()));
        cache_root.join(&hex[..CACHE_NAME_HEX_LEN])
    }
}

/// `https://user@host/x` → `https://host/x`; `git@host:x` → `host:x`; anything else unchanged.
pub fn strip_userinfo(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let end = rest.find('/').unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        return format!("{scheme}://{host}{path}");
    }
    match url.split_once(':') {
        Some((head, path)) if !head.contains('/') => {
            let host = head.rsplit_once('@').map_or(head, |(_, h)| h);
            format!("{host}:{path}")
        }
        _ => url.to_string(),
    }
}

/// The scheduler files of one branch of a remote repository.
#[derive(Debug)]
pub struct RemoteSource {
    url: GitUrl,
    /// `None`: the branch the remote's HEAD points to.
    branch: Option<String>,
    subpath: Option<String>,
    /// The bare clone.
    cache: PathBuf,
    auth: GitAuth,
    /// The branch last followed (the remote's default branch when none was given).
    resolved_branch: Mutex<Option<String>>,
}

/// What the credentials callback did during one connection, to tell auth failures apart.
#[derive(Default)]
struct AuthAttempt {
    /// Secrets offered (a second request for them means the first was refused).
    offered: Cell<u32>,
    /// The remote asked for credentials of a kind that is not configured.
    missing: Cell<Option<&'static str>>,
}

impl RemoteSource {
    /// A source for `url`, cloned into its own directory under `cache_root` on first use.
    pub fn new(
        url: GitUrl,
        branch: Option<String>,
        subpath: Option<String>,
        cache_root: &Path,
        auth: GitAuth,
    ) -> Self {
        static TIMEOUTS: Once = Once::new();
        TIMEOUTS.call_once(|| {
            // A failure leaves libgit2's defaults, which only makes a hung remote slower to notice.
            // SAFETY: a libgit2 global option, set once before this process's first transfer.
            let _ = unsafe {
                git2::opts::set_server_connect_timeout_in_milliseconds(CONNECT_TIMEOUT_MS)
            };
            // SAFETY: as above.
            let _ = unsafe { git2::opts::set_server_timeout_in_milliseconds(SERVER_TIMEOUT_MS) };
        });
        let branch = branch.map(|b| b.strip_prefix("refs/heads/").unwrap_or(&b).to_string());
        Self {
            cache: url.cache_dir(cache_root),
            url,
            branch,
            subpath,
            auth,
            resolved_branch: Mutex::new(None),
        }
    }

    /// The bare clone's directory.
    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }

    /// The bare clone, created when missing (or when what is there is not a repository: the
    /// cache is ours, and a clone interrupted by a crash is simply started again).
    fn open_cache(&self) -> Result<Repository, SourceError> {
        let cache_err = |source| SourceError::Cache {
            path: self.cache.clone(),
            source,
        };
        if let Ok(repo) = Repository::open_bare(&self.cache) {
            return Ok(repo);
        }
        if self.cache.exists() {
            tracing::warn!(cache = %self.cache.display(), "clone cache is not a repository; starting it again");
            std::fs::remove_dir_all(&self.cache).map_err(|source| SourceError::Io {
                path: self.cache.clone(),
                source,
            })?;
        }
        Repository::init_bare(&self.cache).map_err(cache_err)
    }

    /// Credentials for one request of libgit2, from [`GitAuth`] only.
    fn credential(
        &self,
        attempt: &AuthAttempt,
        user_from_url: Option<&str>,
        allowed: CredentialType,
    ) -> Result<Cred, git2::Error> {
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(user_from_url.unwrap_or(DEFAULT_SSH_USERNAME));
        }
        let offered = attempt.offered.get();
        if offered > 0 {
            // libgit2 asks again when the server refused what we sent: do not loop.
            return Err(git2::Error::from_str("the remote refused the credentials"));
        }
        if allowed.contains(CredentialType::SSH_KEY)
            && let Some(key) = &self.auth.ssh_key
        {
            attempt.offered.set(offered + 1);
            let user = user_from_url.unwrap_or(DEFAULT_SSH_USERNAME);
            return Cred::ssh_key(user, None, key, None);
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT)
            && let Some(token) = &self.auth.token
        {
            attempt.offered.set(offered + 1);
            let user = self
                .auth
                .username
                .as_deref()
                .or(user_from_url)
                .unwrap_or(DEFAULT_TOKEN_USERNAME);
            return Cred::userpass_plaintext(user, token.expose());
        }
        let missing = if allowed.contains(CredentialType::SSH_KEY) {
            "the remote asks for an SSH key: set --git-ssh-key-file or TROUPE_GIT_SSH_KEY_FILE"
        } else {
            "the remote asks for credentials: set --git-token-file or TROUPE_GIT_TOKEN"
        };
        attempt.missing.set(Some(missing));
        Err(git2::Error::from_str(missing))
    }

    fn callbacks<'a>(&'a self, attempt: &'a AuthAttempt) -> git2::RemoteCallbacks<'a> {
        let mut callbacks = git2::RemoteCallbacks::new();
        callbacks.credentials(move |_url, user, allowed| self.credential(attempt, user, allowed));
        callbacks
    }

    /// A failed connection or transfer, as a [`SourceError`] that names the URL (without
    /// credentials) and says whether authentication was the problem.
    fn transfer_error(&self, attempt: &AuthAttempt, source: git2::Error) -> SourceError {
        let url = self.url.shown.clone();
        if let Some(reason) = attempt.missing.get() {
            return SourceError::Auth { url, reason };
        }
        let refused = attempt.offered.get() > 0
            && (source.code() == git2::ErrorCode::Auth
                || source.class() == git2::ErrorClass::Callback
                || source.message().contains("refused the credentials"));
        if refused {
            return SourceError::Auth {
                url,
                reason: "the remote refused the configured credentials",
            };
        }
        if source.code() == git2::ErrorCode::Certificate {
            return SourceError::HostKey { url, source };
        }
        SourceError::Fetch { url, source }
    }

    /// Connect, list the remote's refs, and find the followed branch and its commit.
    fn ls_remote(&self) -> Result<(String, Oid), SourceError> {
        let mut remote = Remote::create_detached(self.url.raw.as_str()).map_err(|source| {
            SourceError::Fetch {
                url: self.url.shown.clone(),
                source,
            }
        })?;
        let attempt = AuthAttempt::default();
        let connection = remote
            .connect_auth(Direction::Fetch, Some(self.callbacks(&attempt)), None)
            .map_err(|e| self.transfer_error(&attempt, e))?;
        let branch = match &self.branch {
            Some(b) => b.clone(),
            None => {
                let head = connection
                    .default_branch()
                    .map_err(|_| SourceError::NoRemoteHead {
                        url: self.url.shown.clone(),
                    })?;
                let head = head.as_str().unwrap_or_default();
                head.strip_prefix("refs/heads/")
                    .ok_or_else(|| SourceError::NoRemoteHead {
                        url: self.url.shown.clone(),
                    })?
                    .to_string()
            }
        };
        let wanted = format!("refs/heads/{branch}");
        let oid = connection
            .list()
            .map_err(|e| self.transfer_error(&attempt, e))?
            .iter()
            .find(|head| head.name() == wanted)
            .map(|head| head.oid())
            .ok_or_else(|| SourceError::RemoteBranchNotFound {
                url: self.url.shown.clone(),
                branch: branch.clone(),
            })?;
        *self
            .resolved_branch
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(branch.clone());
        Ok((branch, oid))
    }

    /// Fetch `branch` into the cache (only the objects the cache lacks) and return the commit
    /// it points to now.
    fn fetch(&self, repo: &Repository, branch: &str) -> Result<Oid, SourceError> {
        let tracking = format!("{TRACKING_PREFIX}{branch}");
        let refspec = format!("+refs/heads/{branch}:{tracking}");
        let attempt = AuthAttempt::default();
        let mut remote = repo
            .remote_anonymous(&self.url.raw)
            .map_err(|e| self.transfer_error(&attempt, e))?;
        let mut options = FetchOptions::new();
        options
            .remote_callbacks(self.callbacks(&attempt))
            .download_tags(AutotagOption::None)
            .update_fetchhead(false);
        remote
            .fetch(&[&refspec], Some(&mut options), None)
            .map_err(|e| self.transfer_error(&attempt, e))?;
        let stats = remote.stats();
        tracing::debug!(
            url = %self.url.shown,
            branch,
            received_objects = stats.received_objects(),
            received_bytes = stats.received_bytes(),
            "fetched"
        );
        repo.refname_to_id(&tracking)
            .map_err(|source| SourceError::Git {
                repo: self.cache.clone(),
                action: "find the fetched branch",
                source,
            })
    }
}

impl Source for RemoteSource {
    fn load(&self) -> Result<Snapshot, SourceError> {
        let repo = self.open_cache()?;
        let (branch, listed) = self.ls_remote()?;
        let oid = if repo.find_commit(listed).is_ok() {
            // Already here (a restart, or the branch moved back): nothing to download. The
            // tracking ref is moved so the cache names what it holds.
            let tracking = format!("{TRACKING_PREFIX}{branch}");
            repo.reference(&tracking, listed, true, "troupe: remote branch moved")
                .map_err(|source| SourceError::Cache {
                    path: self.cache.clone(),
                    source,
                })?;
            listed
        } else {
            self.fetch(&repo, &branch)?
        };
        CommitReader {
            repo: &repo,
            path: &self.cache,
        }
        .snapshot(oid, self.subpath.as_deref())
    }

    fn describe(&self) -> String {
        describe_git(
            &self.url.shown,
            self.branch.as_deref(),
            self.subpath.as_deref(),
        )
    }

    fn peek_revision(&self) -> Result<Option<String>, SourceError> {
        let (_, oid) = self.ls_remote()?;
        Ok(Some(oid.to_string()))
    }

    fn branch(&self) -> Option<String> {
        self.branch.clone().or_else(|| {
            self.resolved_branch
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_from_paths() {
        for url in [
            "https://github.com/org/fleets.git",
            "http://127.0.0.1:8080/fleets.git",
            "ssh://git@github.com/org/fleets.git",
            "git@github.com:org/fleets.git",
            "file:///srv/git/fleets.git",
        ] {
            assert!(GitUrl::parse(url).unwrap().is_some(), "{url}");
        }
        for path in [
            ".",
            "fleets",
            "/srv/fleets",
            "./a:b",
            "dir/x@y:z",
            "@host:x",
        ] {
            assert!(GitUrl::parse(path).unwrap().is_none(), "{path}");
        }
        assert!(matches!(
            GitUrl::parse("ftp://host/x"),
            Err(SourceError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn a_password_in_the_url_is_refused_and_never_shown() {
        let err = GitUrl::parse("https://bot:s3cr3t@github.com/org/fleets.git").unwrap_err();
        assert!(matches!(err, SourceError::InvalidUrl { .. }), "{err:?}");
        let text = err.to_string();
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(text.contains("https://github.com/org/fleets.git"), "{text}");
    }

    #[test]
    fn user_parts_are_stripped_for_display() {
        assert_eq!(
            strip_userinfo("https://bot@github.com/org/x.git"),
            "https://github.com/org/x.git"
        );
        assert_eq!(
            strip_userinfo("ssh://git@host:2222/x.git"),
            "ssh://host:2222/x.git"
        );
        assert_eq!(
            strip_userinfo("git@github.com:org/x.git"),
            "github.com:org/x.git"
        );
        assert_eq!(strip_userinfo("file:///srv/x.git"), "file:///srv/x.git");
        let url = GitUrl::parse("https://bot@github.com/org/x.git")
            .unwrap()
            .unwrap();
        assert_eq!(
            format!("{url} {url:?}"),
            "https://github.com/org/x.git GitUrl(https://github.com/org/x.git)"
        );
    }

    #[test]
    fn each_url_has_its_own_cache_directory() {
        let a = GitUrl::parse("https://h/a.git").unwrap().unwrap();
        let b = GitUrl::parse("https://h/b.git").unwrap().unwrap();
        let root = Path::new("/state/git");
        assert_ne!(a.cache_dir(root), b.cache_dir(root));
        assert_eq!(a.cache_dir(root), a.cache_dir(root));
        assert!(a.cache_dir(root).starts_with(root));
    }

    #[test]
    fn tokens_do_not_print() {
        let auth = GitAuth {
            token: Some(Token::new("ghp_secret")),
            ..GitAuth::default()
        };
        assert!(!format!("{auth:?}").contains("ghp_secret"));
    }
}
