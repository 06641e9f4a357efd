//! What a replica that does not lead answers, until it does: `/healthz` is ok (the process is
//! alive), `/readyz` is not (a Service must send it no traffic), and every other route is 503 with
//! `Retry-After`, so that rooms, matchmakers and the CLI retry and reach the leader.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;

use super::ApiError;

pub fn router(lease: String) -> Router {
    let message = format!("this replica stands by: another one holds the lease {lease}; retry");
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "standing by\n") }),
        )
        .fallback(move || {
            let message = message.clone();
            async move { ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "standby", message) }
        })
}
