//! Benchmark: from a push webhook to every operation of a 500-scheduler commit enqueued.
//!
//! A bare repository (reached by `file://`, so the figure is Troupe's, not a network's) holds 500
//! schedulers on the local runtime; `troupe serve` polls it only every 60 s. Once all 500 exist
//! live, one commit changes `maxSurge` in every file (an in-place update each), is pushed, and a
//! signed GitHub push webhook is posted. Measured: webhook POST → 500 `update` operations of the
//! new revision visible in `GET /api/v1/operations`, and → all of them finished.
//!
//! Run: `cargo bench --bench webhook` (`SCHEDULERS=N` to change the size). Under `cargo test` it
//! only checks that it builds.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const SECRET: &str = "bench-webhook-secret";
/// How long any phase may take before the benchmark gives up.
const PHASE_TIMEOUT: Duration = Duration::from_secs(300);
/// How often the operations are read: each read lists up to 1,000 operations with their specs,
/// so reading much faster would load the server being measured; the figure is ±50 ms.
const POLL: Duration = Duration::from_millis(50);

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("webhook: skipped (run it with `cargo bench --bench webhook`)");
        return;
    }
    let count: usize = std::env::var("SCHEDULERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let bare = dir.path().join("fleets.git");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["config", "user.email", "bench@troupe.test"]);
    git(&work, &["config", "user.name", "Bench"]);
    write_fleet(&work, count, 1);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "fleet"]);
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );

    let bare_url = format!("file://{}", bare.display());
    let child = common::Serve::start(
        &[&bare_url, "--poll-interval", "60s"],
        &dir.path().join("state"),
        &[("TROUPE_WEBHOOK_SECRET", SECRET)],
    );
    let url = child.url.clone();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (enqueued, finished) = rt.block_on(async {
        let client = reqwest::Client::new();
        let start = Instant::now();
        wait(&client, &url, |ops| {
            ops.iter()
                .filter(|o| o["kind"] == "create" && o["status"] == "succeeded")
                .count()
                == count
        })
        .await;
        println!(
            "webhook: {count} schedulers created live in {:.2} s",
            start.elapsed().as_secs_f64()
        );

        write_fleet(&work, count, 2);
        git(&work, &["commit", "-q", "-am", "maxSurge 2 everywhere"]);
        git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
        let revision = String::from_utf8(
            Command::new("git")
                .args(["rev-parse", "HEAD"])
                .current_dir(&work)
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim()
        .to_string();

        let body = br#"{"ref":"refs/heads/main","commits":[]}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(body);
        let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let posted = Instant::now();
        let resp = client
            .post(format!("{url}/hooks/git"))
            .header("x-github-event", "push")
            .header("x-hub-signature-256", signature)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202, "webhook accepted");
        let of_revision = |o: &serde_json::Value| {
            o["kind"] == "update" && o["cause"]["revision"].as_str() == Some(revision.as_str())
        };
        wait(&client, &url, |ops| {
            ops.iter().filter(|o| of_revision(o)).count() == count
        })
        .await;
        let enqueued = posted.elapsed();
        wait(&client, &url, |ops| {
            ops.iter()
                .filter(|o| of_revision(o) && o["status"] == "succeeded")
                .count()
                == count
        })
        .await;
        (enqueued, posted.elapsed())
    });
    println!(
        "webhook: POST /hooks/git → {count} update operations enqueued in {:.3} s",
        enqueued.as_secs_f64()
    );
    println!(
        "webhook: POST /hooks/git → {count} update operations finished in {:.3} s",
        finished.as_secs_f64()
    );
    drop(child);
}

/// Poll the operations until `done` holds for them.
async fn wait(client: &reqwest::Client, url: &str, done: impl Fn(&[serde_json::Value]) -> bool) {
    let start = Instant::now();
    loop {
        let ops: serde_json::Value = match client
            .get(format!("{url}/api/v1/operations?limit=2000"))
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        if done(ops.as_array().map_or(&[][..], Vec::as_slice)) {
            return;
        }
        assert!(
            start.elapsed() < PHASE_TIMEOUT,
            "gave up after {PHASE_TIMEOUT:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// One file per scheduler, no rooms (the figure is about git and planning, not processes).
fn write_fleet(work: &Path, count: usize, surge: u32) {
    let fleet = work.join("fleet");
    std::fs::create_dir_all(&fleet).unwrap();
    for i in 0..count {
        let start = 20_000 + i * 10;
        std::fs::write(
            fleet.join(format!("s{i:04}.yaml")),
            format!(
                r#"name: s{i:04}
game: bench
roomsReplicas: 0
maxSurge: {surge}
portRange: {{start: {start}, end: {end}}}
spec:
  containers:
    - name: server
      image: registry.example/bench:1
local:
  command: ["/bin/sh", "-c", "exec sleep 600"]
"#,
                end = start + 10
            ),
        )
        .unwrap();
    }
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?} failed");
}
