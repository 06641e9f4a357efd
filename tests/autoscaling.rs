//! The autoscaler end to end on the local runtime: occupancy rises → rooms are added; it falls →
//! free rooms are removed after the cooldown, occupied ones kept. Every decision is an operation
//! that says why.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

const AUTOSCALING: &str = "autoscaling:
  enabled: true
  min: 2
  max: 8
  cooldown: 3s
  policy:
    type: roomOccupancy
    parameters:
      roomOccupancy: {readyTarget: 0.5, downThreshold: 0.9}
";

fn ids(rooms: &[Value]) -> BTreeSet<String> {
    rooms
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn occupancy_rises_rooms_are_added_falls_free_rooms_go_after_the_cooldown() {
    let repo = Repo::new();
    repo.commit(
        "arena",
        &[(
            "arena.yaml",
            &scheduler_yaml("arena", 1, (43500, 43600), "1", AUTOSCALING),
        )],
    );
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(
        repo.path(),
        &state.path().join("state"),
        &["--autoscale-interval", "300ms"],
    );

    let rooms = wait_for("min rooms", T, || async {
        let rooms = server.rooms("arena").await;
        (count(&rooms, "ready") == 2).then_some(rooms)
    })
    .await;
    for r in &rooms {
        start_match(r).await;
    }
    // 2 matches, readyTarget 0.5 → 4 rooms.
    let rooms = wait_for("4 rooms", T, || async {
        let rooms = server.rooms("arena").await;
        (rooms.len() == 4 && count(&rooms, "ready") == 2 && count(&rooms, "occupied") == 2)
            .then_some(rooms)
    })
    .await;
    let ops = server.ops("arena").await;
    let up = ops
        .iter()
        .find(|o| o["kind"] == "scale" && o["cause"]["type"] == "autoscaler")
        .expect("autoscaler op");
    assert!(
        up["cause"]["reason"]
            .as_str()
            .unwrap()
            .contains("2 running matches"),
        "{up:#}"
    );

    // Matches end in both, one new match starts elsewhere: 1 match → 2 rooms, after the cooldown.
    for r in rooms.iter().filter(|r| status_of(r) == "occupied") {
        end_match(r).await;
    }
    let keep = rooms
        .iter()
        .find(|r| status_of(r) == "ready")
        .unwrap()
        .clone();
    start_match(&keep).await;
    let down_from = Instant::now();
    let rooms = wait_for("2 rooms", T, || async {
        let rooms = server.rooms("arena").await;
        (rooms.len() == 2 && rooms.iter().all(|r| status_of(r) != "terminating")).then_some(rooms)
    })
    .await;
    assert!(
        ids(&rooms).contains(keep["id"].as_str().unwrap()),
        "the occupied room is kept: {rooms:#?}"
    );
    let scale_up_at = up["finishedAt"].as_u64().unwrap();
    let ops = server.ops("arena").await;
    let down = ops
        .iter()
        .find(|o| o["kind"] == "scale" && o["target"] == 2)
        .expect("scale-down op");
    assert!(
        down["createdAt"].as_u64().unwrap() >= scale_up_at,
        "the scale-down came after the scale-up: {down:#}"
    );
    assert!(down_from.elapsed() < T);
    assert_eq!(server.room_processes().len(), 2);
}
