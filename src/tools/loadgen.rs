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
    /// Like `Ping`, but every other room alternates between `occupied` and `ready` from one
    /// round of the rooms to the next, so half of the pings change a status and are journaled.
    Churn {
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
    /// 503s (a standby replica, a controller taking over): the client waits a second, as the
    /// answer's `Retry-After` asks, and goes on.
    pub unavailable: u64,
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
    unavailable: u64,
    errors: u64,
    allocated: Vec<String>,
}

pub async fn run(load: Load) -> Report {
    let started = Instant::now();
    let deadline = started + load.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..load.clients {
        let load = load.clone();
        tasks.spawn(async move { one_client(&load, client, deadline).await });
    }
    let mut all = ClientResult::default();
    while let Some(r) = tasks.join_next().await {
        let Ok(r) = r else { continue };
        all.latencies_us.extend(r.latencies_us);
        all.ok += r.ok;
        all.no_room += r.no_room;
        all.errors += r.errors;
        all.unavailable += r.unavailable;
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
        unavailable: all.unavailable,
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

/// One keep-alive HTTP/1.1 connection. A plain hyper connection rather than a pooled client:
/// on a small machine the load generator shares the cores with the server it measures.
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    host: String,
}

impl Connection {
    async fn open(base_url: &str) -> Option<Self> {
        let host = base_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let stream = tokio::net::TcpStream::connect(&host).await.ok()?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .ok()?;
        tokio::spawn(conn);
        Some(Self { sender, host })
    }

    /// Send one request; the status and body, or `None` when the connection failed.
    async fn send(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &'static [u8],
    ) -> Option<(u16, bytes::Bytes)> {
        use http_body_util::BodyExt;
        self.sender.ready().await.ok()?;
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req
            .body(http_body_util::Full::new(bytes::Bytes::from_static(body)))
            .ok()?;
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.sender.send_request(req))
            .await
            .ok()?
            .ok()?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some((status, body))
    }
}

/// How long a client waits after a 503 (the server's `Retry-After`).
const RETRY_AFTER: Duration = Duration::from_secs(1);
const READY: &[u8] = br#"{"status":"ready"}"#;
const OCCUPIED: &[u8] = br#"{"status":"occupied"}"#;

async fn one_client(load: &Load, client: usize, deadline: Instant) -> ClientResult {
    let mut out = ClientResult::default();
    let mut i = client;
    let mut conn: Option<Connection> = None;
    while Instant::now() < deadline {
        if conn.is_none() {
            conn = Connection::open(&load.base_url).await;
            if conn.is_none() {
                out.errors += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        }
        let c = conn.as_mut().expect("opened above");
        let t = Instant::now();
        let answer = match &load.mode {
            Mode::Ping { rooms } | Mode::Churn { rooms } => {
                if rooms.is_empty() {
                    break;
                }
                let (room, round) = (i % rooms.len(), i / rooms.len());
                let (s, r, token) = &rooms[room];
                i += load.clients;
                let churn = matches!(load.mode, Mode::Churn { .. });
                let body = if churn && room % 2 == 0 && round % 2 == 1 {
                    OCCUPIED
                } else {
                    READY
                };
                c.send(
                    "PUT",
                    &format!("/scheduler/{s}/rooms/{r}/ping"),
                    Some(token),
                    body,
                )
                .await
            }
            Mode::Allocate {
                scheduler,
                api_token,
            } => {
                c.send(
                    "POST",
                    &format!("/scheduler/{scheduler}/rooms/allocate"),
                    api_token.as_deref(),
                    b"",
                )
                .await
            }
        };
        out.latencies_us
            .push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        match answer {
            Some((200, body)) => {
                out.ok += 1;
                if matches!(load.mode, Mode::Allocate { .. }) {
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    out.allocated.extend(v["room"].as_str().map(str::to_string));
                }
            }
            Some((409, _)) if matches!(load.mode, Mode::Allocate { .. }) => {
                out.no_room += 1;
                break;
            }
            Some((503, _)) => {
                out.unavailable += 1;
                tokio::time::sleep(RETRY_AFTER).await;
            }
            Some(_) => out.errors += 1,
            None => {
                out.errors += 1;
                conn = None;
            }
        }
    }
    out
}
