//! Allocation: matchmakers ask for a room and get its address.
//!
//! `POST /scheduler/{s}/rooms/allocate` picks from one scheduler; `POST /games/{game}/rooms/allocate`
//! with an optional `{"labels": {...}}` picks across the schedulers of a game whose labels match.
//! Must always hold: a room is never handed to two callers (the registry chooses and marks it
//! under one lock and journals it before answering); no free room is a clear 409 `no_room`.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState};
use crate::controller::AllocateError;
use crate::domain::room::{Room, RoomPort};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/scheduler/{scheduler}/rooms/allocate",
            post(allocate_in_scheduler),
        )
        .route("/games/{game}/rooms/allocate", post(allocate_in_game))
        .with_state(state)
}

/// What a matchmaker gets: where to send the players.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Allocation {
    pub room: String,
    pub scheduler: String,
    pub host: String,
    pub ports: Vec<RoomPort>,
}

impl From<Room> for Allocation {
    fn from(r: Room) -> Self {
        Self {
            room: r.id,
            scheduler: r.scheduler,
            host: r.host,
            ports: r.ports,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GameSelector {
    /// Scheduler labels that must all match.
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

async fn allocate_in_scheduler(
    State(state): State<AppState>,
    Path(scheduler): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Allocation>, ApiError> {
    super::api::authorize_write(&state, &headers)?;
    let started = Instant::now();
    let result = state.rooms.allocate_in_scheduler(&scheduler).await;
    answer(&state, &scheduler, started, result)
}

async fn allocate_in_game(
    State(state): State<AppState>,
    Path(game): Path<String>,
    headers: HeaderMap,
    body: Option<Json<GameSelector>>,
) -> Result<Json<Allocation>, ApiError> {
    super::api::authorize_write(&state, &headers)?;
    let selector = body.map(|Json(b)| b).unwrap_or_default();
    let started = Instant::now();
    let result = state.rooms.allocate_in_game(&game, &selector.labels).await;
    answer(&state, &format!("game {game}"), started, result)
}

/// Time and count an allocation begun at `started`, and answer with the room or why there is none.
fn answer(
    state: &AppState,
    what: &str,
    started: Instant,
    result: Result<Option<Room>, AllocateError>,
) -> Result<Json<Allocation>, ApiError> {
    let m = &state.controller.metrics;
    m.allocation_seconds
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(Some(room)) => {
            m.allocations.with_label_values(&["allocated"]).inc();
            tracing::debug!(room = %room.id, scheduler = %room.scheduler, "room allocated");
            Ok(Json(room.into()))
        }
        Ok(None) => {
            m.allocations.with_label_values(&["no_room"]).inc();
            Err(ApiError::new(
                StatusCode::CONFLICT,
                "no_room",
                format!("no ready room in {what}"),
            ))
        }
        Err(AllocateError::NotFound(message)) => Err(ApiError::not_found(message)),
        Err(AllocateError::Unavailable(why)) => {
            m.allocations.with_label_values(&["unavailable"]).inc();
            tracing::debug!(reason = %why, "cannot allocate now");
            Err(ApiError::unavailable(format!(
                "cannot record the allocation now ({why}); nothing was handed out: retry"
            )))
        }
        Err(e @ AllocateError::Store(_)) => {
            m.allocations.with_label_values(&["error"]).inc();
            tracing::error!(error = %e, "cannot record an allocation");
            Err(ApiError::internal("cannot record the allocation"))
        }
    }
}
