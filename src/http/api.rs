//! The management API (JSON): schedulers with live counts, rooms, operations (list, get,
//! cancel), the current plan and its approval, the revision, live state; plus `/healthz`,
//! `/readyz` and `/metrics`.
//!
//! Must always hold: read routes never change anything; write routes (cancel, apply) require the
//! API token when one is configured; nothing here returns a room token or the server secret.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, bearer};
use crate::controller::{ApplyError, DesiredState, SuspendError};
use crate::domain::plan::live::LiveState;
use crate::domain::room::{Room, RoomStatus};
use crate::runtime::SchedulerStatus;
use crate::source::SourceStatus;
use crate::state::ops::{OpStatus, Operation, OpsError};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/schedulers", get(schedulers))
        .route("/api/v1/schedulers/{scheduler}", get(scheduler))
        .route("/api/v1/schedulers/{scheduler}/rooms", get(rooms))
        .route("/api/v1/operations", get(operations))
        .route("/api/v1/operations/{id}", get(operation))
        .route("/api/v1/operations/{id}/cancel", post(cancel))
        .route("/api/v1/plan", get(plan))
        .route("/api/v1/plan/apply", post(apply))
        .route(
            "/api/v1/plans/apply",
            post(apply_saved).layer(axum::extract::DefaultBodyLimit::max(MAX_PLAN_BYTES)),
        )
        .route("/api/v1/revision", get(revision))
        .route("/api/v1/revisions", get(revisions))
        .route("/api/v1/schedulers/{scheduler}/suspend", post(suspend))
        .route("/api/v1/schedulers/{scheduler}/resume", post(resume))
        .route("/api/v1/live", get(live))
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.controller.ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no revision planned yet\n")
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let c = &state.controller;
    fill_scrape_gauges(&state);
    c.metrics
        .set_store_failures("rooms", state.rooms.store_failures());
    c.metrics
        .set_store_failures("operations", c.ops.store_failures());
    c.metrics
        .runtime_records_pending
        .set(c.pending_records() as i64);
    if let Some(source) = &state.source {
        let status = source.status();
        c.metrics
            .source_failures
            .set(f64::from(status.consecutive_failures));
        c.metrics
            .source_last_success
            .set(status.last_success.map_or(0.0, |ms| ms as f64 / 1000.0));
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        c.metrics.render(),
    )
}

/// A scheduler with its live counts.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchedulerSummary {
    pub name: String,
    pub game: String,
    pub version: String,
    pub target_rooms: u32,
    pub autoscaled: bool,
    /// Declared in the current good revision.
    pub in_git: bool,
    /// Git changes are not applied to it until it is resumed.
    #[serde(default)]
    pub suspended: bool,
    pub rooms: BTreeMap<RoomStatus, u32>,
    pub total_rooms: u32,
    pub operations: BTreeMap<OpStatus, u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_operation: Option<OperationBrief>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationBrief {
    pub id: String,
    pub kind: crate::state::ops::OpKind,
    pub status: OpStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Rooms by status, occupancy and revision age, computed at scrape time from one count of the
/// registry, so they never drift.
fn fill_scrape_gauges(state: &AppState) {
    let c = &state.controller;
    let m = &c.metrics;
    m.rooms.reset();
    m.rooms_busy.reset();
    m.room_matches.reset();
    for (scheduler, counts) in state.rooms.counts() {
        for (status, n) in &counts.rooms {
            m.rooms
                .with_label_values(&[&scheduler, status.as_str()])
                .set(f64::from(*n));
        }
        m.rooms_busy
            .with_label_values(&[&scheduler])
            .set(f64::from(counts.busy));
        m.room_matches
            .with_label_values(&[&scheduler])
            .set(f64::from(counts.running_matches));
    }
    let seen_at = c.desired().revision.map(|r| r.seen_at);
    let age_ms = seen_at.map_or(0, |t| crate::clock::now_ms().saturating_sub(t));
    m.revision_age_seconds.set(age_ms as f64 / 1000.0);
}

/// 404 unless `name` is applied or declared in the running revision.
pub(super) fn ensure_scheduler(state: &AppState, name: &str) -> Result<(), ApiError> {
    let c = &state.controller;
    if c.applied(name).is_none() && !c.desired_schedulers().iter().any(|s| s.name == name) {
        return Err(ApiError::not_found(format!("scheduler {name} not found")));
    }
    Ok(())
}

pub(super) fn summaries(state: &AppState) -> Vec<SchedulerSummary> {
    let c = &state.controller;
    let counts = state.rooms.counts();
    let op_counts = c.ops.counts();
    let desired: BTreeMap<String, _> = c
        .desired_schedulers()
        .into_iter()
        .map(|s| (s.name.clone(), s))
        .collect();
    let mut out: BTreeMap<String, SchedulerSummary> = BTreeMap::new();
    for (name, a) in c.applied_all() {
        let rooms = counts
            .get(&name)
            .map(|c| c.rooms.clone())
            .unwrap_or_default();
        out.insert(
            name.clone(),
            SchedulerSummary {
                game: a.spec.game.clone(),
                version: a.version.clone(),
                target_rooms: a.target_rooms,
                autoscaled: a.spec.autoscaled(),
                in_git: desired.contains_key(&name),
                suspended: c.history.is_suspended(&name),
                total_rooms: rooms.values().sum(),
                rooms,
                operations: op_counts.get(&name).cloned().unwrap_or_default(),
                last_operation: None,
                name,
            },
        );
    }
    // Declared but not applied yet: normally no rooms (a spec is applied before its rooms).
    for (name, s) in desired {
        let rooms = counts
            .get(&name)
            .map(|c| c.rooms.clone())
            .unwrap_or_default();
        out.entry(name.clone()).or_insert_with(|| SchedulerSummary {
            game: s.game.clone(),
            version: s.version(),
            target_rooms: s.fixed_replicas().unwrap_or(0),
            autoscaled: s.autoscaled(),
            in_git: true,
            suspended: c.history.is_suspended(&name),
            total_rooms: rooms.values().sum(),
            rooms,
            operations: op_counts.get(&name).cloned().unwrap_or_default(),
            last_operation: None,
            name,
        });
    }
    for s in out.values_mut() {
        s.last_operation = c.ops.latest(&s.name).map(|o| OperationBrief {
            id: o.id,
            kind: o.kind,
            status: o.status,
            error: o.error,
        });
    }
    out.into_values().collect()
}

impl SchedulerSummary {
    /// What the runtime shows of it (`kubectl get schedulers.troupe.dev`).
    fn runtime_status(&self) -> SchedulerStatus {
        let count = |s: &RoomStatus| self.rooms.get(s).copied().unwrap_or(0);
        SchedulerStatus {
            game: self.game.clone(),
            version: self.version.clone(),
            target_rooms: self.target_rooms,
            total_rooms: self.total_rooms,
            busy_rooms: RoomStatus::ALL
                .iter()
                .filter(|s| s.is_busy())
                .map(count)
                .sum(),
            rooms: RoomStatus::ALL
                .iter()
                .filter(|s| **s != RoomStatus::Terminated)
                .map(|s| (s.as_str(), count(s)))
                .collect(),
            suspended: self.suspended,
            in_git: self.in_git,
            last_operation: self
                .last_operation
                .as_ref()
                .map(|o| format!("{} {} {}", o.kind.as_str(), o.id, o.status.as_str())),
        }
    }
}

/// How often the schedulers' summaries are looked at for the runtime.
const STATUS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Send each scheduler's summary to the runtime when it changed (on Kubernetes: the status of its
/// Scheduler resource, for `kubectl get`), looking every [`STATUS_EVERY`] once the fleet is
/// adopted (before, the counts would be a start-up's, not the fleet's).
pub async fn report_statuses(state: AppState, shutdown: tokio_util::sync::CancellationToken) {
    let mut sent: BTreeMap<String, SchedulerStatus> = BTreeMap::new();
    loop {
        if state.controller.adopted() {
            for summary in summaries(&state) {
                let status = summary.runtime_status();
                if sent.get(&summary.name) != Some(&status) {
                    state.controller.record_status(&summary.name, &status);
                    sent.insert(summary.name, status);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(STATUS_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn schedulers(State(state): State<AppState>) -> Json<Vec<SchedulerSummary>> {
    Json(summaries(&state))
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchedulerDetail {
    #[serde(flatten)]
    summary: SchedulerSummary,
    /// The spec rooms are driven to.
    #[serde(skip_serializing_if = "Option::is_none")]
    applied: Option<crate::domain::spec::Scheduler>,
    /// The spec in the current good revision.
    #[serde(skip_serializing_if = "Option::is_none")]
    desired: Option<crate::domain::spec::Scheduler>,
}

async fn scheduler(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<SchedulerDetail>, ApiError> {
    let summary = summaries(&state)
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ApiError::not_found(format!("scheduler {name} not found")))?;
    let c = &state.controller;
    Ok(Json(SchedulerDetail {
        summary,
        applied: c.applied(&name).map(|a| a.spec),
        desired: c.desired_schedulers().into_iter().find(|s| s.name == name),
    }))
}

#[derive(Debug, Deserialize)]
struct RoomsQuery {
    status: Option<RoomStatus>,
}

async fn rooms(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<RoomsQuery>,
) -> Result<Json<Vec<Room>>, ApiError> {
    ensure_scheduler(&state, &name)?;
    let rooms = state.rooms.list(Some(&name));
    Ok(Json(
        rooms
            .into_iter()
            .filter(|r| q.status.is_none_or(|s| r.status == s))
            .collect(),
    ))
}

#[derive(Debug, Deserialize)]
struct OpsQuery {
    scheduler: Option<String>,
    limit: Option<usize>,
}

/// Operations listed at most by default and at the most.
const DEFAULT_OPS_LIMIT: usize = 100;
const MAX_OPS_LIMIT: usize = crate::state::ops::MAX_HISTORY;

async fn operations(
    State(state): State<AppState>,
    Query(q): Query<OpsQuery>,
) -> Json<Vec<Operation>> {
    let limit = q.limit.unwrap_or(DEFAULT_OPS_LIMIT).min(MAX_OPS_LIMIT);
    Json(state.controller.ops.list(q.scheduler.as_deref(), limit))
}

async fn operation(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Operation>, ApiError> {
    state
        .controller
        .ops
        .get(&id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("operation {id} not found")))
}

/// Refuse a write unless it carries the API token (when one is configured).
pub(super) fn authorize_write(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    match &state.api_token {
        None => Ok("api".into()),
        Some(expected) => match bearer(headers) {
            Some(t) if constant_time_eq(t.as_bytes(), expected.as_bytes()) => {
                Ok("api-token".into())
            }
            Some(_) => Err(ApiError::unauthorized("API token is not valid")),
            None => Err(ApiError::unauthorized(
                "missing API token: send Authorization: Bearer <token>",
            )),
        },
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Operation>, ApiError> {
    let by = authorize_write(&state, &headers)?;
    match state.controller.ops.cancel(&id, &by) {
        Ok(op) => Ok(Json(op)),
        Err(OpsError::NotFound(_)) => Err(ApiError::not_found(format!("operation {id} not found"))),
        Err(e @ OpsError::Finished { .. }) => Err(ApiError::conflict(e.to_string())),
        Err(e @ OpsError::Store(_)) => Err(ApiError::internal(e.to_string())),
    }
}

async fn plan(State(state): State<AppState>) -> Result<Json<crate::domain::plan::Plan>, ApiError> {
    state.controller.desired().plan.map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_revision",
            "no revision loaded yet",
        )
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ApplyBody {
    #[serde(default)]
    plan_id: Option<String>,
    /// Delete without waiting for busy rooms.
    #[serde(default)]
    force: bool,
}

async fn apply(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Option<Json<ApplyBody>>,
) -> Result<Json<crate::domain::plan::Plan>, ApiError> {
    let by = authorize_write(&state, &headers)?;
    let body = body.map(|Json(b)| b).unwrap_or_default();
    Ok(Json(state.controller.apply(
        body.plan_id.as_deref(),
        &by,
        body.force,
    )?))
}

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> Self {
        let message = e.to_string();
        match e {
            ApplyError::StalePlan { .. } | ApplyError::Moved { .. } | ApplyError::Busy { .. } => {
                ApiError::conflict(message)
            }
            ApplyError::Invalid(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_plan", message)
            }
            ApplyError::NoRevision => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_revision", message)
            }
            ApplyError::Store(_) => ApiError::internal(message),
        }
    }
}

/// Largest saved plan accepted: a plan carries the full specs it applies.
const MAX_PLAN_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppliedPlan {
    plan: String,
    operations: Vec<Operation>,
}

async fn apply_saved(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<
        Json<crate::domain::plan::saved::SavedPlan>,
        axum::extract::rejection::JsonRejection,
    >,
) -> Result<Json<AppliedPlan>, ApiError> {
    let by = authorize_write(&state, &headers)?;
    let Json(saved) = body?;
    let operations = state.controller.apply_saved(&saved, &by)?;
    Ok(Json(AppliedPlan {
        plan: saved.plan.id,
        operations,
    }))
}

/// `GET /api/v1/revision`: what the controller holds, and how fresh the source is.
#[derive(Debug, Serialize, Deserialize)]
struct RevisionView {
    #[serde(flatten)]
    desired: DesiredState,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<SourceStatus>,
}

async fn revision(State(state): State<AppState>) -> Json<RevisionView> {
    let mut desired = state.controller.desired();
    desired.plan = None;
    Json(RevisionView {
        desired,
        source: state.source.as_ref().map(|s| s.status()),
    })
}

async fn revisions(State(state): State<AppState>) -> Json<Vec<crate::controller::RevisionRecord>> {
    Json(state.controller.history.revisions())
}

async fn suspend(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_suspended(&state, &name, &headers, true).await
}

async fn resume(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_suspended(&state, &name, &headers, false).await
}

/// Suspend or resume applying git changes to one scheduler (its rooms are still healed); a
/// suspension the runtime could not record is a 503, and nothing changed.
async fn set_suspended(
    state: &AppState,
    name: &str,
    headers: &HeaderMap,
    suspended: bool,
) -> Result<Json<serde_json::Value>, ApiError> {
    let by = authorize_write(state, headers)?;
    ensure_scheduler(state, name)?;
    match state.controller.set_suspended(name, suspended).await {
        Err(SuspendError::Unrecorded(e)) => return Err(ApiError::unavailable(e.to_string())),
        Err(SuspendError::Journal(e)) => return Err(ApiError::internal(e.to_string())),
        Ok(()) => {}
    }
    tracing::info!(scheduler = name, suspended, by, "sync suspension changed");
    Ok(Json(
        serde_json::json!({"scheduler": name, "suspended": suspended}),
    ))
}

async fn live(State(state): State<AppState>) -> Json<LiveState> {
    Json(state.controller.live_state())
}
