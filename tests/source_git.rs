//! Sources against real git repositories and directories made in temp dirs: what is read, from
//! which commit, and that the watcher notices new commits and edited files.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use git2::{Oid, Repository, Signature, Time};
use troupe::source::{self, DirSource, GitSource, Observed, Snapshot, Source, SourceError};

/// Commit time used by every test commit, so commit info is predictable.
const COMMIT_TIME: i64 = 1_700_000_000;

/// Build the tree of `files` (paths with `/`) directly in the object database.
fn write_tree(repo: &Repository, files: &[(&str, &str)]) -> Oid {
    let mut here: Vec<(&str, &str)> = Vec::new();
    let mut below: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for (path, text) in files {
        match path.split_once('/') {
            Some((dir, rest)) => below.entry(dir).or_default().push((rest, text)),
            None => here.push((path, text)),
        }
    }
    let mut builder = repo.treebuilder(None).unwrap();
    for (name, text) in here {
        let blob = repo.blob(text.as_bytes()).unwrap();
        builder.insert(name, blob, 0o100644).unwrap();
    }
    for (dir, entries) in below {
        let sub = write_tree(repo, &entries);
        builder.insert(dir, sub, 0o040000).unwrap();
    }
    builder.write().unwrap()
}

/// Commit exactly `files` on `branch` (a full ref name), on top of its current commit if any.
fn commit(repo: &Repository, branch: &str, files: &[(&str, &str)], message: &str) -> Oid {
    let tree = repo.find_tree(write_tree(repo, files)).unwrap();
    let who = Signature::new(
        "Ada Lovelace",
        "ada@example.com",
        &Time::new(COMMIT_TIME, 0),
    )
    .unwrap();
    let parent = repo
        .find_reference(branch)
        .ok()
        .and_then(|r| r.peel_to_commit().ok());
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    repo.commit(Some(branch), &who, &who, message, &tree, &parents)
        .unwrap()
}

fn paths(snapshot: &Snapshot) -> Vec<&str> {
    snapshot.files.iter().map(|f| f.path.as_str()).collect()
}

const ARENA: &str = "name: arena-eu\n";
const RACER: &str = "name: racer-us\n";

/// A work-tree repository whose HEAD is `main`, with one commit.
fn work_tree_repo(dir: &Path) -> (Repository, Oid) {
    let repo = Repository::init(dir).unwrap();
    repo.set_head("refs/heads/main").unwrap();
    let oid = commit(
        &repo,
        "refs/heads/main",
        &[
            ("arena.yaml", ARENA),
            ("games/racer.yml", RACER),
            ("README.md", "docs"),
            (".github/ci.yml", "on: push"),
        ],
        "Add arena and racer\n\nWith a body.\n",
    );
    (repo, oid)
}

#[test]
fn loads_the_committed_tree_of_head() {
    let dir = tempfile::tempdir().unwrap();
    let (_repo, oid) = work_tree_repo(dir.path());
    let src = source::open(dir.path(), None, None).unwrap();
    assert!(src.describe().starts_with("git "), "{}", src.describe());
    let snap = src.load().unwrap();
    assert_eq!(snap.revision, oid.to_string());
    assert_eq!(paths(&snap), ["arena.yaml", "games/racer.yml"]);
    assert_eq!(snap.files[0].contents, ARENA);
    let info = snap.commit.expect("git snapshots carry their commit");
    assert_eq!(info.sha, oid.to_string());
    assert_eq!(info.author, "Ada Lovelace <ada@example.com>");
    assert_eq!(info.message, "Add arena and racer\n\nWith a body.");
    assert_eq!(info.time, COMMIT_TIME);
}

#[test]
fn uncommitted_changes_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, oid) = work_tree_repo(dir.path());
    repo.checkout_head(Some(git2::build::CheckoutBuilder::new().force()))
        .unwrap();
    std::fs::write(
        dir.path().join("arena.yaml"),
        "name: edited-but-not-committed\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("new.yaml"), "name: new\n").unwrap();
    // Staged is not committed either.
    let mut index = repo.index().unwrap();
    index.add_path(Path::new("new.yaml")).unwrap();
    index.write().unwrap();
    let snap = source::open(dir.path(), None, None)
        .unwrap()
        .load()
        .unwrap();
    assert_eq!(snap.revision, oid.to_string());
    assert_eq!(paths(&snap), ["arena.yaml", "games/racer.yml"]);
    assert_eq!(snap.files[0].contents, ARENA);
}

#[test]
fn sub_path_selects_a_directory_and_paths_are_relative_to_it() {
    let dir = tempfile::tempdir().unwrap();
    work_tree_repo(dir.path());
    let snap = source::open(dir.path(), None, Some("./games/"))
        .unwrap()
        .load()
        .unwrap();
    assert_eq!(paths(&snap), ["racer.yml"]);

    let err = source::open(dir.path(), None, Some("nope"))
        .unwrap()
        .load()
        .unwrap_err();
    assert!(
        matches!(err, SourceError::SubpathNotFound { .. }),
        "{err:?}"
    );
    let err = source::open(dir.path(), None, Some("arena.yaml"))
        .unwrap()
        .load()
        .unwrap_err();
    assert!(
        matches!(err, SourceError::SubpathNotFound { .. }),
        "a file is not a directory: {err:?}"
    );
}

#[test]
fn branch_can_be_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, main) = work_tree_repo(dir.path());
    let staging = commit(
        &repo,
        "refs/heads/staging",
        &[("arena.yaml", ARENA)],
        "Staging only has arena",
    );
    let snap = source::open(dir.path(), Some("staging"), None)
        .unwrap()
        .load()
        .unwrap();
    assert_eq!(snap.revision, staging.to_string());
    assert_eq!(paths(&snap), ["arena.yaml"]);
    assert_eq!(
        source::open(dir.path(), None, None)
            .unwrap()
            .load()
            .unwrap()
            .revision,
        main.to_string()
    );

    let err = source::open(dir.path(), Some("nope"), None)
        .unwrap()
        .load()
        .unwrap_err();
    assert!(matches!(err, SourceError::BranchNotFound { .. }), "{err:?}");
}

#[test]
fn bare_repository_is_read_as_git() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init_bare(dir.path()).unwrap();
    repo.set_head("refs/heads/main").unwrap();
    let oid = commit(
        &repo,
        "refs/heads/main",
        &[("fleet/arena.yaml", ARENA)],
        "Bare",
    );
    let src = source::open(dir.path(), None, Some("fleet")).unwrap();
    assert!(src.describe().starts_with("git "), "{}", src.describe());
    let snap = src.load().unwrap();
    assert_eq!(snap.revision, oid.to_string());
    assert_eq!(paths(&snap), ["arena.yaml"]);
}

#[test]
fn repository_without_commits_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    Repository::init(dir.path()).unwrap();
    let err = source::open(dir.path(), None, None)
        .unwrap()
        .load()
        .unwrap_err();
    assert!(matches!(err, SourceError::NoCommit { .. }), "{err:?}");
}

#[test]
fn inside_a_repository_is_a_plain_directory() {
    let dir = tempfile::tempdir().unwrap();
    work_tree_repo(dir.path());
    let sub = dir.path().join("games");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(sub.join("racer.yml"), RACER).unwrap();
    let src = source::open(&sub, None, None).unwrap();
    assert!(
        src.describe().starts_with("directory "),
        "{}",
        src.describe()
    );
    assert!(src.load().unwrap().revision.starts_with("dir-"));
    let err = source::open(&sub, Some("main"), None)
        .err()
        .expect("branch needs git");
    assert!(
        matches!(err, SourceError::BranchWithoutGit { .. }),
        "{err:?}"
    );
}

/// Wait until the watcher publishes a snapshot for which `done` holds.
async fn wait_for(
    rx: &mut tokio::sync::watch::Receiver<Observed>,
    done: impl Fn(&Snapshot) -> bool,
) -> Snapshot {
    let wait = async {
        loop {
            if let Some(Ok(snap)) = &*rx.borrow_and_update()
                && done(snap)
            {
                return snap.clone();
            }
            rx.changed().await.expect("watcher alive");
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("watcher published in time")
}

#[tokio::test]
async fn watcher_notices_a_new_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, first) = work_tree_repo(dir.path());
    let src: Arc<dyn Source> = Arc::new(GitSource {
        repo: dir.path().to_path_buf(),
        branch: None,
        subpath: None,
    });
    let source::Watch {
        snapshots: mut rx,
        task: handle,
        ..
    } = source::watch(src, Duration::from_millis(50));
    wait_for(&mut rx, |s| s.revision == first.to_string()).await;

    let second = commit(
        &repo,
        "refs/heads/main",
        &[("arena.yaml", ARENA), ("racer.yaml", RACER)],
        "Add racer",
    );
    let snap = wait_for(&mut rx, |s| s.revision == second.to_string()).await;
    assert_eq!(paths(&snap), ["arena.yaml", "racer.yaml"]);

    // Nothing new: nothing is published, however many polls pass.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!rx.has_changed().unwrap());
    drop(rx);
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("watch ends without receivers")
        .unwrap();
}

#[tokio::test]
async fn watcher_reports_a_failure_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, _) = work_tree_repo(dir.path());
    let src: Arc<dyn Source> = Arc::new(GitSource {
        repo: dir.path().to_path_buf(),
        branch: Some("release".into()),
        subpath: None,
    });
    let mut rx = source::watch(src, Duration::from_millis(50)).snapshots;
    rx.changed().await.unwrap();
    assert!(
        matches!(&*rx.borrow_and_update(), Some(Err(e)) if matches!(**e, SourceError::BranchNotFound { .. }))
    );
    let release = commit(
        &repo,
        "refs/heads/release",
        &[("arena.yaml", ARENA)],
        "Release",
    );
    wait_for(&mut rx, |s| s.revision == release.to_string()).await;
}

#[tokio::test]
async fn directory_watcher_notices_an_edit_without_waiting_for_the_poll() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("arena.yaml"), ARENA).unwrap();
    let src: Arc<dyn Source> = Arc::new(DirSource {
        root: dir.path().to_path_buf(),
    });
    // A poll far longer than the test: only the file-system watcher can bring the change in.
    let mut rx = source::watch(src, Duration::from_secs(3600)).snapshots;
    let first = wait_for(&mut rx, |_| true).await;
    // Let the watcher settle its events from the first read.
    tokio::time::sleep(Duration::from_millis(100)).await;
    std::fs::write(dir.path().join("racer.yaml"), RACER).unwrap();
    let snap = wait_for(&mut rx, |s| s.revision != first.revision).await;
    assert_eq!(paths(&snap), ["arena.yaml", "racer.yaml"]);
}

#[tokio::test]
async fn a_trigger_checks_at_once_and_the_status_tells_how_fresh_the_source_is() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, first) = work_tree_repo(dir.path());
    let src: Arc<dyn Source> = Arc::new(GitSource {
        repo: dir.path().to_path_buf(),
        branch: None,
        subpath: None,
    });
    // A poll far longer than the test: only the trigger can bring the commit in.
    let source::Watch {
        mut snapshots,
        handle,
        ..
    } = source::watch(src, Duration::from_secs(3600));
    wait_for(&mut snapshots, |s| s.revision == first.to_string()).await;
    let status = handle.status();
    assert_eq!(status.branch.as_deref(), Some("main"));
    assert_eq!(status.revision, Some(first.to_string()));
    assert_eq!(status.consecutive_failures, 0);
    assert!(status.last_success.is_some() && status.last_attempt.is_some());

    let second = commit(&repo, "refs/heads/main", &[("arena.yaml", RACER)], "Change");
    handle.trigger();
    wait_for(&mut snapshots, |s| s.revision == second.to_string()).await;
    assert_eq!(handle.status().revision, Some(second.to_string()));
}
