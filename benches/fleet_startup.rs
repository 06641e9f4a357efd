//! Benchmark: a scheduler of 200 demo rooms on the local runtime, from nothing to all ready,
//! and the controller's memory with those rooms running.
//!
//! Run: `cargo bench --bench fleet_startup` (prints the figures; `ROOMS=500` to change the size).
//! Under `cargo test` it only checks that it builds.

mod common;

use std::time::{Duration, Instant};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("fleet_startup: skipped (run it with `cargo bench --bench fleet_startup`)");
        return;
    }
    let wanted: u32 = std::env::var("ROOMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let fleets = dir.path().join("fleets");
    std::fs::create_dir_all(&fleets).unwrap();
    std::fs::write(
        fleets.join("bench.yaml"),
        format!(
            r#"name: bench
game: bench
roomsReplicas: {wanted}
portRange: {{start: 22000, end: 24000}}
spec:
  containers:
    - name: server
      image: registry.example/bench:1
      ports: [{{name: http, protocol: TCP, port: 8080}}]
local:
  command: ["troupe", "demo-room", "--ping-interval", "5s", "--startup-delay", "100ms"]
"#
        ),
    )
    .unwrap();
    let start = Instant::now();
    let child = common::Serve::start(
        &[fleets.to_str().unwrap(), "--stop-rooms-on-exit"],
        &dir.path().join("state"),
        &[],
    );
    let url = child.url.clone();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ready_after = rt.block_on(async {
        let client = reqwest::Client::new();
        loop {
            let rooms: serde_json::Value = match client
                .get(format!("{url}/api/v1/schedulers/bench/rooms?status=ready"))
                .send()
                .await
            {
                Ok(r) => r.json().await.unwrap_or_default(),
                Err(_) => serde_json::Value::Null,
            };
            if ready_count(&rooms) == wanted {
                return start.elapsed();
            }
            if start.elapsed() > Duration::from_secs(120) {
                panic!("rooms not ready after 120 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    // Let the fleet settle, then read the controller's resident memory.
    std::thread::sleep(Duration::from_secs(3));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    println!(
        "fleet_startup: {wanted} rooms from nothing to all ready in {:.2} s",
        ready_after.as_secs_f64()
    );
    println!(
        "fleet_startup: controller RSS with {wanted} rooms: {:.1} MiB",
        rss_kib as f64 / 1024.0
    );
    drop(child);
}

fn ready_count(rooms: &serde_json::Value) -> u32 {
    rooms.as_array().map_or(0, |a| a.len() as u32)
}
