//! The controller end to end on the in-memory runtime: the server as `troupe serve` builds it
//! (`troupe::app::Server`), revisions fed in by the test, rooms that are records only. What runs
//! here is the whole loop — plan, decide, operations, the executor, runtime events, the registry —
//! without the seconds real processes cost; `serve_local.rs` keeps the real ones.

mod common;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use troupe::app::Server;
use troupe::controller::{Controller, SyncMode};
use troupe::domain::room::{PingStatus, RoomStatus};
use troupe::domain::spec::SourceFile;
use troupe::metrics::Metrics;
use troupe::runtime::Runtime;
use troupe::runtime::memory::MemoryRuntime;
use troupe::source::{Observed, Snapshot};

const T: Duration = Duration::from_secs(20);

fn arena(replicas: u32) -> String {
    format!(
        r#"name: arena
game: arena
roomsReplicas: {replicas}
maxSurge: 1
portRange: {{start: 41000, end: 41100}}
spec:
  containers:
    - name: server
      image: registry.example/arena:1
      ports: [{{name: game, protocol: UDP, port: 7777}}]
"#
    )
}

fn revision(id: &str, yaml: &str) -> Observed {
    Some(Ok(Snapshot {
        revision: id.into(),
        files: vec![SourceFile {
            path: "arena.yaml".into(),
            contents: yaml.into(),
        }],
        commit: None,
    }))
}

struct Running {
    _dir: tempfile::TempDir,
    controller: Arc<Controller>,
    runtime: Arc<MemoryRuntime>,
    revisions: tokio::sync::watch::Sender<Observed>,
    shutdown: CancellationToken,
}

impl Running {
    async fn start(first: Observed) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (runtime, events) = MemoryRuntime::new();
        let runtime = Arc::new(runtime);
        let server = Server::open(
            common::router::config(dir.path(), None, SyncMode::Auto),
            Arc::new(Metrics::new()),
            Arc::clone(&runtime) as Arc<dyn Runtime>,
            events,
        )
        .unwrap();
        let controller = Arc::clone(&server.controller);
        let shutdown = CancellationToken::new();
        let running = common::router::run(server, first, shutdown.clone()).await;
        Self {
            _dir: dir,
            controller,
            runtime,
            revisions: running.revisions,
            shutdown,
        }
    }

    fn rooms(&self) -> Vec<troupe::domain::room::Room> {
        self.controller.fleet.registry.list(Some("arena"))
    }

    /// Wait until the rooms of `arena` satisfy `check`.
    async fn wait_rooms(&self, what: &str, check: impl Fn(&[troupe::domain::room::Room]) -> bool) {
        let mut changes = self.controller.fleet.registry.subscribe();
        let waited = tokio::time::timeout(T, async {
            while !check(&self.rooms()) {
                changes.changed().await.unwrap();
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "timed out waiting for {what}: {:#?}",
            self.rooms()
        );
    }

    /// Wait until `n` rooms of `arena` run, report every one ready, and wait until the
    /// operation that started them has finished.
    async fn ready(&self, n: usize) {
        self.wait_rooms(&format!("{n} rooms running"), |rs| {
            rs.len() == n
                && rs
                    .iter()
                    .all(|r| matches!(r.status, RoomStatus::Unready | RoomStatus::Ready))
        })
        .await;
        self.ping_all_ready();
        let ops = &self.controller.ops;
        let mut changes = ops.subscribe();
        let idle = tokio::time::timeout(T, async {
            while ops.busy("arena") {
                changes.changed().await.unwrap();
            }
        })
        .await;
        assert!(
            idle.is_ok(),
            "operations still running: {:#?}",
            ops.list(None, 5)
        );
    }

    /// Every room of `arena` that is running reports ready.
    fn ping_all_ready(&self) {
        for r in self.rooms() {
            if r.status == RoomStatus::Unready {
                self.controller
                    .fleet
                    .registry
                    .ping("arena", &r.id, PingStatus::Ready, None, 1, None)
                    .unwrap();
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_creates_scales_and_heals_a_fleet() {
    let fleet = Running::start(revision("r1", &arena(3))).await;
    fleet.ready(3).await;
    assert!(
        fleet
            .rooms()
            .iter()
            .all(|r| r.ports.len() == 1 && (41000..41100).contains(&r.ports[0].port)),
        "every room got a host port from portRange"
    );

    // A room that crashes is replaced.
    let crashed = fleet.rooms()[0].id.clone();
    fleet.runtime.crash(&crashed).await;
    fleet
        .wait_rooms("the crashed room replaced", |rs| {
            rs.iter().all(|r| r.id != crashed) && rs.len() == 3
        })
        .await;
    fleet.ready(3).await;

    // A smaller revision scales down.
    fleet.revisions.send_replace(revision("r2", &arena(1)));
    fleet.wait_rooms("one room left", |rs| rs.len() == 1).await;
    assert_eq!(fleet.runtime.running().len(), 1, "the others were stopped");
}

/// Adoption used to stop strays inside each runtime; the controller now decides with
/// `domain::adoption::strays` and asks the runtime: a room running with no record goes, the
/// recorded ones stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adoption_stops_a_room_that_runs_without_a_record_and_keeps_the_others() {
    let fleet = Running::start(revision("r1", &arena(2))).await;
    fleet.ready(2).await;
    let recorded: Vec<String> = fleet.rooms().into_iter().map(|r| r.id).collect();
    fleet.runtime.run_unrecorded("arena", "arena-lost1");
    fleet.runtime.run_unrecorded("racer", "racer-other");
    fleet.controller.fleet.adopt().await.unwrap();
    let mut running = fleet.runtime.running();
    running.sort();
    let mut want = recorded.clone();
    want.push("racer-other".into());
    want.sort();
    assert_eq!(
        running, want,
        "the stray of a known scheduler stopped; a scheduler with no records left alone"
    );
    assert_eq!(fleet.rooms().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_down_never_removes_an_occupied_room() {
    let fleet = Running::start(revision("r1", &arena(3))).await;
    fleet.ready(3).await;
    let busy = fleet.rooms()[1].id.clone();
    fleet
        .controller
        .fleet
        .registry
        .ping("arena", &busy, PingStatus::Occupied, None, 1, None)
        .unwrap();
    fleet.revisions.send_replace(revision("r2", &arena(0)));
    fleet
        .wait_rooms("only the occupied room left", |rs| {
            rs.len() == 1 && rs[0].id == busy
        })
        .await;
    // Its match ends: now it goes too.
    fleet
        .controller
        .fleet
        .registry
        .ping("arena", &busy, PingStatus::Ready, None, 1, None)
        .unwrap();
    fleet.wait_rooms("no room left", |rs| rs.is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_whose_rooms_cannot_start_fails_its_operation_with_the_reason() {
    let fleet = Running::start(revision("r1", &arena(2))).await;
    fleet.ready(2).await;
    fleet.runtime.fail_starts(Some("image cannot be pulled"));
    let v2 = arena(2).replace("arena:1", "arena:2");
    fleet.revisions.send_replace(revision("r2", &v2));
    let ops = &fleet.controller.ops;
    let mut changes = ops.subscribe();
    let failed = tokio::time::timeout(T, async {
        loop {
            if let Some(op) = ops.list(Some("arena"), 10).into_iter().find(|o| {
                o.kind == troupe::domain::operation::OpKind::Rollout && o.status.is_finished()
            }) {
                return op;
            }
            changes.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the rollout did not finish: {:#?}", ops.list(None, 5)));
    assert_eq!(failed.status, troupe::domain::operation::OpStatus::Failed);
    assert!(
        failed
            .error
            .as_deref()
            .unwrap_or("")
            .contains("image cannot be pulled"),
        "{failed:#?}"
    );
    let rooms = fleet.rooms();
    let serving: Vec<_> = rooms
        .iter()
        .filter(|r| r.status == RoomStatus::Ready)
        .collect();
    assert_eq!(serving.len(), 2, "the old rooms keep serving: {rooms:#?}");
    assert!(serving.iter().all(|r| r.version == rooms[0].version));
    let broken: Vec<_> = rooms
        .iter()
        .filter(|r| r.status == RoomStatus::Error)
        .collect();
    assert!(
        broken.iter().all(|r| r
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("image cannot be pulled")),
        "a room that could not start says why: {rooms:#?}"
    );
}

/// A room that served and then broke while its operation was finishing is drift to heal, not a
/// start that failed. The create took its last step 50 ms after its rooms' last change, saw the
/// room's exit there and failed with it ("room … failed"), and nothing healed the fleet after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_that_served_and_broke_as_its_create_finished_is_replaced_and_the_create_succeeds() {
    let fleet = Running::start(revision("r1", &arena(2))).await;
    fleet
        .wait_rooms("2 rooms running", |rs| {
            rs.len() == 2 && rs.iter().all(|r| r.status == RoomStatus::Unready)
        })
        .await;
    fleet.ping_all_ready();
    let victim = fleet.rooms()[0].id.clone();
    fleet
        .controller
        .fleet
        .handle_event(troupe::runtime::RuntimeEvent::Exited {
            scheduler: "arena".into(),
            room: victim.clone(),
            clean: false,
            reason: "killed by hand".into(),
        });
    fleet
        .wait_rooms("the broken room replaced", |rs| {
            rs.iter().filter(|r| r.id != victim).count() == 2
        })
        .await;
    fleet.ready(2).await;
    let ops = fleet.controller.ops.list(Some("arena"), 10);
    assert!(
        ops.iter()
            .all(|o| o.status == troupe::domain::operation::OpStatus::Succeeded),
        "{ops:#?}"
    );
}
