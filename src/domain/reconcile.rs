//! The reconcile's decisions: given the plan of the last good revision against live state, the
//! repairs of schedulers whose git changes wait, and a few facts per scheduler, which operations
//! to queue. Pure; the controller observes the facts, calls [`decide`] and enqueues.
//!
//! Must always hold: a scheduler gets at most one new operation per reconcile, and none while it
//! has one pending or running or while it is held (its latest operation failed or was canceled
//! since the revision was seen or the last explicit apply); git changes apply by themselves only
//! in `auto` sync mode and for schedulers that are not suspended; repairs (missing, crashed or
//! outdated free rooms) are never held back by manual mode or suspension; orphans are listed,
//! never acted on.

use std::collections::BTreeSet;

use crate::domain::operation::{Cause, OpKind};
use crate::domain::plan::{Action, Plan};
use crate::domain::spec::Scheduler;

/// What the reconcile knows about the schedulers besides the plan.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// `auto` sync mode: git changes apply by themselves.
    pub auto: bool,
    /// Schedulers whose git changes wait until they are resumed.
    pub suspended: BTreeSet<String>,
    /// Schedulers with an operation pending or running.
    pub busy: BTreeSet<String>,
    /// Schedulers whose latest operation failed or was canceled since the hold line.
    pub held: BTreeSet<String>,
    /// The cause given to operations that apply git changes.
    pub revision: Option<Cause>,
}

impl Facts {
    fn waits(&self, scheduler: &str) -> bool {
        !self.auto || self.suspended.contains(scheduler)
    }
}

/// One operation to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Enqueue {
    pub scheduler: String,
    pub kind: OpKind,
    pub cause: Cause,
    pub spec: Option<Scheduler>,
}

/// Schedulers whose git changes wait (manual sync, suspended): the controller plans them again
/// against their own applied spec, which yields only their repairs.
pub fn waiting(plan: &Plan, facts: &Facts) -> Vec<String> {
    plan.changes
        .iter()
        .filter(|c| !matches!(c.action, Action::Orphan | Action::Converge))
        .filter(|c| facts.waits(&c.scheduler))
        .map(|c| c.scheduler.clone())
        .collect()
}

/// The operations a reconcile queues: the plan's changes that may apply now, then the repairs.
pub fn decide(plan: &Plan, repairs: Option<&Plan>, facts: &Facts) -> Vec<Enqueue> {
    let mut taken = facts.busy.clone();
    let mut out = Vec::new();
    for change in plan
        .changes
        .iter()
        .chain(repairs.iter().flat_map(|p| p.changes.iter()))
    {
        let (kind, cause) = match change.action {
            Action::Orphan => continue,
            Action::Converge => (
                OpKind::Heal,
                Cause::Health {
                    reason: change.reasons.join("; "),
                },
            ),
            _ if facts.waits(&change.scheduler) => continue,
            action => match &facts.revision {
                Some(cause) => (op_kind(action), cause.clone()),
                None => continue,
            },
        };
        if taken.contains(&change.scheduler) || facts.held.contains(&change.scheduler) {
            continue;
        }
        taken.insert(change.scheduler.clone());
        out.push(Enqueue {
            scheduler: change.scheduler.clone(),
            kind,
            cause,
            spec: change.desired.clone(),
        });
    }
    out
}

/// The operation that carries out a plan action.
pub fn op_kind(action: Action) -> OpKind {
    match action {
        Action::Create => OpKind::Create,
        Action::UpdateInPlace => OpKind::Update,
        Action::Rollout => OpKind::Rollout,
        Action::Scale => OpKind::Scale,
        Action::Delete => OpKind::Delete,
        Action::Converge | Action::Orphan => OpKind::Heal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::plan::Change;

    fn change(scheduler: &str, action: Action) -> Change {
        Change {
            reasons: vec![format!("{action:?}")],
            ..Change::bare(scheduler, action)
        }
    }

    fn plan(changes: Vec<Change>) -> Plan {
        let empty = crate::domain::plan::plan(&[], &Default::default(), &Default::default());
        Plan { changes, ..empty }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn revision() -> Option<Cause> {
        Some(Cause::Revision {
            revision: "r1".into(),
            commit: None,
        })
    }

    fn decided(enqueues: &[Enqueue]) -> Vec<(&str, OpKind)> {
        enqueues
            .iter()
            .map(|e| (e.scheduler.as_str(), e.kind))
            .collect()
    }

    #[test]
    fn auto_mode_applies_every_change_but_orphans_busy_and_held_schedulers() {
        let p = plan(vec![
            change("new", Action::Create),
            change("grown", Action::Scale),
            change("image", Action::Rollout),
            change("crashed", Action::Converge),
            change("gone", Action::Orphan),
            change("busy", Action::Rollout),
            change("held", Action::Rollout),
            change("pruned", Action::Delete),
        ]);
        let facts = Facts {
            auto: true,
            busy: set(&["busy"]),
            held: set(&["held"]),
            revision: revision(),
            ..Facts::default()
        };
        assert!(waiting(&p, &facts).is_empty());
        assert_eq!(
            decided(&decide(&p, None, &facts)),
            [
                ("new", OpKind::Create),
                ("grown", OpKind::Scale),
                ("image", OpKind::Rollout),
                ("crashed", OpKind::Heal),
                ("pruned", OpKind::Delete),
            ]
        );
    }

    #[test]
    fn manual_mode_and_suspension_hold_git_changes_but_not_repairs() {
        let p = plan(vec![
            change("a", Action::Rollout),
            change("b", Action::Scale),
            change("c", Action::Converge),
        ]);
        let manual = Facts {
            auto: false,
            revision: revision(),
            ..Facts::default()
        };
        assert_eq!(waiting(&p, &manual), ["a", "b"]);
        let repairs = plan(vec![change("a", Action::Converge)]);
        assert_eq!(
            decided(&decide(&p, Some(&repairs), &manual)),
            [("c", OpKind::Heal), ("a", OpKind::Heal)]
        );
        let suspended = Facts {
            auto: true,
            suspended: set(&["b"]),
            revision: revision(),
            ..Facts::default()
        };
        assert_eq!(waiting(&p, &suspended), ["b"]);
        assert_eq!(
            decided(&decide(&p, None, &suspended)),
            [("a", OpKind::Rollout), ("c", OpKind::Heal)]
        );
    }

    #[test]
    fn one_operation_per_scheduler_per_reconcile() {
        let p = plan(vec![change("a", Action::Converge)]);
        let repairs = plan(vec![change("a", Action::Converge)]);
        let facts = Facts {
            auto: true,
            revision: revision(),
            ..Facts::default()
        };
        assert_eq!(decide(&p, Some(&repairs), &facts).len(), 1);
    }
}
