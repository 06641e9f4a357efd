//! HTTP: the rooms API (called by game rooms), the management API (JSON, called by people,
//! the CLI and the dashboard), its read-only views and live events, the dashboard's files, git
//! webhooks, health and metrics. Routers are plain functions of [`AppState`].
//!
//! Must always hold: every error is a JSON body `{"error": {"code", "message"}}` with a 4xx/5xx
//! status that says whose fault it is; bodies are size-limited; tokens and secrets never appear
//! in a response or a log line.

pub mod allocate;
pub mod api;
pub mod dashboard;
pub mod events;
pub mod forward;
pub mod hooks;
pub mod rooms;
pub mod standby;
pub mod views;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::controller::Controller;

/// Largest request body accepted anywhere; a ping is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub controller: Arc<Controller>,
    /// What the rooms API and allocation call: rooms' tokens, pings, player events, allocation.
    pub rooms: crate::controller::Rooms,
    /// Bearer token required on management write routes, when set.
    pub api_token: Option<Arc<str>>,
    /// Where room and player events go.
    pub forwarders: crate::http::forward::Forwarders,
    /// The source watcher: its freshness for `GET /api/v1/revision`, and the trigger webhooks
    /// pull.
    pub source: Option<crate::source::WatchHandle>,
    /// Secret authenticating `POST /hooks/git`; webhooks are off without it.
    pub webhook_secret: Option<Arc<[u8]>>,
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(rooms::router(state.clone()))
        .merge(allocate::router(state.clone()))
        .merge(api::router(state.clone()))
        .merge(views::router(state.clone()))
        .merge(events::router(state.clone()))
        .merge(hooks::router(state))
        .merge(dashboard::router())
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
    /// Not now, maybe in a moment: answered with `Retry-After`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
}

/// Seconds a client is asked to wait before it retries a 503.
pub const RETRY_AFTER_SECONDS: &str = "1";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            let retry = [(axum::http::header::RETRY_AFTER, RETRY_AFTER_SECONDS)];
            return (self.status, retry, body).into_response();
        }
        (self.status, body).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let code = match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
            _ => "malformed_body",
        };
        Self::new(r.status(), code, r.body_text())
    }
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Serve `router` on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
