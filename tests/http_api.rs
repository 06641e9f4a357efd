//! Router tests of the rooms and management APIs with `tower::ServiceExt::oneshot`: every
//! refusal a room or an operator can run into, with its status code and JSON error.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;

use common::router::{Fixture, SECRET};
use common::{HookAnswer, Reply};
use troupe::controller::SyncMode;
use troupe::domain::operation::{OpStatus, Operation};
use troupe::domain::room::token::room_token;
use troupe::domain::room::{Room, RoomEvent, RoomStatus};
use troupe::http::api::SchedulerSummary;
use troupe::http::rooms::PingAnswer;

/// A fixture with two pending rooms of scheduler `arena`.
fn fixture(api_token: Option<&str>) -> Fixture {
    let f = Fixture::new(api_token, SyncMode::Auto);
    for id in ["arena-a", "arena-b"] {
        f.state
            .controller
            .fleet
            .registry
            .insert(Room::pending(id, "arena", "v1", 1))
            .unwrap();
    }
    f
}

async fn call(f: &Fixture, req: Request<Body>) -> (StatusCode, Reply) {
    f.call(req).await
}

fn ping(room: &str, token: Option<&str>, body: &str) -> Request<Body> {
    let mut b = Request::put(format!("/scheduler/arena/rooms/{room}/ping"))
        .header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Body::from(body.to_string())).unwrap()
}

fn status_of(f: &Fixture, room: &str) -> RoomStatus {
    f.state.controller.fleet.registry.get(room).unwrap().status
}

fn token(room: &str) -> String {
    room_token(SECRET, "arena", room)
}

#[tokio::test]
async fn a_room_with_its_token_goes_ready() {
    let f = fixture(None);
    let (status, body) = call(
        &f,
        ping("arena-a", Some(&token("arena-a")), r#"{"status":"ready"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body.json::<PingAnswer>().status, RoomStatus::Ready);
    assert_eq!(
        f.state
            .controller
            .fleet
            .registry
            .get("arena-a")
            .unwrap()
            .status,
        RoomStatus::Ready
    );
}

#[tokio::test]
async fn pings_without_the_rooms_own_token_are_refused() {
    let f = fixture(None);
    let (status, body) = call(&f, ping("arena-a", None, r#"{"status":"ready"}"#)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body.error().code, "unauthorized");
    // One room cannot speak for another.
    let (status, _) = call(
        &f,
        ping("arena-a", Some(&token("arena-b")), r#"{"status":"ready"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(status_of(&f, "arena-a"), RoomStatus::Pending);
}

#[tokio::test]
async fn malformed_bodies_get_a_json_error_and_change_nothing() {
    let f = fixture(None);
    let t = token("arena-a");
    let (status, body) = call(&f, ping("arena-a", Some(&t), "{not json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body.error().code, "malformed_body");
    let (status, body) = call(&f, ping("arena-a", Some(&t), r#"{"status":"dancing"}"#)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.error().message.contains("dancing"), "{body}");
    let (status, _) = call(
        &f,
        ping("arena-a", Some(&t), r#"{"status":"ready","extra":1}"#),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = call(
        &f,
        ping("arena-a", Some(&t), r#"{"status":"ready","metadata":[1]}"#),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let huge = format!(
        r#"{{"status":"ready","metadata":{{"x":"{}"}}}}"#,
        "a".repeat(100_000)
    );
    let (status, _) = call(&f, ping("arena-a", Some(&t), &huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(status_of(&f, "arena-a"), RoomStatus::Pending);
}

/// Regression: a replica that took over with an empty state directory answered 404 to pings and
/// allocations before it had read the rooms back from the cluster; a room SDK gives up on a 404.
#[tokio::test]
async fn an_unknown_room_or_scheduler_is_retryable_until_the_recorded_rooms_are_taken_back() {
    let f = Fixture::unadopted(None, SyncMode::Auto);
    let req = || {
        ping(
            "arena-zzz",
            Some(&token("arena-zzz")),
            r#"{"status":"ready"}"#,
        )
    };
    let (status, headers, _) = f.call_raw(req()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    let allocate = || {
        Request::post("/scheduler/arena/rooms/allocate")
            .body(Body::empty())
            .unwrap()
    };
    let (status, body) = f.call(allocate()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.error().message.contains("starting"), "{body}");

    f.state.controller.fleet.adopt().await.unwrap();
    assert_eq!(f.call(req()).await.0, StatusCode::NOT_FOUND);
    assert_eq!(f.call(allocate()).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unknown_rooms_and_nonsense_transitions_are_refused() {
    let f = fixture(None);
    let (status, body) = call(
        &f,
        ping(
            "arena-zzz",
            Some(&token("arena-zzz")),
            r#"{"status":"ready"}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    f.state
        .controller
        .fleet
        .registry
        .apply("arena", "arena-b", &RoomEvent::Stop, None)
        .unwrap();
    let (status, body) = call(
        &f,
        ping("arena-b", Some(&token("arena-b")), r#"{"status":"ready"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.error().message.contains("terminating"), "{body}");
}

#[tokio::test]
async fn management_reads_and_writes() {
    let f = fixture(Some("s3cret"));
    let (status, _) = call(&f, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&f, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready before the first revision"
    );
    let (status, body) = call(
        &f,
        Request::get("/api/v1/schedulers")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.json::<Vec<SchedulerSummary>>().is_empty(), "{body}");
    let (status, _) = call(
        &f,
        Request::get("/api/v1/operations/op-1")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let op = f
        .state
        .controller
        .ops
        .enqueue(
            "arena",
            troupe::state::ops::OpKind::Heal,
            troupe::state::ops::Cause::User { name: "t".into() },
            None,
            false,
        )
        .unwrap();
    let cancel = |auth: Option<&str>| {
        let mut b = Request::post(format!("/api/v1/operations/{}/cancel", op.id));
        if let Some(a) = auth {
            b = b.header("authorization", format!("Bearer {a}"));
        }
        b.body(Body::empty()).unwrap()
    };
    let (status, _) = call(&f, cancel(None)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "writes need the API token"
    );
    let (status, _) = call(&f, cancel(Some("wrong"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = call(&f, cancel(Some("s3cret"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body.json::<Operation>().status, OpStatus::Canceled);
    let (status, _) = call(&f, cancel(Some("s3cret"))).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a finished operation cannot be canceled"
    );

    let (status, body) = call(
        &f,
        Request::get("/api/v1/schedulers/arena/rooms")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = call(&f, Request::get("/nope").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body.error().code, "not_found");
}

#[tokio::test]
async fn allocation_needs_the_api_token_and_a_known_scheduler() {
    let f = fixture(Some("s3cret"));
    let req = |auth: Option<&str>, path: &str| {
        let mut b = Request::post(path);
        if let Some(a) = auth {
            b = b.header("authorization", format!("Bearer {a}"));
        }
        b.body(Body::empty()).unwrap()
    };
    let (status, _) = call(&f, req(None, "/scheduler/arena/rooms/allocate")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = call(&f, req(Some("s3cret"), "/scheduler/arena/rooms/allocate")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = call(&f, req(Some("s3cret"), "/games/arena/rooms/allocate")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

fn github_push(body: Vec<u8>, secret: &[u8]) -> Request<Body> {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    Request::post("/hooks/git")
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-hub-signature-256", signature)
        .body(Body::from(body))
        .unwrap()
}

/// A push payload of about `size` bytes (GitHub lists commits and their files).
fn push_payload(size: usize) -> Vec<u8> {
    let padding = "x".repeat(size);
    serde_json::to_vec(&json!({"ref": "refs/heads/main", "commits": [{"message": padding}]}))
        .unwrap()
}

#[tokio::test]
async fn webhooks_take_push_payloads_over_the_api_body_limit_but_not_without_bound() {
    let mut f = fixture(None);
    let hook_secret: &[u8] = b"hook-secret";
    f.state.webhook_secret = Some(Arc::from(hook_secret));
    let big = push_payload(troupe::http::MAX_BODY_BYTES * 2);
    let (status, body) = call(&f, github_push(big, hook_secret)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(
        !body.json::<HookAnswer>().triggered,
        "this fixture watches no source: {body}"
    );

    let huge = push_payload(troupe::http::hooks::MAX_HOOK_BODY_BYTES + 1);
    let (status, body) = call(&f, github_push(huge, hook_secret)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body.error().code, "body_too_large");
}

#[tokio::test]
async fn webhooks_are_off_without_a_secret() {
    let f = fixture(None);
    let (status, body) = call(&f, github_push(push_payload(10), b"anything")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let error = body.error();
    assert_eq!(error.code, "webhooks_disabled");
    assert!(error.message.contains("--webhook-secret-file"), "{body}");
}
