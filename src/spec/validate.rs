//! Semantic checks on parsed schedulers. (stub)

use super::Scheduler;

/// One semantic problem: field path and message; the loader adds the location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub path: String,
    pub message: String,
}

/// Check one scheduler.
pub fn validate_revision(_s: &Scheduler) -> Vec<Issue> {
    todo!()
}
