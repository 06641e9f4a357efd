//! Read-only views for the dashboard (and anyone else who wants them): the fleet overview with
//! each scheduler's sync state against git and its occupancy, one scheduler's rooms a page at a
//! time, and its room counts over the last hour.
//!
//! Must always hold: nothing here changes anything; a page of rooms costs the page, not the
//! fleet, in the answer (the overview never lists rooms); bad query parameters get a JSON error.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::api::{OperationBrief, SchedulerSummary, ensure_scheduler, summaries};
use super::{ApiError, AppState};
use crate::controller::samples::{self, Sample};
use crate::controller::{RevisionError, SyncMode};
use crate::domain::plan::{Action, Change, Summary};
use crate::domain::room::{Room, RoomStatus};
use crate::state::ops::OpStatus;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/overview", get(overview))
        .route("/api/v1/schedulers/{scheduler}/rooms/page", get(rooms_page))
        .route("/api/v1/schedulers/{scheduler}/history", get(history))
        .with_state(state)
}

/// Where a scheduler stands against git.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SyncKind {
    /// Live state is what the running revision declares.
    InSync,
    /// The plan has a change for it (its action says which); it is applied, queued or waiting
    /// for approval.
    Pending,
    /// The newest revision is rejected, or its last operation failed and the change is held.
    Error,
    /// Git changes are held back by a person (its rooms are still healed).
    Suspended,
    /// Live but no longer in git, and not pruned.
    Orphaned,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncState {
    pub state: SyncKind,
    /// The plan's action for the scheduler, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Why, for people: the revision's or the operation's error, what waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Decide a scheduler's sync state. Pure; the order of the checks is the order of what a person
/// must act on first.
pub fn sync_state(
    in_git: bool,
    suspended: bool,
    change: Option<&Change>,
    revision_error: Option<&RevisionError>,
    latest: Option<&OperationBrief>,
) -> SyncState {
    let action = change.map(|c| c.action).filter(|a| *a != Action::Orphan);
    let state = |state, message: Option<String>| SyncState {
        state,
        action,
        message,
    };
    if !in_git && action != Some(Action::Delete) {
        return state(SyncKind::Orphaned, Some("no longer in git".into()));
    }
    if suspended {
        let waits = action.map(|a| format!("{} waits until it is resumed", a.as_str()));
        return state(SyncKind::Suspended, waits);
    }
    if let Some(e) = revision_error {
        return state(SyncKind::Error, Some(e.message.clone()));
    }
    let held = latest.filter(|_| action.is_some());
    match held.map(|o| o.status) {
        Some(OpStatus::Failed) => {
            let error = held.and_then(|o| o.error.clone()).unwrap_or_default();
            return state(
                SyncKind::Error,
                Some(format!("{} failed: {error}", held.map_or("", |o| &o.id))),
            );
        }
        Some(OpStatus::Canceled) => {
            return state(
                SyncKind::Pending,
                Some(format!(
                    "held: {} was canceled; waits for a new revision or an apply",
                    held.map_or("", |o| &o.id)
                )),
            );
        }
        _ => {}
    }
    match action {
        Some(_) => state(SyncKind::Pending, None),
        None => state(SyncKind::InSync, None),
    }
}

/// Autoscaling bounds of a scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bounds {
    pub min: u32,
    /// `-1`: no ceiling.
    pub max: i64,
}

/// A scheduler as the overview shows it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchedulerView {
    #[serde(flatten)]
    pub summary: SchedulerSummary,
    /// Rooms where a match is played or about to be: active, occupied, allocated.
    pub busy_rooms: u32,
    pub running_matches: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Bounds>,
    pub sync: SyncState,
}

/// The current plan in brief.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanBrief {
    pub id: String,
    pub has_changes: bool,
    pub summary: Summary,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    /// Whether new revisions apply by themselves or wait for approval.
    pub sync_mode: SyncMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanBrief>,
    pub schedulers: Vec<SchedulerView>,
}

async fn overview(State(state): State<AppState>) -> Json<Overview> {
    let c = &state.controller;
    let desired = c.desired();
    let counts = state.rooms.counts();
    let applied = c.applied_all();
    let specs: BTreeMap<String, crate::domain::spec::Scheduler> = desired
        .schedulers
        .iter()
        .map(|s| (s.name.clone(), s.clone()))
        .chain(applied.into_iter().map(|(name, a)| (name, a.spec)))
        .collect();
    let changes: BTreeMap<&str, &Change> = desired
        .plan
        .iter()
        .flat_map(|p| &p.changes)
        .map(|c| (c.scheduler.as_str(), c))
        .collect();
    let schedulers = summaries(&state)
        .into_iter()
        .map(|summary| {
            let count = counts.get(&summary.name).cloned().unwrap_or_default();
            let autoscaling = specs
                .get(&summary.name)
                .and_then(|s| s.autoscaling.as_ref())
                .filter(|a| a.enabled)
                .map(|a| Bounds {
                    min: a.min,
                    max: a.max,
                });
            let sync = sync_state(
                summary.in_git,
                summary.suspended,
                changes.get(summary.name.as_str()).copied(),
                desired.error.as_ref(),
                summary.last_operation.as_ref(),
            );
            SchedulerView {
                summary,
                busy_rooms: count.busy,
                running_matches: count.running_matches,
                autoscaling,
                sync,
            }
        })
        .collect();
    Json(Overview {
        sync_mode: c.options.sync,
        plan: desired.plan.as_ref().map(|p| PlanBrief {
            id: p.id.clone(),
            has_changes: p.has_changes(),
            summary: p.summary,
        }),
        schedulers,
    })
}

/// Rooms on a page when the caller does not say, and at most.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
    status: Option<RoomStatus>,
    /// Case-insensitive text found in the id, version, status, address, a port or the reason.
    q: Option<String>,
}

/// One page of a scheduler's rooms.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomsPage {
    /// Rooms matching the filters (all pages).
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    /// The scheduler's rooms by status, unfiltered.
    pub counts: BTreeMap<RoomStatus, u32>,
    /// Oldest first.
    pub rooms: Vec<Room>,
}

fn query_error(e: QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text())
}

/// Whether `room` shows `needle` (lower case) anywhere a person would look for it.
fn room_matches(room: &Room, needle: &str) -> bool {
    let hit = |s: &str| s.to_lowercase().contains(needle);
    hit(&room.id)
        || hit(&room.version)
        || hit(room.status.as_str())
        || hit(&room.host)
        || room.reason.as_deref().is_some_and(hit)
        || room
            .ports
            .iter()
            .any(|p| p.port.to_string().contains(needle) || hit(&p.name))
}

async fn rooms_page(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<RoomsPage>, ApiError> {
    let Query(q) = query.map_err(query_error)?;
    ensure_scheduler(&state, &name)?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let needle =
        q.q.as_deref()
            .map(|s| s.trim().to_lowercase())
            .filter(|s| !s.is_empty());
    let all = state.rooms.list(Some(&name));
    let mut counts: BTreeMap<RoomStatus, u32> = BTreeMap::new();
    for r in &all {
        *counts.entry(r.status).or_default() += 1;
    }
    let matching: Vec<Room> = all
        .into_iter()
        .filter(|r| q.status.is_none_or(|s| r.status == s))
        .filter(|r| needle.as_deref().is_none_or(|n| room_matches(r, n)))
        .collect();
    let total = matching.len();
    Ok(Json(RoomsPage {
        total,
        offset: q.offset,
        limit,
        counts,
        rooms: matching.into_iter().skip(q.offset).take(limit).collect(),
    }))
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct History {
    pub interval_seconds: u64,
    pub capacity: usize,
    /// Oldest first.
    pub samples: Vec<Sample>,
}

async fn history(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<History>, ApiError> {
    let samples = state.controller.samples.series(&name);
    if samples.is_empty() {
        ensure_scheduler(&state, &name)?;
    }
    Ok(Json(History {
        interval_seconds: samples::SAMPLE_INTERVAL.as_secs(),
        capacity: samples::CAPACITY,
        samples,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ops::OpKind;

    fn change(action: Action) -> Change {
        Change {
            target_rooms: 1,
            ..Change::bare("arena", action)
        }
    }

    fn op(status: OpStatus, error: Option<&str>) -> OperationBrief {
        OperationBrief {
            id: "op-1".into(),
            kind: OpKind::Rollout,
            status,
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn sync_states_in_the_order_a_person_acts_on_them() {
        let rollout = change(Action::Rollout);
        let bad = RevisionError {
            revision: Some("r2".into()),
            message: "revision r2 has 1 error(s)".into(),
            errors: vec![],
            at: 0,
        };
        let failed = op(OpStatus::Failed, Some("image cannot be pulled"));
        let s = |in_git, suspended, change, error, latest| {
            sync_state(in_git, suspended, change, error, latest).state
        };
        assert_eq!(s(true, false, None, None, None), SyncKind::InSync);
        assert_eq!(
            s(true, false, Some(&rollout), None, None),
            SyncKind::Pending
        );
        assert_eq!(
            sync_state(true, false, Some(&rollout), None, None).action,
            Some(Action::Rollout)
        );
        assert_eq!(s(false, false, None, None, None), SyncKind::Orphaned);
        let delete = change(Action::Delete);
        assert_eq!(
            s(false, false, Some(&delete), None, None),
            SyncKind::Pending,
            "a pruned scheduler is a pending delete, not an orphan"
        );
        assert_eq!(
            s(true, true, Some(&rollout), Some(&bad), None),
            SyncKind::Suspended
        );
        let e = sync_state(true, false, None, Some(&bad), None);
        assert_eq!(
            (e.state, e.message.as_deref()),
            (SyncKind::Error, Some(bad.message.as_str()))
        );
        let held = sync_state(true, false, Some(&rollout), None, Some(&failed));
        assert_eq!(held.state, SyncKind::Error);
        assert!(held.message.unwrap().contains("image cannot be pulled"));
        assert_eq!(
            s(true, false, None, None, Some(&failed)),
            SyncKind::InSync,
            "a failure that nothing waits on any more is history"
        );
        let canceled = sync_state(
            true,
            false,
            Some(&rollout),
            None,
            Some(&op(OpStatus::Canceled, None)),
        );
        assert_eq!(canceled.state, SyncKind::Pending);
        assert!(canceled.message.unwrap().contains("canceled"));
    }
}
