//! Admission checks as decisions: which operations and plan changes create rooms of a version
//! the runtime has not admitted yet (and so ask it first, once), and how a refusal reads. Pure;
//! the executor and `troupe plan` ask the runtime ([`crate::runtime::Runtime::check_admission`])
//! only where these say so.
//!
//! Must always hold: a version becomes the applied one only after its check passed, so rooms of
//! the applied version never need one — a scale, an update in place, a heal, a rollout resumed
//! after a restart cost no call; and a refusal names where the scheduler is declared, when that
//! is known, before the API server's reason.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::operation::{OpKind, Operation};
use crate::domain::plan::Change;
use crate::domain::spec::Declared;

/// Whether an operation of `kind` applying a spec of version `spec_version` asks the runtime
/// before it starts a room: it does when the version is not the applied one (a create, a
/// rollout). An operation without a spec (a heal, an autoscaler's scale, a delete) starts rooms
/// of the applied version only.
pub fn op_needs_check(
    kind: OpKind,
    spec_version: Option<&str>,
    applied_version: Option<&str>,
) -> bool {
    match kind {
        OpKind::Delete | OpKind::Heal => false,
        OpKind::Create | OpKind::Update | OpKind::Rollout | OpKind::Scale => {
            spec_version.is_some_and(|v| applied_version != Some(v))
        }
    }
}

/// Whether a plan change would create rooms of a version that does not run yet: a create or a
/// rollout. Scales, updates in place and converges keep the applied version; deletes and orphans
/// create nothing.
pub fn change_needs_check(change: &Change) -> bool {
    change.desired.is_some()
        && change.to_version.is_some()
        && change.to_version != change.from_version
}

/// The refusal to show on `change` from what an operation met, without asking the runtime:
/// `latest`, the newest operation of the change's scheduler, when it was refused rooms of the
/// very version the change would bring.
pub fn known_refusal(change: &Change, latest: Option<&Operation>) -> Option<Refusal> {
    let op = latest?;
    let refusal = op.admission.as_ref()?;
    if !change_needs_check(change) || op.scheduler != change.scheduler {
        return None;
    }
    let version = op.spec.as_ref()?.version();
    (change.to_version.as_deref() == Some(version.as_str())).then(|| refusal.clone())
}

/// The API server's refusal of a scheduler's rooms (a dry run of one room's pod said no).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    /// Where the scheduler is declared, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared: Option<Declared>,
    /// The API server's message, e.g. `pods "arena-admit-x7k2p" is forbidden: violates
    /// PodSecurity "restricted:latest": privileged (…)`.
    pub reason: String,
}

/// `arena.yaml:1: refused by the API server: <reason>`.
impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(at) = &self.declared {
            write!(f, "{at}: ")?;
        }
        write!(f, "refused by the API server: {}", self.reason)
    }
}

impl Refusal {
    /// Why an operation applying `version` of `scheduler` failed: where, what, and that nothing
    /// of that version was started.
    pub fn op_error(&self, scheduler: &str, version: &str) -> String {
        let at = self
            .declared
            .as_ref()
            .map(|d| format!("{d}: "))
            .unwrap_or_default();
        format!(
            "{at}scheduler {scheduler} version {version} refused by the API server: {}; \
             no room of this version was started",
            self.reason
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::plan::tests::{base, image, live, replicas, state};
    use crate::domain::plan::{Action, PlanOptions, plan};
    use crate::domain::room::RoomStatus::Ready;
    use crate::domain::spec::Scheduler;

    #[test]
    fn only_operations_that_bring_a_version_not_applied_yet_are_checked() {
        use OpKind::*;
        for (kind, spec, applied, want) in [
            (Create, Some("v1"), None, true),
            (Rollout, Some("v2"), Some("v1"), true),
            // A saved plan or an explicit apply may carry a template change under any kind.
            (Update, Some("v2"), Some("v1"), true),
            (Scale, Some("v2"), Some("v1"), true),
            // The applied version was checked when it was applied.
            (Rollout, Some("v1"), Some("v1"), false),
            (Update, Some("v1"), Some("v1"), false),
            (Scale, Some("v1"), Some("v1"), false),
            // No spec: rooms of the applied version only.
            (Scale, None, Some("v1"), false),
            (Heal, None, Some("v1"), false),
            (Heal, Some("v2"), Some("v1"), false),
            (Delete, None, Some("v1"), false),
            (Delete, Some("v2"), Some("v1"), false),
        ] {
            assert_eq!(
                op_needs_check(kind, spec, applied),
                want,
                "{kind:?} of {spec:?} over {applied:?}"
            );
        }
    }

    #[test]
    fn creates_and_rollouts_are_checked_and_scales_updates_converges_and_deletes_are_not() {
        let named = |n: &str| {
            let mut s = base();
            s.name = n.into();
            s
        };
        let mut in_place = named("in-place");
        in_place.max_surge = "50%".parse().unwrap();
        let desired = vec![
            named("create"),
            image(named("rollout"), "registry.example/arena:9"),
            replicas(named("scale"), 7),
            in_place.clone(),
            named("converge"),
        ];
        let live = state([
            live(&named("rollout"), 4, &[(Ready, 4)], &[]),
            live(&named("scale"), 4, &[(Ready, 4)], &[]),
            live(&named("in-place"), 4, &[(Ready, 4)], &[]),
            live(&named("converge"), 4, &[(Ready, 2)], &[]),
            live(&named("gone"), 4, &[(Ready, 4)], &[]),
        ]);
        for prune in [false, true] {
            let p = plan(
                &desired,
                &live,
                &PlanOptions {
                    prune,
                    revision: None,
                },
            );
            let checked: Vec<(&str, Action)> = p
                .changes
                .iter()
                .filter(|c| change_needs_check(c))
                .map(|c| (c.scheduler.as_str(), c.action))
                .collect();
            assert_eq!(
                checked,
                [("create", Action::Create), ("rollout", Action::Rollout)],
                "{:#?}",
                p.changes
                    .iter()
                    .map(|c| (&c.scheduler, c.action))
                    .collect::<Vec<_>>()
            );
            assert_eq!(p.changes.len(), 6, "every kind of change is there");
        }
    }

    fn op(scheduler: &str, spec: Scheduler, admission: Option<Refusal>) -> Operation {
        Operation {
            id: "op-0000000001".into(),
            scheduler: scheduler.into(),
            kind: OpKind::Rollout,
            cause: crate::domain::operation::Cause::User { name: "t".into() },
            status: crate::domain::operation::OpStatus::Failed,
            created_at: 1,
            started_at: Some(1),
            finished_at: Some(2),
            spec: Some(spec),
            declared: None,
            force: false,
            target: None,
            error: admission.as_ref().map(|r| r.reason.clone()),
            admission,
            events: vec![],
        }
    }

    #[test]
    fn the_servers_plan_shows_the_refusal_its_operation_met_for_that_version_only() {
        let refusal = Refusal {
            declared: Some(Declared {
                file: "arena.yaml".into(),
                line: 1,
            }),
            reason: "forbidden".into(),
        };
        let v2 = image(base(), "registry.example/arena:2");
        let v3 = image(base(), "registry.example/arena:3");
        let live = state([live(&base(), 4, &[(Ready, 4)], &[])]);
        let rollout = |to: &Scheduler| {
            plan(std::slice::from_ref(to), &live, &PlanOptions::default()).changes[0].clone()
        };
        let to_v2 = rollout(&v2);
        let canonical_v2 = to_v2.desired.clone().unwrap();
        let refused_v2 = op("arena-eu", canonical_v2.clone(), Some(refusal.clone()));
        assert_eq!(
            known_refusal(&to_v2, Some(&refused_v2)),
            Some(refusal.clone())
        );
        // Another version is not known to be refused; nor is a version whose operation failed
        // for another reason, or one whose latest operation is not refused.
        assert_eq!(known_refusal(&rollout(&v3), Some(&refused_v2)), None);
        assert_eq!(
            known_refusal(&to_v2, Some(&op("arena-eu", canonical_v2.clone(), None))),
            None
        );
        assert_eq!(known_refusal(&to_v2, None), None);
        assert_eq!(
            known_refusal(&to_v2, Some(&op("other", canonical_v2, Some(refusal)))),
            None
        );
    }

    #[test]
    fn a_refusal_reads_file_and_line_then_the_api_servers_reason() {
        let refusal = Refusal {
            declared: Some(Declared {
                file: "fleets/arena.yaml".into(),
                line: 12,
            }),
            reason: "pods \"arena-admit-x\" is forbidden: violates PodSecurity".into(),
        };
        assert_eq!(
            refusal.to_string(),
            "fleets/arena.yaml:12: refused by the API server: pods \"arena-admit-x\" is forbidden: violates PodSecurity"
        );
        assert_eq!(
            refusal.op_error("arena", "1a2b3c4d"),
            "fleets/arena.yaml:12: scheduler arena version 1a2b3c4d refused by the API server: \
             pods \"arena-admit-x\" is forbidden: violates PodSecurity; no room of this version was started"
        );
        let nowhere = Refusal {
            declared: None,
            reason: "exceeded quota".into(),
        };
        assert_eq!(
            nowhere.to_string(),
            "refused by the API server: exceeded quota"
        );
        assert!(
            nowhere
                .op_error("arena", "v")
                .starts_with("scheduler arena")
        );
    }
}
