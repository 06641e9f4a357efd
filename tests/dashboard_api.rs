//! Router tests of every route the dashboard reads: the overview with sync states and occupancy,
//! a page of rooms, the history of room counts, the live event stream, the page and its assets,
//! and the metrics the dashboard's numbers are also exported as.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use tower::ServiceExt;

use common::router::Fixture;
use common::scheduler_yaml;
use troupe::controller::SyncMode;
use troupe::controller::samples::sample_now;
use troupe::domain::plan::Action;
use troupe::domain::room::{PingStatus, Room, RoomEvent, RoomStatus};
use troupe::http::views::{Bounds, History, Overview, RoomsPage, SyncKind};

/// A fixture with scheduler `arena` declared (not applied: nothing runs operations here) and
/// `rooms` rooms of it, the first `ready` of them ready and the next `busy` occupied.
fn arena(rooms: usize, ready: usize, busy: usize) -> Fixture {
    let f = Fixture::new(None, SyncMode::Auto);
    f.load(
        "r1",
        &[(
            "arena.yaml",
            &scheduler_yaml("arena", 3, (40000, 40100), "1", ""),
        )],
    );
    let registry = &f.controller().fleet.registry;
    for i in 0..rooms {
        let id = format!("arena-{i:04}");
        registry
            .insert(Room::pending(&id, "arena", "v1", 1 + i as u64))
            .unwrap();
        if i < ready + busy {
            registry
                .apply("arena", &id, &RoomEvent::Started, None)
                .unwrap();
            let status = if i < ready {
                PingStatus::Ready
            } else {
                PingStatus::Occupied
            };
            registry.ping("arena", &id, status, None, 1, None).unwrap();
        }
    }
    f
}

#[tokio::test]
async fn the_overview_shows_sync_state_occupancy_and_the_plan() {
    let f = arena(5, 2, 2);
    let (status, body) = f.get("/api/v1/overview").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let overview: Overview = body.json();
    assert_eq!(overview.sync_mode, SyncMode::Auto);
    assert!(overview.plan.expect("a plan").has_changes);
    let s = &overview.schedulers[0];
    assert_eq!(s.summary.name, "arena");
    assert_eq!(s.summary.total_rooms, 5);
    assert_eq!(s.summary.rooms.get(&RoomStatus::Ready), Some(&2));
    assert_eq!(s.busy_rooms, 2);
    assert_eq!(s.running_matches, 2);
    assert_eq!(s.sync.state, SyncKind::Pending, "{s:?}");
    assert_eq!(s.sync.action, Some(Action::Create));
    // Absent, not null.
    let raw: Value = body.json();
    assert!(
        raw["schedulers"][0].get("autoscaling").is_none(),
        "not autoscaled: {body}"
    );

    // A suspended scheduler says so, and the change to the controller reaches the overview.
    let (status, _) = f
        .call(
            Request::post("/api/v1/schedulers/arena/suspend")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let overview: Overview = f.get_as("/api/v1/overview").await;
    assert_eq!(overview.schedulers[0].sync.state, SyncKind::Suspended);

    // A rejected revision is an error on every scheduler, with the revision's message.
    f.load(
        "r2",
        &[("arena.yaml", "name: arena\nroomsReplicas: many\n")],
    );
    let overview: Overview = f.get_as("/api/v1/overview").await;
    assert_eq!(
        overview.schedulers[0].sync.state,
        SyncKind::Suspended,
        "suspension comes first"
    );
    f.call(
        Request::post("/api/v1/schedulers/arena/resume")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let overview: Overview = f.get_as("/api/v1/overview").await;
    let sync = &overview.schedulers[0].sync;
    assert_eq!(sync.state, SyncKind::Error, "{sync:?}");
    assert!(
        sync.message.as_deref().is_some_and(|m| m.contains("r2")),
        "names the revision: {sync:?}"
    );
}

#[tokio::test]
async fn autoscaled_schedulers_show_their_bounds() {
    let f = Fixture::new(None, SyncMode::Manual);
    let yaml = scheduler_yaml("racer", 0, (40000, 40100), "1", "")
        .replace("roomsReplicas: 0\n", "")
        + "autoscaling: {enabled: true, min: 2, max: 20, policy: {type: fixedBuffer, parameters: {fixedBuffer: {amount: 1}}}}\n";
    f.load("r1", &[("racer.yaml", &yaml)]);
    let (status, body) = f.get("/api/v1/overview").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let overview: Overview = body.json();
    assert_eq!(overview.sync_mode, SyncMode::Manual);
    let s = &overview.schedulers[0];
    assert_eq!(s.autoscaling, Some(Bounds { min: 2, max: 20 }), "{s:?}");
}

#[tokio::test]
async fn rooms_come_a_page_at_a_time_with_filters_and_the_old_route_keeps_its_shape() {
    let f = arena(120, 30, 10);
    let (status, body) = f
        .get("/api/v1/schedulers/arena/rooms/page?offset=50&limit=20")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let page: RoomsPage = body.json();
    assert_eq!(page.total, 120);
    assert_eq!(page.offset, 50);
    assert_eq!(page.limit, 20);
    assert_eq!(page.rooms.len(), 20);
    assert_eq!(page.rooms[0].id, "arena-0050", "oldest first");
    assert_eq!(page.counts.get(&RoomStatus::Ready), Some(&30));
    assert_eq!(page.counts.get(&RoomStatus::Occupied), Some(&10));
    assert_eq!(page.counts.get(&RoomStatus::Pending), Some(&80));

    let page: RoomsPage = f
        .get_as("/api/v1/schedulers/arena/rooms/page?status=occupied")
        .await;
    assert_eq!(page.total, 10);
    assert!(page.rooms.iter().all(|r| r.status == RoomStatus::Occupied));
    let page: RoomsPage = f
        .get_as("/api/v1/schedulers/arena/rooms/page?q=ARENA-011")
        .await;
    assert_eq!(page.total, 10, "arena-0110 … arena-0119: {page:?}");
    let page: RoomsPage = f
        .get_as("/api/v1/schedulers/arena/rooms/page?limit=100000")
        .await;
    assert_eq!(page.limit, 500, "pages are bounded");

    let (status, body) = f
        .get("/api/v1/schedulers/arena/rooms/page?status=dancing")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let error = body.error();
    assert_eq!(error.code, "invalid_query");
    assert!(error.message.contains("dancing"));
    let (status, body) = f.get("/api/v1/schedulers/nope/rooms/page").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let (status, body) = f.get("/api/v1/schedulers/arena/rooms").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body.json::<Vec<Room>>().len(),
        120,
        "the old route still answers a plain list"
    );
}

#[tokio::test]
async fn history_holds_a_sample_per_tick() {
    let f = arena(4, 1, 2);
    sample_now(f.controller());
    sample_now(f.controller());
    let (status, body) = f.get("/api/v1/schedulers/arena/history").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let history: History = body.json();
    assert_eq!(history.interval_seconds, 10);
    assert_eq!(history.capacity, 360);
    assert_eq!(history.samples.len(), 2);
    let last = &history.samples[1];
    assert_eq!(last.counts.total, 4);
    assert_eq!(last.counts.busy, 2);
    assert_eq!(last.counts.running_matches, 2);
    assert_eq!(last.counts.rooms.get(&RoomStatus::Ready), Some(&1));
    assert!(last.at > 0);
    let (status, _) = f.get("/api/v1/schedulers/nope/history").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// What one event of the stream says (the server's `troupe::http::events::Changed`, which names
/// what changed with `&'static str`s and so cannot be read back into).
#[derive(Debug, Deserialize)]
struct Changed {
    seq: u64,
    changed: Vec<String>,
}

/// Read the stream until the next `data:` line; what it says.
async fn next_data(
    stream: &mut (impl futures_util::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin),
    buf: &mut String,
) -> Changed {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data:")) {
                    let data = data.trim();
                    return serde_json::from_str(data)
                        .unwrap_or_else(|e| panic!("not an event ({e}): {data}"));
                }
                continue;
            }
            let chunk = stream.next().await.expect("stream open").unwrap();
            buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("an event within 5 s")
}

#[tokio::test]
async fn the_event_stream_says_what_changed_at_most_twice_a_second() {
    let f = arena(2, 0, 0);
    let resp = troupe::http::router(f.state.clone())
        .oneshot(Request::get("/api/v1/events").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE],
        "text/event-stream",
        "{:?}",
        resp.headers()
    );
    let mut stream = resp.into_body().into_data_stream();
    let mut buf = String::new();

    let registry = &f.controller().fleet.registry;
    registry
        .apply("arena", "arena-0000", &RoomEvent::Started, None)
        .unwrap();
    let first = next_data(&mut stream, &mut buf).await;
    let at = std::time::Instant::now();
    assert_eq!(first.seq, 1);
    assert_eq!(first.changed, ["rooms"]);

    // A burst right after: one event, not before the throttle, naming all that changed.
    registry
        .apply("arena", "arena-0001", &RoomEvent::Started, None)
        .unwrap();
    f.controller().notify_changed();
    let second = next_data(&mut stream, &mut buf).await;
    assert!(
        at.elapsed() >= Duration::from_millis(450),
        "throttled: {:?}",
        at.elapsed()
    );
    assert_eq!(second.seq, 2);
    assert_eq!(second.changed, ["revision", "rooms"]);

    // Operations too.
    f.controller()
        .ops
        .enqueue(
            "arena",
            troupe::state::ops::OpKind::Heal,
            troupe::state::ops::Cause::User { name: "t".into() },
            None,
            false,
        )
        .unwrap();
    let third = next_data(&mut stream, &mut buf).await;
    assert_eq!(third.changed, ["operations"]);
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_types_and_cache_headers() {
    let f = Fixture::new(None, SyncMode::Auto);
    for path in ["/", "/schedulers/arena-eu", "/plan"] {
        let (status, headers, body) = f
            .call_raw(Request::get(path).body(Body::empty()).unwrap())
            .await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        let html = String::from_utf8(body).unwrap();
        assert!(html.contains("/assets/app.js?v="), "{html}");
    }
    for (asset, ty) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
    ] {
        let (status, headers, body) = f
            .call_raw(
                Request::get(format!("/assets/{asset}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{asset}");
        assert_eq!(headers[header::CONTENT_TYPE], ty);
        assert!(
            headers[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        assert!(!body.is_empty());
    }
    let (status, body) = f.get("/assets/nope.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body.error().code, "not_found");
}

#[tokio::test]
async fn metrics_export_occupancy_revision_age_and_ping_latency() {
    let f = arena(3, 1, 2);
    let token =
        troupe::domain::room::token::room_token(common::router::SECRET, "arena", "arena-0000");
    let (status, body) = f
        .call(
            Request::put("/scheduler/arena/rooms/arena-0000/ping")
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::from(r#"{"status":"ready"}"#))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = f
        .call_raw(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    for line in [
        r#"troupe_rooms_busy{scheduler="arena"} 2"#,
        r#"troupe_room_matches{scheduler="arena"} 2"#,
        "troupe_ping_duration_seconds_count 1",
        "troupe_revision_age_seconds ",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
}
