//! The planner: desired schedulers (a git revision) against live state, as data.
//!
//! Owns [`plan`], a pure function from desired specs and [`LiveState`] to a [`Plan`]: per
//! scheduler at most one [`Change`], with human reasons, the YAML diff and the impact on rooms.
//! The executor applies a plan; renderers ([`render`]) show it. Must always hold:
//! - no I/O and no clock: the same inputs give the same plan, and the same [`Plan::id`];
//! - a defaulted field written out explicitly is not a change (both sides are compared in
//!   canonical form, see [`compare::canonical`]);
//! - git never scales an autoscaled scheduler: its room count is the autoscaler's, and
//!   `roomsReplicas` is ignored while autoscaling is on;
//! - a busy room is never counted as removed now (promise 1), see [`impact`];
//! - schedulers with no change are compared as structs only: never serialised or diffed, so a
//!   large fleet in sync plans in a few milliseconds.

mod compare;
mod diff;
pub mod impact;
pub mod live;
pub mod render;
pub mod saved;
#[cfg(test)]
pub(crate) mod tests;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::io;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use compare::canonical;
pub use impact::Impact;
pub use live::{LiveRoom, LiveScheduler, LiveState};

use crate::domain::admission::Refusal;
use crate::domain::spec::Scheduler;
use compare::{Delta, classify, sort_fields};
use impact::{Tally, VersionCounts, assess};

/// Hex digits of the sha256 kept as the plan id: 64 bits, plenty to tell plans apart.
const PLAN_ID_HEX_LEN: usize = 16;

/// A scheduler annotated `troupe.dev/prune: "true"` is deleted when it leaves git even with
/// prune off: pruning chosen per scheduler.
pub const PRUNE_ANNOTATION: &str = "troupe.dev/prune";

/// How to plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// Delete live schedulers that are not in the desired revision. Off by default: they are
    /// listed as [`Action::Orphan`] and left running.
    pub prune: bool,
    /// The git revision the desired specs come from, shown in the plan.
    pub revision: Option<String>,
}

/// What a change does to one scheduler.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// In the revision, not live: create it and its rooms.
    Create,
    /// Only settings applied in place differ (game, maxSurge, matchAllocation, timeouts,
    /// autoscaling, forwarders); may carry a room count change.
    UpdateInPlace,
    /// Only the room count differs (`roomsReplicas`, autoscaling off).
    Scale,
    /// The room template differs: rooms are replaced by rooms of the new version, busy ones once
    /// free. May carry in-place and room count changes.
    Rollout,
    /// Specs are equal but the rooms disagree with them in a way an operation can fix now:
    /// missing or crashed rooms, free rooms of an old version, free rooms above the target.
    Converge,
    /// Live, not in the revision, prune on: delete it; busy rooms are drained first.
    Delete,
    /// Live, not in the revision, prune off: listed, left alone.
    Orphan,
}

impl Action {
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::UpdateInPlace => "update in place",
            Action::Scale => "scale",
            Action::Rollout => "rollout",
            Action::Converge => "converge",
            Action::Delete => "delete",
            Action::Orphan => "orphan",
        }
    }

    /// Terraform-like marker: `+` create, `~` update/scale/converge, `-/+` rollout, `-` delete,
    /// `?` orphan.
    pub fn symbol(&self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::UpdateInPlace | Action::Scale | Action::Converge => "~",
            Action::Rollout => "-/+",
            Action::Delete => "-",
            Action::Orphan => "?",
        }
    }
}

/// One scheduler's change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub scheduler: String,
    pub action: Action,
    /// Why, for humans: `image registry.example/arena:1.4.2 → 1.4.3`, `roomsReplicas 4 → 6`,
    /// `2 rooms missing`.
    pub reasons: Vec<String>,
    /// Changed top-level fields of the spec (camelCase), in YAML order. Empty for create,
    /// delete, orphan and for a converge with equal specs.
    pub fields: Vec<String>,
    pub impact: Impact,
    /// Version of the applied spec; `None` on create.
    pub from_version: Option<String>,
    /// Version rooms will run after the change; `None` on delete and orphan.
    pub to_version: Option<String>,
    /// Rooms the scheduler will have: `roomsReplicas`, or for an autoscaled scheduler the
    /// autoscaler's current target (kept within new bounds). 0 on delete; unchanged on orphan.
    pub target_rooms: u32,
    /// Rooms the live scheduler targets now; `None` on create.
    pub live_target_rooms: Option<u32>,
    /// The room count is the autoscaler's, not git's.
    pub autoscaled: bool,
    /// Unified diff of the canonical YAML, live → desired (whole spec added on create, removed on
    /// delete and orphan).
    pub diff: String,
    /// The spec to apply; `None` on delete and orphan.
    pub desired: Option<Scheduler>,
    /// Set when the runtime's API server refuses the pods this change would create (a create
    /// or a rollout, checked with a dry run of one room's pod): applying it would fail before
    /// any room of the new version starts. Never set by [`plan`] itself, which does no I/O.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admission: Option<Refusal>,
    /// On a server whose rooms run on the local runtime: the fields of the desired template
    /// that the local runtime does not use (they apply on Kubernetes), by path
    /// ([`crate::domain::spec::ignored_locally`]). Never set by [`plan`] itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_locally: Vec<String>,
}

#[cfg(test)]
impl Change {
    /// A change of `scheduler` with nothing else to say about it: the starting point of the
    /// tests that need one.
    pub(crate) fn bare(scheduler: &str, action: Action) -> Self {
        Self {
            scheduler: scheduler.into(),
            action,
            reasons: vec![],
            fields: vec![],
            impact: Impact::default(),
            from_version: None,
            to_version: None,
            target_rooms: 0,
            live_target_rooms: None,
            autoscaled: false,
            diff: String::new(),
            desired: None,
            admission: None,
            ignored_locally: Vec::new(),
        }
    }
}

/// Counts over a plan, for the final line and for CI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub create: u32,
    /// Updates in place.
    pub update: u32,
    pub rollout: u32,
    pub scale: u32,
    pub delete: u32,
    pub orphan: u32,
    pub converge: u32,
    pub rooms_created: u32,
    pub rooms_replaced: u32,
    pub rooms_removed: u32,
    pub busy_kept: u32,
}

/// The changes between a desired revision and live state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// First 16 hex digits of a sha256 over the prune option and every scheduler's fingerprints
    /// ([`Plan::prints`]). Same inputs, same id; the revision name is not part of it.
    pub id: String,
    /// Per scheduler: digests of its desired spec and of its live state, the facts a saved plan
    /// is checked against before it is applied ([`staleness`]).
    #[serde(default)]
    pub prints: BTreeMap<String, Prints>,
    pub revision: Option<String>,
    /// At most one per scheduler, sorted by scheduler name.
    pub changes: Vec<Change>,
    /// Schedulers with nothing to do, sorted.
    pub in_sync: Vec<String>,
    pub summary: Summary,
}

impl Plan {
    /// Whether applying the plan would do anything. Orphans are listed but left alone, so a plan
    /// with only orphans has no changes (`plan --detailed-exitcode` exits 0 for it).
    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(|c| c.action != Action::Orphan)
    }

    /// Changes whose pods the runtime's API server refuses.
    pub fn refused(&self) -> impl Iterator<Item = (&Change, &Refusal)> {
        self.changes
            .iter()
            .filter_map(|c| c.admission.as_ref().map(|r| (c, r)))
    }

    /// Changes that would be applied (everything but orphans).
    pub fn actionable(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.action != Action::Orphan)
    }
}

/// JSON Schema of [`Plan`], committed as `schema/plan.schema.json`.
pub fn plan_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Plan)).expect("a JSON schema serialises")
}

/// Compare `desired` with `live`. Pure; see the module docs for what holds.
///
/// Names are unique in a validated revision; if one repeats anyway, the first spec wins.
pub fn plan(desired: &[Scheduler], live: &LiveState, opts: &PlanOptions) -> Plan {
    let mut by_name: BTreeMap<&str, &Scheduler> = BTreeMap::new();
    for s in desired {
        by_name.entry(s.name.as_str()).or_insert(s);
    }
    let names: BTreeSet<&str> = by_name
        .keys()
        .copied()
        .chain(live.schedulers.keys().map(String::as_str))
        .collect();

    let mut prints: BTreeMap<String, Prints> = BTreeMap::new();
    let mut changes = Vec::new();
    let mut in_sync = Vec::new();
    for name in names {
        match (by_name.get(name), live.schedulers.get(name)) {
            (Some(d), None) => {
                let desired = Some(spec_digest(d));
                prints.insert(
                    name.to_string(),
                    Prints {
                        desired,
                        live: None,
                    },
                );
                changes.push(create(d));
            }
            (None, Some(l)) => {
                let counts = VersionCounts::of(&l.rooms);
                let live = Some(live_digest(l, None));
                prints.insert(
                    name.to_string(),
                    Prints {
                        desired: None,
                        live,
                    },
                );
                changes.push(gone(name, l, &counts, opts));
            }
            (Some(d), Some(l)) => {
                let counts = VersionCounts::of(&l.rooms);
                let same = **d == l.applied;
                let desired = spec_digest(d);
                let live = live_digest(l, same.then_some(desired.as_str()));
                prints.insert(
                    name.to_string(),
                    Prints {
                        desired: Some(desired),
                        live: Some(live),
                    },
                );
                match update(d, l, same, &counts) {
                    Some(c) => changes.push(c),
                    None => in_sync.push(name.to_string()),
                }
            }
            (None, None) => unreachable!("every name comes from one side or the other"),
        }
    }

    let mut summary = Summary::default();
    for c in &changes {
        *match c.action {
            Action::Create => &mut summary.create,
            Action::UpdateInPlace => &mut summary.update,
            Action::Scale => &mut summary.scale,
            Action::Rollout => &mut summary.rollout,
            Action::Converge => &mut summary.converge,
            Action::Delete => &mut summary.delete,
            Action::Orphan => &mut summary.orphan,
        } += 1;
        summary.rooms_created += c.impact.create;
        summary.rooms_replaced += c.impact.replace;
        summary.rooms_removed += c.impact.remove;
        summary.busy_kept += c.impact.kept_busy;
    }

    Plan {
        id: plan_id(opts.prune, &prints),
        prints,
        revision: opts.revision.clone(),
        changes,
        in_sync,
        summary,
    }
}

fn create(d: &Scheduler) -> Change {
    let cd = canonical(d).into_owned();
    let target = cd.target_rooms(None);
    let how = if cd.autoscaled() {
        "autoscaled, starting at min"
    } else {
        "roomsReplicas"
    };
    let version = cd.version();
    Change {
        scheduler: cd.name.clone(),
        action: Action::Create,
        reasons: vec![format!(
            "new scheduler: {} of version {version} ({how})",
            rooms(target)
        )],
        fields: Vec::new(),
        impact: Impact {
            create: target,
            ..Impact::default()
        },
        from_version: None,
        to_version: Some(version),
        target_rooms: target,
        live_target_rooms: None,
        autoscaled: cd.autoscaled(),
        diff: diff::unified(&cd.name, None, Some(&cd)),
        desired: Some(cd),
        admission: None,
        ignored_locally: Vec::new(),
    }
}

/// A live scheduler that is not in the revision: delete (prune on) or orphan.
fn gone(name: &str, l: &LiveScheduler, counts: &VersionCounts, opts: &PlanOptions) -> Change {
    let version = l.applied.version();
    let t = counts.tally(&version);
    let revision = opts.revision.as_deref().map_or_else(
        || "the desired revision".to_string(),
        |r| format!("revision {r}"),
    );
    let own = l
        .applied
        .annotations
        .get(PRUNE_ANNOTATION)
        .is_some_and(|v| v == "true");
    let (action, reason, impact, target) = if opts.prune || own {
        let (impact, _) = assess(&t, 0);
        let why = if opts.prune {
            "prune is on"
        } else {
            "its annotation troupe.dev/prune is \"true\""
        };
        (
            Action::Delete,
            format!("not in {revision}; {why}"),
            impact,
            0,
        )
    } else {
        let reason = format!(
            "not in {revision}; left running with {} because prune is off",
            rooms(t.fleet())
        );
        (Action::Orphan, reason, Impact::default(), l.target_rooms)
    };
    let ca = canonical(&l.applied);
    Change {
        scheduler: name.to_string(),
        action,
        reasons: vec![reason],
        fields: Vec::new(),
        impact,
        from_version: Some(version),
        to_version: None,
        target_rooms: target,
        live_target_rooms: Some(l.target_rooms),
        autoscaled: l.applied.autoscaled(),
        diff: diff::unified(name, Some(&ca), None),
        desired: None,
        admission: None,
        ignored_locally: Vec::new(),
    }
}

/// A scheduler both desired and live. `None` when in sync.
/// `same`: `d` equals the applied spec field for field (the common case, checked once by the
/// caller), so there is nothing to canonicalise or classify.
fn update(d: &Scheduler, l: &LiveScheduler, same: bool, counts: &VersionCounts) -> Option<Change> {
    let (cd, ca) = if same {
        (Cow::Borrowed(d), Cow::Borrowed(d))
    } else {
        (canonical(d), canonical(&l.applied))
    };
    let equal = same || *cd == *ca;
    let delta = if equal {
        Delta::default()
    } else {
        classify(&ca, &cd)
    };

    let autoscaled = cd.autoscaled();
    // The autoscaler owns the count; only new bounds move it.
    let target = cd.target_rooms(Some(l.target_rooms));
    // A new `roomsReplicas` is a scale even when the live target already matches it: the applied
    // spec must still record it.
    let rescaled =
        target != l.target_rooms || (!autoscaled && ca.rooms_replicas != cd.rooms_replicas);

    let from_version = l.applied.version();
    let to_version = if delta.template {
        cd.version()
    } else {
        from_version.clone()
    };
    let tally = counts.tally(&to_version);
    let (impact, actionable) = assess(&tally, target);

    let action = if delta.template {
        Action::Rollout
    } else if delta.in_place {
        Action::UpdateInPlace
    } else if rescaled {
        Action::Scale
    } else if actionable {
        Action::Converge
    } else {
        return None;
    };

    let mut reasons = delta.reasons;
    if rescaled {
        reasons.push(match (autoscaled, l.applied.autoscaled()) {
            (false, false) if target == l.target_rooms => format!(
                "roomsReplicas {} → {target} (live target already {target})",
                ca.rooms_replicas.unwrap_or(0)
            ),
            (false, false) => format!("roomsReplicas {} → {target}", l.target_rooms),
            (false, true) => format!(
                "rooms {} (autoscaler) → {target} (roomsReplicas)",
                l.target_rooms
            ),
            (true, _) => format!("rooms {} → {target} (autoscaling bounds)", l.target_rooms),
        });
    }
    if action == Action::Converge {
        room_reasons(&tally, target, &mut reasons);
    }
    let mut fields = delta.fields;
    sort_fields(&mut fields);

    let diff = if equal {
        String::new()
    } else {
        diff::unified(&d.name, Some(&ca), Some(&cd))
    };
    // Without a rollout the rooms keep their version: hand the executor the template exactly as
    // applied, so `desired.version()` is the version the rooms run.
    let desired = if delta.template {
        cd.into_owned()
    } else {
        with_template_of(cd.into_owned(), &l.applied)
    };
    Some(Change {
        scheduler: d.name.clone(),
        action,
        reasons,
        fields: fields.into_iter().map(str::to_string).collect(),
        impact,
        from_version: Some(from_version),
        to_version: Some(to_version),
        target_rooms: target,
        live_target_rooms: Some(l.target_rooms),
        autoscaled,
        diff,
        desired: Some(desired),
        admission: None,
        ignored_locally: Vec::new(),
    })
}

fn with_template_of(mut s: Scheduler, applied: &Scheduler) -> Scheduler {
    if s.template() != applied.template() {
        s.port_range = applied.port_range;
        s.labels.clone_from(&applied.labels);
        s.annotations.clone_from(&applied.annotations);
        s.spec.clone_from(&applied.spec);
        s.local.clone_from(&applied.local);
    }
    s
}

/// Why the rooms disagree with a spec that did not change.
fn room_reasons(t: &Tally, target: u32, out: &mut Vec<String>) {
    let missing = target.saturating_sub(t.fleet());
    if missing > 0 {
        out.push(format!("{} missing", rooms(missing)));
    }
    if t.error > 0 {
        out.push(format!("{} in error", rooms(t.error)));
    }
    if t.outdated_free > 0 {
        out.push(format!(
            "{} of an old version, free",
            rooms(t.outdated_free)
        ));
    }
    if t.outdated_busy > 0 {
        out.push(format!(
            "{} of an old version, busy: replaced when free",
            rooms(t.outdated_busy)
        ));
    }
    let above = t.fleet().saturating_sub(target);
    if above > 0 {
        out.push(format!("{} above the target of {target}", rooms(above)));
    }
}

/// `1 room`, `3 rooms`.
pub(crate) fn rooms(n: u32) -> String {
    if n == 1 {
        "1 room".to_string()
    } else {
        format!("{n} rooms")
    }
}

/// Feeds serialised values straight into the hasher, without an intermediate buffer.
struct HashWriter<'a>(&'a mut Sha256);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a saved plan is checked against: digests of one scheduler's desired spec and live state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Prints {
    /// Digest of the desired spec; absent when the revision does not declare the scheduler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<String>,
    /// Digest of the applied spec, the room target and the rooms (ids and versions; not their
    /// statuses, which change with every match); absent when the scheduler is not live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<String>,
}

fn spec_digest(s: &Scheduler) -> String {
    let mut h = Sha256::new();
    serde_json::to_writer(HashWriter(&mut h), s).expect("a scheduler serialises to JSON");
    short(h)
}

/// `applied`: the applied spec's digest when already known (it equals the desired spec).
fn live_digest(l: &LiveScheduler, applied: Option<&str>) -> String {
    let mut h = Sha256::new();
    match applied {
        Some(d) => h.update(d.as_bytes()),
        None => h.update(spec_digest(&l.applied).as_bytes()),
    }
    h.update(l.target_rooms.to_le_bytes());
    let mut rooms: Vec<(&str, &str)> = l
        .rooms
        .iter()
        .filter(|r| !r.status.is_leaving())
        .map(|r| (r.id.as_str(), r.version.as_str()))
        .collect();
    rooms.sort_unstable();
    for (id, version) in rooms {
        h.update((id.len() as u64).to_le_bytes());
        h.update(id.as_bytes());
        h.update((version.len() as u64).to_le_bytes());
        h.update(version.as_bytes());
    }
    short(h)
}

fn plan_id(prune: bool, prints: &BTreeMap<String, Prints>) -> String {
    let mut h = Sha256::new();
    h.update([u8::from(prune)]);
    for (name, p) in prints {
        for part in [Some(name.as_str()), p.desired.as_deref(), p.live.as_deref()] {
            let part = part.unwrap_or("");
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
    }
    short(h)
}

fn short(h: Sha256) -> String {
    let mut id = hex::encode(h.finalize());
    id.truncate(PLAN_ID_HEX_LEN);
    id
}

/// Why `saved` may no longer be applied given the `current` plan of the same inputs: the
/// revision moved, or a scheduler the saved plan changes has another desired spec or live state
/// now. Empty when it still holds.
pub fn staleness(saved: &Plan, current: &Plan) -> Vec<String> {
    let mut moved = Vec::new();
    if saved.revision != current.revision {
        moved.push(format!(
            "git moved: the plan is for revision {}, the server runs {}",
            saved.revision.as_deref().unwrap_or("?"),
            current.revision.as_deref().unwrap_or("?")
        ));
    }
    let none = Prints::default();
    for c in saved.changes.iter().filter(|c| c.action != Action::Orphan) {
        let was = saved.prints.get(&c.scheduler).unwrap_or(&none);
        let now = current.prints.get(&c.scheduler).unwrap_or(&none);
        if was.desired != now.desired {
            moved.push(format!(
                "desired spec of {} changed since the plan was made",
                c.scheduler
            ));
        }
        if was.live != now.live {
            moved.push(format!(
                "live state of {} changed since the plan was made (rooms, target or applied spec)",
                c.scheduler
            ));
        }
    }
    moved
}
