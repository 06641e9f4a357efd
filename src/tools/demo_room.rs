//! `troupe demo-room`: a stand-in game server that speaks the rooms API, for demos, for the local
//! runtime's tests and for trying a fleet without a game.
//!
//! It waits `--startup-delay`, then pings its status (`ready`, `active`, `occupied`) with its match
//! count, at once on every change of that count and otherwise every `--ping-interval`. Matches start
//! at random at `--match-rate` per minute or on request (`POST /matches` on its HTTP port) and end
//! after `--match-duration` or on request (`DELETE /matches`).
//!
//! Must always hold: it never runs more than `--max-matches` matches; a refusal from the rooms API
//! (4xx, e.g. a room being terminated) is logged and does not stop it; a ping that did not reach
//! the rooms API (no connection, a 5xx such as a controller failing over) is tried again after
//! the answer's `Retry-After` or a second, sooner than the interval; only the rooms API being
//! unreachable for `--give-up-after` stops it (exit status 1); on SIGTERM or SIGINT it pings
//! `terminating` and returns within a second. It logs to stderr, which the local runtime keeps in
//! the room's log.

use std::collections::VecDeque;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration as StdDuration;

use anyhow::{Context, anyhow, bail};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::domain::spec::Duration;

/// Arguments of `troupe demo-room`. The local runtime passes the room's identity and ports in the
/// environment, so `troupe demo-room` alone is a complete `local.command`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoRoomArgs {
    /// Scheduler this room belongs to.
    #[arg(long, env = "TROUPE_SCHEDULER")]
    pub scheduler: String,

    /// This room's id.
    #[arg(long, env = "TROUPE_ROOM")]
    pub room: String,

    /// Base URL of the rooms API, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "TROUPE_ROOMS_URL")]
    pub rooms_url: String,

    /// This room's token for the rooms API.
    #[arg(long, env = "TROUPE_ROOM_TOKEN", hide_env_values = true)]
    pub token: String,

    /// Port of the room's HTTP API (`GET /`, `POST /matches`, `DELETE /matches`); none when unset.
    #[arg(long, env = "TROUPE_PORT_HTTP")]
    pub http_port: Option<u16>,

    /// UDP port of the game itself (an echo server); none when unset.
    #[arg(long, env = "TROUPE_PORT_GAME")]
    pub game_port: Option<u16>,

    /// Address the HTTP API and the game port listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,

    /// Matches the room can hold at once (the scheduler's `matchAllocation.maxMatches`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_matches: u32,

    /// Time before the first `ready` ping, as a real server spends loading.
    #[arg(long, default_value = "200ms")]
    pub startup_delay: Duration,

    /// Time between two pings when nothing changes.
    #[arg(long, default_value = "5s", value_parser = parse_positive_duration)]
    pub ping_interval: Duration,

    /// Matches started per minute on average, at random; 0: only on request.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub match_rate: f64,

    /// How long a match lasts unless ended on request.
    #[arg(long, default_value = "60s")]
    pub match_duration: Duration,

    /// Stop (exit status 1) once the rooms API has been unreachable this long.
    #[arg(long, default_value = "10m")]
    pub give_up_after: Duration,
    /// Simulated players per match: each joins when its match starts and leaves when it ends,
    /// reported with `POST .../playerevent`.
    #[arg(long, env = "TROUPE_DEMO_PLAYERS_PER_MATCH", default_value_t = 2)]
    pub players_per_match: u32,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 0.0 => Ok(rate),
        _ => Err(format!(
            "invalid match rate {s:?}: expected a number of matches per minute, 0 or more"
        )),
    }
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d: Duration = s.parse()?;
    if d.as_std().is_zero() {
        Err(format!("invalid duration {s:?}: must be more than 0"))
    } else {
        Ok(d)
    }
}

/// How soon a ping that did not reach the rooms API is tried again, unless the answer said
/// (`Retry-After`) or the interval is shorter.
const RETRY_SOON: StdDuration = StdDuration::from_secs(1);
/// A ping that takes longer counts as the rooms API being unreachable; the next one is due anyway.
const PING_TIMEOUT: StdDuration = StdDuration::from_secs(2);
/// The `terminating` ping gets this long, so the room still exits within a second of SIGTERM.
const TERMINATING_PING_TIMEOUT: StdDuration = StdDuration::from_millis(700);
/// Longest part of a refusal's body kept in the log.
const MAX_BODY_CHARS: usize = 200;
/// Largest datagram the game port echoes; larger ones are truncated.
const MAX_DATAGRAM: usize = 2048;

/// Run the demo room until SIGTERM or SIGINT (then `Ok`), or until the rooms API has been
/// unreachable for `--give-up-after` or a part of the room fails (then `Err`).
pub async fn run(args: DemoRoomArgs) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    run_until(args, async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
    })
    .await
}

/// [`run`], ending when `shutdown` completes instead of on a signal (for embedding and tests).
pub async fn run_until(
    args: DemoRoomArgs,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let ping_url = ping_url(&args.rooms_url, &args.scheduler, &args.room)?;
    if args.ping_interval.as_std().is_zero() {
        bail!("--ping-interval must be more than 0s");
    }
    let room = Arc::new(DemoState::new(&args));
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();

    // Bind before the startup delay: a port that cannot be had is an immediate, explained failure.
    if let Some(port) = args.http_port {
        let addr = SocketAddr::new(args.bind, port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind {addr}"))?;
        info!(%addr, "HTTP API listening");
        let app = router(room.clone());
        tasks.spawn(async move { axum::serve(listener, app).await.context("HTTP API") });
    }
    if let Some(port) = args.game_port {
        let addr = SocketAddr::new(args.bind, port);
        let socket = tokio::net::UdpSocket::bind(addr)
            .await
            .with_context(|| format!("bind {addr} (UDP)"))?;
        info!(%addr, "game port (UDP echo) listening");
        tasks.spawn(echo(socket));
    }
    tasks.spawn(end_matches_when_due(room.clone()));
    if args.match_rate > 0.0 {
        tasks.spawn(start_matches_at_random(room.clone(), args.match_rate));
    }

    let client = reqwest::Client::new();
    if args.players_per_match > 0 {
        let url = ping_url.join("playerevent").context("player event URL")?;
        tasks.spawn(simulate_players(
            room.clone(),
            client.clone(),
            url,
            args.token.clone(),
            args.players_per_match,
        ));
    }
    let pinger = Pinger {
        client,
        url: ping_url,
        token: args.token.clone(),
    };
    let life = async {
        tokio::time::sleep(args.startup_delay.as_std()).await;
        info!(scheduler = %args.scheduler, room = %args.room, "room is up");
        pinger
            .keep_pinging(
                &room,
                args.ping_interval.as_std(),
                args.give_up_after.as_std(),
            )
            .await
    };

    tokio::select! {
        result = life => result,
        Some(joined) = tasks.join_next() => match joined {
            Ok(Ok(())) => Err(anyhow!("a part of the room stopped unexpectedly")),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow!(e).context("a part of the room failed")),
        },
        () = shutdown => {
            let matches = room.running();
            info!(running_matches = matches, "terminating");
            pinger.ping("terminating", matches, TERMINATING_PING_TIMEOUT).await;
            Ok(())
        }
    }
    // Returning drops `tasks`, which aborts the HTTP API, the game port and the match timers.
}

/// `{rooms_url}/scheduler/{scheduler}/rooms/{room}/ping`, each name a properly escaped segment.
fn ping_url(rooms_url: &str, scheduler: &str, room: &str) -> anyhow::Result<reqwest::Url> {
    let mut url = reqwest::Url::parse(rooms_url)
        .with_context(|| format!("invalid rooms API URL {rooms_url:?}"))?;
    url.path_segments_mut()
        .map_err(|()| anyhow!("invalid rooms API URL {rooms_url:?}: not a base URL"))?
        .pop_if_empty()
        .extend(["scheduler", scheduler, "rooms", room, "ping"]);
    Ok(url)
}

/// The status a room with `running` of `max` matches reports.
fn status_for(running: u32, max: u32) -> &'static str {
    if running == 0 {
        "ready"
    } else if running >= max {
        "occupied"
    } else {
        "active"
    }
}

/// The room's matches. Every change of the count is published on `count`, which drives the pings.
struct DemoState {
    scheduler: String,
    room: String,
    max_matches: u32,
    match_duration: StdDuration,
    /// When each running match ends, oldest first (all last equally long).
    ends: Mutex<VecDeque<Instant>>,
    count: watch::Sender<u32>,
}

impl DemoState {
    fn new(args: &DemoRoomArgs) -> Self {
        Self {
            scheduler: args.scheduler.clone(),
            room: args.room.clone(),
            max_matches: args.max_matches,
            match_duration: args.match_duration.as_std(),
            ends: Mutex::new(VecDeque::new()),
            count: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Instant>> {
        self.ends
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn running(&self) -> u32 {
        *self.count.borrow()
    }

    fn publish(&self, ends: &VecDeque<Instant>) -> u32 {
        let n = u32::try_from(ends.len()).unwrap_or(u32::MAX);
        self.count
            .send_if_modified(|current| std::mem::replace(current, n) != n);
        n
    }

    /// Start a match now. `Err(running)` when the room is full.
    fn start_match(&self) -> Result<u32, u32> {
        let mut ends = self.lock();
        if ends.len() >= self.max_matches as usize {
            return Err(self.publish(&ends));
        }
        ends.push_back(Instant::now() + self.match_duration);
        let n = self.publish(&ends);
        info!(running_matches = n, "match started");
        Ok(n)
    }

    /// End the oldest match. `None` when none is running.
    fn end_match(&self) -> Option<u32> {
        let mut ends = self.lock();
        ends.pop_front()?;
        let n = self.publish(&ends);
        info!(running_matches = n, "match ended");
        Some(n)
    }

    /// End the matches due by `now`; returns when the next one is due.
    fn end_due(&self, now: Instant) -> Option<Instant> {
        let mut ends = self.lock();
        let before = ends.len();
        while ends.front().is_some_and(|end| *end <= now) {
            ends.pop_front();
        }
        if ends.len() != before {
            let n = self.publish(&ends);
            info!(running_matches = n, "match over");
        }
        ends.front().copied()
    }

    fn view(&self) -> RoomView {
        let running = self.running();
        RoomView {
            scheduler: self.scheduler.clone(),
            room: self.room.clone(),
            status: status_for(running, self.max_matches),
            running_matches: running,
            max_matches: self.max_matches,
        }
    }
}

/// What `GET /` and the match endpoints answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RoomView {
    scheduler: String,
    room: String,
    status: &'static str,
    running_matches: u32,
    max_matches: u32,
}

/// The room's own HTTP API, for tests and players.
fn router(room: Arc<DemoState>) -> Router {
    Router::new()
        .route("/", get(show))
        .route("/matches", post(start_match).delete(end_match))
        .with_state(room)
}

type Answer = (StatusCode, Json<serde_json::Value>);

fn view_answer(status: StatusCode, room: &DemoState) -> Answer {
    (
        status,
        Json(serde_json::to_value(room.view()).unwrap_or_default()),
    )
}

async fn show(State(room): State<Arc<DemoState>>) -> Answer {
    view_answer(StatusCode::OK, &room)
}

async fn start_match(State(room): State<Arc<DemoState>>) -> Answer {
    match room.start_match() {
        Ok(_) => view_answer(StatusCode::CREATED, &room),
        Err(running) => (
            StatusCode::CONFLICT,
            Json(serde_json::json!({
                "error": format!("room is full: {running} of {} matches running", room.max_matches)
            })),
        ),
    }
}

async fn end_match(State(room): State<Arc<DemoState>>) -> Answer {
    match room.end_match() {
        Some(_) => view_answer(StatusCode::OK, &room),
        None => (
            StatusCode::CONFLICT,
            Json(serde_json::json!({"error": "no match is running"})),
        ),
    }
}

/// Ends matches as they run out of time.
async fn end_matches_when_due(room: Arc<DemoState>) -> anyhow::Result<()> {
    let mut changes = room.count.subscribe();
    loop {
        let next = room.end_due(Instant::now());
        tokio::select! {
            () = sleep_until_or_forever(next) => {}
            // A new match may end before the one waited for; the sender lives as long as `room`.
            _ = changes.changed() => {}
        }
    }
}

async fn sleep_until_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Starts matches at random, `rate` per minute on average (a Poisson process); a start that
/// finds the room full is skipped, as a matchmaker would go elsewhere.
async fn start_matches_at_random(room: Arc<DemoState>, rate: f64) -> anyhow::Result<()> {
    let mean_gap_secs = 60.0 / rate;
    loop {
        let gap = -uniform_open01().ln() * mean_gap_secs;
        tokio::time::sleep(StdDuration::try_from_secs_f64(gap).unwrap_or(StdDuration::MAX)).await;
        if room.start_match().is_err() {
            debug!("random match skipped: room is full");
        }
    }
}

/// A uniform random number in (0, 1]; 0.5 if the system has no randomness to give.
fn uniform_open01() -> f64 {
    const MANTISSA_BITS: u32 = 53;
    match getrandom::u64() {
        Ok(x) => ((x >> (64 - MANTISSA_BITS)) + 1) as f64 / (1u64 << MANTISSA_BITS) as f64,
        Err(_) => 0.5,
    }
}

/// The game port: echoes every datagram back, so clients can check the port is real.
async fn echo(socket: tokio::net::UdpSocket) -> anyhow::Result<()> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, peer) = socket.recv_from(&mut buf).await.context("game port")?;
        if let Err(e) = socket.send_to(&buf[..n], peer).await {
            debug!(%peer, error = %e, "echo not sent");
        }
    }
}

/// What became of one ping.
#[derive(Debug, PartialEq)]
enum PingOutcome {
    /// The rooms API answered (accepting or refusing).
    Reached,
    /// No answer, or the API failed (5xx): counts towards giving up. With the answer's
    /// `Retry-After`, when it had one.
    Unreachable(String, Option<StdDuration>),
}

/// Players join as matches start and leave as they end; each change is reported to the rooms API
/// (best effort: a refused or lost event is logged, the room goes on).
async fn simulate_players(
    room: Arc<DemoState>,
    client: reqwest::Client,
    url: reqwest::Url,
    token: String,
    per_match: u32,
) -> anyhow::Result<()> {
    let mut changes = room.count.subscribe();
    let mut matches: VecDeque<Vec<String>> = VecDeque::new();
    let mut next_player = 0u64;
    loop {
        let running = *changes.borrow_and_update() as usize;
        while matches.len() < running {
            let players: Vec<String> = (0..per_match)
                .map(|_| {
                    next_player += 1;
                    format!("player-{next_player}")
                })
                .collect();
            for p in &players {
                send_player_event(&client, &url, &token, "playerJoin", p).await;
            }
            matches.push_back(players);
        }
        while matches.len() > running {
            for p in matches.pop_front().unwrap_or_default() {
                send_player_event(&client, &url, &token, "playerLeft", &p).await;
            }
        }
        if changes.changed().await.is_err() {
            return Ok(());
        }
    }
}

async fn send_player_event(
    client: &reqwest::Client,
    url: &reqwest::Url,
    token: &str,
    event: &str,
    player: &str,
) {
    let body = serde_json::json!({"event": event, "playerId": player});
    match client
        .post(url.clone())
        .bearer_auth(token)
        .json(&body)
        .timeout(PING_TIMEOUT)
        .send()
        .await
    {
        Ok(resp) if resp.status().is_success() => {}
        Ok(resp) => warn!(event, player, status = %resp.status(), "player event refused"),
        Err(e) => warn!(event, player, error = %e, "player event not sent"),
    }
}

struct Pinger {
    client: reqwest::Client,
    url: reqwest::Url,
    token: String,
}

impl Pinger {
    /// Ping on every change of the match count and every `interval`; returns an error only once
    /// the rooms API has been unreachable for `give_up_after`.
    async fn keep_pinging(
        &self,
        room: &DemoState,
        interval: StdDuration,
        give_up_after: StdDuration,
    ) -> anyhow::Result<()> {
        let mut changes = room.count.subscribe();
        let mut last_reached = Instant::now();
        loop {
            let running = *changes.borrow_and_update();
            let mut next = interval;
            match self
                .ping(status_for(running, room.max_matches), running, PING_TIMEOUT)
                .await
            {
                PingOutcome::Reached => last_reached = Instant::now(),
                PingOutcome::Unreachable(error, retry_after) => {
                    let down_for = last_reached.elapsed();
                    if down_for >= give_up_after {
                        bail!(
                            "giving up: the rooms API has been unreachable for {}s: {error}",
                            down_for.as_secs()
                        );
                    }
                    next = interval.min(retry_after.unwrap_or(RETRY_SOON));
                }
            }
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        // Cannot happen while `room` lives; fall back to the interval.
                        tokio::time::sleep(interval).await;
                    }
                }
                () = tokio::time::sleep(next) => {}
            }
        }
    }

    async fn ping(&self, status: &str, running_matches: u32, timeout: StdDuration) -> PingOutcome {
        let body = serde_json::json!({"status": status, "runningMatches": running_matches});
        let sent = self
            .client
            .put(self.url.clone())
            .bearer_auth(&self.token)
            .json(&body)
            .timeout(timeout)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                let error = format!("{:#}", anyhow::Error::from(e));
                warn!(%status, %error, "ping failed: rooms API unreachable");
                return PingOutcome::Unreachable(error, None);
            }
        };
        let code = response.status();
        if code.is_success() {
            debug!(%status, running_matches, "ping accepted");
            return PingOutcome::Reached;
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .map(StdDuration::from_secs);
        let text: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(MAX_BODY_CHARS)
            .collect();
        if code.is_server_error() {
            warn!(%status, %code, body = %text, "ping failed: rooms API error");
            PingOutcome::Unreachable(format!("rooms API answered {code}: {text}"), retry_after)
        } else {
            warn!(%status, %code, body = %text, "ping refused by the rooms API");
            PingOutcome::Reached
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use axum::response::IntoResponse;
    use clap::Parser;
    use tower::ServiceExt;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: DemoRoomArgs,
    }

    fn args(extra: &[&str]) -> DemoRoomArgs {
        let base = [
            "demo-room",
            "--scheduler",
            "arena",
            "--room",
            "arena-1",
            "--rooms-url",
            "http://127.0.0.1:1",
            "--token",
            "t",
        ];
        Cli::try_parse_from(base.iter().chain(extra)).unwrap().args
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let a = args(&[]);
        assert_eq!(a.max_matches, 1);
        assert_eq!(a.startup_delay, Duration::from_millis(200));
        assert_eq!(a.ping_interval, Duration::from_secs(5));
        assert_eq!(a.match_rate, 0.0);
        assert_eq!(a.match_duration, Duration::from_secs(60));
        assert_eq!(a.give_up_after, Duration::from_secs(600));
    }

    #[test]
    fn nonsensical_flags_are_refused() {
        let base = [
            "demo-room",
            "--scheduler",
            "a",
            "--room",
            "r",
            "--rooms-url",
            "http://h",
            "--token",
            "t",
        ];
        for bad in [
            ["--max-matches", "0"],
            ["--match-rate", "-1"],
            ["--match-rate", "NaN"],
            ["--ping-interval", "0s"],
        ] {
            assert!(
                Cli::try_parse_from(base.iter().chain(&bad)).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn the_ping_url_escapes_names_and_keeps_a_base_path() {
        let url = ping_url("http://h:8080/api/", "arena", "arena 1").unwrap();
        assert_eq!(
            url.as_str(),
            "http://h:8080/api/scheduler/arena/rooms/arena%201/ping"
        );
        assert!(ping_url("not a url", "a", "b").is_err());
    }

    #[test]
    fn status_follows_the_match_count() {
        assert_eq!(status_for(0, 1), "ready");
        assert_eq!(status_for(1, 1), "occupied");
        assert_eq!(status_for(1, 3), "active");
        assert_eq!(status_for(3, 3), "occupied");
    }

    #[tokio::test]
    async fn matches_are_capped_and_end_when_due() {
        let room = DemoState::new(&args(&["--max-matches", "2", "--match-duration", "1s"]));
        assert_eq!(room.start_match(), Ok(1));
        assert_eq!(room.start_match(), Ok(2));
        assert_eq!(room.start_match(), Err(2));
        let first_end = room.end_due(Instant::now()).expect("matches running");
        let second_end = room.end_due(first_end).expect("the later match still runs");
        assert_eq!(room.running(), 1);
        assert_eq!(room.end_due(second_end), None);
        assert_eq!(room.running(), 0);
        assert_eq!(room.end_match(), None);
    }

    #[tokio::test]
    async fn the_http_api_starts_and_ends_matches() {
        let room = Arc::new(DemoState::new(&args(&[])));
        let call = |method: &str, path: &str| {
            let req = Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap();
            router(room.clone()).oneshot(req)
        };
        assert_eq!(
            call("POST", "/matches").await.unwrap().status(),
            StatusCode::CREATED
        );
        assert_eq!(
            call("POST", "/matches").await.unwrap().status(),
            StatusCode::CONFLICT
        );
        let shown = call("GET", "/").await.unwrap();
        let body = axum::body::to_bytes(shown.into_body(), 1 << 16)
            .await
            .unwrap();
        let view: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(view["status"], "occupied");
        assert_eq!(view["runningMatches"], 1);
        assert_eq!(
            call("DELETE", "/matches").await.unwrap().status(),
            StatusCode::OK
        );
        assert_eq!(
            call("DELETE", "/matches").await.unwrap().status(),
            StatusCode::CONFLICT
        );
    }

    /// Regression: a room whose ping met a failing-over controller (503) waited a whole ping
    /// interval before trying again.
    #[tokio::test]
    async fn a_ping_answered_503_is_tried_again_after_retry_after_not_the_interval() {
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let answers = Arc::new(Mutex::new(0u32));
        let api = Router::new().route(
            "/scheduler/arena/rooms/arena-1/ping",
            axum::routing::put(move || {
                let (answers, seen_tx) = (answers.clone(), seen_tx.clone());
                async move {
                    let n = {
                        let mut n = answers.lock().unwrap();
                        *n += 1;
                        *n
                    };
                    let _ = seen_tx.send(Instant::now());
                    if n == 1 {
                        let retry = [(axum::http::header::RETRY_AFTER, "1")];
                        (StatusCode::SERVICE_UNAVAILABLE, retry, "standby").into_response()
                    } else {
                        StatusCode::OK.into_response()
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, api).await });
        let room = DemoState::new(&args(&[]));
        let pinger = Pinger {
            client: reqwest::Client::new(),
            url: ping_url(&format!("http://{addr}"), "arena", "arena-1").unwrap(),
            token: "t".into(),
        };
        let interval = StdDuration::from_secs(600);
        let pinging = pinger.keep_pinging(&room, interval, interval);
        let second = async {
            let first = seen.recv().await.unwrap();
            let second = seen.recv().await.unwrap();
            second - first
        };
        let gap = tokio::select! {
            gap = second => gap,
            _ = pinging => panic!("keep_pinging ended"),
        };
        assert!(
            gap >= StdDuration::from_millis(900) && gap < StdDuration::from_secs(5),
            "tried again after {gap:?}"
        );
    }

    #[test]
    fn random_gaps_are_positive_and_finite() {
        for _ in 0..1000 {
            let u = uniform_open01();
            assert!(u > 0.0 && u <= 1.0);
            assert!((-u.ln()).is_finite());
        }
    }
}
