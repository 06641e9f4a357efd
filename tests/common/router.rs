//! A controller with no runtime behind it and its router, for `tower::ServiceExt::oneshot` tests:
//! state lives in a temp directory; operations are queued but never run (no executor).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use troupe::controller::{Controller, ControllerOptions, Fleet, FleetConfig, History, SyncMode};
use troupe::http::{AppState, router};
use troupe::metrics::Metrics;
use troupe::ops::Operations;
use troupe::runtime::local::{LocalConfig, LocalRuntime};
use troupe::source::{Snapshot, SourceFile};

pub const SECRET: &[u8] = b"test-secret";

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub state: AppState,
}

impl Fixture {
    pub fn new(api_token: Option<&str>, sync: SyncMode) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = tokio::sync::mpsc::channel(16);
        let runtime = Arc::new(LocalRuntime::new(
            LocalConfig {
                state_dir: dir.path().to_path_buf(),
                self_exe: "/bin/false".into(),
                host: "127.0.0.1".into(),
            },
            tx,
        ));
        let fleet = Arc::new(
            Fleet::open(
                dir.path(),
                runtime,
                FleetConfig {
                    secret: SECRET.to_vec(),
                    rooms_url: "http://x".into(),
                    allocation_ttl: std::time::Duration::from_secs(30),
                },
            )
            .unwrap(),
        );
        let ops = Operations::open(dir.path().join("operations.jsonl")).unwrap();
        let controller = Arc::new(Controller::new(
            fleet,
            ops,
            Arc::new(Metrics::new()),
            ControllerOptions {
                prune: false,
                sync,
                autoscale_interval: std::time::Duration::from_secs(3600),
            },
            History::open(dir.path()).unwrap(),
        ));
        let forwarders = troupe::forward::Forwarders::start(
            Arc::clone(&controller.fleet),
            Arc::clone(&controller.metrics),
        );
        Self {
            dir,
            state: AppState {
                controller,
                api_token: api_token.map(Arc::from),
                forwarders,
                source: None,
                webhook_secret: None,
            },
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

    pub async fn call(&self, req: Request<Body>) -> (StatusCode, Value) {
        let (status, _, body) = self.call_raw(req).await;
        (
            status,
            serde_json::from_slice(&body)
                .unwrap_or(Value::String(String::from_utf8_lossy(&body).into())),
        )
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Request::get(path).body(Body::empty()).unwrap())
            .await
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
