//! The pod of one room, built from the scheduler's template: pure, no API calls, so every field
//! Troupe sets is checked by plain unit tests.
//!
//! Must always hold: the pod is named after the room and carries Troupe's labels (which the
//! watcher selects on and discovery reads back) over the scheduler's own, so a scheduler label can
//! never hide a pod from Troupe; every container gets the room's `TROUPE_*` variables, which win
//! over declared ones; each declared port gets the host port handed to it, in declaration order;
//! the restart policy is `Never` (a room that ends is replaced, not restarted).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ContainerPort, EnvVar, EnvVarSource, ObjectFieldSelector, Pod, ResourceRequirements,
    Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::domain::room::{RoomPort, RoomStatus};
use crate::domain::spec::{Protocol, Resources};
use crate::runtime::StartRoom;
use crate::runtime::port_env_name;

/// Label every Troupe pod and namespace carries; the watcher selects on it.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY`].
pub const MANAGER: &str = "troupe";
/// Selector for everything Troupe manages.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=troupe";
pub const LABEL_SCHEDULER: &str = "troupe.dev/scheduler";
pub const LABEL_ROOM: &str = "troupe.dev/room";
pub const LABEL_VERSION: &str = "troupe.dev/version";
/// The room's status as last recorded by the controller (restart safety).
pub const LABEL_STATUS: &str = "troupe.dev/status";
/// Unix milliseconds of the room's last status change.
pub const ANNOTATION_STATUS_SINCE: &str = "troupe.dev/status-since";
/// Matches the room runs (restart safety for `active` rooms).
pub const ANNOTATION_MATCHES: &str = "troupe.dev/running-matches";
/// The room's ports (`[{name, protocol, port}]`) as Troupe names them: Kubernetes port names are
/// more restricted than ours, so discovery reads them from here.
pub const ANNOTATION_PORTS: &str = "troupe.dev/ports";
/// On a scheduler's namespace: the applied spec, JSON.
pub const ANNOTATION_APPLIED: &str = "troupe.dev/applied";
/// On a scheduler's namespace: since when (Unix ms) syncing it from the source is suspended.
pub const ANNOTATION_SUSPENDED: &str = "troupe.dev/suspended";
/// The ConfigMap of a scheduler's namespace that records its latest operations, one entry per
/// operation id (the operation as JSON).
pub const OPERATIONS: &str = "troupe-operations";
/// The label that marks it.
pub const LABEL_OPERATIONS: &str = "troupe.dev/operations";

/// Why a pod cannot be built for a room.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    /// The scheduler's placement fields do not convert to the Kubernetes types.
    #[error("spec.{field} does not convert to the Kubernetes type: {source}")]
    Convert {
        field: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// Fewer host ports than declared ports were handed in.
    #[error("{declared} port(s) declared but {given} host port(s) given")]
    Ports { declared: usize, given: usize },
}

/// The namespace of a scheduler's rooms.
pub fn namespace_of(prefix: &str, scheduler: &str) -> String {
    format!("{prefix}{scheduler}")
}

/// The room's ports: each declared port with the host port handed to it, in declaration order.
pub fn room_ports(req: &StartRoom, host_ports: &[u16]) -> Result<Vec<RoomPort>, PodError> {
    let declared: Vec<_> = req.scheduler.spec.ports().collect();
    if declared.len() != host_ports.len() {
        return Err(PodError::Ports {
            declared: declared.len(),
            given: host_ports.len(),
        });
    }
    Ok(declared
        .iter()
        .zip(host_ports)
        .map(|(p, &port)| RoomPort {
            name: p.name.clone(),
            protocol: p.protocol,
            port,
        })
        .collect())
}

/// The pod of room `req.room_id` in `namespace`, its declared ports on `host_ports`.
pub fn build_pod(
    req: &StartRoom,
    namespace: &str,
    host_ports: &[u16],
    now_ms: u64,
) -> Result<Pod, PodError> {
    let scheduler = &req.scheduler;
    let spec = &scheduler.spec;
    let ports = room_ports(req, host_ports)?;

    let mut labels = scheduler.labels.clone();
    labels.extend([
        (MANAGED_BY.to_owned(), MANAGER.to_owned()),
        (LABEL_SCHEDULER.to_owned(), scheduler.name.clone()),
        (LABEL_ROOM.to_owned(), req.room_id.clone()),
        (LABEL_VERSION.to_owned(), scheduler.version()),
        (
            LABEL_STATUS.to_owned(),
            RoomStatus::Pending.as_str().to_owned(),
        ),
    ]);
    // Troupe's own settings (`troupe.dev/…` annotations) stay off the pods.
    let mut annotations: std::collections::BTreeMap<String, String> = scheduler
        .room_annotations()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    annotations.extend([
        (
            ANNOTATION_PORTS.to_owned(),
            serde_json::to_string(&ports).expect("ports serialise"),
        ),
        (ANNOTATION_STATUS_SINCE.to_owned(), now_ms.to_string()),
    ]);

    let troupe_env = troupe_env(req, &ports);
    // Troupe's variables win over declared ones (validation refuses `TROUPE_` names anyway).
    let with_troupe_env = |env: Vec<EnvVar>| -> Vec<EnvVar> {
        env.into_iter()
            .filter(|e| !troupe_env.iter().any(|t| t.name == e.name))
            .chain(troupe_env.iter().cloned())
            .collect()
    };
    let mut next_port = ports.iter();
    let containers = spec
        .containers
        .iter()
        .map(|c| {
            let container_ports: Vec<ContainerPort> = c
                .ports
                .iter()
                .zip(next_port.by_ref())
                .map(|(declared, given)| ContainerPort {
                    // With the host's network the container listens on the host port itself
                    // (Kubernetes requires the two to be equal there).
                    container_port: if spec.host_network {
                        i32::from(given.port)
                    } else {
                        i32::from(declared.port)
                    },
                    host_port: Some(i32::from(given.port)),
                    name: is_port_name(&declared.name).then(|| declared.name.clone()),
                    protocol: Some(protocol_name(declared.protocol).to_owned()),
                    host_ip: declared.host_ip.clone(),
                })
                .collect();
            let env: Vec<EnvVar> = c
                .env
                .iter()
                .map(|e| EnvVar {
                    name: e.name.clone(),
                    value: e.value_from.is_none().then(|| e.value.clone()),
                    value_from: e.value_from.clone(),
                })
                .collect();
            let mut container = c.pod_fields();
            container.name = c.name.clone();
            container.image = Some(c.image.clone());
            container.command = (!c.command.is_empty()).then(|| c.command.clone());
            container.args = (!c.args.is_empty()).then(|| c.args.clone());
            container.env = Some(with_troupe_env(env));
            container.ports = (!container_ports.is_empty()).then_some(container_ports);
            if container.resources.is_none() {
                container.resources = resources(&c.requests, &c.limits);
            }
            container
        })
        .collect();
    // Init containers (native sidecars among them) get Troupe's variables too: a sidecar may
    // be the one that reports the room's status.
    let init_containers = spec.init_containers.as_ref().map(|cs| {
        cs.iter()
            .cloned()
            .map(|mut c| {
                c.env = Some(with_troupe_env(c.env.take().unwrap_or_default()));
                c
            })
            .collect()
    });

    let affinity: Option<Affinity> = spec
        .affinity
        .as_ref()
        .map(|a| convert("affinity", a))
        .transpose()?;
    let tolerations: Vec<Toleration> = spec
        .tolerations
        .iter()
        .map(|t| convert("tolerations", t))
        .collect::<Result<_, _>>()?;

    let mut pod_spec = spec.pod_fields();
    pod_spec.containers = containers;
    pod_spec.init_containers = init_containers;
    pod_spec.node_selector = (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone());
    pod_spec.affinity = affinity;
    pod_spec.tolerations = (!tolerations.is_empty()).then_some(tolerations);
    pod_spec.host_network = spec.host_network.then_some(true);
    pod_spec.termination_grace_period_seconds = Some(spec.grace().as_secs() as i64);
    // A room that ends is replaced, never restarted in place.
    pod_spec.restart_policy = Some("Never".to_owned());
    // Rooms talk to Troupe over HTTP, not to the Kubernetes API, unless the template says so.
    pod_spec.automount_service_account_token =
        Some(spec.automount_service_account_token.unwrap_or(false));

    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(req.room_id.clone()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(pod_spec),
        status: None,
    })
}

/// Our placement types mirror the Kubernetes JSON exactly: convert through it.
fn convert<T: serde::Serialize, K: serde::de::DeserializeOwned>(
    field: &'static str,
    value: &T,
) -> Result<K, PodError> {
    serde_json::to_value(value)
        .and_then(serde_json::from_value)
        .map_err(|source| PodError::Convert { field, source })
}

/// Troupe's own variables, which every container of a room gets.
fn troupe_env(req: &StartRoom, ports: &[RoomPort]) -> Vec<EnvVar> {
    let plain = |name: &str, value: &str| EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    };
    let mut env = vec![
        plain("TROUPE_SCHEDULER", &req.scheduler.name),
        plain("TROUPE_ROOM", &req.room_id),
        plain("TROUPE_ROOMS_URL", &req.rooms_url),
        plain("TROUPE_ROOM_TOKEN", &req.token),
        // The node's address, known only once the pod is placed.
        EnvVar {
            name: "TROUPE_HOST".to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "status.hostIP".to_owned(),
                    api_version: None,
                }),
                ..EnvVarSource::default()
            }),
        },
    ];
    env.extend(
        ports
            .iter()
            .map(|p| plain(&port_env_name(&p.name), &p.port.to_string())),
    );
    env
}

fn resources(requests: &Resources, limits: &Resources) -> Option<ResourceRequirements> {
    let map = |r: &Resources| {
        let m: BTreeMap<String, Quantity> =
            r.0.iter()
                .map(|(k, q)| (k.clone(), Quantity(q.to_string())))
                .collect();
        (!m.is_empty()).then_some(m)
    };
    let (requests, limits) = (map(requests), map(limits));
    (requests.is_some() || limits.is_some()).then(|| ResourceRequirements {
        requests,
        limits,
        ..ResourceRequirements::default()
    })
}

pub fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Sctp => "SCTP",
    }
}

/// Whether `name` is a valid Kubernetes port name (IANA service name: at most 15 characters,
/// lowercase letters, digits and single inner dashes, at least one letter).
fn is_port_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::spec::Scheduler;

    fn scheduler(extra: serde_json::Value) -> Scheduler {
        let mut doc = serde_json::json!({
            "name": "arena",
            "game": "arena",
            "portRange": {"start": 40000, "end": 40010},
            "labels": {"team": "arena", "troupe.dev/scheduler": "spoof"},
            "annotations": {"owner": "arena-team"},
            "spec": {
                "terminationGracePeriod": "45s",
                "containers": [
                    {"name": "server", "image": "registry.example/arena:1",
                     "command": ["/server"], "args": ["--mode=dedicated"],
                     "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "TROUPE_ROOM", "value": "spoof"}],
                     "requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1"},
                     "ports": [{"name": "game", "protocol": "UDP", "port": 7777}]},
                    {"name": "sidecar", "image": "registry.example/sidecar:1",
                     "ports": [{"name": "voice.rtp", "port": 9000}]}
                ],
                "nodeSelector": {"pool": "game"},
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                    {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule"}]
            }
        });
        if let (Some(doc), Some(extra)) = (doc.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                doc.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(doc).unwrap()
    }

    fn req(s: Scheduler) -> StartRoom {
        StartRoom {
            scheduler: Arc::new(s),
            room_id: "arena-abcde".into(),
            token: "tok".into(),
            rooms_url: "http://troupe:8080".into(),
        }
    }

    fn env_of(c: &k8s_openapi::api::core::v1::Container) -> BTreeMap<String, Option<String>> {
        c.env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect()
    }

    #[test]
    fn a_room_pod_carries_troupes_labels_over_the_schedulers_and_its_template() {
        let s = scheduler(serde_json::json!({}));
        let version = s.version();
        let pod = build_pod(&req(s), "t-arena", &[40003, 40007], 1234).unwrap();
        let meta = &pod.metadata;
        assert_eq!(meta.name.as_deref(), Some("arena-abcde"));
        assert_eq!(meta.namespace.as_deref(), Some("t-arena"));
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels[MANAGED_BY], "troupe");
        assert_eq!(
            labels[LABEL_SCHEDULER], "arena",
            "ours win over the scheduler's"
        );
        assert_eq!(labels[LABEL_ROOM], "arena-abcde");
        assert_eq!(labels[LABEL_VERSION], version);
        assert_eq!(labels[LABEL_STATUS], "pending");
        assert_eq!(labels["team"], "arena");
        let annotations = meta.annotations.as_ref().unwrap();
        assert_eq!(annotations["owner"], "arena-team");
        assert_eq!(annotations[ANNOTATION_STATUS_SINCE], "1234");
        let ports: Vec<RoomPort> = serde_json::from_str(&annotations[ANNOTATION_PORTS]).unwrap();
        assert_eq!(ports[1].name, "voice.rtp");
        assert_eq!(ports[1].port, 40007);

        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.termination_grace_period_seconds, Some(45));
        assert_eq!(spec.host_network, None);
        assert_eq!(spec.node_selector.as_ref().unwrap()["pool"], "game");
        let json = serde_json::to_value(spec).unwrap();
        assert_eq!(
            json["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
                [0]["matchExpressions"][0]["values"][0],
            "a"
        );
        assert_eq!(
            json["tolerations"],
            serde_json::json!([{"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule"}])
        );

        let server = &spec.containers[0];
        assert_eq!(server.image.as_deref(), Some("registry.example/arena:1"));
        assert_eq!(server.command.as_deref(), Some(&["/server".to_owned()][..]));
        assert_eq!(
            server.args.as_deref(),
            Some(&["--mode=dedicated".to_owned()][..])
        );
        let resources = server.resources.as_ref().unwrap();
        assert_eq!(resources.requests.as_ref().unwrap()["cpu"].0, "250m");
        assert_eq!(resources.requests.as_ref().unwrap()["memory"].0, "256Mi");
        assert_eq!(resources.limits.as_ref().unwrap()["cpu"].0, "1");
        let port = &server.ports.as_ref().unwrap()[0];
        assert_eq!(
            (
                port.container_port,
                port.host_port,
                port.protocol.as_deref()
            ),
            (7777, Some(40003), Some("UDP"))
        );
        assert_eq!(port.name.as_deref(), Some("game"));

        for c in &spec.containers {
            let env = env_of(c);
            assert_eq!(env["TROUPE_SCHEDULER"].as_deref(), Some("arena"));
            assert_eq!(env["TROUPE_ROOM"].as_deref(), Some("arena-abcde"));
            assert_eq!(
                env["TROUPE_ROOMS_URL"].as_deref(),
                Some("http://troupe:8080")
            );
            assert_eq!(env["TROUPE_ROOM_TOKEN"].as_deref(), Some("tok"));
            assert_eq!(env["TROUPE_PORT_GAME"].as_deref(), Some("40003"));
            assert_eq!(env["TROUPE_PORT_VOICE_RTP"].as_deref(), Some("40007"));
            assert!(env.contains_key("TROUPE_HOST"));
        }
        assert_eq!(
            server
                .env
                .iter()
                .flatten()
                .filter(|e| e.name == "TROUPE_ROOM")
                .count(),
            1,
            "a declared TROUPE_ROOM is dropped, not duplicated"
        );
        assert_eq!(env_of(server)["LOG_LEVEL"].as_deref(), Some("info"));

        let sidecar_port = &spec.containers[1].ports.as_ref().unwrap()[0];
        assert_eq!(
            sidecar_port.name, None,
            "voice.rtp is no Kubernetes port name"
        );
        assert_eq!(sidecar_port.protocol.as_deref(), Some("TCP"));
        assert_eq!(sidecar_port.host_port, Some(40007));
    }

    #[test]
    fn with_the_hosts_network_the_container_listens_on_its_host_port() {
        let mut s = scheduler(serde_json::json!({}));
        s.spec.host_network = true;
        let pod = build_pod(&req(s), "arena", &[40001, 40002], 0).unwrap();
        let spec = pod.spec.unwrap();
        assert_eq!(spec.host_network, Some(true));
        let port = &spec.containers[0].ports.as_ref().unwrap()[0];
        assert_eq!((port.container_port, port.host_port), (40001, Some(40001)));
    }

    #[test]
    fn host_ports_must_match_the_declared_ports() {
        let s = scheduler(serde_json::json!({}));
        let err = build_pod(&req(s), "arena", &[40001], 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "2 port(s) declared but 1 host port(s) given"
        );
    }

    #[test]
    fn kubernetes_port_names() {
        for good in ["game", "http", "voice-rtp", "a1", "abcdefghijklmno"] {
            assert!(is_port_name(good), "{good}");
        }
        for bad in [
            "",
            "Game",
            "voice.rtp",
            "-a",
            "a-",
            "a--b",
            "123",
            "abcdefghijklmnop",
        ] {
            assert!(!is_port_name(bad), "{bad}");
        }
    }

    /// The pod fields Troupe does not own reach the pod exactly as written; Troupe adds its own
    /// (ports' host ports, `TROUPE_*` variables, labels, grace, restart policy) and nothing else.
    #[test]
    fn every_kubernetes_field_reaches_the_pod_as_given() {
        let pod_fields = serde_json::json!({
            "serviceAccountName": "arena",
            "automountServiceAccountToken": true,
            "imagePullSecrets": [{"name": "registry"}],
            "priorityClassName": "game",
            "runtimeClassName": "gvisor",
            "dnsPolicy": "None",
            "dnsConfig": {"nameservers": ["10.0.0.10"], "searches": ["arena.svc"]},
            "hostAliases": [{"ip": "10.0.0.5", "hostnames": ["matchmaker"]}],
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "fsGroup": 2000},
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
                "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"game": "arena"}}}],
            "volumes": [
                {"name": "config", "configMap": {"name": "arena-config", "defaultMode": 420}},
                {"name": "secret", "secret": {"secretName": "arena"}},
                {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}
            ],
            "initContainers": [{"name": "logs", "image": "registry.example/vector:0.40",
                "restartPolicy": "Always", "env": [{"name": "SINK", "value": "loki"}]}],
            "terminationGracePeriodSeconds": 20,
        });
        let container_fields = serde_json::json!({
            "envFrom": [{"configMapRef": {"name": "arena-env"}}],
            "volumeMounts": [{"name": "config", "mountPath": "/etc/arena", "readOnly": true}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 2},
            "livenessProbe": {"tcpSocket": {"port": 7777}},
            "startupProbe": {"exec": {"command": ["/ready.sh"]}, "failureThreshold": 30},
            "lifecycle": {"preStop": {"exec": {"command": ["/drain"]}}},
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
            "imagePullPolicy": "IfNotPresent",
            "workingDir": "/srv",
            "resources": {"requests": {"cpu": "500m", "nvidia.com/gpu": "1"}, "limits": {"hugepages-2Mi": "64Mi"}},
        });
        let mut doc = serde_json::json!({
            "name": "arena", "game": "arena", "roomsReplicas": 1, "portRange": {"start": 40000, "end": 40010},
            "spec": {"containers": [{"name": "server", "image": "registry.example/arena:1",
                "env": [{"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "arena", "key": "api-key"}}}],
                "ports": [{"name": "game", "protocol": "UDP", "containerPort": 7777}]}]}
        });
        for (k, v) in pod_fields.as_object().unwrap() {
            doc["spec"][k] = v.clone();
        }
        for (k, v) in container_fields.as_object().unwrap() {
            doc["spec"]["containers"][0][k] = v.clone();
        }
        let s: Scheduler = serde_json::from_value(doc).unwrap();
        assert_eq!(crate::domain::spec::validate(&s), vec![]);
        let pod = build_pod(&req(s), "ns", &[40003], 1234).unwrap();
        let spec = serde_json::to_value(pod.spec.as_ref().unwrap()).unwrap();
        for (k, v) in pod_fields.as_object().unwrap() {
            if k == "initContainers" {
                continue;
            }
            assert_eq!(&spec[k], v, "spec.{k}");
        }
        let server = &spec["containers"][0];
        for (k, v) in container_fields.as_object().unwrap() {
            assert_eq!(&server[k], v, "spec.containers[0].{k}");
        }
        assert_eq!(
            server["env"][0],
            serde_json::json!({"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "arena", "key": "api-key"}}})
        );
        assert_eq!(
            server["ports"],
            serde_json::json!([{"containerPort": 7777, "hostPort": 40003, "name": "game", "protocol": "UDP"}])
        );
        let sidecar = &spec["initContainers"][0];
        assert_eq!(sidecar["restartPolicy"], "Always");
        let names: Vec<&str> = sidecar["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names[0], "SINK");
        assert!(names.contains(&"TROUPE_ROOM_TOKEN"), "{names:?}");
        assert_eq!(spec["restartPolicy"], "Never");
        // Nothing else: Troupe's own fields and the ones given, no more.
        let mut keys: Vec<&str> = spec
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.retain(|k| pod_fields.get(*k).is_none());
        assert_eq!(keys, ["containers", "restartPolicy"]);
    }
}
