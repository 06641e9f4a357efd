//! A running server whose critical task dies stops, naming the task, instead of serving a dead
//! controller behind a green `/readyz`.

mod common;

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use troupe::app::{ServeError, SourceFeed};
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

type Run = tokio::task::JoinHandle<Result<(), ServeError>>;

/// A server on the in-memory runtime, fed revisions through a channel the test holds, running
/// and ready (its first revision planned).
async fn ready_server(
    shutdown: CancellationToken,
) -> (
    tokio::sync::watch::Sender<Observed>,
    std::net::SocketAddr,
    Run,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let server = common::router::server(common::router::config(dir.path(), None, SyncMode::Auto));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (revisions, snapshots) = tokio::sync::watch::channel(empty_revision());
    let feed = SourceFeed {
        snapshots,
        handle: None,
        task: None,
    };
    let running = tokio::spawn(server.run(listener, feed, shutdown));
    let ready = async {
        while readyz(addr).await != Some(200) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(LIMIT, ready).await.expect("ready");
    (revisions, addr, running, dir)
}

/// Regression: `troupe serve` put its core tasks in a `JoinSet` nobody polled, so a controller
/// whose loop ended left HTTP serving with `/readyz` green.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_that_stops_stops_the_server_and_names_it() {
    let (revisions, addr, running, _dir) = ready_server(CancellationToken::new()).await;
    // The revisions' sender goes away: the controller's loop ends.
    drop(revisions);
    let result = tokio::time::timeout(LIMIT, running)
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
    let (_revisions, _addr, running, _dir) = ready_server(shutdown.clone()).await;
    shutdown.cancel();
    let result = tokio::time::timeout(LIMIT, running)
        .await
        .expect("stopped")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}
