//! Benchmark: `troupe plan DIR --server URL` end to end for a revision of 500 schedulers against
//! a live server running them (one demo room each): reading and validating 500 files, fetching
//! live state over HTTP, planning and rendering.
//!
//! Run: `cargo bench --bench plan_e2e`. Under `cargo test` it only checks that it builds.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

const SCHEDULERS: usize = 500;
const RUNS: usize = 15;

fn scheduler(i: usize, image: &str) -> String {
    let start = 20000 + i * 4;
    format!(
        r#"name: fleet-{i:03}
game: bench
roomsReplicas: 1
portRange: {{start: {start}, end: {}}}
spec:
  containers:
    - name: server
      image: registry.example/bench:{image}
      ports: [{{name: http, protocol: TCP, port: 8080}}]
local:
  command: ["troupe", "demo-room", "--ping-interval", "20s", "--startup-delay", "50ms"]
"#,
        start + 4
    )
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("plan_e2e: skipped (run it with `cargo bench --bench plan_e2e`)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let live_dir = dir.path().join("live");
    let next_dir = dir.path().join("next");
    for d in [&live_dir, &next_dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    for i in 0..SCHEDULERS {
        std::fs::write(
            live_dir.join(format!("fleet-{i:03}.yaml")),
            scheduler(i, "1"),
        )
        .unwrap();
        // The next revision changes the image of every tenth scheduler.
        let image = if i % 10 == 0 { "2" } else { "1" };
        std::fs::write(
            next_dir.join(format!("fleet-{i:03}.yaml")),
            scheduler(i, image),
        )
        .unwrap();
    }
    let server = common::Serve::start(
        &[live_dir.to_str().unwrap(), "--stop-rooms-on-exit"],
        &dir.path().join("state"),
        &[],
    );
    let url = server.url.clone();

    // Wait until all 500 schedulers run their room.
    let start = Instant::now();
    loop {
        let out = Command::new(env!("CARGO_BIN_EXE_troupe"))
            .args(["status", "--json", "--server", &url])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let ready = v
            .as_array()
            .map_or(0, |a| a.iter().filter(|s| s["rooms"]["ready"] == 1).count());
        if ready == SCHEDULERS {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "fleet not ready: {ready}/{SCHEDULERS}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let mut times = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_troupe"))
            .args([
                "plan",
                next_dir.to_str().unwrap(),
                "--server",
                &url,
                "--format",
                "json",
                "--detailed-exitcode",
            ])
            .output()
            .unwrap();
        times.push(t.elapsed());
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "plan_e2e: troupe plan of {SCHEDULERS} schedulers against a live server: median {:.0} ms, min {:.0} ms, max {:.0} ms ({RUNS} runs)",
        ms(times[RUNS / 2]),
        ms(times[0]),
        ms(times[RUNS - 1])
    );
    drop(server);
}
