//! A scheduler as applied: the spec its rooms are driven to, its version and its room target.
//! Journaled by the fleet and, on Kubernetes, recorded on the scheduler's namespace.

use serde::{Deserialize, Serialize};

use crate::domain::spec::Scheduler;

/// A scheduler as applied: the spec rooms are driven to, and how many rooms it should have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    pub spec: Scheduler,
    pub version: String,
    pub target_rooms: u32,
    /// The spec of the version this one replaces, while a rollout may still fall back to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Box<Scheduler>>,
}
