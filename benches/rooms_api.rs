//! Benchmark: pings and allocations per second over loopback HTTP, with the load generator
//! (`troupe::tools::loadgen`, the code behind `troupe load`) on the same machine.
//!
//! The server is the real router (`troupe::http::router`) served by axum on 127.0.0.1, with the
//! local runtime behind it; its rooms are recorded in the registry as ready without processes,
//! so the figures measure Troupe, not 30,000 demo rooms.
//!
//! Run: `cargo bench --bench rooms_api` (`CLIENTS=N`, `SECONDS=N`). Under `cargo test` it only
//! checks that it builds.

use std::sync::Arc;
use std::time::Duration;

use troupe::app::{Server, ServerConfig};
use troupe::controller::{ControllerOptions, FleetConfig, SyncMode};
use troupe::domain::Applied;
use troupe::domain::room::token::room_token;
use troupe::domain::room::{Room, RoomStatus};
use troupe::http::router;
use troupe::metrics::Metrics;
use troupe::runtime::Runtime;
use troupe::runtime::local::{LocalConfig, LocalRuntime};
use troupe::tools::loadgen::{self, Load, Mode};

const SECRET: &[u8] = b"bench-secret";
const PING_ROOMS: usize = 1_000;
const ALLOCATION_ROOMS: usize = 40_000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("rooms_api: skipped (run it with `cargo bench --bench rooms_api`)");
        return;
    }
    let clients = env("CLIENTS", 64);
    let seconds = env("SECONDS", 5) as u64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig {
            state_dir: dir.path().into(),
            fleet: FleetConfig {
                secret: SECRET.to_vec(),
                rooms_url: "http://unused".into(),
                allocation_ttl: Duration::from_secs(3600),
            },
            controller: ControllerOptions { prune: false, sync: SyncMode::Auto, autoscale_interval: Duration::from_secs(3600) },
            api_token: None,
            webhook_secret: None,
        };
        let local = LocalConfig { state_dir: dir.path().into(), self_exe: "/bin/false".into(), host: "127.0.0.1".into(), config_dir: None };
        let (runtime, events) = LocalRuntime::new(local);
        let server = Server::open(config, Arc::new(Metrics::new()), Arc::new(runtime) as Arc<dyn Runtime>, events).unwrap();
        let fleet = Arc::clone(&server.controller.fleet);
        let spec = troupe::domain::spec::Scheduler::minimal("bench");
        for name in ["ping", "alloc"] {
            let spec = troupe::domain::spec::Scheduler { name: name.into(), ..spec.clone() };
            let applied = Applied { version: spec.version(), target_rooms: 0, spec, previous: None };
            fleet.set_applied(name, Some(applied)).unwrap();
        }
        let mut ping_rooms = Vec::new();
        for (scheduler, n) in [("ping", PING_ROOMS), ("alloc", ALLOCATION_ROOMS)] {
            for i in 0..n {
                let id = format!("{scheduler}-{i:06}");
                let room = Room { status: RoomStatus::Ready, host: "127.0.0.1".into(), ..Room::pending(&id, scheduler, "v", i as u64) };
                fleet.registry.insert(room).unwrap();
                if scheduler == "ping" {
                    ping_rooms.push((scheduler.to_string(), id.clone(), room_token(SECRET, scheduler, &id)));
                }
            }
        }
        let state = server.state;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });

        let load = |mode| Load { base_url: base_url.clone(), clients, duration: Duration::from_secs(seconds), mode };
        let ping = loadgen::run(load(Mode::Ping { rooms: ping_rooms.clone() })).await;
        println!(
            "rooms_api: pings: {:.0}/s over {} requests ({clients} clients, {:.1} s); p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; errors {}",
            ping.per_second, ping.requests, ping.seconds, ping.p50_ms, ping.p90_ms, ping.p99_ms, ping.max_ms, ping.errors
        );
        let alloc = loadgen::run(load(Mode::Allocate { scheduler: "alloc".into(), api_token: None })).await;
        println!(
            "rooms_api: allocations: {:.0}/s, {} rooms handed out ({} answers 'no room'), duplicates {}; p50 {:.2} ms, p99 {:.2} ms; errors {}",
            alloc.ok as f64 / alloc.seconds, alloc.ok, alloc.no_room, alloc.duplicates, alloc.p50_ms, alloc.p99_ms, alloc.errors
        );
        assert_eq!(alloc.duplicates, 0, "a room was handed out twice");

        // Half the pings change a status, each journaled: the rooms journal must stay bounded.
        // The fleet is the 1,000 ping rooms alone, as in production: the allocation rooms go.
        for room in fleet.registry.list(Some("alloc")) {
            fleet.registry.remove(&room.id).unwrap();
        }
        let churn_seconds = env("CHURN_SECONDS", 60) as u64;
        let journal = dir.path().join("rooms.jsonl");
        let largest = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sampling = tokio::spawn({
            let (journal, largest) = (journal.clone(), Arc::clone(&largest));
            async move {
                loop {
                    let size = std::fs::metadata(&journal).map_or(0, |m| m.len());
                    largest.fetch_max(size, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        let churn = loadgen::run(Load { duration: Duration::from_secs(churn_seconds), ..load(Mode::Churn { rooms: ping_rooms }) }).await;
        sampling.abort();
        let now = std::fs::metadata(&journal).map_or(0, |m| m.len());
        let sampled = largest.load(std::sync::atomic::Ordering::Relaxed).max(now);
        println!(
            "rooms_api: status-changing pings: {:.0}/s over {} requests ({:.0} s); p99 {:.2} ms, max {:.2} ms; errors {}; rooms.jsonl at most {:.1} MiB (now {:.1} MiB)",
            churn.per_second, churn.requests, churn.seconds, churn.p99_ms, churn.max_ms, churn.errors,
            sampled as f64 / 1048576.0, now as f64 / 1048576.0
        );
    });
}
