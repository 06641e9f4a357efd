//! Server-sent events for live pages: `GET /api/v1/events` sends `{"seq", "changed": [...]}`
//! (`rooms`, `operations`, `revision`) whenever the room registry, the operations or the
//! controller's desired state (revision, its error, the plan, suspensions) change, so a page
//! refetches only then.
//!
//! Must always hold: at most one event per [`THROTTLE`] per stream (a burst of room changes is
//! one event, listing everything that changed in it); a comment line at least every
//! [`KEEP_ALIVE`] keeps proxies from closing an idle stream; every stream ends when the
//! controller stops, so a shutdown never waits on an open page.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::AppState;

/// Least time between two events of one stream: a page refetches at most twice a second.
pub const THROTTLE: Duration = Duration::from_millis(500);
/// Longest silence on a stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/events", get(events))
        .with_state(state)
}

/// What one event says.
#[derive(Debug, Serialize)]
pub struct Changed {
    /// 1 for the first event of the stream, then one more per event.
    pub seq: u64,
    /// What changed since the previous event: `rooms`, `operations`, `revision`.
    pub changed: BTreeSet<&'static str>,
}

/// The watches one stream follows.
struct Watches {
    rooms: watch::Receiver<u64>,
    operations: watch::Receiver<u64>,
    revision: watch::Receiver<u64>,
    stopping: CancellationToken,
    seq: u64,
    last: Option<Instant>,
}

impl Watches {
    /// Wait for the next change, then for the throttle, and say everything that changed by then.
    /// `None` once the controller stops.
    async fn next(&mut self) -> Option<Changed> {
        let mut changed = BTreeSet::new();
        let first = tokio::select! {
            _ = self.stopping.cancelled() => return None,
            r = self.rooms.changed() => r.map(|_| "rooms"),
            r = self.operations.changed() => r.map(|_| "operations"),
            r = self.revision.changed() => r.map(|_| "revision"),
        };
        changed.insert(first.ok()?);
        if let Some(last) = self.last {
            tokio::select! {
                _ = self.stopping.cancelled() => return None,
                _ = tokio::time::sleep_until(last + THROTTLE) => {}
            }
        }
        for (rx, name) in [
            (&mut self.rooms, "rooms"),
            (&mut self.operations, "operations"),
            (&mut self.revision, "revision"),
        ] {
            if rx.has_changed().unwrap_or(false) {
                rx.borrow_and_update();
                changed.insert(name);
            }
        }
        self.last = Some(Instant::now());
        self.seq += 1;
        Some(Changed {
            seq: self.seq,
            changed,
        })
    }
}

async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let c = &state.controller;
    let watches = Watches {
        rooms: state.rooms.subscribe(),
        operations: c.ops.subscribe(),
        revision: c.subscribe(),
        stopping: c.stopping(),
        seq: 0,
        last: None,
    };
    let stream = futures_util::stream::unfold(watches, |mut w| async move {
        let changed = w.next().await?;
        let event = Event::default()
            .id(changed.seq.to_string())
            .json_data(&changed)
            .unwrap_or_else(|_| Event::default().data("{}"));
        Some((Ok(event), w))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}
