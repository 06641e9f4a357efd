//! Benchmark: how long a matchmaker waits when the leading replica goes away, on the real test
//! control plane. Two `troupe serve --leader-elect` replicas share one scheduler of pod rooms; the
//! leader is killed with -9 (a lost node), or stopped with SIGTERM (an upgrade), and a matchmaker
//! allocating through both replicas every 20 ms — retrying 503s and refused connections, as a
//! client should — times the gap until an allocation succeeds again. The stopped replica is
//! started again as the standby before the next round.
//!
//! Run: `TROUPE_TEST_KUBECONFIG=... cargo bench --bench failover` (`LEASE=5s` for another lease
//! duration, default 15s; `ROUNDS=3` rounds of each). Under `cargo test` it only checks that it
//! builds.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Serve;

const ROOMS: u32 = 20;
const LIMIT: Duration = Duration::from_secs(120);

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("failover: skipped (run it with `cargo bench --bench failover`)");
        return;
    }
    let kubeconfig = std::env::var("TROUPE_TEST_KUBECONFIG")
        .or_else(|_| std::env::var("KUBECONFIG"))
        .expect(
            "failover needs a cluster: set TROUPE_TEST_KUBECONFIG (tests/cluster/up.sh starts one)",
        );
    let lease = std::env::var("LEASE").unwrap_or_else(|_| "15s".into());
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(&kubeconfig, &lease, rounds));
}

struct Replicas {
    dir: tempfile::TempDir,
    args: Vec<String>,
    kubeconfig: String,
    serves: [Option<Serve>; 2],
}

impl Replicas {
    fn start(&mut self, i: usize) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let state = self.dir.path().join(format!("state-{i}"));
        self.serves[i] = Some(Serve::start(
            &args,
            &state,
            &[("KUBECONFIG", &self.kubeconfig)],
        ));
    }

    fn urls(&self) -> Vec<String> {
        self.serves
            .iter()
            .flatten()
            .map(|s| s.url.clone())
            .collect()
    }

    async fn leader(&self, http: &reqwest::Client) -> usize {
        let began = Instant::now();
        loop {
            for (i, s) in self.serves.iter().enumerate() {
                let Some(s) = s else { continue };
                let ready = http.get(format!("{}/readyz", s.url)).send().await;
                if ready.is_ok_and(|r| r.status().is_success()) {
                    return i;
                }
            }
            assert!(began.elapsed() < LIMIT, "no replica leads");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn run(kubeconfig: &str, lease: &str, rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut suffix = [0u8; 3];
    getrandom::fill(&mut suffix).unwrap();
    let prefix = format!("failover-{}-", hex::encode(suffix));
    let fleets = dir.path().join("fleets");
    std::fs::create_dir_all(&fleets).unwrap();
    std::fs::write(
        fleets.join("arena.yaml"),
        format!(
            "name: arena\ngame: bench\nroomsReplicas: {ROOMS}\nportRange: {{start: 46100, end: 46200}}\n\
             timeouts: {{pending: 600s, unready: 600s, ping: 600s, terminating: 60s}}\n\
             spec:\n  terminationGracePeriod: 1s\n  nodeSelector: {{pool: game}}\n  containers:\n    \
             - name: server\n      image: registry.example/bench:1\n      \
             ports: [{{name: game, protocol: UDP, port: 7777}}]\n"
        ),
    )
    .unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "failover-bench-secret").unwrap();
    let args = [
        fleets.to_str().unwrap(),
        "--runtime",
        "kubernetes",
        "--kube-namespace-prefix",
        &prefix,
        "--secret-file",
        secret.to_str().unwrap(),
        "--leader-elect",
        "--lease-duration",
        lease,
        "--allocation-ttl",
        "10m",
    ]
    .map(String::from)
    .to_vec();
    let mut replicas = Replicas {
        dir,
        args,
        kubeconfig: kubeconfig.to_owned(),
        serves: [None, None],
    };
    replicas.start(0);
    replicas.start(1);
    let http = reqwest::Client::new();
    let leader = replicas.leader(&http).await;
    let url = replicas.serves[leader].as_ref().unwrap().url.clone();
    ping_every_room_ready(&http, &url, &replicas.dir.path().join("secret")).await;

    let (mut killed, mut stopped) = (vec![], vec![]);
    for round in 0..rounds * 2 {
        // The cluster has every room's status before the leader goes.
        settle(&http, &replicas).await;
        let leader = replicas.leader(&http).await;
        let mut serve = replicas.serves[leader].take().unwrap();
        let began = Instant::now();
        if round % 2 == 0 {
            serve.child.kill().unwrap();
            serve.child.wait().unwrap();
        } else {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &serve.id().to_string()])
                .status();
            // Dropped below: waited for once the next leader answers.
        }
        let gap = allocate_until_served(&http, &replicas.urls(), began).await;
        if round % 2 == 0 {
            killed.push(gap);
        } else {
            stopped.push(gap);
        }
        println!(
            "failover: round {}: {} of the leader, allocations again after {:.2} s",
            round + 1,
            if round % 2 == 0 { "kill -9" } else { "SIGTERM" },
            gap.as_secs_f64()
        );
        drop(serve);
        replicas.start(leader);
    }
    let show = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "failover: lease {lease}: kill -9 of the leader → allocations again after {} s",
        show(&killed)
    );
    println!(
        "failover: lease {lease}: SIGTERM of the leader → allocations again after {} s",
        show(&stopped)
    );
}

/// Every room pings `ready` once, with its own token (the rooms' ping timeout is long).
async fn ping_every_room_ready(http: &reqwest::Client, url: &str, secret: &Path) {
    let secret = std::fs::read_to_string(secret).unwrap();
    let began = Instant::now();
    loop {
        let rooms: Vec<serde_json::Value> = match http
            .get(format!("{url}/api/v1/schedulers/arena/rooms"))
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => vec![],
        };
        let ready = rooms.iter().filter(|r| r["status"] == "ready").count();
        if ready == ROOMS as usize {
            return;
        }
        for room in rooms.iter().filter(|r| r["status"] == "unready") {
            let id = room["id"].as_str().unwrap();
            let token = troupe::domain::room::token::room_token(secret.as_bytes(), "arena", id);
            let _ = http
                .put(format!("{url}/scheduler/arena/rooms/{id}/ping"))
                .bearer_auth(token)
                .json(&serde_json::json!({"status": "ready"}))
                .send()
                .await;
        }
        assert!(began.elapsed() < LIMIT, "the rooms never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Wait until the standby is up and the leader has written every queued status to the cluster.
async fn settle(http: &reqwest::Client, replicas: &Replicas) {
    let began = Instant::now();
    loop {
        let mut up = 0;
        let mut pending = 0.0;
        for s in replicas.serves.iter().flatten() {
            if let Ok(r) = http.get(format!("{}/metrics", s.url)).send().await {
                up += 1;
                let text = r.text().await.unwrap_or_default();
                pending += common::gauge(&text, "troupe_runtime_records_pending");
            }
        }
        if up == 2 && pending == 0.0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            return;
        }
        assert!(began.elapsed() < LIMIT, "the replicas never settled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Allocate through `urls` every 20 ms until one succeeds; the time since `began`.
async fn allocate_until_served(
    http: &reqwest::Client,
    urls: &[String],
    began: Instant,
) -> Duration {
    for attempt in 0.. {
        let url = &urls[attempt % urls.len()];
        let answer = http
            .post(format!("{url}/scheduler/arena/rooms/allocate"))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        match answer {
            Ok(r) if r.status().is_success() => return began.elapsed(),
            Ok(r) if r.status().as_u16() == 409 => panic!("no room left to allocate"),
            _ => {}
        }
        assert!(began.elapsed() < LIMIT, "allocations never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    unreachable!()
}
