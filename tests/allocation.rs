//! Allocation end to end: many matchmakers at once against real rooms, with and without a
//! `kill -9` of the controller in the middle. A room is never handed out twice.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use troupe::domain::room::RoomStatus;
use troupe::http::allocate::Allocation;

const T: Duration = Duration::from_secs(90);
const ROOMS: usize = 50;
const CALLERS: usize = 64;

async fn fleet_of_50(ports: (u16, u16)) -> (Repo, tempfile::TempDir, Server) {
    let repo = Repo::new();
    repo.commit(
        "arena",
        &[(
            "arena.yaml",
            &scheduler_yaml("arena", ROOMS as u32, ports, "1", ""),
        )],
    );
    let state = tempfile::tempdir().unwrap();
    // A long allocation TTL: the test checks allocations, not their expiry.
    let server = Server::start(
        repo.path(),
        &state.path().join("state"),
        &["--allocation-ttl", "10m"],
    );
    wait_for("50 ready rooms", T, || async {
        let rooms = server.rooms("arena").await;
        (count(&rooms, RoomStatus::Ready) == ROOMS).then_some(())
    })
    .await;
    (repo, state, server)
}

/// One allocation; retried while the server cannot be reached. Some(room) or None for "no room".
async fn allocate(http: &reqwest::Client, url: &str) -> Option<String> {
    loop {
        match http
            .post(format!("{url}/scheduler/arena/rooms/allocate"))
            .send()
            .await
        {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = Reply(resp.text().await.unwrap_or_default());
                match status {
                    200 => return Some(body.json::<Allocation>().room),
                    409 => {
                        assert_eq!(body.error().code, "no_room", "{body}");
                        return None;
                    }
                    _ => panic!("unexpected answer {status}: {body}"),
                }
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_allocators_share_fifty_rooms_without_a_duplicate() {
    let (_repo, _state, server) = fleet_of_50((43000, 43200)).await;
    let http = reqwest::Client::new();
    let calls = (0..CALLERS).map(|_| allocate(&http, &server.url));
    let answers = futures_util::future::join_all(calls).await;
    let got: Vec<String> = answers.iter().flatten().cloned().collect();
    let distinct: BTreeSet<&String> = got.iter().collect();
    assert_eq!(got.len(), ROOMS, "every room handed out once");
    assert_eq!(distinct.len(), ROOMS, "no room handed out twice");
    assert_eq!(
        answers.iter().filter(|a| a.is_none()).count(),
        CALLERS - ROOMS
    );
    let rooms = server.rooms("arena").await;
    assert_eq!(count(&rooms, RoomStatus::Allocated), ROOMS);
    // Each answer carries where to send the players.
    let one = server
        .rooms("arena")
        .await
        .into_iter()
        .find(|r| r.id == got[0])
        .unwrap();
    assert_eq!(one.host, "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_survive_a_kill_9_in_the_middle_without_a_duplicate() {
    let (_repo, _state, mut server) = fleet_of_50((43200, 43400)).await;
    let url = server.url.clone();
    let http = reqwest::Client::new();
    let got = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut callers = tokio::task::JoinSet::new();
    for i in 0..CALLERS {
        let (http, url, got) = (http.clone(), url.clone(), Arc::clone(&got));
        callers.spawn(async move {
            // Spread the callers over time so the kill lands in the middle of them.
            tokio::time::sleep(Duration::from_millis(20 * i as u64)).await;
            if let Some(room) = allocate(&http, &url).await {
                got.lock().unwrap().push(room);
            }
        });
    }
    wait_for("some allocations", T, || async {
        (got.lock().unwrap().len() >= 15).then_some(())
    })
    .await;
    server.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.spawn();
    while callers.join_next().await.is_some() {}

    let got = got.lock().unwrap().clone();
    let distinct: BTreeSet<&String> = got.iter().collect();
    assert_eq!(
        distinct.len(),
        got.len(),
        "a room was handed out twice: {got:?}"
    );
    // Every room is allocated exactly once: to a caller that got the answer, or to one whose
    // answer was lost in the kill (still recorded, and freed by the allocation TTL).
    let rooms = wait_for("the restarted controller", T, || async {
        let rooms = server.rooms("arena").await;
        (rooms.len() == ROOMS).then_some(rooms)
    })
    .await;
    let allocated: BTreeSet<String> = rooms
        .iter()
        .filter(|r| status_of(r) == RoomStatus::Allocated)
        .map(|r| r.id.clone())
        .collect();
    assert!(
        distinct.iter().all(|r| allocated.contains(*r)),
        "an answered allocation was forgotten"
    );
    assert_eq!(allocated.len(), ROOMS, "{rooms:#?}");
    assert!(
        got.len() >= ROOMS - 2,
        "at most the requests in flight at the kill lose their answer: {}",
        got.len()
    );
}
