//! Remote git sources against real repositories: a bare "remote" reached by `file://` and by
//! smart HTTP (the real `git http-backend` behind token auth, on loopback). What is cloned and
//! read, that later loads fetch into the same cache, that the token is needed, sent, and never
//! shown, and that the watcher picks up a push by polling.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::git_http::{GitHttp, bare_with, push};
use common::{Reply, Repo, git};
use serde::Deserialize;
use troupe::domain::plan::Plan;
use troupe::source::{
    self, GitAuth, Location, Observed, RemoteOptions, Snapshot, Source, SourceError, Token,
    error_chain,
};

const TOKEN: &str = "tok-3f9a1c77e2";

fn options(cache_root: &Path, token: Option<&str>) -> RemoteOptions {
    RemoteOptions {
        cache_root: cache_root.to_path_buf(),
        auth: GitAuth {
            token: token.map(Token::new),
            ..GitAuth::default()
        },
    }
}

fn open(
    url: &str,
    branch: Option<&str>,
    subpath: Option<&str>,
    opts: &RemoteOptions,
) -> Box<dyn Source> {
    let location = Location::parse(url).unwrap();
    assert!(matches!(location, Location::Remote(_)), "{url} is remote");
    source::open_location(&location, branch, subpath, opts).unwrap()
}

fn paths(snapshot: &Snapshot) -> Vec<&str> {
    snapshot.files.iter().map(|f| f.path.as_str()).collect()
}

/// Some bulk, so a re-clone would show in what a fetch transfers.
fn filler(i: usize) -> String {
    (0..200)
        .map(|n| format!("# line {n} of file {i}: {}\n", n * 7919 % 1009 + i))
        .collect()
}

/// A work tree with `fleet/arena.yaml` and bulk under `fleet/bulk/`, and a bare remote of it.
fn remote(root: &Path) -> (Repo, PathBuf, String) {
    let work = Repo::new();
    let mut files: Vec<(String, String)> = vec![
        ("fleet/arena.yaml".into(), "name: arena\n".into()),
        ("README.md".into(), "docs\n".into()),
    ];
    for i in 0..30 {
        files.push((format!("fleet/bulk/f{i}.yaml"), filler(i)));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let first = work.commit("first", &refs);
    let bare = bare_with(root, "fleets.git", &work);
    (work, bare, first)
}

fn packs(cache: &Path) -> Vec<(PathBuf, u64)> {
    let mut out: Vec<(PathBuf, u64)> = std::fs::read_dir(cache.join("objects/pack"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
        .map(|e| (e.path(), e.metadata().unwrap().len()))
        .collect();
    out.sort();
    out
}

#[test]
fn file_remote_is_cloned_once_then_fetched_incrementally() {
    let root = tempfile::tempdir().unwrap();
    let cache_root = tempfile::tempdir().unwrap();
    let (work, bare, first) = remote(root.path());
    let url = format!("file://{}", bare.display());
    let opts = options(cache_root.path(), None);
    let src = open(&url, None, Some("fleet"), &opts);
    assert!(
        src.describe().starts_with("git file://"),
        "{}",
        src.describe()
    );

    assert_eq!(src.peek_revision().unwrap(), Some(first.clone()));
    let snap = src.load().unwrap();
    assert_eq!(snap.revision, first);
    assert_eq!(snap.files[0].path, "arena.yaml");
    assert_eq!(snap.files.len(), 31);
    assert_eq!(snap.commit.as_ref().unwrap().message, "first");
    assert_eq!(
        src.branch().as_deref(),
        Some("main"),
        "the remote HEAD's branch"
    );

    let caches: Vec<PathBuf> = std::fs::read_dir(cache_root.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(caches.len(), 1, "one cache directory per URL");
    let cache = &caches[0];
    let before = packs(cache);
    std::fs::write(cache.join("troupe-test-marker"), "still here").unwrap();

    let second = work.commit("second", &[("fleet/racer.yaml", "name: racer\n")]);
    push(&work, &bare);
    assert_eq!(src.peek_revision().unwrap(), Some(second.clone()));
    // A fresh source on the same cache, as after a restart: same directory, nothing re-cloned.
    let again = open(&url, None, Some("fleet"), &opts);
    let snap = again.load().unwrap();
    assert_eq!(snap.revision, second);
    assert_eq!(snap.files.len(), 32);
    assert!(cache.join("troupe-test-marker").exists(), "cache kept");
    let after = packs(cache);
    assert_eq!(after.len(), before.len() + 1, "one new pack: {after:?}");
    let new_pack = after.iter().find(|p| !before.contains(p)).unwrap();
    let first_pack = &before[0];
    assert!(
        new_pack.1 * 10 < first_pack.1,
        "the second fetch carries only the new objects: {} bytes against {} for the clone",
        new_pack.1,
        first_pack.1
    );

    // Loading again with nothing new downloads nothing.
    assert_eq!(again.load().unwrap().revision, second);
    assert_eq!(packs(cache), after);
}

#[test]
fn branch_can_be_chosen_and_a_missing_one_is_named() {
    let root = tempfile::tempdir().unwrap();
    let cache_root = tempfile::tempdir().unwrap();
    let (work, bare, first) = remote(root.path());
    git(work.path(), &["checkout", "-q", "-b", "staging"]);
    let staging = work.commit("staging only", &[("fleet/staging.yaml", "name: st\n")]);
    git(
        work.path(),
        &["push", "-q", bare.to_str().unwrap(), "staging"],
    );
    let url = format!("file://{}", bare.display());
    let opts = options(cache_root.path(), None);

    let snap = open(&url, Some("staging"), Some("fleet"), &opts)
        .load()
        .unwrap();
    assert_eq!(snap.revision, staging);
    assert!(paths(&snap).contains(&"staging.yaml"));
    assert_eq!(
        open(&url, None, Some("fleet"), &opts)
            .load()
            .unwrap()
            .revision,
        first,
        "default: the remote HEAD's branch"
    );
    let err = open(&url, Some("nope"), None, &opts).load().unwrap_err();
    assert!(
        matches!(&err, SourceError::RemoteBranchNotFound { branch, .. } if branch == "nope"),
        "{err:?}"
    );
    let err = open(&url, None, Some("missing"), &opts).load().unwrap_err();
    assert!(
        matches!(err, SourceError::SubpathNotFound { .. }),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http_remote_needs_the_token_and_never_shows_it() {
    let root = tempfile::tempdir().unwrap();
    let cache_root = tempfile::tempdir().unwrap();
    let (_work, _bare, first) = remote(root.path());
    let server = GitHttp::start(root.path(), TOKEN).await;
    let url = server.url("fleets.git");

    let load = |token: Option<&'static str>, url: String, cache: PathBuf| {
        tokio::task::spawn_blocking(move || {
            open(&url, None, Some("fleet"), &options(&cache, token)).load()
        })
    };

    let err = load(None, url.clone(), cache_root.path().into())
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, SourceError::Auth { .. }), "{err:?}");
    let text = error_chain(&err);
    assert!(text.contains(&url), "names the URL: {text}");
    assert!(text.contains("--git-token-file"), "says what to do: {text}");

    let err = load(Some("wrong-token"), url.clone(), cache_root.path().into())
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, SourceError::Auth { .. }), "{err:?}");
    assert!(
        error_chain(&err).contains("refused"),
        "{}",
        error_chain(&err)
    );
    assert!(!error_chain(&err).contains("wrong-token"));

    let snap = load(Some(TOKEN), url.clone(), cache_root.path().into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snap.revision, first);
    assert_eq!(snap.files[0].path, "arena.yaml");

    // A user name in the URL is fine, and never shown; a password in it is refused.
    let with_user = url.replacen("http://", "http://deploy-bot@", 1);
    let src = open(
        &with_user,
        None,
        None,
        &options(cache_root.path(), Some(TOKEN)),
    );
    assert!(!src.describe().contains("deploy-bot"), "{}", src.describe());
    let with_password = url.replacen("http://", &format!("http://bot:{TOKEN}@"), 1);
    let err = Location::parse(&with_password).unwrap_err();
    assert!(matches!(err, SourceError::InvalidUrl { .. }));
    assert!(!error_chain(&err).contains(TOKEN), "{}", error_chain(&err));
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_remote_is_a_fetch_error_naming_the_url() {
    let root = tempfile::tempdir().unwrap();
    let cache_root = tempfile::tempdir().unwrap();
    remote(root.path());
    let mut server = GitHttp::start(root.path(), TOKEN).await;
    let url = server.url("fleets.git");
    server.stop().await;
    let cache = cache_root.path().to_path_buf();
    let shown = url.clone();
    let err = tokio::task::spawn_blocking(move || {
        open(&url, None, None, &options(&cache, Some(TOKEN))).peek_revision()
    })
    .await
    .unwrap()
    .unwrap_err();
    assert!(
        matches!(&err, SourceError::Fetch { url, .. } if *url == shown),
        "{err:?}"
    );
}

async fn wait_for_revision(rx: &mut tokio::sync::watch::Receiver<Observed>, revision: &str) {
    let wait = async {
        loop {
            if let Some(Ok(snap)) = &*rx.borrow_and_update()
                && snap.revision == revision
            {
                return;
            }
            rx.changed().await.expect("watcher alive");
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .unwrap_or_else(|_| panic!("revision {revision} not published in time"));
}

#[tokio::test(flavor = "multi_thread")]
async fn polling_picks_up_a_push_over_http() {
    let root = tempfile::tempdir().unwrap();
    let cache_root = tempfile::tempdir().unwrap();
    let (work, bare, first) = remote(root.path());
    let server = GitHttp::start(root.path(), TOKEN).await;
    let src: Arc<dyn Source> = Arc::from(open(
        &server.url("fleets.git"),
        None,
        Some("fleet"),
        &options(cache_root.path(), Some(TOKEN)),
    ));
    let watch = source::watch(src, Duration::from_millis(100));
    let mut rx = watch.snapshots;
    wait_for_revision(&mut rx, &first).await;
    assert_eq!(watch.handle.status().branch.as_deref(), Some("main"));

    let second = work.commit("second", &[("fleet/racer.yaml", "name: racer\n")]);
    push(&work, &bare);
    wait_for_revision(&mut rx, &second).await;
    let status = watch.handle.status();
    assert_eq!(status.revision.as_deref(), Some(second.as_str()));
    assert_eq!(status.consecutive_failures, 0);
    assert!(!status.source.contains(TOKEN));
}

/// What `troupe validate --format json` prints (the fields this test reads: the CLI's report is
/// only ever written).
#[derive(Debug, Deserialize)]
struct Report {
    valid: bool,
    revision: String,
    schedulers: Vec<ReportedScheduler>,
}

#[derive(Debug, Deserialize)]
struct ReportedScheduler {
    file: String,
}

#[test]
fn validate_and_plan_accept_a_url() {
    let root = tempfile::tempdir().unwrap();
    let work = Repo::new();
    let yaml = common::scheduler_yaml("arena", 2, (46000, 46010), "1", "");
    let sha = work.commit("arena", &[("prod/arena.yaml", yaml.as_str())]);
    let bare = bare_with(root.path(), "fleets.git", &work);
    let url = format!("file://{}", bare.display());

    let out = std::process::Command::new(common::TROUPE)
        .args(["validate", &url, "--path", "prod", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = Reply(String::from_utf8(out.stdout).unwrap());
    let report: Report = text.json();
    assert!(report.valid, "{text}");
    assert_eq!(report.revision, sha);
    assert_eq!(report.schedulers[0].file, "prod/arena.yaml", "{text}");

    let out = std::process::Command::new(common::TROUPE)
        .args(["plan", &url, "--path", "prod", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = Reply(String::from_utf8(out.stdout).unwrap());
    let plan: Plan = text.json();
    assert_eq!(plan.changes[0].scheduler, "arena", "{text}");
}
