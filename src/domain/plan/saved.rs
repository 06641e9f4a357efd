//! Saved plans: a plan written to a file by `troupe plan -o`, applied later by `troupe apply`.
//!
//! Must always hold: a saved plan applies exactly the changes it shows (the specs are in the
//! file), or is refused — when it expired, was made by an incompatible Troupe, or when git or
//! the live state of a scheduler it changes moved since ([`super::staleness`]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Plan;

/// Version of the file layout; bumped on incompatible changes.
pub const SAVED_PLAN_FORMAT: u32 = 1;

/// Default time a saved plan stays applicable: long enough for a review, short enough that
/// nobody applies yesterday's plan by accident.
pub const DEFAULT_TTL_MS: u64 = 60 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SavedPlan {
    pub format: u32,
    /// Version of the troupe that made it.
    pub tool_version: String,
    /// Unix milliseconds.
    pub created_at: u64,
    /// Unix milliseconds after which it is refused.
    pub expires_at: u64,
    pub plan: Plan,
}

impl SavedPlan {
    pub fn new(plan: Plan, now: u64, ttl_ms: u64) -> Self {
        Self {
            format: SAVED_PLAN_FORMAT,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            created_at: now,
            expires_at: now.saturating_add(ttl_ms),
            plan,
        }
    }

    /// Refuse a plan that cannot be applied whatever the state: wrong format or expired.
    pub fn check(&self, now: u64) -> Result<(), String> {
        if self.format != SAVED_PLAN_FORMAT {
            return Err(format!(
                "plan file format {} is not supported by troupe {} (expected format {SAVED_PLAN_FORMAT})",
                self.format,
                env!("CARGO_PKG_VERSION")
            ));
        }
        if now > self.expires_at {
            return Err(format!(
                "plan {} expired {} s ago; make a new one with troupe plan -o",
                self.plan.id,
                (now - self.expires_at) / 1000
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::plan::{PlanOptions, plan};

    #[test]
    fn expired_or_foreign_plans_are_refused() {
        let p = plan(&[], &Default::default(), &PlanOptions::default());
        let saved = SavedPlan::new(p, 1_000, 500);
        assert!(saved.check(1_400).is_ok());
        assert!(saved.check(1_600).unwrap_err().contains("expired"));
        let foreign = SavedPlan {
            format: 99,
            ..saved
        };
        assert!(foreign.check(1_000).unwrap_err().contains("format 99"));
    }
}
