//! What a room's pod says, and what the runtime reports about it: pure, so every pod state the
//! watcher can see is a plain unit test.
//!
//! [`read_pod`] turns a pod into a [`PodView`]; [`Track`] is the per-room state machine that turns
//! successive views (and the pod's deletion) into [`Action`]s. Must always hold: a room gets at
//! most one `Running`, one `Failed` and exactly one `Exited`, whatever the order and repetition of
//! watch events; a pod this room replaced (a host-port move) never speaks for it again.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;

use super::pod::{ANNOTATION_PORTS, LABEL_SCHEDULER, LABEL_STATUS};
use crate::domain::room::RoomPort;
use crate::domain::spec::Protocol;
use crate::runtime::RuntimeEvent;

/// Container waiting reasons that mean the room will not start by itself: reported at once.
pub const FATAL_WAITING_REASONS: [&str; 5] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "InvalidImageName",
];

/// Phase of a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

/// The scheduler could not place the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unschedulable {
    pub message: String,
    /// No eligible node has the room's host ports free: another port may fit.
    pub port_conflict: bool,
}

/// The part of a pod the runtime acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    pub uid: String,
    pub scheduler: Option<String>,
    pub node: Option<String>,
    pub host_ip: Option<String>,
    /// The room's ports: from Troupe's annotation, else read from the containers.
    pub ports: Vec<RoomPort>,
    pub phase: Phase,
    /// Every container runs.
    pub running: bool,
    /// When the last of them started (Unix ms), once every container runs.
    pub started_at: Option<u64>,
    /// Why the room cannot start, `"<Reason>: <message>"`.
    pub failure: Option<String>,
    pub unschedulable: Option<Unschedulable>,
    /// Why the pod ended, for a finished pod.
    pub ended: Option<String>,
    /// Kubernetes is deleting it.
    pub deleting: bool,
    /// The status label Troupe last recorded on it.
    pub recorded_status: Option<String>,
}

impl PodView {
    pub fn finished(&self) -> bool {
        matches!(self.phase, Phase::Succeeded | Phase::Failed)
    }

    pub fn host_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.ports.iter().map(|p| p.port)
    }
}

/// Read what matters from a pod.
pub fn read_pod(pod: &Pod) -> PodView {
    let meta = &pod.metadata;
    let status = pod.status.as_ref();
    let spec = pod.spec.as_ref();
    let phase = match status.and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => Phase::Pending,
        Some("Running") => Phase::Running,
        Some("Succeeded") => Phase::Succeeded,
        Some("Failed") => Phase::Failed,
        Some(_) => Phase::Unknown,
    };
    let containers = status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    let declared = spec.map_or(0, |s| s.containers.len());
    let running = phase == Phase::Running
        && !containers.is_empty()
        && containers.len() >= declared
        && containers
            .iter()
            .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
    let started_at = running
        .then(|| {
            containers
                .iter()
                .filter_map(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
                .filter_map(|t| u64::try_from(t.0.as_millisecond()).ok())
                .max()
        })
        .flatten();
    let failure = containers.iter().find_map(|c| {
        let waiting = c.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref()?;
        FATAL_WAITING_REASONS
            .contains(&reason)
            .then(|| with_message(reason, waiting.message.as_deref()))
    });
    let unschedulable = status
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
        .iter()
        .find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        })
        .map(|c| {
            let message = c.message.clone().unwrap_or_default();
            Unschedulable {
                port_conflict: is_port_conflict(&message),
                message,
            }
        });
    let ended = matches!(phase, Phase::Succeeded | Phase::Failed).then(|| {
        let terminated = containers.iter().find_map(|c| {
            let t = c.state.as_ref()?.terminated.as_ref()?;
            let mut text = format!("container {} exited with status {}", c.name, t.exit_code);
            if let Some(r) = &t.reason {
                text.push_str(&format!(" ({r})"));
            }
            if let Some(m) = t.message.as_deref().filter(|m| !m.is_empty()) {
                text.push_str(&format!(": {m}"));
            }
            Some(text)
        });
        let pod_reason = status
            .and_then(|s| s.reason.as_deref())
            .map(|r| with_message(r, status.and_then(|s| s.message.as_deref())));
        let phase_name = if phase == Phase::Succeeded {
            "pod succeeded"
        } else {
            "pod failed"
        };
        match terminated.or(pod_reason) {
            Some(why) => format!("{phase_name}: {why}"),
            None => phase_name.to_owned(),
        }
    });
    PodView {
        uid: meta.uid.clone().unwrap_or_default(),
        scheduler: label(pod, LABEL_SCHEDULER),
        node: spec.and_then(|s| s.node_name.clone()),
        host_ip: status
            .and_then(|s| s.host_ip.clone())
            .filter(|ip| !ip.is_empty()),
        ports: pod_ports(pod),
        phase,
        running,
        started_at,
        failure,
        unschedulable,
        ended,
        deleting: meta.deletion_timestamp.is_some(),
        recorded_status: label(pod, LABEL_STATUS),
    }
}

fn label(pod: &Pod, key: &str) -> Option<String> {
    pod.metadata.labels.as_ref()?.get(key).cloned()
}

fn with_message(reason: &str, message: Option<&str>) -> String {
    match message.filter(|m| !m.is_empty()) {
        Some(m) => format!("{reason}: {m}"),
        None => reason.to_owned(),
    }
}

/// The scheduler's wording when no node has a pod's host ports free
/// ("node(s) didn't have free ports for the requested pod ports").
pub fn is_port_conflict(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("free ports") || m.contains("host port")
}

/// The room's ports as Troupe named them (annotation), else as the pod's containers declare them.
fn pod_ports(pod: &Pod) -> Vec<RoomPort> {
    if let Some(ports) = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_PORTS))
        .and_then(|text| serde_json::from_str::<Vec<RoomPort>>(text).ok())
    {
        return ports;
    }
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            Some(RoomPort {
                name: p.name.clone().unwrap_or_default(),
                protocol: match p.protocol.as_deref() {
                    Some("UDP") => Protocol::Udp,
                    Some("SCTP") => Protocol::Sctp,
                    _ => Protocol::Tcp,
                },
                port: u16::try_from(p.host_port?).ok()?,
            })
        })
        .collect()
}

/// What the runtime must do after a pod change.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Report to the fleet.
    Emit(RuntimeEvent),
    /// Delete pod `uid` and create the room's pod again on other host ports.
    MovePorts { uid: String },
    /// Delete the finished pod `uid`: a room that ends is replaced, its pod has no further use.
    DeletePod { uid: String },
}

/// One room the runtime watches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Track {
    pub scheduler: String,
    pub room: String,
    /// The pod that speaks for the room; `None` while its creation is under way.
    pub uid: Option<String>,
    /// Pods this room had before a host-port move: ignored from then on.
    pub retired: BTreeSet<String>,
    /// Troupe asked it to stop: its end is clean.
    pub stopping: bool,
    /// A host-port move is under way.
    pub moving: bool,
    /// Host-port moves so far.
    pub moves: u32,
    /// Host ports held by the room's pod (or booked for the pod being created).
    pub host_ports: Vec<u16>,
    /// Host ports that were found taken on every eligible node: not tried again.
    pub avoid_ports: BTreeSet<u16>,
    /// Whether the runtime can recreate the pod (it has the start request).
    pub can_move: bool,
    placed: Option<(String, Vec<RoomPort>)>,
    running: bool,
    failed: bool,
    exited: bool,
}

impl Track {
    pub fn new(scheduler: &str, room: &str, host_ports: Vec<u16>, can_move: bool) -> Self {
        Self {
            scheduler: scheduler.to_owned(),
            room: room.to_owned(),
            host_ports,
            can_move,
            ..Self::default()
        }
    }

    pub fn exited(&self) -> bool {
        self.exited
    }

    /// Whether `uid` is the pod that speaks for this room (or may be, while it is being created).
    fn speaks(&self, uid: &str) -> bool {
        if self.retired.contains(uid) {
            return false;
        }
        self.uid.as_deref().is_none_or(|u| u == uid)
    }

    /// The room's pod changed. `node_ip`: the InternalIP of the pod's node, when known.
    pub fn on_pod(&mut self, pod: &PodView, node_ip: Option<&str>, max_moves: u32) -> Vec<Action> {
        let mut out = Vec::new();
        if !self.speaks(&pod.uid) || self.exited {
            return out;
        }
        self.uid = Some(pod.uid.clone());
        if !self.moving {
            self.host_ports = pod.host_ports().collect();
        }
        if pod.finished() {
            self.exited = true;
            let clean = pod.phase == Phase::Succeeded || self.stopping;
            out.push(self.exit(
                clean,
                pod.ended.clone().unwrap_or_else(|| "pod ended".into()),
            ));
            out.push(Action::DeletePod {
                uid: pod.uid.clone(),
            });
            return out;
        }
        if pod.deleting || self.stopping || self.moving {
            return out;
        }
        if let Some(u) = &pod.unschedulable {
            if self.failed {
                return out;
            }
            if u.port_conflict && self.can_move && self.moves < max_moves {
                self.moving = true;
                self.moves += 1;
                self.avoid_ports.extend(pod.host_ports());
                out.push(Action::MovePorts {
                    uid: pod.uid.clone(),
                });
            } else {
                self.failed = true;
                let mut reason = format!("Unschedulable: {}", u.message);
                if u.port_conflict {
                    reason.push_str(&format!(
                        " (no node had the room's host ports free after {} other port choice(s))",
                        self.moves
                    ));
                }
                out.push(self.failure(reason));
            }
            return out;
        }
        if pod.node.is_some()
            && let Some(host) = node_ip.or(pod.host_ip.as_deref())
        {
            let placed = (host.to_owned(), pod.ports.clone());
            if self.placed.as_ref() != Some(&placed) {
                out.push(Action::Emit(RuntimeEvent::Placed {
                    scheduler: self.scheduler.clone(),
                    room: self.room.clone(),
                    host: placed.0.clone(),
                    ports: placed.1.clone(),
                }));
                self.placed = Some(placed);
            }
        }
        if self.failed {
            return out;
        }
        if let Some(reason) = &pod.failure {
            self.failed = true;
            out.push(self.failure(reason.clone()));
            return out;
        }
        if pod.running && !self.running {
            self.running = true;
            out.push(Action::Emit(RuntimeEvent::Running {
                scheduler: self.scheduler.clone(),
                room: self.room.clone(),
            }));
        }
        out
    }

    /// Pod `uid` is gone from the cluster. Returns the room's exit, the first time its own pod goes.
    pub fn on_gone(&mut self, uid: &str) -> Vec<Action> {
        if self.retired.contains(uid) || self.exited {
            return vec![];
        }
        if self.uid.as_deref().is_some_and(|u| u != uid) {
            return vec![];
        }
        self.exited = true;
        let reason = if self.stopping {
            "pod deleted after Troupe asked the room to stop"
        } else {
            "pod deleted (not by Troupe)"
        };
        vec![self.exit(self.stopping, reason.to_owned())]
    }

    /// The room's pod is being replaced by one on other host ports: forget the old one.
    pub fn retire_current(&mut self) {
        if let Some(uid) = self.uid.take() {
            self.retired.insert(uid);
        }
        self.placed = None;
    }

    /// The replacement pod was created (`uid`) on `host_ports`.
    pub fn moved(&mut self, uid: Option<String>, host_ports: Vec<u16>) {
        self.moving = false;
        if let Some(uid) = uid
            && self.uid.is_none()
        {
            self.uid = Some(uid);
        }
        self.host_ports = host_ports;
    }

    /// Report a failure that happened outside the pod (a move that could not create its pod).
    pub fn fail(&mut self, reason: String) -> Option<Action> {
        self.moving = false;
        if self.failed || self.exited {
            return None;
        }
        self.failed = true;
        Some(self.failure(reason))
    }

    /// The end of a room whose pod disappeared while nobody watched (e.g. during a move that
    /// was stopped): reported once.
    pub fn end(&mut self, clean: bool, reason: &str) -> Option<Action> {
        if self.exited {
            return None;
        }
        self.exited = true;
        Some(self.exit(clean, reason.to_owned()))
    }

    fn exit(&self, clean: bool, reason: String) -> Action {
        Action::Emit(RuntimeEvent::Exited {
            scheduler: self.scheduler.clone(),
            room: self.room.clone(),
            clean,
            reason,
        })
    }

    fn failure(&self, reason: String) -> Action {
        Action::Emit(RuntimeEvent::Failed {
            scheduler: self.scheduler.clone(),
            room: self.room.clone(),
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        let mut base = serde_json::json!({
            "metadata": {"name": "arena-a", "namespace": "arena", "uid": "u1",
                "labels": {"troupe.dev/scheduler": "arena"},
                "annotations": {"troupe.dev/ports": "[{\"name\":\"game\",\"protocol\":\"UDP\",\"port\":40001}]"}},
            "spec": {"containers": [{"name": "server", "image": "x"}]},
        });
        merge(&mut base, json);
        serde_json::from_value(base).unwrap()
    }

    fn merge(base: &mut serde_json::Value, patch: serde_json::Value) {
        match (base, patch) {
            (serde_json::Value::Object(b), serde_json::Value::Object(p)) => {
                for (k, v) in p {
                    merge(b.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (b, p) => *b = p,
        }
    }

    fn pending() -> PodView {
        read_pod(&pod(serde_json::json!({"status": {"phase": "Pending"}})))
    }

    fn placed() -> PodView {
        read_pod(&pod(serde_json::json!({
            "spec": {"nodeName": "kwok-node-0"},
            "status": {"phase": "Pending", "hostIP": "127.0.1.1"}})))
    }

    fn running() -> PodView {
        read_pod(&pod(serde_json::json!({
            "spec": {"nodeName": "kwok-node-0"},
            "status": {"phase": "Running", "hostIP": "127.0.1.1",
                "containerStatuses": [{"name": "server", "image": "x", "imageID": "", "ready": true,
                    "restartCount": 0, "state": {"running": {}}}]}})))
    }

    fn waiting(reason: &str) -> PodView {
        read_pod(&pod(serde_json::json!({
            "spec": {"nodeName": "kwok-node-0"},
            "status": {"phase": "Pending", "hostIP": "127.0.1.1",
                "containerStatuses": [{"name": "server", "image": "x", "imageID": "", "ready": false,
                    "restartCount": 0, "state": {"waiting": {"reason": reason, "message": "it broke"}}}]}})))
    }

    fn unschedulable(message: &str) -> PodView {
        read_pod(&pod(serde_json::json!({
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": message}]}})))
    }

    fn emitted(actions: &[Action]) -> Vec<&'static str> {
        actions
            .iter()
            .map(|a| match a {
                Action::Emit(RuntimeEvent::Running { .. }) => "running",
                Action::Emit(RuntimeEvent::Placed { .. }) => "placed",
                Action::Emit(RuntimeEvent::Failed { .. }) => "failed",
                Action::Emit(RuntimeEvent::Exited { clean: true, .. }) => "exited-clean",
                Action::Emit(RuntimeEvent::Exited { clean: false, .. }) => "exited-unclean",
                Action::MovePorts { .. } => "move",
                Action::DeletePod { .. } => "delete",
            })
            .collect()
    }

    fn track() -> Track {
        Track::new("arena", "arena-a", vec![40001], true)
    }

    #[test]
    fn a_pod_is_placed_then_runs_each_reported_once() {
        let mut t = track();
        assert!(emitted(&t.on_pod(&pending(), None, 3)).is_empty());
        let a = t.on_pod(&placed(), Some("127.0.1.1"), 3);
        assert_eq!(emitted(&a), ["placed"]);
        let Action::Emit(RuntimeEvent::Placed { host, ports, .. }) = &a[0] else {
            unreachable!()
        };
        assert_eq!(host, "127.0.1.1");
        assert_eq!(ports[0].port, 40001);
        assert_eq!(
            emitted(&t.on_pod(&running(), Some("127.0.1.1"), 3)),
            ["running"]
        );
        assert!(emitted(&t.on_pod(&running(), Some("127.0.1.1"), 3)).is_empty());
        assert_eq!(emitted(&t.on_gone("u1")), ["exited-unclean"]);
        assert!(emitted(&t.on_gone("u1")).is_empty(), "exactly one exit");
    }

    #[test]
    fn the_node_address_comes_from_the_node_else_from_the_pod() {
        let mut t = track();
        let a = t.on_pod(&placed(), None, 3);
        let Action::Emit(RuntimeEvent::Placed { host, .. }) = &a[0] else {
            panic!("{a:?}")
        };
        assert_eq!(host, "127.0.1.1");
        let mut t = track();
        let no_ip = read_pod(&pod(serde_json::json!({"spec": {"nodeName": "n"}})));
        assert!(t.on_pod(&no_ip, None, 3).is_empty(), "no address yet: wait");
        assert_eq!(emitted(&t.on_pod(&no_ip, Some("10.0.0.9"), 3)), ["placed"]);
    }

    #[test]
    fn fatal_waiting_reasons_fail_the_room_at_once_with_the_reason() {
        for reason in FATAL_WAITING_REASONS {
            let mut t = track();
            let a = t.on_pod(&waiting(reason), None, 3);
            assert_eq!(emitted(&a), ["placed", "failed"], "{reason}");
            let Action::Emit(RuntimeEvent::Failed { reason: why, .. }) = &a[1] else {
                unreachable!()
            };
            assert_eq!(why, &format!("{reason}: it broke"));
            assert!(t.on_pod(&waiting(reason), None, 3).is_empty(), "once");
            assert!(t.on_pod(&running(), None, 3).is_empty(), "no revival");
        }
        let mut t = track();
        assert_eq!(
            emitted(&t.on_pod(&waiting("ContainerCreating"), None, 3)),
            ["placed"],
            "a normal wait is no failure"
        );
    }

    #[test]
    fn an_unschedulable_pod_fails_unless_only_its_host_ports_are_taken() {
        let mut t = track();
        let a = t.on_pod(
            &unschedulable("0/3 nodes are available: 3 Insufficient cpu."),
            None,
            3,
        );
        assert_eq!(
            a,
            [Action::Emit(RuntimeEvent::Failed {
                scheduler: "arena".into(),
                room: "arena-a".into(),
                reason: "Unschedulable: 0/3 nodes are available: 3 Insufficient cpu.".into()
            })]
        );

        let conflict = unschedulable(
            "0/3 nodes are available: 1 node(s) didn't have free ports for the requested pod ports, 2 node(s) didn't match Pod's node affinity/selector.",
        );
        let mut t = track();
        assert_eq!(emitted(&t.on_pod(&conflict, None, 2)), ["move"]);
        assert!(t.avoid_ports.contains(&40001));
        assert!(
            t.on_pod(&conflict, None, 2).is_empty(),
            "one move at a time"
        );
        t.retire_current();
        assert!(
            t.on_pod(&conflict, None, 2).is_empty(),
            "the old pod is retired"
        );
        assert!(t.on_gone("u1").is_empty(), "its deletion is no exit");
        t.moved(Some("u2".into()), vec![40005]);
        let mut second = conflict.clone();
        second.uid = "u2".into();
        assert_eq!(emitted(&t.on_pod(&second, None, 2)), ["move"]);
        t.retire_current();
        t.moved(Some("u3".into()), vec![40006]);
        second.uid = "u3".into();
        let a = t.on_pod(&second, None, 2);
        assert_eq!(emitted(&a), ["failed"], "bounded: {a:?}");
    }

    #[test]
    fn a_room_that_cannot_be_recreated_fails_on_a_port_conflict() {
        let mut t = Track::new("arena", "arena-a", vec![], false);
        let conflict = unschedulable(
            "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.",
        );
        assert_eq!(emitted(&t.on_pod(&conflict, None, 3)), ["failed"]);
    }

    #[test]
    fn finished_pods_exit_once_and_are_deleted() {
        let succeeded = read_pod(&pod(serde_json::json!({
            "spec": {"nodeName": "n"},
            "status": {"phase": "Succeeded", "containerStatuses": [{"name": "server", "image": "x",
                "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}})));
        let mut t = track();
        let a = t.on_pod(&succeeded, None, 3);
        assert_eq!(emitted(&a), ["exited-clean", "delete"]);
        let Action::Emit(RuntimeEvent::Exited { reason, .. }) = &a[0] else {
            unreachable!()
        };
        assert_eq!(
            reason,
            "pod succeeded: container server exited with status 0 (Completed)"
        );
        assert!(t.on_gone("u1").is_empty());

        let failed = read_pod(&pod(serde_json::json!({"status": {"phase": "Failed"}})));
        let mut t = track();
        assert_eq!(
            emitted(&t.on_pod(&failed, None, 3)),
            ["exited-unclean", "delete"]
        );
        let mut t = track();
        t.stopping = true;
        assert_eq!(
            emitted(&t.on_pod(&failed, None, 3)),
            ["exited-clean", "delete"],
            "asked to stop: clean"
        );
    }

    #[test]
    fn a_stopped_room_exits_clean_when_its_pod_goes() {
        let mut t = track();
        t.on_pod(&running(), None, 3);
        t.stopping = true;
        let mut deleting = running();
        deleting.deleting = true;
        assert!(t.on_pod(&deleting, None, 3).is_empty());
        assert_eq!(emitted(&t.on_gone("u1")), ["exited-clean"]);
    }

    #[test]
    fn another_pod_of_the_same_name_does_not_speak_for_the_room() {
        let mut t = track();
        t.on_pod(&running(), None, 3);
        let mut other = running();
        other.uid = "someone-else".into();
        other.phase = Phase::Failed;
        assert!(t.on_pod(&other, None, 3).is_empty());
        assert!(t.on_gone("someone-else").is_empty());
    }

    #[test]
    fn pod_views_read_ports_from_the_annotation_or_the_containers() {
        assert_eq!(pending().ports[0].name, "game");
        let bare: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r", "uid": "u"},
            "spec": {"containers": [{"name": "s", "image": "x",
                "ports": [{"containerPort": 7777, "hostPort": 40002, "protocol": "UDP", "name": "game"}]}]}
        }))
        .unwrap();
        let v = read_pod(&bare);
        assert_eq!(
            v.ports,
            [RoomPort {
                name: "game".into(),
                protocol: Protocol::Udp,
                port: 40002
            }]
        );
        assert!(is_port_conflict(
            "0/3 nodes are available: 3 node(s) didn't have free ports for the requested pod ports."
        ));
        assert!(!is_port_conflict(
            "0/3 nodes are available: 3 Insufficient cpu."
        ));
    }
}
