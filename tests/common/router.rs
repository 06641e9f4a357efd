//! A server built by the composition root (`troupe::app::Server`), not running, and its router,
//! for `tower::ServiceExt::oneshot` tests: state lives in a temp directory; operations are
//! queued but never run (no executor).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde::de::DeserializeOwned;
use tower::ServiceExt;

use tokio_util::sync::CancellationToken;
use troupe::app::{ServeError, Server, ServerConfig, SourceFeed};
use troupe::controller::{Controller, ControllerOptions, FleetConfig, SyncMode};
use troupe::http::{AppState, router};
use troupe::metrics::Metrics;
use troupe::runtime::memory::MemoryRuntime;
use troupe::source::{Observed, Snapshot, SourceFile};

use super::Reply;

pub const SECRET: &[u8] = b"test-secret";

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub state: AppState,
}

/// The server configuration the router fixtures use: everything in `dir`, operations queued
/// but no autoscaler tick worth waiting for.
pub fn config(dir: &std::path::Path, api_token: Option<&str>, sync: SyncMode) -> ServerConfig {
    ServerConfig {
        state_dir: dir.to_path_buf(),
        fleet: FleetConfig {
            secret: SECRET.to_vec(),
            rooms_url: "http://x".into(),
            allocation_ttl: std::time::Duration::from_secs(30),
        },
        controller: ControllerOptions {
            prune: false,
            sync,
            autoscale_interval: std::time::Duration::from_secs(3600),
        },
        api_token: api_token.map(str::to_string),
        webhook_secret: None,
    }
}

/// A server on the in-memory runtime (no test here needs a room process), not running.
pub fn server(config: ServerConfig) -> Server {
    let (runtime, events) = MemoryRuntime::new();
    Server::open(config, Arc::new(Metrics::new()), Arc::new(runtime), events).unwrap()
}

/// A server that runs, on a loopback port the system chose.
pub struct Running {
    /// Feeds the server's revisions; dropping it ends the controller's loop.
    pub revisions: tokio::sync::watch::Sender<Observed>,
    pub addr: std::net::SocketAddr,
    pub task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

/// Run `server` with `first` as its first revision until `shutdown`.
pub async fn run(server: Server, first: Observed, shutdown: CancellationToken) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (revisions, snapshots) = tokio::sync::watch::channel(first);
    let feed = SourceFeed {
        snapshots,
        handle: None,
        task: None,
    };
    let task = tokio::spawn(server.run(listener, feed, shutdown));
    Running {
        revisions,
        addr,
        task,
    }
}

impl Fixture {
    pub fn new(api_token: Option<&str>, sync: SyncMode) -> Self {
        let f = Self::unadopted(api_token, sync);
        // As a running server does before it answers "not found": take back what was recorded.
        let fleet = Arc::clone(&f.state.controller.fleet);
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(fleet.adopt())
                .unwrap()
        })
        .join()
        .unwrap();
        f
    }

    /// A server still taking back the rooms recorded before it started.
    pub fn unadopted(api_token: Option<&str>, sync: SyncMode) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let server = server(config(dir.path(), api_token, sync));
        Self {
            dir,
            state: server.state,
        }
    }

    pub fn controller(&self) -> &Controller {
        &self.state.controller
    }

    /// Load a revision made of `files` (path, YAML) and plan it.
    pub fn load(&self, revision: &str, files: &[(&str, &str)]) {
        let files = files
            .iter()
            .map(|(path, contents)| SourceFile {
                path: path.to_string(),
                contents: contents.to_string(),
            })
            .collect();
        self.controller().load(Ok(Snapshot {
            revision: revision.into(),
            files,
            commit: None,
        }));
        self.controller().reconcile();
    }

    /// The status and the body.
    pub async fn call(&self, req: Request<Body>) -> (StatusCode, Reply) {
        let (status, _, body) = self.call_raw(req).await;
        (status, Reply(String::from_utf8_lossy(&body).into_owned()))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Reply) {
        self.call(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    /// A GET answered with 200, read as `T`; panics with the status and the body otherwise.
    pub async fn get_as<T: DeserializeOwned>(&self, path: &str) -> T {
        let (status, body) = self.get(path).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        serde_json::from_str(&body.0).unwrap_or_else(|e| {
            panic!(
                "GET {path}: not a {} ({e}): {body}",
                std::any::type_name::<T>()
            )
        })
    }

    /// Status, headers and body bytes.
    pub async fn call_raw(
        &self,
        req: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let resp = router(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .unwrap();
        (status, headers, bytes.to_vec())
    }
}
