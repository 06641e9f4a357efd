//! Planner tests: one table of single-scheduler cases covering every action and its impact, then
//! the properties of a whole plan (ordering, id, summary, diffs, schema).

use super::*;
use crate::domain::room::RoomStatus::{self, *};

const BASE: &str = r#"
name: arena-eu
game: arena
roomsReplicas: 4
portRange: {start: 40000, end: 41000}
spec:
  containers:
    - name: server
      image: registry.example/arena:1.4.2
      command: ["/server", "--mode=dedicated"]
      ports: [{name: game, protocol: UDP, port: 7777}]
"#;

/// The same scheduler as [`BASE`] with every defaulted field written out, some in another
/// spelling (`2m` for `120s`), and optional sections written empty.
const BASE_EXPLICIT: &str = r#"
name: arena-eu
game: arena
roomsReplicas: 4
maxSurge: 25%
portRange: {start: 40000, end: 41000}
matchAllocation: {maxMatches: 1}
timeouts: {pending: 2m, unready: 120s, ping: 60000ms, terminating: 120s}
labels: {}
annotations: {}
spec:
  terminationGracePeriod: 30s
  containers:
    - name: server
      image: registry.example/arena:1.4.2
      command: ["/server", "--mode=dedicated"]
      args: []
      env: []
      requests: {}
      ports: [{name: game, protocol: UDP, port: 7777}]
  nodeSelector: {}
  affinity: {nodeAffinity: {}, podAntiAffinity: {}}
  tolerations: []
  hostNetwork: false
forwarders: []
"#;

const AUTOSCALING: &str = r#"
autoscaling:
  enabled: true
  min: 2
  max: 200
  policy: {type: roomOccupancy, parameters: {roomOccupancy: {readyTarget: 0.3, downThreshold: 0.9}}}
"#;

pub(crate) fn parse(yaml: &str) -> Scheduler {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("test YAML does not parse: {e}\n{yaml}"))
}

pub(crate) fn base() -> Scheduler {
    parse(BASE)
}

fn autoscaled() -> Scheduler {
    parse(&format!("{BASE}{AUTOSCALING}"))
}

pub(crate) fn edit(mut s: Scheduler, f: impl FnOnce(&mut Scheduler)) -> Scheduler {
    f(&mut s);
    s
}

pub(crate) fn image(s: Scheduler, image: &str) -> Scheduler {
    edit(s, |s| s.spec.containers[0].image = image.to_string())
}

pub(crate) fn replicas(s: Scheduler, n: u32) -> Scheduler {
    edit(s, |s| s.rooms_replicas = Some(n))
}

/// A live scheduler running `applied`, with rooms given as (status, count) at `applied`'s
/// version, plus rooms at another version.
pub(crate) fn live(
    applied: &Scheduler,
    target: u32,
    current: &[(RoomStatus, u32)],
    old: &[(RoomStatus, u32)],
) -> LiveScheduler {
    let version = applied.version();
    let mut rooms = Vec::new();
    for (v, spec) in [(version.as_str(), current), ("0ld0ld00", old)] {
        for (status, n) in spec {
            for _ in 0..*n {
                rooms.push(LiveRoom {
                    id: format!("{}-{}", applied.name, rooms.len()),
                    version: v.to_string(),
                    status: *status,
                });
            }
        }
    }
    LiveScheduler {
        applied: applied.clone(),
        target_rooms: target,
        rooms,
    }
}

pub(crate) fn state(schedulers: impl IntoIterator<Item = LiveScheduler>) -> LiveState {
    LiveState {
        schedulers: schedulers
            .into_iter()
            .map(|l| (l.applied.name.clone(), l))
            .collect(),
    }
}

fn imp(create: u32, replace: u32, remove: u32, kept_busy: u32) -> Impact {
    Impact {
        create,
        replace,
        remove,
        kept_busy,
    }
}

#[derive(Default)]
struct Case {
    name: &'static str,
    desired: Option<Scheduler>,
    live: Option<LiveScheduler>,
    prune: bool,
    /// `None`: in sync.
    want: Option<Action>,
    impact: Impact,
    target: u32,
    /// Each must appear among the change's reasons.
    reasons: &'static [&'static str],
    fields: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    let ready4 = || live(&base(), 4, &[(Ready, 4)], &[]);
    let busy_mix = || live(&base(), 4, &[(Ready, 3), (Occupied, 1)], &[]);
    vec![
        Case {
            name: "in sync",
            desired: Some(base()),
            live: Some(ready4()),
            ..Case::default()
        },
        Case {
            name: "create",
            desired: Some(base()),
            want: Some(Action::Create),
            impact: imp(4, 0, 0, 0),
            target: 4,
            reasons: &["new scheduler: 4 rooms of version"],
            ..Case::default()
        },
        Case {
            name: "create autoscaled starts at min",
            desired: Some(autoscaled()),
            want: Some(Action::Create),
            impact: imp(2, 0, 0, 0),
            target: 2,
            ..Case::default()
        },
        Case {
            name: "delete with prune drains busy rooms",
            live: Some(busy_mix()),
            prune: true,
            want: Some(Action::Delete),
            impact: imp(0, 0, 3, 1),
            reasons: &["not in the desired revision; prune is on"],
            ..Case::default()
        },
        Case {
            name: "orphan without prune",
            live: Some(busy_mix()),
            want: Some(Action::Orphan),
            target: 4,
            reasons: &["left running with 4 rooms because prune is off"],
            ..Case::default()
        },
        Case {
            name: "rollout replaces every room, busy ones when free",
            desired: Some(image(base(), "registry.example/arena:1.4.3")),
            live: Some(busy_mix()),
            want: Some(Action::Rollout),
            impact: imp(0, 4, 0, 1),
            target: 4,
            reasons: &["image registry.example/arena:1.4.2 → 1.4.3"],
            fields: &["spec"],
            ..Case::default()
        },
        Case {
            name: "rollout carries a replica change",
            desired: Some(replicas(image(base(), "registry.example/arena:1.4.3"), 6)),
            live: Some(busy_mix()),
            want: Some(Action::Rollout),
            impact: imp(2, 4, 0, 1),
            target: 6,
            reasons: &[
                "image registry.example/arena:1.4.2 → 1.4.3",
                "roomsReplicas 4 → 6",
            ],
            fields: &["roomsReplicas", "spec"],
            ..Case::default()
        },
        Case {
            name: "rollout on a port change",
            desired: Some(edit(base(), |s| s.spec.containers[0].ports[0].port = 7778)),
            live: Some(ready4()),
            want: Some(Action::Rollout),
            impact: imp(0, 4, 0, 0),
            target: 4,
            reasons: &["ports [game/UDP:7777] → [game/UDP:7778]"],
            fields: &["spec"],
            ..Case::default()
        },
        Case {
            name: "rollout on a toleration change",
            desired: Some(edit(base(), |s| {
                s.spec.tolerations.push(crate::domain::spec::Toleration {
                    key: Some("dedicated".into()),
                    ..Default::default()
                })
            })),
            live: Some(ready4()),
            want: Some(Action::Rollout),
            impact: imp(0, 4, 0, 0),
            target: 4,
            reasons: &["tolerations changed (0 → 1)"],
            fields: &["spec"],
            ..Case::default()
        },
        Case {
            name: "rollout on labels, hostNetwork and local",
            desired: Some(edit(base(), |s| {
                s.labels.insert("team".into(), "arena".into());
                s.spec.host_network = true;
                s.local = Some(crate::domain::spec::LocalSpec {
                    command: vec!["troupe".into(), "demo-room".into()],
                    env: vec![],
                });
            })),
            live: Some(ready4()),
            want: Some(Action::Rollout),
            impact: imp(0, 4, 0, 0),
            target: 4,
            reasons: &[
                "labels: team added",
                "hostNetwork false → true",
                "local command unset → [troupe, demo-room]",
            ],
            fields: &["labels", "spec", "local"],
            ..Case::default()
        },
        Case {
            name: "scale up",
            desired: Some(replicas(base(), 6)),
            live: Some(ready4()),
            want: Some(Action::Scale),
            impact: imp(2, 0, 0, 0),
            target: 6,
            reasons: &["roomsReplicas 4 → 6"],
            fields: &["roomsReplicas"],
            ..Case::default()
        },
        Case {
            name: "a new roomsReplicas the live target already has is still recorded",
            desired: Some(replicas(base(), 5)),
            live: Some(live(&base(), 5, &[(Ready, 5)], &[])),
            want: Some(Action::Scale),
            target: 5,
            reasons: &["roomsReplicas 4 → 5 (live target already 5)"],
            fields: &["roomsReplicas"],
            ..Case::default()
        },
        Case {
            name: "scale down removes free rooms only",
            desired: Some(replicas(base(), 2)),
            live: Some(live(
                &base(),
                6,
                &[(Ready, 2), (Error, 1), (Occupied, 2), (Allocated, 1)],
                &[],
            )),
            want: Some(Action::Scale),
            impact: imp(0, 0, 3, 1),
            target: 2,
            reasons: &["roomsReplicas 6 → 2"],
            fields: &["roomsReplicas"],
            ..Case::default()
        },
        Case {
            name: "update in place: timeouts",
            desired: Some(edit(base(), |s| {
                s.timeouts.ping = crate::domain::spec::Duration::from_secs(30)
            })),
            live: Some(busy_mix()),
            want: Some(Action::UpdateInPlace),
            target: 4,
            reasons: &["timeouts.ping 1m → 30s"],
            fields: &["timeouts"],
            ..Case::default()
        },
        Case {
            name: "update in place carries a replica change",
            desired: Some(replicas(
                edit(base(), |s| {
                    s.max_surge = crate::domain::spec::Surge::Count(2)
                }),
                5,
            )),
            live: Some(ready4()),
            want: Some(Action::UpdateInPlace),
            impact: imp(1, 0, 0, 0),
            target: 5,
            reasons: &["maxSurge 25% → 2", "roomsReplicas 4 → 5"],
            fields: &["roomsReplicas", "maxSurge"],
            ..Case::default()
        },
        Case {
            name: "update in place: forwarders and game",
            desired: Some(edit(base(), |s| {
                s.game = "arena2".into();
                s.forwarders.push(crate::domain::spec::Forwarder {
                    name: "mm".into(),
                    url: "http://mm.internal/events".into(),
                    timeout: crate::domain::spec::Duration::from_millis(500),
                });
            })),
            live: Some(ready4()),
            want: Some(Action::UpdateInPlace),
            target: 4,
            reasons: &["game arena → arena2", "forwarder mm added"],
            fields: &["game", "forwarders"],
            ..Case::default()
        },
        Case {
            name: "converge: missing rooms",
            desired: Some(base()),
            live: Some(live(&base(), 4, &[(Ready, 2)], &[])),
            want: Some(Action::Converge),
            impact: imp(2, 0, 0, 0),
            target: 4,
            reasons: &["2 rooms missing"],
            ..Case::default()
        },
        Case {
            name: "converge: crashed room",
            desired: Some(base()),
            live: Some(live(&base(), 4, &[(Ready, 3), (Error, 1)], &[])),
            want: Some(Action::Converge),
            impact: imp(0, 1, 0, 0),
            target: 4,
            reasons: &["1 room in error"],
            ..Case::default()
        },
        Case {
            name: "converge: free rooms of an old version (rollout left half done)",
            desired: Some(base()),
            live: Some(live(
                &base(),
                4,
                &[(Ready, 2)],
                &[(Ready, 1), (Occupied, 1)],
            )),
            want: Some(Action::Converge),
            impact: imp(0, 2, 0, 1),
            target: 4,
            reasons: &[
                "1 room of an old version, free",
                "1 room of an old version, busy: replaced when free",
            ],
            ..Case::default()
        },
        Case {
            name: "busy rooms of an old version alone are not a change",
            desired: Some(base()),
            live: Some(live(&base(), 4, &[(Ready, 3)], &[(Occupied, 1)])),
            ..Case::default()
        },
        Case {
            name: "converge: free rooms above target",
            desired: Some(base()),
            live: Some(live(&base(), 4, &[(Ready, 5), (Occupied, 1)], &[])),
            want: Some(Action::Converge),
            impact: imp(0, 0, 2, 0),
            target: 4,
            reasons: &["2 rooms above the target of 4"],
            ..Case::default()
        },
        Case {
            name: "busy rooms above target alone are not a change",
            desired: Some(base()),
            live: Some(live(&base(), 4, &[(Occupied, 5)], &[])),
            ..Case::default()
        },
        Case {
            name: "leaving rooms are not part of the fleet",
            desired: Some(base()),
            live: Some(live(
                &base(),
                4,
                &[(Ready, 4), (Terminating, 2)],
                &[(Terminated, 3)],
            )),
            ..Case::default()
        },
        Case {
            name: "defaulted fields written out are not a change",
            desired: Some(parse(BASE_EXPLICIT)),
            live: Some(ready4()),
            ..Case::default()
        },
        Case {
            name: "explicit defaults live, terse desired: still no change",
            desired: Some(base()),
            live: Some(live(&parse(BASE_EXPLICIT), 4, &[(Ready, 4)], &[])),
            ..Case::default()
        },
        Case {
            name: "autoscaled: roomsReplicas in git does not scale",
            desired: Some(replicas(autoscaled(), 50)),
            live: Some(live(&autoscaled(), 7, &[(Ready, 7)], &[])),
            ..Case::default()
        },
        Case {
            name: "autoscaled: an in-place change keeps the autoscaler's target",
            desired: Some(replicas(
                edit(autoscaled(), |s| {
                    s.timeouts.pending = crate::domain::spec::Duration::from_secs(60)
                }),
                50,
            )),
            live: Some(live(&autoscaled(), 7, &[(Ready, 5), (Occupied, 2)], &[])),
            want: Some(Action::UpdateInPlace),
            target: 7,
            reasons: &[
                "timeouts.pending 2m → 1m",
                "roomsReplicas 4 → 50 (ignored while autoscaling is on)",
            ],
            fields: &["roomsReplicas", "timeouts"],
            ..Case::default()
        },
        Case {
            name: "autoscaling turned on is in place, count kept",
            desired: Some(autoscaled()),
            live: Some(ready4()),
            want: Some(Action::UpdateInPlace),
            target: 4,
            reasons: &["autoscaling turned on (min 2, max 200, roomOccupancy)"],
            fields: &["autoscaling"],
            ..Case::default()
        },
        Case {
            name: "autoscaling turned on with a higher min raises the count",
            desired: Some(edit(autoscaled(), |s| {
                s.autoscaling.as_mut().unwrap().min = 6
            })),
            live: Some(ready4()),
            want: Some(Action::UpdateInPlace),
            impact: imp(2, 0, 0, 0),
            target: 6,
            reasons: &["rooms 4 → 6 (autoscaling bounds)"],
            fields: &["autoscaling"],
            ..Case::default()
        },
        Case {
            name: "autoscaling turned off: git's roomsReplicas takes over",
            desired: Some(replicas(base(), 10)),
            live: Some(live(&autoscaled(), 7, &[(Ready, 7)], &[])),
            want: Some(Action::UpdateInPlace),
            impact: imp(3, 0, 0, 0),
            target: 10,
            reasons: &[
                "autoscaling turned off",
                "rooms 7 (autoscaler) → 10 (roomsReplicas)",
            ],
            fields: &["roomsReplicas", "autoscaling"],
            ..Case::default()
        },
    ]
}

#[test]
fn planner_table() {
    for case in cases() {
        let desired: Vec<_> = case.desired.iter().cloned().collect();
        let live = state(case.live.clone());
        let p = plan(
            &desired,
            &live,
            &PlanOptions {
                prune: case.prune,
                revision: None,
            },
        );
        let name = case.name;
        match case.want {
            None => {
                assert!(
                    p.changes.is_empty(),
                    "{name}: expected in sync, got {:#?}",
                    p.changes
                );
                assert_eq!(p.in_sync, ["arena-eu"], "{name}");
                assert!(!p.has_changes(), "{name}");
            }
            Some(action) => {
                assert_eq!(p.changes.len(), 1, "{name}: {:#?}", p.changes);
                let c = &p.changes[0];
                assert_eq!(c.action, action, "{name}: {c:#?}");
                assert_eq!(c.impact, case.impact, "{name}: {:?}", c.reasons);
                assert_eq!(c.target_rooms, case.target, "{name}");
                for want in case.reasons {
                    assert!(
                        c.reasons.iter().any(|r| r.contains(want)),
                        "{name}: no reason {want:?} in {:?}",
                        c.reasons
                    );
                }
                assert_eq!(c.fields, case.fields, "{name}");
                assert!(!c.reasons.is_empty(), "{name}: a change must say why");
                assert!(p.in_sync.is_empty(), "{name}");
            }
        }
    }
}

#[test]
fn changes_are_sorted_by_name_and_in_sync_listed() {
    let named = |n: &str| edit(base(), |s| s.name = n.to_string());
    let desired = vec![named("delta"), named("alpha"), named("charlie")];
    let live = state([
        live(&named("bravo"), 4, &[], &[]),
        live(&named("charlie"), 4, &[(Ready, 4)], &[]),
        live(&named("echo"), 4, &[], &[]),
    ]);
    let p = plan(&desired, &live, &PlanOptions::default());
    let names: Vec<_> = p
        .changes
        .iter()
        .map(|c| (c.scheduler.as_str(), c.action))
        .collect();
    assert_eq!(
        names,
        [
            ("alpha", Action::Create),
            ("bravo", Action::Orphan),
            ("delta", Action::Create),
            ("echo", Action::Orphan)
        ]
    );
    assert_eq!(p.in_sync, ["charlie"]);
    assert_eq!(
        (p.summary.create, p.summary.orphan, p.summary.rooms_created),
        (2, 2, 8)
    );
}

#[test]
fn orphans_alone_are_not_changes_but_converge_is() {
    let orphan_only = plan(
        &[],
        &state([live(&base(), 4, &[(Ready, 4)], &[])]),
        &PlanOptions::default(),
    );
    assert_eq!(orphan_only.changes.len(), 1);
    assert!(!orphan_only.has_changes());
    let converge = plan(
        &[base()],
        &state([live(&base(), 4, &[(Ready, 3)], &[])]),
        &PlanOptions::default(),
    );
    assert!(converge.has_changes());
}

#[test]
fn plan_id_is_stable_and_follows_its_inputs() {
    let desired = vec![base(), edit(base(), |s| s.name = "arena-us".into())];
    let live_state = state([live(&base(), 4, &[(Ready, 3), (Occupied, 1)], &[])]);
    let opts = PlanOptions {
        prune: false,
        revision: Some("abc123".into()),
    };
    let id = plan(&desired, &live_state, &opts).id;
    assert_eq!(id.len(), 16);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(
        plan(&desired, &live_state, &opts).id,
        id,
        "same inputs, same id"
    );
    let reversed: Vec<_> = desired.iter().rev().cloned().collect();
    assert_eq!(
        plan(&reversed, &live_state, &opts).id,
        id,
        "input order does not matter"
    );
    let other_rev = PlanOptions {
        revision: Some("def456".into()),
        ..opts.clone()
    };
    assert_eq!(
        plan(&desired, &live_state, &other_rev).id,
        id,
        "same content under another revision name"
    );

    let mut playing = live_state.clone();
    playing.schedulers.get_mut("arena-eu").unwrap().rooms[0].status = Occupied;
    assert_eq!(
        plan(&desired, &playing, &opts).id,
        id,
        "a match starting is not a change of live state a plan depends on"
    );
    let mut replaced = live_state.clone();
    replaced.schedulers.get_mut("arena-eu").unwrap().rooms[0].id = "arena-eu-new".into();
    assert_ne!(
        plan(&desired, &replaced, &opts).id,
        id,
        "a room was replaced"
    );
    let mut retargeted = live_state.clone();
    retargeted
        .schedulers
        .get_mut("arena-eu")
        .unwrap()
        .target_rooms = 5;
    assert_ne!(
        plan(&desired, &retargeted, &opts).id,
        id,
        "the live target changed"
    );
    let pruned = PlanOptions {
        prune: true,
        ..opts.clone()
    };
    assert_ne!(
        plan(&desired, &live_state, &pruned).id,
        id,
        "prune changes what is applied"
    );
    assert_ne!(
        plan(&[image(base(), "x:2")], &live_state, &opts).id,
        id,
        "desired changed"
    );
}

#[test]
fn diff_shows_only_what_changed() {
    let desired = replicas(
        image(parse(BASE_EXPLICIT), "registry.example/arena:1.4.3"),
        6,
    );
    let p = plan(
        &[desired],
        &state([live(&base(), 4, &[(Ready, 4)], &[])]),
        &PlanOptions::default(),
    );
    let diff = &p.changes[0].diff;
    let changed: Vec<_> = diff
        .lines()
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        })
        .collect();
    assert_eq!(changed.len(), 4, "{diff}");
    assert!(
        changed
            .iter()
            .any(|l| l.starts_with('-') && l.contains("roomsReplicas: 4")),
        "{diff}"
    );
    assert!(
        changed
            .iter()
            .any(|l| l.starts_with('+') && l.contains("roomsReplicas: 6")),
        "{diff}"
    );
    assert!(
        changed
            .iter()
            .any(|l| l.starts_with('+') && l.contains("image: registry.example/arena:1.4.3")),
        "{diff}"
    );
    assert!(
        diff.starts_with("--- live/arena-eu\n+++ desired/arena-eu\n"),
        "{diff}"
    );
}

#[test]
fn create_diff_adds_everything_and_delete_removes_everything() {
    let created = plan(&[base()], &LiveState::default(), &PlanOptions::default());
    let body: Vec<_> = created.changes[0].diff.lines().skip(3).collect();
    assert!(!body.is_empty());
    assert!(body.iter().all(|l| l.starts_with('+')), "{body:?}");
    assert!(body.iter().any(|l| l.contains("name: arena-eu")));

    let deleted = plan(
        &[],
        &state([live(&base(), 4, &[], &[])]),
        &PlanOptions {
            prune: true,
            revision: None,
        },
    );
    let body: Vec<_> = deleted.changes[0].diff.lines().skip(3).collect();
    assert!(body.iter().all(|l| l.starts_with('-')), "{body:?}");
    assert!(deleted.changes[0].diff.contains("+++ /dev/null"));
}

#[test]
fn without_a_rollout_the_spec_to_apply_keeps_the_running_version() {
    // Live was applied with `affinity: {}`, which hashes differently from no affinity at all.
    let applied = parse(BASE_EXPLICIT);
    let desired = replicas(base(), 6);
    assert_ne!(
        applied.version(),
        desired.version(),
        "precondition: raw versions differ"
    );
    let p = plan(
        &[desired],
        &state([live(&applied, 4, &[(Ready, 4)], &[])]),
        &PlanOptions::default(),
    );
    let c = &p.changes[0];
    assert_eq!(c.action, Action::Scale);
    assert_eq!(c.from_version, c.to_version);
    assert_eq!(c.desired.as_ref().unwrap().version(), applied.version());
    assert_eq!(c.desired.as_ref().unwrap().rooms_replicas, Some(6));
}

#[test]
fn a_rollout_applies_the_canonical_spec_and_names_both_versions() {
    let desired = image(parse(BASE_EXPLICIT), "registry.example/arena:1.4.3");
    let p = plan(
        std::slice::from_ref(&desired),
        &state([live(&base(), 4, &[(Ready, 4)], &[])]),
        &PlanOptions::default(),
    );
    let c = &p.changes[0];
    assert_eq!(c.from_version.as_deref(), Some(base().version().as_str()));
    let applied = c.desired.as_ref().unwrap();
    assert_eq!(applied.spec.affinity, None, "empty affinity dropped");
    assert_eq!(c.to_version.as_deref(), Some(applied.version().as_str()));
    assert_ne!(c.from_version, c.to_version);
}

#[test]
fn summary_adds_up() {
    let named = |n: &str| edit(base(), |s| s.name = n.to_string());
    let desired = vec![
        image(named("a"), "x:2"),
        replicas(named("b"), 2),
        named("c"),
    ];
    let live = state([
        live(&named("a"), 4, &[(Ready, 2), (Occupied, 2)], &[]),
        live(&named("b"), 4, &[(Ready, 1), (Occupied, 3)], &[]),
        live(&named("d"), 4, &[(Ready, 4)], &[]),
    ]);
    let p = plan(
        &desired,
        &live,
        &PlanOptions {
            prune: true,
            revision: None,
        },
    );
    let s = p.summary;
    assert_eq!(
        (s.create, s.rollout, s.scale, s.delete, s.orphan),
        (1, 1, 1, 1, 0)
    );
    assert_eq!(s.rooms_created, 4);
    assert_eq!(s.rooms_replaced, 4);
    assert_eq!(s.rooms_removed, 1 + 4);
    assert_eq!(s.busy_kept, 2 + 1);
}

#[test]
fn plan_json_round_trips() {
    let desired = vec![image(base(), "x:2"), autoscaled_named("b")];
    let p = plan(
        &desired,
        &state([live(&base(), 4, &[(Ready, 4)], &[])]),
        &PlanOptions::default(),
    );
    let back: Plan = serde_json::from_str(&render::json(&p)).expect("plan JSON parses back");
    assert_eq!(back, p);
}

fn autoscaled_named(n: &str) -> Scheduler {
    edit(autoscaled(), |s| s.name = n.to_string())
}

/// Regenerate with `TROUPE_UPDATE_SCHEMA=1 cargo test committed_plan_schema`.
#[test]
fn committed_plan_schema_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/plan.schema.json");
    let want = format!(
        "{}\n",
        serde_json::to_string_pretty(&plan_schema()).unwrap()
    );
    if std::env::var_os("TROUPE_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let got = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        got == want,
        "schema/plan.schema.json is stale: run `TROUPE_UPDATE_SCHEMA=1 cargo test committed_plan_schema` and commit it"
    );
}

#[test]
fn a_saved_plan_goes_stale_when_git_or_the_live_state_of_what_it_touches_moves() {
    let us = edit(base(), |s| s.name = "arena-us".into());
    let live_state = state([
        live(&base(), 4, &[(Ready, 4)], &[]),
        live(&us, 4, &[(Ready, 4)], &[]),
    ]);
    let opts = |rev: &str| PlanOptions {
        prune: false,
        revision: Some(rev.into()),
    };
    let scaled = edit(base(), |s| s.rooms_replicas = Some(6));
    let saved = plan(&[scaled.clone(), us.clone()], &live_state, &opts("r1"));
    assert_eq!(saved.changes.len(), 1, "only arena-eu changes");

    let same = plan(&[scaled.clone(), us.clone()], &live_state, &opts("r1"));
    assert!(staleness(&saved, &same).is_empty());

    let new_commit = plan(&[scaled.clone(), us.clone()], &live_state, &opts("r2"));
    let moved = staleness(&saved, &new_commit);
    assert!(moved[0].contains("git moved"), "{moved:?}");

    let mut replaced = live_state.clone();
    replaced.schedulers.get_mut("arena-eu").unwrap().rooms[0].id = "arena-eu-new".into();
    let moved = staleness(
        &saved,
        &plan(&[scaled.clone(), us.clone()], &replaced, &opts("r1")),
    );
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert!(moved[0].contains("live state of arena-eu"), "{moved:?}");

    // A scheduler the plan leaves alone may move freely.
    let mut other = live_state.clone();
    other.schedulers.get_mut("arena-us").unwrap().rooms[0].id = "arena-us-new".into();
    assert!(staleness(&saved, &plan(&[scaled, us], &other, &opts("r1"))).is_empty());
}

#[test]
fn a_scheduler_annotated_for_pruning_is_deleted_with_prune_off() {
    let own = edit(base(), |s| {
        s.annotations.insert(PRUNE_ANNOTATION.into(), "true".into());
    });
    let p = plan(
        &[],
        &state([live(&own, 4, &[(Ready, 4)], &[])]),
        &PlanOptions::default(),
    );
    assert_eq!(p.changes[0].action, Action::Delete);
    assert!(p.changes[0].reasons[0].contains("troupe.dev/prune"));
}

#[test]
fn troupe_annotations_apply_in_place_without_a_rollout() {
    let annotated = edit(base(), |s| {
        s.annotations.insert(PRUNE_ANNOTATION.into(), "true".into());
    });
    assert_eq!(annotated.version(), base().version());
    let p = plan(
        &[annotated],
        &state([live(&base(), 4, &[(Ready, 4)], &[])]),
        &PlanOptions::default(),
    );
    assert_eq!(
        p.changes[0].action,
        Action::UpdateInPlace,
        "{:?}",
        p.changes[0]
    );
}

/// Any pod field is part of the template: a Secret reference or a probe changed is a rollout
/// (busy rooms kept, as for an image), and the plan says which field changed.
#[test]
fn a_secret_reference_or_a_probe_change_is_a_rollout_that_names_the_field() {
    let with_pod = |secret: &str, period: u32| {
        parse(&BASE.replace(
            "      command:",
            &format!(
                "      env: [{{name: API_KEY, valueFrom: {{secretKeyRef: {{name: {secret}, key: api-key}}}}}}]\n      readinessProbe: {{httpGet: {{path: /ready, port: 8080}}, periodSeconds: {period}}}\n      command:"
            ),
        ))
    };
    let applied = with_pod("arena-v1", 2);
    for (desired, reason) in [
        (with_pod("arena-v2", 2), "env: API_KEY valueFrom changed"),
        (with_pod("arena-v1", 5), "readinessProbe changed"),
    ] {
        let p = plan(
            std::slice::from_ref(&desired),
            &state([live(&applied, 4, &[(Ready, 3), (Occupied, 1)], &[])]),
            &PlanOptions::default(),
        );
        let c = &p.changes[0];
        assert_eq!(c.action, Action::Rollout, "{reason}");
        assert_eq!(c.reasons, [reason]);
        assert_eq!(
            c.impact.kept_busy, 1,
            "the occupied room is kept: {:?}",
            c.impact
        );
    }
}
