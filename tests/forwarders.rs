//! Forwarders end to end: room status changes and player events reach a receiver as JSON; a
//! receiver that never answers does not slow the rooms API down.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post;
use common::*;
use serde::Deserialize;
use serde_json::json;
use troupe::domain::room::token::room_token;
use troupe::domain::room::{Room, RoomStatus};
use troupe::http::rooms::PlayerEventKind;

const T: Duration = Duration::from_secs(60);

fn with_forwarder(url: &str, timeout: &str) -> String {
    format!("forwarders:\n  - {{name: receiver, url: \"{url}\", timeout: {timeout}}}\n")
}

/// An event as a forwarder receives it (the server's `troupe::http::forward::Event`, whose
/// `kind` is a `&'static str` and so cannot be read back into): `kind` says what `payload` holds.
/// The fields this test reads.
#[derive(Debug, Deserialize)]
struct Forwarded {
    room: String,
    #[serde(flatten)]
    what: What,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", content = "payload", rename_all = "camelCase")]
enum What {
    RoomStatus {
        to: RoomStatus,
    },
    #[serde(rename_all = "camelCase")]
    PlayerEvent {
        event: PlayerEventKind,
        player_id: String,
    },
    /// A room's own event (the demo room sends none).
    RoomEvent {},
}

/// What `POST …/playerevent` answers: the room's player count after the event (the fields this
/// test reads).
#[derive(Debug, Deserialize)]
struct Players {
    players: usize,
}

/// The bodies a receiver got, in order.
async fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = Arc::clone(&got);
    let app = axum::Router::new().route(
        "/events",
        post(move |body: String| {
            let g = Arc::clone(&g);
            async move {
                g.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

/// The events received so far; a body that is not one fails the test.
fn events(got: &Mutex<Vec<String>>) -> Vec<Forwarded> {
    got.lock()
        .unwrap()
        .iter()
        .map(|body| {
            serde_json::from_str(body)
                .unwrap_or_else(|e| panic!("not a forwarded event ({e}): {body}"))
        })
        .collect()
}

async fn ping(server: &Server, room: &Room) -> (u16, Duration) {
    let id = &room.id;
    let token = room_token(&server.secret(), "arena", id);
    let started = Instant::now();
    let resp = server
        .http
        .put(format!("{}/scheduler/arena/rooms/{id}/ping", server.url))
        .bearer_auth(token)
        .json(&json!({"status": "ready"}))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_changes_and_player_events_reach_the_receiver() {
    let (url, got) = receiver().await;
    let repo = Repo::new();
    let yaml = scheduler_yaml(
        "arena",
        2,
        (43700, 43800),
        "1",
        &with_forwarder(&url, "500ms"),
    );
    repo.commit("arena", &[("arena.yaml", &yaml)]);
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(repo.path(), &state.path().join("state"), &[]);
    let rooms = wait_for("2 ready rooms", T, || async {
        let rooms = server.rooms("arena").await;
        (count(&rooms, RoomStatus::Ready) == 2).then_some(rooms)
    })
    .await;
    let id = rooms[0].id.as_str();
    wait_for("ready events", T, || async {
        let ready = events(&got)
            .iter()
            .filter(|e| {
                matches!(
                    e.what,
                    What::RoomStatus {
                        to: RoomStatus::Ready,
                        ..
                    }
                )
            })
            .count();
        (ready == 2).then_some(())
    })
    .await;

    let token = room_token(&server.secret(), "arena", id);
    let resp = server
        .http
        .post(format!(
            "{}/scheduler/arena/rooms/{id}/playerevent",
            server.url
        ))
        .bearer_auth(&token)
        .json(&json!({"event": "playerJoin", "playerId": "p-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = Reply(resp.text().await.unwrap());
    assert_eq!(body.json::<Players>().players, 1, "{body}");
    wait_for("the player event", T, || async {
        events(&got)
            .iter()
            .any(|e| {
                e.room == id
                    && matches!(&e.what, What::PlayerEvent { player_id, .. } if player_id == "p-1")
            })
            .then_some(())
    })
    .await;
    // A demo room's match brings its simulated players, reported as player events.
    let other_id = rooms[1].id.as_str();
    start_match(&rooms[1]).await;
    wait_for("the demo room's players", T, || async {
        let joins = events(&got)
            .iter()
            .filter(|e| {
                e.room == other_id
                    && matches!(
                        e.what,
                        What::PlayerEvent {
                            event: PlayerEventKind::PlayerJoin,
                            ..
                        }
                    )
            })
            .count();
        (joins == 2).then_some(())
    })
    .await;
    // Another room's token cannot speak for this room.
    let other = room_token(&server.secret(), "arena", &rooms[1].id);
    let resp = server
        .http
        .post(format!(
            "{}/scheduler/arena/rooms/{id}/playerevent",
            server.url
        ))
        .bearer_auth(other)
        .json(&json!({"event": "playerLeft", "playerId": "p-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_does_not_slow_pings_down() {
    // Accepts connections and never answers: every delivery waits for its full timeout.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/events", black_hole.local_addr().unwrap());
    let repo = Repo::new();
    let yaml = scheduler_yaml("arena", 2, (43800, 43900), "1", &with_forwarder(&url, "2s"));
    repo.commit("arena", &[("arena.yaml", &yaml)]);
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(repo.path(), &state.path().join("state"), &[]);
    let rooms = wait_for("2 ready rooms", T, || async {
        let rooms = server.rooms("arena").await;
        (count(&rooms, RoomStatus::Ready) == 2).then_some(rooms)
    })
    .await;
    // Each ping would take at least 2 s if forwarding were in the request path.
    for _ in 0..20 {
        let (status, took) = ping(&server, &rooms[0]).await;
        assert_eq!(status, 200);
        assert!(
            took < Duration::from_secs(1),
            "a ping took {took:?} with a dead receiver"
        );
    }
    let metrics = server.text("/metrics").await;
    assert!(metrics.contains("troupe_forward_queue_events"), "{metrics}");
    drop(black_hole);
}
