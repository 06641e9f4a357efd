//! End to end on the local runtime: `troupe serve` on a real git repository, rooms as real
//! `troupe demo-room` processes, everything over real HTTP on loopback.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use serde_json::json;
use troupe::domain::operation::{Cause, OpKind, OpStatus, Operation};
use troupe::domain::plan::{Action, Plan};
use troupe::domain::room::{Room, RoomStatus};
use troupe::http::api::SchedulerSummary;

const T: Duration = Duration::from_secs(60);

fn ids(rooms: &[Room]) -> BTreeSet<String> {
    rooms.iter().map(|r| r.id.clone()).collect()
}

/// The scheduler's version (`GET /api/v1/schedulers/{name}` is its summary and its specs).
async fn version_of(server: &Server, scheduler: &str) -> String {
    server
        .get_as::<SchedulerSummary>(&format!("/api/v1/schedulers/{scheduler}"))
        .await
        .version
}

async fn wait_ready(server: &Server, scheduler: &str, n: usize) -> Vec<Room> {
    wait_for(&format!("{n} ready rooms of {scheduler}"), T, || async {
        let rooms = server.rooms(scheduler).await;
        (rooms.len() == n && count(&rooms, RoomStatus::Ready) == n).then_some(rooms)
    })
    .await
}

async fn wait_op(server: &Server, scheduler: &str, kind: OpKind, after: usize) -> Operation {
    wait_for(
        &format!("a finished {} operation on {scheduler}", kind.as_str()),
        T,
        || async {
            let ops = server.ops(scheduler).await;
            let matching: Vec<Operation> = ops.into_iter().filter(|o| o.kind == kind).collect();
            matching.into_iter().rev().skip(after).find(op_finished)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_scheduler_reaches_its_ready_rooms() {
    let repo = Repo::new();
    repo.commit(
        "arena",
        &[(
            "arena.yaml",
            &scheduler_yaml("arena", 3, (41000, 41100), "1", ""),
        )],
    );
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(repo.path(), &state.path().join("state"), &[]);

    let rooms = wait_ready(&server, "arena", 3).await;
    let ports: BTreeSet<u16> = rooms.iter().map(http_port).collect();
    assert_eq!(ports.len(), 3, "every room gets its own port: {rooms:?}");
    assert!(
        ports.iter().all(|p| (41000..41100).contains(p)),
        "ports come from portRange: {ports:?}"
    );
    assert_eq!(
        server.room_processes(),
        ids(&rooms),
        "one process per room, nothing else"
    );

    let op = wait_op(&server, "arena", OpKind::Create, 0).await;
    assert_eq!(op.status, OpStatus::Succeeded, "{op:#?}");
    let metrics = server.text("/metrics").await;
    assert!(
        metrics.contains(r#"troupe_rooms{scheduler="arena",status="ready"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"troupe_operations_total{kind="create",outcome="succeeded"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_change_rolls_out_within_max_surge_and_never_stops_an_occupied_room() {
    let repo = Repo::new();
    repo.commit(
        "v1",
        &[(
            "arena.yaml",
            &scheduler_yaml("arena", 3, (41100, 41200), "1", ""),
        )],
    );
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(repo.path(), &state.path().join("state"), &[]);
    let rooms = wait_ready(&server, "arena", 3).await;
    let v1 = version_of(&server, "arena").await;

    let busy = rooms[0].clone();
    let busy_id = busy.id.clone();
    start_match(&busy).await;
    wait_for("the room to report occupied", T, || async {
        let rooms = server.rooms("arena").await;
        rooms
            .iter()
            .any(|r| r.id == busy_id && status_of(r) == RoomStatus::Occupied)
            .then_some(())
    })
    .await;

    repo.commit(
        "v2",
        &[(
            "arena.yaml",
            &scheduler_yaml("arena", 3, (41100, 41200), "2", ""),
        )],
    );
    // Watch the rollout: free rooms never exceed target + surge, the occupied room never leaves.
    let mut max_free = 0;
    let op = loop {
        let rooms = server.rooms("arena").await;
        let free = rooms
            .iter()
            .filter(|r| {
                ![
                    RoomStatus::Occupied,
                    RoomStatus::Active,
                    RoomStatus::Allocated,
                    RoomStatus::Terminating,
                ]
                .contains(&status_of(r))
            })
            .count();
        max_free = max_free.max(free);
        let busy_now = rooms.iter().find(|r| r.id == busy_id);
        assert!(
            busy_now.is_some_and(|r| status_of(r) == RoomStatus::Occupied),
            "the occupied room was touched: {rooms:#?}"
        );
        let ops = server.ops("arena").await;
        if let Some(op) = ops
            .iter()
            .find(|o| o.kind == OpKind::Rollout && op_finished(o))
        {
            break op.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(op.status, OpStatus::Succeeded, "{op:#?}");
    assert!(
        max_free <= 3 + 1,
        "free rooms went to {max_free}, above target 3 + maxSurge 1"
    );

    let v2 = version_of(&server, "arena").await;
    assert_ne!(v1, v2);
    let rooms = server.rooms("arena").await;
    let new: Vec<&Room> = rooms.iter().filter(|r| r.version == v2).collect();
    assert_eq!(new.len(), 3, "{rooms:#?}");
    assert!(new.iter().all(|r| status_of(r) == RoomStatus::Ready));
    let old = rooms
        .iter()
        .find(|r| r.id == busy_id)
        .expect("occupied room kept");
    assert_eq!(old.version, v1);
    assert!(
        server.room_processes().contains(&busy_id),
        "the occupied room's process still runs"
    );

    // When its match ends, the outdated room goes too.
    end_match(&busy).await;
    wait_for("the outdated room to be replaced", T, || async {
        let rooms = server.rooms("arena").await;
        (rooms.len() == 3
            && rooms
                .iter()
                .all(|r| r.version == v2 && status_of(r) == RoomStatus::Ready))
        .then_some(())
    })
    .await;
    wait_for("its process to end", T, || async {
        (!server.room_processes().contains(&busy_id)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_removes_free_rooms_only() {
    let repo = Repo::new();
    repo.commit(
        "4 rooms",
        &[(
            "arena.yaml",
            &scheduler_yaml("arena", 4, (41200, 41300), "1", ""),
        )],
    );
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(repo.path(), &state.path().join("state"), &[]);
    let rooms = wait_ready(&server, "arena", 4).await;
    let busy: Vec<Room> = rooms[1..3].to_vec();
    for r in &busy {
        start_match(r).await;
    }
    let busy_ids: BTreeSet<String> = ids(&busy);
    wait_for("two occupied rooms", T, || async {
        (count(&server.rooms("arena").await, RoomStatus::Occupied) == 2).then_some(())
    })
    .await;

    repo.commit(
        "1 room",
        &[(
            "arena.yaml",
            &scheduler_yaml("arena", 1, (41200, 41300), "1", ""),
        )],
    );
    let op = wait_op(&server, "arena", OpKind::Scale, 0).await;
    assert_eq!(op.status, OpStatus::Succeeded, "{op:#?}");
    let rooms = wait_for("free rooms gone", T, || async {
        let rooms = server.rooms("arena").await;
        (rooms.len() == 2).then_some(rooms)
    })
    .await;
    assert_eq!(ids(&rooms), busy_ids, "only the occupied rooms remain");
    assert_eq!(server.room_processes(), busy_ids);

    // One match ends: that room is free and above target, so it goes; the other stays.
    end_match(&busy[0]).await;
    let rooms = wait_for("one room left", T, || async {
        let rooms = server.rooms("arena").await;
        (rooms.len() == 1).then_some(rooms)
    })
    .await;
    assert_eq!(rooms[0].id, busy[1].id);
    assert_eq!(status_of(&rooms[0]), RoomStatus::Occupied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_scheduler_with_pruning_removes_its_rooms() {
    let repo = Repo::new();
    repo.commit(
        "two fleets",
        &[
            (
                "arena.yaml",
                &scheduler_yaml("arena", 2, (41300, 41350), "1", ""),
            ),
            (
                "racer.yaml",
                &scheduler_yaml("racer", 2, (41350, 41400), "1", ""),
            ),
        ],
    );
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(repo.path(), &state.path().join("state"), &["--prune"]);
    let arena = wait_ready(&server, "arena", 2).await;
    let racer = wait_ready(&server, "racer", 2).await;

    // A match is being played in one racer room: the deletion drains it first.
    let busy = racer[0].clone();
    let busy_id = busy.id.clone();
    start_match(&busy).await;
    wait_for("the room to report occupied", T, || async {
        let rooms = server.rooms("racer").await;
        rooms
            .iter()
            .any(|r| r.id == busy_id && status_of(r) == RoomStatus::Occupied)
            .then_some(())
    })
    .await;
    repo.commit("drop racer", &[("racer.yaml", "")]);
    let draining = wait_for(
        "the free racer room gone, the occupied one kept",
        T,
        || async {
            let rooms = server.rooms("racer").await;
            (rooms.len() == 1 && rooms[0].id == busy_id).then_some(rooms)
        },
    )
    .await;
    assert_eq!(status_of(&draining[0]), RoomStatus::Occupied);
    let op = server
        .ops("racer")
        .await
        .into_iter()
        .find(|o| o.kind == OpKind::Delete)
        .expect("delete op");
    assert_eq!(
        op.status,
        OpStatus::Running,
        "the deletion waits for the match: {op:#?}"
    );
    assert!(server.room_processes().contains(&busy_id));
    end_match(&busy).await;
    wait_for("racer deleted", T, || async {
        let schedulers: Vec<SchedulerSummary> = server.get_as("/api/v1/schedulers").await;
        let names: Vec<&str> = schedulers.iter().map(|s| s.name.as_str()).collect();
        (names == ["arena"]).then_some(())
    })
    .await;
    let op = wait_op(&server, "racer", OpKind::Delete, 0).await;
    assert_eq!(op.status, OpStatus::Succeeded, "{op:#?}");
    wait_for("racer processes gone", T, || async {
        let procs = server.room_processes();
        (procs == ids(&arena)).then_some(())
    })
    .await;
    assert!(ids(&racer).is_disjoint(&server.room_processes()));
    assert_eq!(
        ids(&server.rooms("arena").await),
        ids(&arena),
        "the other fleet is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_commit_is_reported_with_file_and_line_and_changes_nothing() {
    let repo = Repo::new();
    let good = repo.commit(
        "good",
        &[(
            "arena.yaml",
            &scheduler_yaml("arena", 2, (41400, 41450), "1", ""),
        )],
    );
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(repo.path(), &state.path().join("state"), &[]);
    let before = ids(&wait_ready(&server, "arena", 2).await);
    let ops_before = server.ops("arena").await.len();

    // Port range upside down on line 5, and a bigger replica count that must not be applied.
    let bad = scheduler_yaml("arena", 5, (41450, 41400), "2", "");
    let bad_sha = repo.commit("bad", &[("arena.yaml", &bad)]);
    let (running, error) = wait_for("the revision error", T, || async {
        let rev = server.revision().await;
        let error = rev.desired.error?;
        Some((rev.desired.revision, error))
    })
    .await;
    assert_eq!(
        running.map(|r| r.id).as_deref(),
        Some(good.as_str()),
        "the last good revision keeps running"
    );
    assert_eq!(error.revision.as_deref(), Some(bad_sha.as_str()));
    let port = error
        .errors
        .iter()
        .find(|e| e.path.starts_with("portRange"))
        .expect("port range error");
    assert_eq!(port.file, "arena.yaml");
    assert_eq!(port.line, 5, "{port:#?}");

    server.next_reconcile().await;
    assert_eq!(ids(&server.rooms("arena").await), before, "no room changed");
    assert_eq!(
        server.ops("arena").await.len(),
        ops_before,
        "no operation was queued"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_rollout_then_restart_finishes_it_with_nothing_orphaned_or_duplicated() {
    let repo = Repo::new();
    let slow = |v: &str| {
        scheduler_yaml("arena", 4, (41500, 41600), v, "").replace(
            "\"--startup-delay\", \"300ms\"",
            "\"--startup-delay\", \"1500ms\"",
        )
    };
    repo.commit("v1", &[("arena.yaml", &slow("1"))]);
    let state = tempfile::tempdir().unwrap();
    let mut server = Server::start(repo.path(), &state.path().join("state"), &[]);
    wait_ready(&server, "arena", 4).await;
    let v1 = version_of(&server, "arena").await;

    repo.commit("v2", &[("arena.yaml", &slow("2"))]);
    // Kill the controller once the rollout has started at least one new room but is not done.
    let rollout = wait_for("the rollout to be under way", T, || async {
        let ops = server.ops("arena").await;
        let op = ops
            .into_iter()
            .find(|o| o.kind == OpKind::Rollout && o.status == OpStatus::Running)?;
        let rooms = server.rooms("arena").await;
        let new = rooms.iter().filter(|r| r.version != v1).count();
        let old = rooms.iter().filter(|r| r.version == v1).count();
        (new >= 1 && old >= 3).then_some(op)
    })
    .await;
    server.kill9();
    let survivors = server.room_processes();
    assert!(
        survivors.len() >= 5,
        "rooms outlive the controller: {survivors:?}"
    );

    server.spawn();
    let id = rollout.id.clone();
    let op = wait_for("the resumed rollout to finish", T, || async {
        let op: Operation = server.get_as(&format!("/api/v1/operations/{id}")).await;
        op_finished(&op).then_some(op)
    })
    .await;
    assert_eq!(op.status, OpStatus::Succeeded, "{op:#?}");
    let events: Vec<&str> = op.events.iter().map(|e| e.message.as_str()).collect();
    assert!(
        events.iter().any(|e| e.contains("resuming")),
        "history kept across the restart: {events:?}"
    );
    let history = server.ops("arena").await;
    assert!(
        history
            .iter()
            .any(|o| o.kind == OpKind::Create && o.status == OpStatus::Succeeded),
        "older history intact"
    );

    let v2 = version_of(&server, "arena").await;
    let rooms = wait_for("4 ready rooms of the new version only", T, || async {
        let rooms = server.rooms("arena").await;
        (rooms.len() == 4
            && rooms
                .iter()
                .all(|r| r.version == v2 && status_of(r) == RoomStatus::Ready))
        .then_some(rooms)
    })
    .await;
    wait_for("exactly the registry's rooms running", T, || async {
        (server.room_processes() == ids(&rooms)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canceled_rollout_stops_cleanly_waits_and_an_apply_finishes_it() {
    let repo = Repo::new();
    let slow = |v: &str| {
        scheduler_yaml("arena", 4, (41600, 41700), v, "").replace(
            "\"--startup-delay\", \"300ms\"",
            "\"--startup-delay\", \"1500ms\"",
        )
    };
    repo.commit("v1", &[("arena.yaml", &slow("1"))]);
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(repo.path(), &state.path().join("state"), &[]);
    wait_ready(&server, "arena", 4).await;
    let v1 = version_of(&server, "arena").await;

    repo.commit("v2", &[("arena.yaml", &slow("2"))]);
    let rollout = wait_for("the rollout to run", T, || async {
        server
            .ops("arena")
            .await
            .into_iter()
            .find(|o| o.kind == OpKind::Rollout && o.status == OpStatus::Running)
    })
    .await;
    let id = rollout.id.as_str();
    let (status, body) = server
        .post(&format!("/api/v1/operations/{id}/cancel"), &())
        .await;
    assert_eq!(status, 200, "{body}");
    let op = wait_for("the cancel to land", T, || async {
        let op: Operation = server.get_as(&format!("/api/v1/operations/{id}")).await;
        (op.status == OpStatus::Canceled).then_some(op)
    })
    .await;
    assert!(op.events.iter().any(|e| e.message.contains("cancel")));

    // Consistent: every room recorded runs, nothing runs unrecorded, and the old version still
    // serves. Held: no new operation starts by itself.
    let rooms = wait_for("recorded rooms and room processes to agree", T, || async {
        let rooms = server.rooms("arena").await;
        (server.room_processes() == ids(&rooms)).then_some(rooms)
    })
    .await;
    server.next_reconcile().await;
    let serving = rooms
        .iter()
        .filter(|r| status_of(r) == RoomStatus::Ready)
        .count();
    assert!(serving >= 4, "capacity kept at the target: {rooms:#?}");
    assert!(
        rooms.iter().any(|r| r.version == v1),
        "the rollout did not run to the end"
    );
    let ops = server.ops("arena").await;
    assert_eq!(ops[0].id, id, "nothing queued after the cancel: {ops:#?}");

    // An explicit apply lifts the hold and the fleet converges to the new version.
    let (status, body) = server.post("/api/v1/plan/apply", &json!({})).await;
    assert_eq!(status, 200, "{body}");
    let v2 = version_of(&server, "arena").await;
    assert_ne!(v1, v2);
    wait_for("all rooms on the new version", T, || async {
        let rooms = server.rooms("arena").await;
        (rooms.len() == 4
            && rooms
                .iter()
                .all(|r| r.version == v2 && status_of(r) == RoomStatus::Ready))
        .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validation_room_that_fails_stops_the_rollout_and_keeps_the_old_version() {
    let repo = Repo::new();
    repo.commit(
        "v1",
        &[(
            "arena.yaml",
            &scheduler_yaml("arena", 3, (41700, 41800), "1", ""),
        )],
    );
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(repo.path(), &state.path().join("state"), &[]);
    let before = ids(&wait_ready(&server, "arena", 3).await);
    let v1 = version_of(&server, "arena").await;

    let broken = scheduler_yaml("arena", 3, (41700, 41800), "2", "").replace(
        r#"command: ["troupe", "demo-room", "--ping-interval", "1s", "--startup-delay", "300ms"]"#,
        r#"command: ["/bin/sh", "-c", "echo version 2 cannot start >&2; exit 3"]"#,
    );
    repo.commit("v2 broken", &[("arena.yaml", &broken)]);
    let op = wait_op(&server, "arena", OpKind::Rollout, 0).await;
    assert_eq!(op.status, OpStatus::Failed, "{op:#?}");
    let error = op.error.as_deref().expect("why the rollout failed");
    assert!(
        error.contains("exited with status 3") && error.contains("version 2 cannot start"),
        "{error}"
    );
    let events: Vec<&str> = op.events.iter().map(|e| e.message.as_str()).collect();
    assert!(
        events.iter().any(|e| e.contains("starting 1 room")),
        "one validation room only: {events:?}"
    );

    assert_eq!(
        version_of(&server, "arena").await,
        v1,
        "the old version is kept"
    );
    let rooms = server.rooms("arena").await;
    let serving: BTreeSet<String> = rooms
        .iter()
        .filter(|r| status_of(r) == RoomStatus::Ready)
        .map(|r| r.id.clone())
        .collect();
    assert_eq!(serving, before, "the old rooms were never touched");
    let plan: Plan = server.get_as("/api/v1/plan").await;
    assert_eq!(
        plan.changes[0].action,
        Action::Rollout,
        "the plan still shows the rollout: {plan:#?}"
    );
    server.next_reconcile().await;
    assert_eq!(
        server
            .ops("arena")
            .await
            .iter()
            .filter(|o| o.kind == OpKind::Rollout)
            .count(),
        1,
        "a failed rollout is not retried in a loop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_changed_in_git_applies_at_once_without_replacing_rooms() {
    // Rooms that ping once, then go quiet: harmless under a long ping timeout.
    let quiet = |ping_timeout: &str| {
        scheduler_yaml("arena", 2, (41800, 41900), "1", "")
            .replace("\"--ping-interval\", \"1s\"", "\"--ping-interval\", \"1h\"")
            .replace("ping: 30s", &format!("ping: {ping_timeout}"))
    };
    let repo = Repo::new();
    repo.commit("quiet rooms", &[("arena.yaml", &quiet("1h"))]);
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(repo.path(), &state.path().join("state"), &[]);
    let before = ids(&wait_ready(&server, "arena", 2).await);
    let version = version_of(&server, "arena").await;

    repo.commit("ping timeout 2s", &[("arena.yaml", &quiet("2s"))]);
    let op = wait_op(&server, "arena", OpKind::Update, 0).await;
    assert_eq!(op.status, OpStatus::Succeeded, "{op:#?}");
    assert_eq!(
        version_of(&server, "arena").await,
        version,
        "a timeout is not part of the room template"
    );
    assert!(
        server
            .ops("arena")
            .await
            .iter()
            .all(|o| o.kind != OpKind::Rollout)
    );
    // The running rooms, untouched by the update, now fall under the new timeout and are replaced.
    let reason = wait_for("a room expired under the new timeout", T, || async {
        let ops = server.ops("arena").await;
        ops.into_iter()
            .find(|o| o.kind == OpKind::Heal)
            .map(|o| match o.cause {
                Cause::Health { reason } => reason,
                other => panic!("a heal caused by {other:?}"),
            })
    })
    .await;
    wait_for("the quiet rooms replaced", T, || async {
        let rooms = server.rooms("arena").await;
        ids(&rooms).is_disjoint(&before).then_some(())
    })
    .await;
    assert!(!reason.is_empty());
}

/// A scheduler `name` of `replicas` rooms that run `troupe demo-room` after writing their
/// `API_KEY` to `out/<room>`, `API_KEY` being the Secret `arena-keys`' key `key`.
fn secret_reading_yaml(
    name: &str,
    replicas: u32,
    ports: (u16, u16),
    key: &str,
    out: &std::path::Path,
) -> String {
    format!(
        r#"name: {name}
game: arena
roomsReplicas: {replicas}
portRange: {{start: {}, end: {}}}
spec:
  containers:
    - name: server
      image: registry.example/arena:1
      readinessProbe: {{tcpSocket: {{port: 8080}}}}
      env:
        - name: API_KEY
          valueFrom: {{secretKeyRef: {{name: arena-keys, key: {key}}}}}
      ports: [{{name: http, protocol: TCP, port: 8080}}]
local:
  command: ["/bin/sh", "-c", "printf %s \"$API_KEY\" > \"$OUT/$TROUPE_ROOM.tmp\" && mv \"$OUT/$TROUPE_ROOM.tmp\" \"$OUT/$TROUPE_ROOM\"; exec \"$BIN\" demo-room --ping-interval 1s --startup-delay 300ms"]
  env: [{{name: OUT, value: "{}"}}, {{name: BIN, value: "{TROUPE}"}}]
"#,
        ports.0,
        ports.1,
        out.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_read_secrets_from_the_local_config_dir_and_a_missing_one_fails_the_operation() {
    let config = tempfile::tempdir().unwrap();
    let secrets = config.path().join("secrets/arena-keys");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("api-key"), "s3cret").unwrap();
    let out = tempfile::tempdir().unwrap();
    let repo = Repo::new();
    repo.commit(
        "keyed and locked",
        &[
            (
                "keyed.yaml",
                &secret_reading_yaml("keyed", 2, (44000, 44100), "api-key", out.path()),
            ),
            (
                "locked.yaml",
                &secret_reading_yaml("locked", 1, (44100, 44200), "missing", out.path()),
            ),
        ],
    );
    let state = tempfile::tempdir().unwrap();
    let dir = config.path().to_str().unwrap();
    let server = Server::start(
        repo.path(),
        &state.path().join("state"),
        &["--local-config-dir", dir],
    );

    for room in wait_ready(&server, "keyed", 2).await {
        assert_eq!(
            std::fs::read_to_string(out.path().join(&room.id)).unwrap(),
            "s3cret",
            "the Secret's value reached {}",
            room.id
        );
    }

    let op = wait_op(&server, "locked", OpKind::Create, 0).await;
    assert_eq!(op.status, OpStatus::Failed, "{op:#?}");
    let error = op.error.as_deref().expect("why the creation failed");
    let file = secrets.join("missing");
    assert!(
        error.contains("scheduler locked, container server, variable API_KEY")
            && error.contains(&format!("no file {}", file.display())),
        "{error}"
    );

    let told: Vec<String> = server
        .log()
        .lines()
        .filter(|l| l.contains("scheduler=keyed") && l.contains("does not use these fields"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        told.len(),
        1,
        "said once for the version, not per room: {told:#?}"
    );
    assert!(
        told[0].contains("spec.containers[0].image, spec.containers[0].readinessProbe"),
        "{}",
        told[0]
    );
}

/// The local runtime says plainly which template fields only a cluster uses: once per
/// scheduler, on its change in the server's plan (and `troupe plan` shows it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_on_the_local_runtime_names_the_template_fields_it_ignores() {
    let out = tempfile::tempdir().unwrap();
    let repo = Repo::new();
    repo.commit(
        "probed",
        &[(
            "keyed.yaml",
            &secret_reading_yaml("keyed", 1, (44200, 44300), "api-key", out.path()),
        )],
    );
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(
        repo.path(),
        &state.path().join("state"),
        &["--sync", "manual"],
    );
    let plan = wait_for("the plan of the new scheduler", T, || async {
        server.plan().await.filter(|p| !p.changes.is_empty())
    })
    .await;
    let change = &plan.changes[0];
    assert_eq!(
        change.ignored_locally,
        [
            "spec.containers[0].image",
            "spec.containers[0].readinessProbe"
        ],
        "{change:#?}"
    );
    let shown = std::process::Command::new(TROUPE)
        .args(["plan", "--server", &server.url])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("note: the local runtime ignores spec.containers[0].image, spec.containers[0].readinessProbe (they apply on Kubernetes)"),
        "{text}"
    );
}
