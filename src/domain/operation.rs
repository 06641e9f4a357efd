//! Operations as data: what one unit of work on one scheduler is, why it exists, and how it
//! ended. The queue that runs them is [`crate::state::ops`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::admission::Refusal;
use crate::domain::spec::{Declared, Scheduler};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OpKind {
    Create,
    Update,
    Rollout,
    Scale,
    Delete,
    Heal,
}

impl OpKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            OpKind::Create => "create",
            OpKind::Update => "update",
            OpKind::Rollout => "rollout",
            OpKind::Scale => "scale",
            OpKind::Delete => "delete",
            OpKind::Heal => "heal",
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum OpStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl OpStatus {
    pub fn is_finished(&self) -> bool {
        matches!(
            self,
            OpStatus::Succeeded | OpStatus::Failed | OpStatus::Canceled
        )
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            OpStatus::Pending => "pending",
            OpStatus::Running => "running",
            OpStatus::Succeeded => "succeeded",
            OpStatus::Failed => "failed",
            OpStatus::Canceled => "canceled",
        }
    }
}

/// Why an operation exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Cause {
    /// A git revision (or directory state) asked for it.
    Revision {
        revision: String,
        /// Author and first line of the commit message, for git revisions.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commit: Option<String>,
    },
    /// Somebody asked through the CLI or API.
    User { name: String },
    /// A saved plan was applied.
    Plan {
        plan: String,
        revision: Option<String>,
        user: String,
    },
    /// The autoscaler changed the target.
    Autoscaler { reason: String },
    /// Rooms died or went missing and are replaced.
    Health { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpEvent {
    /// Unix milliseconds.
    pub at: u64,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// `op-` and a sequence number: sorting by id is sorting by enqueue order.
    pub id: String,
    pub scheduler: String,
    pub kind: OpKind,
    pub cause: Cause,
    pub status: OpStatus,
    pub created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
    /// The spec the operation applies (create, update, rollout, scale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<Scheduler>,
    /// Where `spec` is declared in the revision it comes from, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared: Option<Declared>,
    /// Delete without waiting for busy rooms.
    #[serde(default)]
    pub force: bool,
    /// The room count an autoscaler scale sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Set when it failed because the runtime's API server refused its rooms (before any
    /// started); `error` says the same in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admission: Option<Refusal>,
    pub events: Vec<OpEvent>,
}

/// How an operation ended, when not successfully.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// Somebody canceled it; it stopped at a consistent point.
    #[error("canceled")]
    Canceled,
    /// It could not finish; the message says why (the room, its status, its last log line).
    #[error("{0}")]
    Failed(String),
    /// The runtime refused rooms of its version before any started: `message` says where the
    /// scheduler is declared and why.
    #[error("{message}")]
    Refused { message: String, refusal: Refusal },
}
