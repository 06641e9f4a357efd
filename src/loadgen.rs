//! A load generator for the rooms API and allocation: N concurrent clients over loopback HTTP,
//! reporting throughput and latency percentiles. Used by `troupe load` and the benchmarks.
//!
//! Must hold: a run is bounded in time and in requests per client; only the given base URL is
//! contacted.

use std::time::{Duration, Instant};

use serde::Serialize;

/// What the clients do.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Each client pings rooms `ready`, round robin: (scheduler, room, token).
    Ping {
        rooms: Vec<(String, String, String)>,
    },
    /// Each client allocates from a scheduler until there is no room left.
    Allocate {
        scheduler: String,
        api_token: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Load {
    pub base_url: String,
    pub clients: usize,
    pub duration: Duration,
    pub mode: Mode,
}

/// Longest a single request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub requests: u64,
    pub ok: u64,
    /// Allocation answers "no room".
    pub no_room: u64,
    pub errors: u64,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Rooms handed out (allocate mode), in answer order.
    #[serde(skip)]
    pub allocated: Vec<String>,
    /// Rooms handed out more than once: must be zero.
    pub duplicates: u64,
}

#[derive(Default)]
struct ClientResult {
    latencies_us: Vec<u32>,
    ok: u64,
    no_room: u64,
    errors: u64,
    allocated: Vec<String>,
}

pub async fn run(load: Load) -> Report {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(load.clients)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("an HTTP client builds");
    let started = Instant::now();
    let deadline = started + load.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..load.clients {
        let (http, load) = (http.clone(), load.clone());
        tasks.spawn(async move { one_client(&http, &load, client, deadline).await });
    }
    let mut all = ClientResult::default();
    while let Some(r) = tasks.join_next().await {
        let Ok(r) = r else { continue };
        all.latencies_us.extend(r.latencies_us);
        all.ok += r.ok;
        all.no_room += r.no_room;
        all.errors += r.errors;
        all.allocated.extend(r.allocated);
    }
    let seconds = started.elapsed().as_secs_f64();
    all.latencies_us.sort_unstable();
    let pct = |p: f64| {
        if all.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((all.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(all.latencies_us[i]) / 1000.0
    };
    let requests = all.latencies_us.len() as u64;
    let distinct: std::collections::HashSet<&String> = all.allocated.iter().collect();
    Report {
        requests,
        ok: all.ok,
        no_room: all.no_room,
        errors: all.errors,
        seconds,
        per_second: requests as f64 / seconds,
        p50_ms: pct(0.50),
        p90_ms: pct(0.90),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
        duplicates: (all.allocated.len() - distinct.len()) as u64,
        allocated: all.allocated,
    }
}

async fn one_client(
    http: &reqwest::Client,
    load: &Load,
    client: usize,
    deadline: Instant,
) -> ClientResult {
    let mut out = ClientResult::default();
    let mut i = client;
    while Instant::now() < deadline {
        let t = Instant::now();
        let outcome = match &load.mode {
            Mode::Ping { rooms } => {
                if rooms.is_empty() {
                    break;
                }
                let (s, r, token) = &rooms[i % rooms.len()];
                i += load.clients;
                http.put(format!("{}/scheduler/{s}/rooms/{r}/ping", load.base_url))
                    .bearer_auth(token)
                    .json(&serde_json::json!({"status": "ready"}))
                    .send()
                    .await
                    .map(|resp| (resp.status().as_u16(), None))
            }
            Mode::Allocate {
                scheduler,
                api_token,
            } => {
                let mut req = http.post(format!(
                    "{}/scheduler/{scheduler}/rooms/allocate",
                    load.base_url
                ));
                if let Some(t) = api_token {
                    req = req.bearer_auth(t);
                }
                match req.send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let body: serde_json::Value = resp.json().await.unwrap_or_default();
                        Ok((status, body["room"].as_str().map(str::to_string)))
                    }
                    Err(e) => Err(e),
                }
            }
        };
        out.latencies_us
            .push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        match outcome {
            Ok((200, room)) => {
                out.ok += 1;
                out.allocated.extend(room);
            }
            Ok((409, _)) if matches!(load.mode, Mode::Allocate { .. }) => {
                out.no_room += 1;
                break;
            }
            _ => out.errors += 1,
        }
    }
    out
}
