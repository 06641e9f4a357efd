//! GitOps behaviour end to end on the local runtime: manual sync and approval, saved plans that
//! apply exactly or are refused, drift correction, orphans without prune, suspension, and the
//! revision history.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::json;
use troupe::domain::operation::{Cause, OpKind};
use troupe::domain::plan::{Action, Plan};
use troupe::domain::room::{Room, RoomStatus};
use troupe::http::api::SchedulerSummary;
use troupe::state::history::RevisionRecord;

const T: Duration = Duration::from_secs(60);

fn ids(rooms: &[Room]) -> BTreeSet<String> {
    rooms.iter().map(|r| r.id.clone()).collect()
}

async fn wait_rooms(server: &Server, scheduler: &str, n: usize) -> Vec<Room> {
    wait_for(&format!("{n} ready rooms of {scheduler}"), T, || async {
        let rooms = server.rooms(scheduler).await;
        (rooms.len() == n && count(&rooms, RoomStatus::Ready) == n).then_some(rooms)
    })
    .await
}

/// Run the troupe CLI; returns (exit code, stdout, stderr).
fn troupe(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(TROUPE)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_sync_waits_for_approval_and_saved_plans_apply_exactly_or_are_refused() {
    let repo = Repo::new();
    repo.commit(
        "two",
        &[(
            "arena.yaml",
            &scheduler_yaml("arena", 2, (42100, 42200), "1", ""),
        )],
    );
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(
        repo.path(),
        &state.path().join("state"),
        &["--sync", "manual"],
    );

    // Manual: the plan is there, nothing happens until it is approved.
    let plan = wait_for("a plan", T, || async {
        server.plan().await.filter(|p| !p.changes.is_empty())
    })
    .await;
    assert_eq!(plan.changes[0].action, Action::Create);
    server.next_reconcile().await;
    assert!(
        server.ops("arena").await.is_empty(),
        "nothing applied without approval"
    );
    let (status, body) = server
        .post("/api/v1/plan/apply", &json!({"planId": "0000000000000000"}))
        .await;
    assert_eq!(
        status, 409,
        "a plan id that is not the current plan is refused: {body}"
    );
    let (status, body) = server
        .post("/api/v1/plan/apply", &json!({"planId": plan.id}))
        .await;
    assert_eq!(status, 200, "{body}");
    wait_rooms(&server, "arena", 2).await;

    // A saved plan applies exactly what it showed.
    let repo_path = repo.path().to_str().unwrap();
    let file = state.path().join("plan.json");
    let file = file.to_str().unwrap();
    repo.commit(
        "three",
        &[(
            "arena.yaml",
            &scheduler_yaml("arena", 3, (42100, 42200), "1", ""),
        )],
    );
    let (code, out, err) = troupe(&[
        "plan",
        repo_path,
        "--server",
        &server.url,
        "-o",
        file,
        "--detailed-exitcode",
    ]);
    assert_eq!(code, 2, "changes: exit 2\n{out}\n{err}");
    assert!(
        out.contains("roomsReplicas 2 → 3") || out.contains("2 → 3"),
        "{out}"
    );
    wait_for("the server to see the commit", T, || async {
        (server.plan().await.is_some_and(|p| !p.changes.is_empty())).then_some(())
    })
    .await;
    let (code, out, err) = troupe(&["apply", file, "--server", &server.url]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("1 operation(s) queued"), "{out}");
    wait_rooms(&server, "arena", 3).await;

    // Stale because git moved: a newer commit landed after the plan was made.
    repo.commit(
        "four",
        &[(
            "arena.yaml",
            &scheduler_yaml("arena", 4, (42100, 42200), "1", ""),
        )],
    );
    let (code, _, err) = troupe(&["plan", repo_path, "--server", &server.url, "-o", file]);
    assert_eq!(code, 0, "{err}");
    let five = repo.commit(
        "five",
        &[(
            "arena.yaml",
            &scheduler_yaml("arena", 5, (42100, 42200), "1", ""),
        )],
    );
    wait_for("the server to see commit five", T, || async {
        let r = server.revision().await;
        (r.desired.revision.is_some_and(|r| r.id == five)).then_some(())
    })
    .await;
    let (code, _, err) = troupe(&["apply", file, "--server", &server.url]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("git moved"), "{err}");
    assert_eq!(
        server.rooms("arena").await.len(),
        3,
        "a refused plan changes nothing"
    );

    // Stale because live state moved: a room was replaced after the plan was made.
    let (code, _, err) = troupe(&["plan", repo_path, "--server", &server.url, "-o", file]);
    assert_eq!(code, 0, "{err}");
    let before = ids(&server.rooms("arena").await);
    let victim = server.rooms("arena").await[0].id.clone();
    kill_room(&server, &victim);
    wait_for("the killed room to be replaced", T, || async {
        let rooms = server.rooms("arena").await;
        (rooms.len() == 3
            && !ids(&rooms).contains(&victim)
            && count(&rooms, RoomStatus::Ready) == 3)
            .then_some(())
    })
    .await;
    assert_ne!(before, ids(&server.rooms("arena").await));
    let (code, _, err) = troupe(&["apply", file, "--server", &server.url]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("live state of arena"), "{err}");

    // The revision history lists what was seen.
    let revisions: Vec<RevisionRecord> = server.get_as("/api/v1/revisions").await;
    assert!(revisions.len() >= 3, "{revisions:#?}");
    assert_eq!(revisions[0].id, five, "newest first");
    assert!(
        revisions
            .iter()
            .all(|r| r.commit.as_deref().is_some_and(|c| c.contains("CI"))),
        "{revisions:#?}"
    );
}

/// Kill one room's process by hand, as an operator or a crash would.
fn kill_room(server: &Server, room: &str) {
    let pid = room_pid(server, room).expect("room process");
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
}

fn room_pid(server: &Server, room: &str) -> Option<u32> {
    let wanted = format!("TROUPE_ROOM={room}");
    let url = format!("TROUPE_ROOMS_URL={}", server.url);
    std::fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        let vars: Vec<&[u8]> = env.split(|b| *b == 0).collect();
        (vars.contains(&wanted.as_bytes()) && vars.contains(&url.as_bytes())).then_some(pid)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_corrected_orphans_are_listed_without_prune_and_suspension_holds_git_changes() {
    let repo = Repo::new();
    repo.commit(
        "two fleets",
        &[
            (
                "arena.yaml",
                &scheduler_yaml("arena", 2, (42200, 42250), "1", ""),
            ),
            (
                "racer.yaml",
                &scheduler_yaml("racer", 1, (42250, 42300), "1", ""),
            ),
        ],
    );
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(repo.path(), &state.path().join("state"), &[]);
    let arena = wait_rooms(&server, "arena", 2).await;
    wait_rooms(&server, "racer", 1).await;

    // Drift: a room killed by hand is noticed and replaced, and the operation says why.
    let victim = arena[0].id.clone();
    kill_room(&server, &victim);
    let rooms = wait_for("the fleet healed", T, || async {
        let rooms = server.rooms("arena").await;
        (rooms.len() == 2
            && !ids(&rooms).contains(&victim)
            && count(&rooms, RoomStatus::Ready) == 2)
            .then_some(rooms)
    })
    .await;
    assert_eq!(server.room_processes().len(), 3, "{rooms:?}");
    let ops = server.ops("arena").await;
    let heal = ops
        .iter()
        .find(|o| o.kind == OpKind::Heal)
        .expect("a heal operation");
    assert!(matches!(heal.cause, Cause::Health { .. }), "{heal:#?}");

    // Suspended: git changes wait; rooms are still healed. Resumed: the change applies.
    let (status, _) = server.post("/api/v1/schedulers/arena/suspend", &()).await;
    assert_eq!(status, 200);
    let ops_before = server.ops("arena").await.len();
    repo.commit(
        "arena 3",
        &[(
            "arena.yaml",
            &scheduler_yaml("arena", 3, (42200, 42250), "1", ""),
        )],
    );
    wait_for("the plan to show the change", T, || async {
        let p: Plan = server.get_as("/api/v1/plan").await;
        p.changes
            .iter()
            .any(|c| c.scheduler == "arena" && c.action == Action::Scale)
            .then_some(())
    })
    .await;
    server.next_reconcile().await;
    assert_eq!(
        server.ops("arena").await.len(),
        ops_before,
        "suspended: nothing applied"
    );
    let schedulers: Vec<SchedulerSummary> = server.get_as("/api/v1/schedulers").await;
    assert!(schedulers[0].suspended, "{schedulers:#?}");
    let (status, _) = server.post("/api/v1/schedulers/arena/resume", &()).await;
    assert_eq!(status, 200);
    wait_rooms(&server, "arena", 3).await;

    // Prune off: a scheduler removed from git is listed as orphaned and keeps running.
    let racer = ids(&server.rooms("racer").await);
    repo.commit("drop racer", &[("racer.yaml", "")]);
    wait_for("racer orphaned in the plan", T, || async {
        let p: Plan = server.get_as("/api/v1/plan").await;
        p.changes
            .iter()
            .any(|c| c.scheduler == "racer" && c.action == Action::Orphan)
            .then_some(())
    })
    .await;
    server.next_reconcile().await;
    assert_eq!(
        ids(&server.rooms("racer").await),
        racer,
        "an orphan's rooms keep running"
    );
    let schedulers: Vec<SchedulerSummary> = server.get_as("/api/v1/schedulers").await;
    let r = schedulers.iter().find(|s| s.name == "racer").unwrap();
    assert!(!r.in_git, "{r:?}");
}
