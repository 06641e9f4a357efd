//! The rooms API: game rooms report themselves here.
//!
//! `PUT /scheduler/{s}/rooms/{r}/ping` with `Authorization: Bearer <room token>` and
//! `{status, runningMatches?, metadata?}`. Must always hold: a request without the room's own
//! token is refused before anything is looked up (401); a transition that makes no sense is
//! refused (409) and changes nothing.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, bearer};
use crate::domain::room::PingStatus;
use crate::http::forward::Event;
use crate::state::registry::RegistryError;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/scheduler/{scheduler}/rooms/{room}/ping", put(ping))
        .route(
            "/scheduler/{scheduler}/rooms/{room}/roomevent",
            post(room_event),
        )
        .route(
            "/scheduler/{scheduler}/rooms/{room}/playerevent",
            post(player_event),
        )
        .with_state(state)
}

/// Something the room wants other systems to hear about (forwarded as is).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoomEventBody {
    pub event: String,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PlayerEventKind {
    PlayerJoin,
    PlayerLeft,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlayerEventBody {
    pub event: PlayerEventKind,
    pub player_id: String,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

/// The room a request speaks for, after its token was checked; 404 when there is no such room.
fn known_room(
    state: &AppState,
    headers: &HeaderMap,
    scheduler: &str,
    room: &str,
) -> Result<(), ApiError> {
    authorize(state, headers, scheduler, room)?;
    if state.rooms.exists(scheduler, room) {
        Ok(())
    } else {
        Err(unknown_room(state, scheduler, room))
    }
}

/// No such room: 404, or 503 while the server is still taking back the rooms recorded before
/// (the room may be one of them).
fn unknown_room(state: &AppState, scheduler: &str, room: &str) -> ApiError {
    if state.rooms.starting() {
        ApiError::unavailable(crate::controller::rooms::STARTING)
    } else {
        ApiError::not_found(format!("room {room} of scheduler {scheduler} not found"))
    }
}

async fn room_event(
    State(state): State<AppState>,
    Path((scheduler, room)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Json<RoomEventBody>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    known_room(&state, &headers, &scheduler, &room)?;
    let Json(body) = body?;
    let payload = serde_json::json!({"event": body.event, "metadata": body.metadata});
    state
        .forwarders
        .send(Event::new(&scheduler, &room, "roomEvent", payload));
    Ok(StatusCode::ACCEPTED)
}

async fn player_event(
    State(state): State<AppState>,
    Path((scheduler, room)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Json<PlayerEventBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    known_room(&state, &headers, &scheduler, &room)?;
    let Json(body) = body?;
    if body.player_id.is_empty() || body.player_id.len() > 256 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "playerId must be 1 to 256 characters",
        ));
    }
    let join = body.event == PlayerEventKind::PlayerJoin;
    let players = state
        .rooms
        .player(&scheduler, &room, join, &body.player_id)
        .map_err(|e| match e {
            RegistryError::UnknownRoom { .. } => unknown_room(&state, &scheduler, &room),
            other => ApiError::internal(other.to_string()),
        })?;
    let payload = serde_json::json!({"event": body.event, "playerId": body.player_id, "metadata": body.metadata});
    state
        .forwarders
        .send(Event::new(&scheduler, &room, "playerEvent", payload));
    Ok(Json(serde_json::json!({"room": room, "players": players})))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PingBody {
    pub status: PingStatus,
    #[serde(default)]
    pub running_matches: Option<u32>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PingAnswer {
    pub room: String,
    pub status: crate::domain::room::RoomStatus,
}

/// Refuse unless the request carries the room's token.
fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    scheduler: &str,
    room: &str,
) -> Result<(), ApiError> {
    match bearer(headers) {
        None => Err(ApiError::unauthorized(
            "missing room token: send Authorization: Bearer <TROUPE_ROOM_TOKEN>",
        )),
        Some(t) if state.rooms.token_is_valid(scheduler, room, t) => Ok(()),
        Some(_) => Err(ApiError::unauthorized(format!(
            "token is not valid for room {room} of scheduler {scheduler}"
        ))),
    }
}

async fn ping(
    State(state): State<AppState>,
    Path((scheduler, room)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Json<PingBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<PingAnswer>, ApiError> {
    let metrics = &state.controller.metrics;
    let _timer = metrics.ping_seconds.start_timer();
    let outcome = |label: &str| metrics.pings.with_label_values(&[label]).inc();
    if let Err(e) = authorize(&state, &headers, &scheduler, &room) {
        outcome("unauthorized");
        return Err(e);
    }
    let Json(body) = body.inspect_err(|_| outcome("invalid"))?;
    if body.metadata.as_ref().is_some_and(|m| !m.is_object()) {
        outcome("invalid");
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "metadata must be a JSON object",
        ));
    }
    match state.rooms.ping(
        &scheduler,
        &room,
        body.status,
        body.running_matches,
        body.metadata,
    ) {
        Ok(out) => {
            outcome("ok");
            Ok(Json(PingAnswer {
                room,
                status: out.to,
            }))
        }
        Err(RegistryError::UnknownRoom { .. }) => {
            outcome("unknown");
            Err(unknown_room(&state, &scheduler, &room))
        }
        Err(e @ RegistryError::Transition { .. }) => {
            outcome("refused");
            Err(ApiError::conflict(e.to_string()))
        }
        Err(e @ RegistryError::Store(_)) => {
            tracing::error!(%scheduler, %room, error = %e, "cannot record ping");
            Err(ApiError::internal("cannot record the ping"))
        }
    }
}
