//! The autoscaler end to end on the local runtime: occupancy rises → rooms are added; it falls →
//! free rooms are removed after the cooldown, occupied ones kept. Every decision is an operation
//! that says why.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use troupe::domain::operation::{Cause, OpKind};
use troupe::domain::room::{Room, RoomStatus};

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

fn ids(rooms: &[Room]) -> BTreeSet<String> {
    rooms.iter().map(|r| r.id.clone()).collect()
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
        (count(&rooms, RoomStatus::Ready) == 2).then_some(rooms)
    })
    .await;
    for r in &rooms {
        start_match(r).await;
    }
    // 2 matches, readyTarget 0.5 → 4 rooms.
    let rooms = wait_for("4 rooms", T, || async {
        let rooms = server.rooms("arena").await;
        (rooms.len() == 4
            && count(&rooms, RoomStatus::Ready) == 2
            && count(&rooms, RoomStatus::Occupied) == 2)
            .then_some(rooms)
    })
    .await;
    // The operation finishes at its next step after its rooms are ready.
    let up = wait_for("the autoscaler's scale-up to finish", T, || async {
        server.ops("arena").await.into_iter().find(|o| {
            o.kind == OpKind::Scale
                && matches!(o.cause, Cause::Autoscaler { .. })
                && o.finished_at.is_some()
        })
    })
    .await;
    let Cause::Autoscaler { reason } = &up.cause else {
        unreachable!()
    };
    assert!(reason.contains("2 running matches"), "{up:#?}");

    // Matches end in both, one new match starts elsewhere: 1 match → 2 rooms, after the cooldown.
    for r in rooms
        .iter()
        .filter(|r| status_of(r) == RoomStatus::Occupied)
    {
        end_match(r).await;
    }
    let keep = rooms
        .iter()
        .find(|r| status_of(r) == RoomStatus::Ready)
        .unwrap()
        .clone();
    start_match(&keep).await;
    let down_from = Instant::now();
    let rooms = wait_for("2 rooms", T, || async {
        let rooms = server.rooms("arena").await;
        (rooms.len() == 2
            && rooms
                .iter()
                .all(|r| status_of(r) != RoomStatus::Terminating))
        .then_some(rooms)
    })
    .await;
    assert!(
        ids(&rooms).contains(&keep.id),
        "the occupied room is kept: {rooms:#?}"
    );
    let scale_up_at = up.finished_at.expect("the scale-up finished");
    let ops = server.ops("arena").await;
    let down = ops
        .iter()
        .find(|o| o.kind == OpKind::Scale && o.target == Some(2))
        .expect("scale-down op");
    assert!(
        down.created_at >= scale_up_at,
        "the scale-down came after the scale-up: {down:#?}"
    );
    assert!(down_from.elapsed() < T);
    assert_eq!(server.room_processes().len(), 2);
}
