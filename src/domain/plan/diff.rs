//! The YAML diff a change shows: applied spec against desired spec, as a unified diff.
//!
//! Must hold: both sides go through the same canonical serialisation (struct order, defaults
//! filled in by deserialisation, "absent" sections dropped by [`super::compare::canonical`]), so
//! a line differs only when the value does. Only called for schedulers that have a change.

use similar::TextDiff;

use crate::domain::spec::Scheduler;

/// Lines of unchanged YAML shown around each change.
const CONTEXT_LINES: usize = 3;

/// Canonical YAML of a scheduler.
pub fn yaml(s: &Scheduler) -> String {
    // The spec types serialise to plain maps, sequences and scalars; failing here is a bug in them.
    serde_saphyr::to_string(s).expect("a scheduler serialises to YAML")
}

/// Unified diff from `old` to `new` (either may be absent: create or delete). Empty when equal.
pub fn unified(name: &str, old: Option<&Scheduler>, new: Option<&Scheduler>) -> String {
    let old_text = old.map(yaml).unwrap_or_default();
    let new_text = new.map(yaml).unwrap_or_default();
    let old_label = if old.is_some() {
        format!("live/{name}")
    } else {
        "/dev/null".to_string()
    };
    let new_label = if new.is_some() {
        format!("desired/{name}")
    } else {
        "/dev/null".to_string()
    };
    TextDiff::from_lines(&old_text, &new_text)
        .unified_diff()
        .context_radius(CONTEXT_LINES)
        .header(&old_label, &new_label)
        .to_string()
}
