//! Opening a source from the command line: a path or a remote URL, with credentials for remotes
//! read from files or the environment, never from a flag's value.
//!
//! Must hold: a secret is never a command-line argument (it would show in `ps` and shell
//! history) and never printed; `TROUPE_GIT_TOKEN` is read here rather than declared to clap,
//! so `--help` cannot show its value.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;

use crate::source::{self, GitAuth, Location, RemoteOptions, Source, Token};

/// Environment variable holding an HTTPS token itself (the file flag is preferred).
const TOKEN_ENV: &str = "TROUPE_GIT_TOKEN";

/// Credentials for remote repositories (`https://`, `ssh://`, `git@host:path`).
#[derive(Debug, Clone, Args)]
pub struct GitAuthArgs {
    /// File holding an access token for HTTPS remotes, sent as the password of basic auth (or the
    /// token itself in TROUPE_GIT_TOKEN).
    #[arg(long, env = "TROUPE_GIT_TOKEN_FILE", value_name = "FILE")]
    pub git_token_file: Option<PathBuf>,
    /// User name sent with the token [default: x-access-token, as GitHub expects; GitLab
    /// accepts any].
    #[arg(long, env = "TROUPE_GIT_USERNAME", value_name = "NAME")]
    pub git_username: Option<String>,
    /// Private key file for SSH remotes. The host must be in ~/.ssh/known_hosts.
    #[arg(long, env = "TROUPE_GIT_SSH_KEY_FILE", value_name = "FILE")]
    pub git_ssh_key_file: Option<PathBuf>,
}

impl GitAuthArgs {
    /// Read the credentials the flags and environment point at.
    pub fn auth(&self) -> anyhow::Result<GitAuth> {
        let token = secret_from(self.git_token_file.as_deref(), TOKEN_ENV)?;
        if let Some(key) = &self.git_ssh_key_file {
            std::fs::File::open(key)
                .with_context(|| format!("cannot read SSH key file {}", key.display()))?;
        }
        Ok(GitAuth {
            token: token.map(Token::new),
            username: self.git_username.clone(),
            ssh_key: self.git_ssh_key_file.clone(),
        })
    }
}

/// The trimmed contents of a secret file; an empty file is an error (a forgotten secret).
pub fn read_secret(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let text = text.trim().to_string();
    if text.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(text)
}

/// A secret from `file` when given, else from the environment variable `env` (the secret itself);
/// `None` when neither is set. Both are trimmed; an empty file is an error.
pub fn secret_from(file: Option<&Path>, env: &str) -> anyhow::Result<Option<String>> {
    Ok(match file {
        Some(f) => Some(read_secret(f)?),
        None => std::env::var(env)
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty()),
    })
}

/// Open `raw` (a path or a URL) as a source; remotes are cloned below `cache_root`.
pub fn open_source(
    raw: &str,
    branch: Option<&str>,
    subpath: Option<&str>,
    cache_root: &Path,
    auth: &GitAuthArgs,
) -> anyhow::Result<Box<dyn Source>> {
    let location = Location::parse(raw)?;
    let remote = RemoteOptions {
        cache_root: cache_root.to_path_buf(),
        auth: match &location {
            Location::Remote(_) => auth.auth()?,
            Location::Local(_) => GitAuth::default(),
        },
    };
    let shown = match &location {
        Location::Remote(url) => url.shown().to_string(),
        Location::Local(path) => path.display().to_string(),
    };
    source::open_location(&location, branch, subpath, &remote)
        .with_context(|| format!("cannot open {shown}"))
}
