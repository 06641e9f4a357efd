//! `troupe serve` on a remote repository reached by smart HTTP (the real `git http-backend`
//! behind token auth, on loopback): a signed push webhook brings a new commit in at once, while
//! polling is slow; bad signatures trigger nothing; GitLab's token works too; the token and the
//! webhook secret never show in the log or the API; an unreachable remote degrades to retries
//! with the error and the failure count visible, and the server recovers when it comes back.

mod common;

use std::path::Path;
use std::time::Duration;

use common::git_http::{GitHttp, bare_with, push};
use common::{HookAnswer, Reply, Repo, Server, wait_for};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use troupe::source::SourceStatus;

const TOKEN: &str = "glpat-token-7c1d22e0";
const SECRET: &str = "hook-secret-91b0f3";

fn scheduler(name: &str, surge: u32) -> String {
    format!(
        r#"name: {name}
game: arena
roomsReplicas: 0
maxSurge: {surge}
portRange: {{start: 47000, end: 47010}}
spec:
  containers:
    - name: server
      image: registry.example/arena:1
local:
  command: ["/bin/sh", "-c", "exec sleep 600"]
"#
    )
}

/// A work tree with one scheduler, its bare remote under `root`, and the first commit.
fn remote(root: &Path) -> (Repo, std::path::PathBuf, String) {
    let work = Repo::new();
    let first = work.commit("first", &[("arena.yaml", &scheduler("arena", 1))]);
    let bare = bare_with(root, "fleets.git", &work);
    (work, bare, first)
}

fn secret_file(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{contents}\n")).unwrap();
    path.display().to_string()
}

fn github_signature(body: &[u8], secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// POST `body` to /hooks/git with `headers`; the status and the answer.
async fn hook(server: &Server, headers: &[(&str, String)], body: &[u8]) -> (u16, Reply) {
    let mut req = server
        .http
        .post(format!("{}/hooks/git", server.url))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, Reply(resp.text().await.unwrap()))
}

fn push_body(branch: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "ref": format!("refs/heads/{branch}"),
        "before": "0000000000000000000000000000000000000000",
        "commits": [{"id": "abc", "message": "Change", "modified": ["arena.yaml"]}],
        "repository": {"full_name": "org/fleets"}
    }))
    .unwrap()
}

async fn github(server: &Server, event: &str, body: &[u8], secret: &str) -> (u16, Reply) {
    hook(
        server,
        &[
            ("x-github-event", event.to_string()),
            ("x-github-delivery", "d-1".to_string()),
            ("x-hub-signature-256", github_signature(body, secret)),
        ],
        body,
    )
    .await
}

async fn revision_id(server: &Server) -> Option<String> {
    server.revision().await.desired.revision.map(|r| r.id)
}

/// How fresh the source is.
async fn source_status(server: &Server) -> SourceStatus {
    server
        .revision()
        .await
        .source
        .expect("a server watching a source says how fresh it is")
}

/// Source checks the server has completed.
async fn checks(server: &Server) -> u64 {
    source_status(server).await.checks
}

async fn wait_revision(server: &Server, want: &str, within: Duration) {
    wait_for(&format!("revision {want}"), within, || async {
        (revision_id(server).await.as_deref() == Some(want)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_push_hook_fetches_at_once_and_bad_ones_change_nothing() {
    let root = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let (work, bare, first) = remote(root.path());
    let git_host = GitHttp::start(root.path(), TOKEN).await;
    let token_file = secret_file(files.path(), "token", TOKEN);
    let hook_file = secret_file(files.path(), "hook", SECRET);
    let url = git_host.url("fleets.git");
    let server = Server::start(
        Path::new(&url),
        &files.path().join("state"),
        &[
            "--poll-interval",
            "60s",
            "--git-token-file",
            &token_file,
            "--webhook-secret-file",
            &hook_file,
        ],
    );
    wait_revision(&server, &first, Duration::from_secs(20)).await;
    let source = source_status(&server).await;
    assert_eq!(source.branch.as_deref(), Some("main"), "{source:?}");
    assert_eq!(source.consecutive_failures, 0, "{source:?}");
    assert!(source.last_success.is_some(), "{source:?}");

    let second = work.commit("second", &[("arena.yaml", &scheduler("arena", 2))]);
    push(&work, &bare);
    let checks_before = checks(&server).await;

    // Refused deliveries: nothing is fetched.
    let body = push_body("main");
    let (status, answer) = github(&server, "push", &body, "not-the-secret").await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer.error().code, "unauthorized");
    let (status, answer) = hook(&server, &[("x-github-event", "push".to_string())], &body).await;
    assert_eq!(status, 401, "no signature: {answer}");
    let (status, answer) = hook(&server, &[], &body).await;
    assert_eq!(status, 400, "no provider: {answer}");
    let (status, answer) = github(&server, "push", b"{not json", SECRET).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer.error().code, "malformed_body");
    // Authentic but not news.
    let (status, answer) = github(&server, "ping", b"{\"zen\":\"hi\"}", SECRET).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = github(&server, "push", &push_body("dev"), SECRET).await;
    assert_eq!(status, 202, "{answer}");
    let answer: HookAnswer = answer.json();
    assert!(!answer.triggered);
    assert!(
        answer.reason.as_deref().is_some_and(|r| r.contains("dev")),
        "{answer:?}"
    );

    let (status, answer) = github(&server, "push", &body, SECRET).await;
    assert_eq!(status, 202, "{answer}");
    assert!(answer.json::<HookAnswer>().triggered, "{answer}");
    wait_revision(&server, &second, Duration::from_secs(3)).await;
    assert_eq!(
        checks(&server).await,
        checks_before + 1,
        "only the valid push hook made the source check (the poll is 60s)"
    );

    // GitLab: the secret as a token header.
    let third = work.commit("third", &[("arena.yaml", &scheduler("arena", 3))]);
    push(&work, &bare);
    let gitlab = |token: &str| {
        vec![
            ("x-gitlab-event", "Push Hook".to_string()),
            ("x-gitlab-token", token.to_string()),
        ]
    };
    let (status, answer) = hook(&server, &gitlab("wrong"), &body).await;
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = hook(&server, &gitlab(SECRET), &body).await;
    assert_eq!(status, 202, "{answer}");
    assert!(answer.json::<HookAnswer>().triggered, "{answer}");
    wait_revision(&server, &third, Duration::from_secs(3)).await;

    let metrics = server.text("/metrics").await;
    for line in [
        r#"troupe_webhooks_total{outcome="triggered",provider="github"} 1"#,
        r#"troupe_webhooks_total{outcome="triggered",provider="gitlab"} 1"#,
        r#"troupe_webhooks_total{outcome="unauthorized",provider="github"} 2"#,
        r#"troupe_webhooks_total{outcome="ignored",provider="github"} 1"#,
        r#"troupe_webhooks_total{outcome="ping",provider="github"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }

    // Secrets never show: not in the log, the API, or the metrics.
    let revision = server.text("/api/v1/revision").await;
    let schedulers = server.text("/api/v1/schedulers").await;
    for (what, text) in [
        ("log", server.log()),
        ("revision", revision),
        ("schedulers", schedulers),
        ("metrics", metrics),
    ] {
        assert!(!text.contains(TOKEN), "token in the {what}");
        assert!(!text.contains(SECRET), "webhook secret in the {what}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_remote_is_retried_shown_and_recovered_from() {
    let root = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let (work, bare, first) = remote(root.path());
    let mut git_host = GitHttp::start(root.path(), TOKEN).await;
    let token_file = secret_file(files.path(), "token", TOKEN);
    let url = git_host.url("fleets.git");
    // The harness polls every 200ms: failures come quickly, then back off.
    let server = Server::start(
        Path::new(&url),
        &files.path().join("state"),
        &["--git-token-file", &token_file],
    );
    wait_revision(&server, &first, Duration::from_secs(20)).await;

    git_host.stop().await;
    let source = wait_for("failures to show", Duration::from_secs(20), || async {
        let source = source_status(&server).await;
        (source.consecutive_failures >= 2).then_some(source)
    })
    .await;
    let error = source.last_error.as_deref().expect("the last error");
    assert!(error.contains(&url), "names the remote: {error}");
    assert!(source.last_attempt > source.last_success, "{source:?}");
    // Still serving, on the last good revision.
    assert_eq!(revision_id(&server).await.as_deref(), Some(first.as_str()));
    let health = server
        .http
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success());
    let revision = server.revision().await;
    assert!(
        revision
            .desired
            .error
            .as_ref()
            .is_some_and(|e| e.message.contains(&url)),
        "{revision:?}"
    );

    // No secret configured: webhooks are off, and say so.
    let (status, answer) = hook(
        &server,
        &[("x-github-event", "push".to_string())],
        &push_body("main"),
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer.error().code, "webhooks_disabled");

    let second = work.commit("second", &[("arena.yaml", &scheduler("arena", 2))]);
    push(&work, &bare);
    git_host.resume().await;
    wait_revision(&server, &second, Duration::from_secs(30)).await;
    let source = source_status(&server).await;
    assert_eq!(source.consecutive_failures, 0, "{source:?}");
    assert!(source.last_error.is_none(), "{source:?}");
    assert!(!server.log().contains(TOKEN), "token in the log");
}
