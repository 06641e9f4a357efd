//! Rooms and applied schedulers read back from the cluster alone: pure, from pods and namespaces.
//!
//! Must always hold: only objects of this runtime's namespace prefix are read (a pod belongs to a
//! runtime when its namespace is `{prefix}{scheduler label}`); a pod that has finished is no
//! room; a status Troupe never recorded is inferred from the pod (`unready` once it runs, since
//! its containers started; `pending` before), and a pod being deleted is `terminating` whatever
//! its label says. A transition discovery infers ([`inferred`]) need not be written to the pod.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};

use super::observe::{Phase, read_pod};
use super::pod::{
    ANNOTATION_APPLIED, ANNOTATION_MATCHES, ANNOTATION_STATUS_SINCE, ANNOTATION_SUSPENDED,
    LABEL_ROOM, LABEL_SCHEDULER, LABEL_VERSION, namespace_of,
};
use crate::domain::Applied;
use crate::domain::operation::Operation;
use crate::domain::room::{Room, RoomStatus};

/// The room a pod belongs to, when it belongs to this runtime: `(scheduler, room)`.
pub fn owner(pod: &Pod, prefix: &str) -> Option<(String, String)> {
    let labels = pod.metadata.labels.as_ref()?;
    let scheduler = labels.get(LABEL_SCHEDULER)?;
    let room = pod.metadata.name.as_ref()?;
    if labels.get(LABEL_ROOM).is_some_and(|r| r != room) {
        return None;
    }
    (pod.metadata.namespace.as_deref() == Some(&namespace_of(prefix, scheduler)))
        .then(|| (scheduler.clone(), room.clone()))
}

/// A transition the pod shows by itself, which discovery reads back without a record: a room
/// whose containers started (`pending` → `unready`, no match yet). Not writing it halves the
/// writes of a scale-up.
pub fn inferred(room: &Room, from: RoomStatus) -> bool {
    from == RoomStatus::Pending && room.status == RoomStatus::Unready && room.running_matches == 0
}

/// The room a live pod runs, as the registry records it. `allocations` are those recorded on its
/// namespace ([`super::ledger`]): one newer than the pod's status makes the room `allocated`.
/// `node_ip` finds a node's InternalIP.
pub fn room_from_pod(
    pod: &Pod,
    prefix: &str,
    allocations: &super::ledger::Entries,
    node_ip: impl Fn(&str) -> Option<String>,
    now_ms: u64,
) -> Option<Room> {
    let (scheduler, id) = owner(pod, prefix)?;
    let view = read_pod(pod);
    if view.finished() {
        return None;
    }
    let labels = pod.metadata.labels.as_ref()?;
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let recorded = view
        .recorded_status
        .as_deref()
        .and_then(|s| serde_json::from_value::<RoomStatus>(serde_json::json!(s)).ok());
    let started = match recorded {
        Some(RoomStatus::Pending) => view.running,
        None => view.running || view.phase == Phase::Running,
        Some(_) => false,
    };
    let status = match recorded {
        _ if view.deleting => RoomStatus::Terminating,
        _ if started => RoomStatus::Unready,
        Some(s) => s,
        None => RoomStatus::Pending,
    };
    let created_at = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| u64::try_from(t.0.as_millisecond()).ok())
        .unwrap_or(now_ms);
    let number = |key: &str| annotations.get(key).and_then(|v| v.parse::<u64>().ok());
    let host = view
        .node
        .as_deref()
        .and_then(&node_ip)
        .or(view.host_ip.clone())
        .unwrap_or_default();
    let label_since = number(ANNOTATION_STATUS_SINCE).unwrap_or(created_at);
    let status_since = match view.started_at {
        // Inferred `unready`: it began when the containers started.
        Some(at) if started => at,
        _ => label_since,
    };
    let allocated_at = allocations
        .get(&id)
        .copied()
        .filter(|at| *at > label_since && !view.deleting);
    let (status, status_since) = match allocated_at {
        Some(at) => (RoomStatus::Allocated, at),
        None => (status, status_since),
    };
    Some(Room {
        id,
        scheduler,
        version: labels.get(LABEL_VERSION).cloned().unwrap_or_default(),
        status,
        running_matches: number(ANNOTATION_MATCHES)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        host,
        ports: view.ports,
        created_at,
        status_since,
        // Seen alive in the cluster just now: the room gets a full ping timeout to report.
        last_ping: Some(now_ms),
        reason: None,
        metadata: serde_json::Value::Null,
        players: Default::default(),
        runtime_ref: Some(view.uid),
    })
}

/// The applied spec recorded on a scheduler's namespace: `(scheduler, applied)`. A record that
/// cannot be read (written by another version, edited by hand) is skipped with a warning.
pub fn applied_from_namespace(ns: &Namespace, prefix: &str) -> Option<(String, Applied)> {
    let scheduler = scheduler_of(ns, prefix)?;
    let text = ns.metadata.annotations.as_ref()?.get(ANNOTATION_APPLIED)?;
    match serde_json::from_str(text) {
        Ok(applied) => Some((scheduler.clone(), applied)),
        Err(e) => {
            tracing::warn!(%scheduler, error = %e, "applied spec recorded on the namespace is unreadable; ignored");
            None
        }
    }
}

/// The operations recorded in an operations ConfigMap of this controller's (`prefix`): those
/// of the scheduler whose namespace holds it; an entry that does not read is skipped, said once.
pub fn operations_of(cm: &ConfigMap, prefix: &str) -> Vec<Operation> {
    let Some(scheduler) = cm
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_SCHEDULER))
    else {
        return vec![];
    };
    if cm.metadata.namespace.as_deref() != Some(&namespace_of(prefix, scheduler)) {
        return vec![];
    }
    let entries = cm.data.iter().flatten();
    entries
        .filter_map(|(id, text)| match serde_json::from_str::<Operation>(text) {
            Ok(op) if &op.id == id && &op.scheduler == scheduler => Some(op),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(%scheduler, op = %id, error = %e, "operation recorded in the cluster is unreadable; skipped");
                None
            }
        })
        .collect()
}

/// The scheduler a namespace of this controller's (`prefix`) belongs to.
fn scheduler_of<'a>(ns: &'a Namespace, prefix: &str) -> Option<&'a String> {
    let scheduler = ns.metadata.labels.as_ref()?.get(LABEL_SCHEDULER)?;
    (ns.metadata.name.as_deref() == Some(&namespace_of(prefix, scheduler))).then_some(scheduler)
}

/// The suspension recorded on a scheduler's namespace: the scheduler and since when (Unix ms).
pub fn suspension_from_namespace(ns: &Namespace, prefix: &str) -> Option<(String, u64)> {
    let scheduler = scheduler_of(ns, prefix)?;
    let text = ns
        .metadata
        .annotations
        .as_ref()?
        .get(ANNOTATION_SUSPENDED)?;
    match text.parse() {
        Ok(since) => Some((scheduler.clone(), since)),
        Err(_) => {
            // Written by hand, perhaps: a suspension is kept rather than dropped.
            tracing::warn!(%scheduler, value = %text, "suspension recorded on the namespace is not a time; taken as now");
            Some((scheduler.clone(), crate::clock::now_ms()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(namespace: &str, labels: serde_json::Value, status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "arena-a", "namespace": namespace, "uid": "u1",
                "creationTimestamp": "2025-01-01T00:00:00Z",
                "labels": labels,
                "annotations": {"troupe.dev/ports": "[{\"name\":\"game\",\"protocol\":\"UDP\",\"port\":40001}]",
                    "troupe.dev/status-since": "1735689700000", "troupe.dev/running-matches": "1"}},
            "spec": {"nodeName": "kwok-node-0", "containers": [{"name": "server", "image": "x"}]},
            "status": status,
        }))
        .unwrap()
    }

    fn labels(status: Option<&str>) -> serde_json::Value {
        let mut l = serde_json::json!({"app.kubernetes.io/managed-by": "troupe",
            "troupe.dev/scheduler": "arena", "troupe.dev/room": "arena-a", "troupe.dev/version": "v1"});
        if let Some(s) = status {
            l["troupe.dev/status"] = s.into();
        }
        l
    }

    fn running() -> serde_json::Value {
        serde_json::json!({"phase": "Running", "containerStatuses": [{"name": "server", "image": "x",
            "imageID": "", "ready": true, "restartCount": 0,
            "state": {"running": {"startedAt": "2025-01-01T00:00:30Z"}}}]})
    }

    fn none() -> crate::runtime::kubernetes::ledger::Entries {
        Default::default()
    }

    fn ip(node: &str) -> Option<String> {
        (node == "kwok-node-0").then(|| "127.0.1.1".to_owned())
    }

    #[test]
    fn a_room_is_read_back_from_its_pod() {
        let p = pod("t1-arena", labels(Some("occupied")), running());
        let room = room_from_pod(&p, "t1-", &none(), ip, 99).unwrap();
        assert_eq!(room.id, "arena-a");
        assert_eq!(room.scheduler, "arena");
        assert_eq!(room.version, "v1");
        assert_eq!(room.status, RoomStatus::Occupied);
        assert_eq!(room.running_matches, 1);
        assert_eq!(room.host, "127.0.1.1");
        assert_eq!(room.ports[0].port, 40001);
        assert_eq!(room.created_at, 1735689600000);
        assert_eq!(room.status_since, 1735689700000);
        assert_eq!(room.last_ping, Some(99));
        assert_eq!(room.runtime_ref.as_deref(), Some("u1"));
    }

    /// The pod's label says occupied since 1735689700000: an allocation recorded on the namespace
    /// after that is newer and wins; one from before is history.
    #[test]
    fn an_allocation_recorded_on_the_namespace_wins_over_an_older_pod_status_only() {
        let p = pod("t1-arena", labels(Some("ready")), running());
        let newer = [("arena-a".to_string(), 1735689800000)].into();
        let room = room_from_pod(&p, "t1-", &newer, ip, 99).unwrap();
        assert_eq!(room.status, RoomStatus::Allocated);
        assert_eq!(room.status_since, 1735689800000);
        let older = [("arena-a".to_string(), 1735689600000)].into();
        let room = room_from_pod(&p, "t1-", &older, ip, 99).unwrap();
        assert_eq!(room.status, RoomStatus::Ready);
    }

    #[test]
    fn only_pods_of_this_prefix_are_rooms() {
        let p = pod("t1-arena", labels(Some("ready")), running());
        assert!(room_from_pod(&p, "", &none(), ip, 0).is_none());
        assert!(room_from_pod(&p, "t2-", &none(), ip, 0).is_none());
        assert!(room_from_pod(&p, "t1-", &none(), ip, 0).is_some());
    }

    #[test]
    fn an_unrecorded_status_is_inferred_and_a_finished_pod_is_no_room() {
        let p = pod("arena", labels(None), running());
        assert_eq!(
            room_from_pod(&p, "", &none(), ip, 0).unwrap().status,
            RoomStatus::Unready
        );
        // The pending → unready transition is never written: it began when the containers did.
        let p = pod("arena", labels(Some("pending")), running());
        let room = room_from_pod(&p, "", &none(), ip, 0).unwrap();
        assert_eq!(room.status, RoomStatus::Unready);
        assert_eq!(room.status_since, 1735689630000);
        let mut starting = running();
        starting["containerStatuses"][0]["state"] = serde_json::json!({"waiting": {}});
        let p = pod("arena", labels(Some("pending")), starting);
        assert_eq!(
            room_from_pod(&p, "", &none(), ip, 0).unwrap().status,
            RoomStatus::Pending,
            "a running pod whose containers have not all started is still pending"
        );
        let p = pod(
            "arena",
            labels(None),
            serde_json::json!({"phase": "Pending"}),
        );
        assert_eq!(
            room_from_pod(&p, "", &none(), ip, 0).unwrap().status,
            RoomStatus::Pending
        );
        let p = pod(
            "arena",
            labels(Some("ready")),
            serde_json::json!({"phase": "Failed"}),
        );
        assert!(room_from_pod(&p, "", &none(), ip, 0).is_none());
        let mut p = pod("arena", labels(Some("occupied")), running());
        p.metadata.deletion_timestamp = p.metadata.creation_timestamp.clone();
        assert_eq!(
            room_from_pod(&p, "", &none(), ip, 0).unwrap().status,
            RoomStatus::Terminating
        );
    }

    #[test]
    fn the_applied_spec_is_read_from_the_namespace_and_a_bad_one_is_skipped() {
        let spec = crate::domain::spec::Scheduler::minimal("arena");
        let applied = Applied {
            version: spec.version(),
            target_rooms: 2,
            spec,
            previous: None,
        };
        let namespace = |annotation: String| -> Namespace {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "t1-arena", "labels": {"troupe.dev/scheduler": "arena"},
                    "annotations": {"troupe.dev/applied": annotation}}
            }))
            .unwrap()
        };
        let ns = namespace(serde_json::to_string(&applied).unwrap());
        assert_eq!(
            applied_from_namespace(&ns, "t1-"),
            Some(("arena".into(), applied))
        );
        assert_eq!(applied_from_namespace(&ns, ""), None, "another prefix");
        let bad = namespace("{\"version\":\"v1\"}".into());
        assert_eq!(applied_from_namespace(&bad, "t1-"), None);
    }
}
