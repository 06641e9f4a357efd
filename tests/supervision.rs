//! A running server whose critical task dies stops, naming the task, instead of serving a dead
//! controller behind a green `/readyz`.

mod common;

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use troupe::app::ServeError;
use troupe::controller::SyncMode;
use troupe::source::{Observed, Snapshot};

const LIMIT: Duration = Duration::from_secs(20);

fn empty_revision() -> Observed {
    Some(Ok(Snapshot {
        revision: "r1".into(),
        files: vec![],
        commit: None,
    }))
}

async fn readyz(addr: std::net::SocketAddr) -> Option<u16> {
    let resp = reqwest::get(format!("http://{addr}/readyz")).await.ok()?;
    Some(resp.status().as_u16())
}

/// A server on the in-memory runtime, fed revisions through a channel the test holds, running
/// and ready (its first revision planned).
async fn ready_server(shutdown: CancellationToken) -> (common::router::Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = common::router::server(common::router::config(dir.path(), None, SyncMode::Auto));
    let running = common::router::run(server, empty_revision(), shutdown).await;
    let addr = running.addr;
    let ready = async {
        while readyz(addr).await != Some(200) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(LIMIT, ready).await.expect("ready");
    (running, dir)
}

/// Regression: `troupe serve` put its core tasks in a `JoinSet` nobody polled, so a controller
/// whose loop ended left HTTP serving with `/readyz` green.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_that_stops_stops_the_server_and_names_it() {
    let (server, _dir) = ready_server(CancellationToken::new()).await;
    let addr = server.addr;
    // The revisions' sender goes away: the controller's loop ends.
    drop(server.revisions);
    let result = tokio::time::timeout(LIMIT, server.task)
        .await
        .expect("the server stopped by itself")
        .unwrap();
    match result {
        Err(ServeError::Task(failed)) => assert_eq!(failed.task, "controller", "{failed}"),
        other => panic!("expected the controller to be named, got {other:?}"),
    }
    assert_eq!(readyz(addr).await, None, "nothing serves any more");
}

/// A shutdown is not a failure: the server drains and returns Ok.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_stops_every_task_and_returns_ok() {
    let shutdown = CancellationToken::new();
    let (server, _dir) = ready_server(shutdown.clone()).await;
    shutdown.cancel();
    let result = tokio::time::timeout(LIMIT, server.task)
        .await
        .expect("stopped")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}
