//! Shared harness for tests that run `troupe serve` for real: a git repository of scheduler YAML
//! in a temp directory, the server as a child process on a loopback port, a management API client,
//! and cleanup that kills the server and every room it started, even when a test fails.
#![allow(dead_code)]

pub mod router;

use std::collections::BTreeSet;
use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use troupe::controller::DesiredState;
use troupe::domain::operation::{OpStatus, Operation};
use troupe::domain::plan::Plan;
use troupe::domain::room::{Room, RoomStatus};
use troupe::source::SourceStatus;

pub mod git_http;

pub const TROUPE: &str = env!("CARGO_BIN_EXE_troupe");

/// A git repository of scheduler files.
pub struct Repo {
    pub dir: tempfile::TempDir,
}

impl Repo {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q", "-b", "main"]);
        git(dir.path(), &["config", "user.email", "ci@troupe.test"]);
        git(dir.path(), &["config", "user.name", "CI"]);
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write `files` (path, contents; empty contents deletes) and commit them.
    pub fn commit(&self, message: &str, files: &[(&str, &str)]) -> String {
        for (path, contents) in files {
            let p = self.path().join(path);
            if contents.is_empty() {
                let _ = std::fs::remove_file(&p);
            } else {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, contents).unwrap();
            }
        }
        git(self.path(), &["add", "-A"]);
        git(
            self.path(),
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        let out = Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(self.path())
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

pub fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?} failed");
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scheduler document for tests, running `troupe demo-room`.
pub fn scheduler_yaml(
    name: &str,
    replicas: u32,
    ports: (u16, u16),
    version: &str,
    extra: &str,
) -> String {
    format!(
        r#"name: {name}
game: arena
roomsReplicas: {replicas}
maxSurge: 1
portRange: {{start: {}, end: {}}}
timeouts: {{pending: 30s, unready: 30s, ping: 30s, terminating: 30s}}
spec:
  terminationGracePeriod: 5s
  containers:
    - name: server
      image: registry.example/arena:{version}
      env: [{{name: BUILD, value: "{version}"}}]
      ports: [{{name: http, protocol: TCP, port: 8080}}]
local:
  command: ["troupe", "demo-room", "--ping-interval", "1s", "--startup-delay", "300ms"]
{extra}"#,
        ports.0, ports.1
    )
}

/// A JSON answer as text, as the server sent it (or the CLI printed it): shown as is in assertion
/// messages, read as the type the test expects with [`Reply::json`] (or [`Reply::error`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Reply(pub String);

impl Reply {
    /// The body as `T`; panics with the body when it is not one.
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_str(&self.0).unwrap_or_else(|e| {
            panic!(
                "the answer is not a {} ({e}): {}",
                std::any::type_name::<T>(),
                self.0
            )
        })
    }

    /// The body as the API's error.
    pub fn error(&self) -> ApiErrorDetail {
        self.json::<ApiErrorBody>().error
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Every error the API answers: `{"error": {"code", "message"}}`, exactly (the server builds it
/// from `troupe::http::ApiError`, which has no serde type of its own).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiErrorBody {
    pub error: ApiErrorDetail,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiErrorDetail {
    pub code: String,
    pub message: String,
}

/// `GET /api/v1/revision`: the controller's desired state (less the plan) and how fresh the
/// source is. The server's own type for it (`RevisionView`) is private to its module; this one
/// is made of the same public parts.
#[derive(Debug, Clone, Deserialize)]
pub struct Revision {
    #[serde(flatten)]
    pub desired: DesiredState,
    pub source: Option<SourceStatus>,
}

/// What `POST /hooks/git` answers an authentic push: whether the source checks now, and why not.
#[derive(Debug, Clone, Deserialize)]
pub struct HookAnswer {
    pub triggered: bool,
    pub reason: Option<String>,
}

/// A running `troupe serve`.
pub struct Server {
    pub child: Option<Child>,
    /// The port it listens on: 0 until the first start has bound one and said which.
    pub port: u16,
    pub url: String,
    pub state_dir: PathBuf,
    source: PathBuf,
    extra_args: Vec<String>,
    env: Vec<(String, String)>,
    pub http: reqwest::Client,
}

impl Server {
    /// Start serving `source` with a fresh state directory inside `state_root`.
    pub fn start(source: &Path, state_dir: &Path, extra_args: &[&str]) -> Self {
        Self::start_with_env(source, state_dir, extra_args, &[])
    }

    /// Like [`Server::start`], with extra environment variables for the server.
    pub fn start_with_env(
        source: &Path,
        state_dir: &Path,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut s = Self {
            child: None,
            port: 0,
            url: String::new(),
            state_dir: state_dir.to_path_buf(),
            source: source.to_path_buf(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            http: reqwest::Client::new(),
        };
        s.spawn();
        s
    }

    /// (Re)start the server process on the same state directory. The first start listens on
    /// port 0 and reads the port it was given from the server's first line; a restart asks for
    /// that port again, since its rooms know the URL.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state_dir.with_extension("serve.log"))
            .unwrap();
        // A test that sets its own poll interval keeps it; others poll fast.
        let poll: &[&str] = if self.extra_args.iter().any(|a| a == "--poll-interval") {
            &[]
        } else {
            &["--poll-interval", "200ms"]
        };
        let mut child = Command::new(TROUPE)
            .arg("serve")
            .arg(&self.source)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .env_remove("TROUPE_LISTEN")
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(poll)
            .args(&self.extra_args)
            .env("TROUPE_LOG", "info,troupe=debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("troupe serve starts");
        // The first line on stdout announces the URL once the listener is bound.
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let port = line
            .split(" on http://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line from serve: {line:?} (log: {})",
                    self.log()
                )
            });
        assert!(
            self.port == 0 || self.port == port,
            "restarted on port {port}, not {}",
            self.port
        );
        self.port = port;
        self.url = format!("http://127.0.0.1:{port}");
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state_dir.with_extension("serve.log")).unwrap_or_default()
    }

    /// Stop the server with SIGTERM, as a Deployment's rollout does, and wait until it exits.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("the server runs");
        let pid = rustix::process::Pid::from_child(&c);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        c.wait().unwrap()
    }

    /// `kill -9` the server (rooms keep running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// A GET: the status and the body.
    pub async fn get(&self, path: &str) -> (u16, Reply) {
        let resp = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, Reply(resp.text().await.unwrap()))
    }

    /// A GET answered with success, read as `T`; panics with the status and the body otherwise.
    pub async fn get_as<T: DeserializeOwned>(&self, path: &str) -> T {
        let (status, body) = self.get(path).await;
        assert!(
            (200..300).contains(&status),
            "GET {path} answered {status}: {body}"
        );
        serde_json::from_str(&body.0).unwrap_or_else(|e| {
            panic!(
                "GET {path}: not a {} ({e}): {body}",
                std::any::type_name::<T>()
            )
        })
    }

    /// A GET answered as text (`/metrics`).
    pub async fn text(&self, path: &str) -> String {
        let resp = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        resp.text().await.unwrap()
    }

    /// A POST of `body` as JSON: the status and the body of the answer.
    pub async fn post(&self, path: &str, body: &impl Serialize) -> (u16, Reply) {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, Reply(resp.text().await.unwrap()))
    }

    /// The sum of the `/metrics` samples whose series starts with `series` (a name, or a name
    /// and the start of its labels: `troupe_pings_total{outcome="ok"`).
    pub async fn metric(&self, series: &str) -> f64 {
        self.text("/metrics")
            .await
            .lines()
            .filter(|l| l.starts_with(series))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Wait until `series` (see [`Server::metric`]) has grown by at least `by`.
    pub async fn metric_grows(&self, series: &str, by: f64, within: Duration) {
        let start = self.metric(series).await;
        wait_for(&format!("{series} to grow by {by}"), within, || async {
            (self.metric(series).await >= start + by).then_some(())
        })
        .await;
    }

    /// Reconciles the controller has completed (`reconciles` of `GET /api/v1/revision`).
    pub async fn reconciles(&self) -> u64 {
        self.revision().await.desired.reconciles
    }

    /// `GET /api/v1/revision`.
    pub async fn revision(&self) -> Revision {
        self.get_as("/api/v1/revision").await
    }

    /// `GET /api/v1/plan`; `None` while no revision is loaded yet (503 `no_revision`).
    pub async fn plan(&self) -> Option<Plan> {
        let (status, body) = self.get("/api/v1/plan").await;
        if status == 503 {
            assert_eq!(body.error().code, "no_revision", "{body}");
            return None;
        }
        assert_eq!(status, 200, "GET /api/v1/plan: {body}");
        Some(body.json())
    }

    /// Wait until the controller has completed a whole reconcile that started after this call:
    /// whatever it would do about the state seen before the call, it has done. Tests that check
    /// that something did *not* happen wait on this instead of sleeping.
    pub async fn next_reconcile(&self) {
        let seen = self.reconciles().await;
        // `seen + 1` may be a reconcile that was already running; the one after it started
        // after this call.
        wait_for("two more reconciles", Duration::from_secs(30), || async {
            (self.reconciles().await >= seen + 2).then_some(())
        })
        .await;
    }

    /// The scheduler's rooms; none while the server does not know the scheduler
    /// (before a revision declaring it is loaded, or once it is deleted): a 404 `not_found`.
    pub async fn rooms(&self, scheduler: &str) -> Vec<Room> {
        let path = format!("/api/v1/schedulers/{scheduler}/rooms");
        let (status, body) = self.get(&path).await;
        if status == 404 {
            assert_eq!(body.error().code, "not_found", "GET {path}: {body}");
            return vec![];
        }
        assert_eq!(status, 200, "GET {path}: {body}");
        body.json()
    }

    /// The scheduler's operations, newest first (at most the API's default limit).
    pub async fn ops(&self, scheduler: &str) -> Vec<Operation> {
        self.get_as(&format!("/api/v1/operations?scheduler={scheduler}"))
            .await
    }

    /// The secret room tokens derive from.
    pub fn secret(&self) -> Vec<u8> {
        std::fs::read_to_string(self.state_dir.join("secret"))
            .unwrap()
            .trim()
            .as_bytes()
            .to_vec()
    }

    /// Ids of the room processes running for this server (found by their environment).
    pub fn room_processes(&self) -> BTreeSet<String> {
        room_processes_for(&self.url)
    }

    /// Kill the server and every room process it started.
    pub fn cleanup(&mut self) {
        self.kill9();
        for pid in room_pids_for(&self.url) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn environ_of(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

fn room_pids_for(url: &str) -> Vec<u32> {
    let wanted = format!("TROUPE_ROOMS_URL={url}");
    let mut out = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if environ_of(pid).is_some_and(|env| env.contains(&wanted)) && alive(pid) {
            out.push(pid);
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    // Zombies count as dead.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

pub fn room_processes_for(url: &str) -> BTreeSet<String> {
    room_pids_for(url)
        .into_iter()
        .filter_map(|pid| {
            environ_of(pid)?
                .into_iter()
                .find_map(|e| e.strip_prefix("TROUPE_ROOM=").map(str::to_string))
        })
        .collect()
}

/// Poll `check` until it returns Some, or panic after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An operation's status.
pub fn op_status(op: &Operation) -> OpStatus {
    op.status
}

/// Whether an operation has finished: succeeded, failed or canceled.
pub fn op_finished(op: &Operation) -> bool {
    op_status(op).is_finished()
}

pub fn status_of(room: &Room) -> RoomStatus {
    room.status
}

pub fn count(rooms: &[Room], status: RoomStatus) -> usize {
    rooms.iter().filter(|r| status_of(r) == status).count()
}

/// The demo room's own HTTP port (the port named `http`).
pub fn http_port(room: &Room) -> u16 {
    room.ports
        .iter()
        .find(|p| p.name == "http")
        .unwrap_or_else(|| panic!("room {} has no port named http: {room:?}", room.id))
        .port
}

/// Start a match in a demo room through its HTTP API: it then reports itself occupied.
pub async fn start_match(room: &Room) {
    let url = format!("http://127.0.0.1:{}/matches", http_port(room));
    let resp = reqwest::Client::new().post(url).send().await.unwrap();
    assert!(
        resp.status().is_success(),
        "starting a match: {}",
        resp.status()
    );
}

pub async fn end_match(room: &Room) {
    let url = format!("http://127.0.0.1:{}/matches", http_port(room));
    let resp = reqwest::Client::new().delete(url).send().await.unwrap();
    assert!(
        resp.status().is_success(),
        "ending a match: {}",
        resp.status()
    );
}
