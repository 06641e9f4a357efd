//! What of a room template the local runtime uses, and what it leaves to the cluster.
//!
//! The local runtime runs a room as `local.command` with the room's environment: the containers'
//! `env` and `envFrom` (Secrets and ConfigMaps read from a directory, fields of the pod as this
//! machine sees them), their declared ports (each gets a host port) and the termination grace
//! period. Everything else a template can say (images, volumes, probes, placement, security,
//! resources, init containers, …) only means something on Kubernetes. [`ignored_locally`] names
//! those fields, so that running a scheduler locally can say what it leaves out.

use serde_json::Value;

use super::Scheduler;
use super::yaml_index::{push_index, push_key};

/// Fields of the pod template the local runtime reads.
const USED_IN_SPEC: &[&str] = &[
    "containers",
    "terminationGracePeriod",
    "terminationGracePeriodSeconds",
];

/// Fields of a container the local runtime reads (its `command` and `args` are replaced by
/// `local.command`).
const USED_IN_CONTAINER: &[&str] = &["name", "env", "envFrom", "ports"];

/// Fields of a container port the local runtime reads; `hostIP` is not among them (rooms listen
/// on the runtime's own address).
const USED_IN_PORT: &[&str] = &["name", "protocol", "port"];

/// The fields of `s`'s room template that are set and that the local runtime does not use, by
/// path (`spec.volumes`, `spec.containers[0].image`, `spec.containers[1].ports[0].hostIP`), in
/// the order of the template, keys of one object in alphabetical order. A field at its default
/// (`hostNetwork: false`, an empty list) is not set. Any field Troupe learns to pass to
/// Kubernetes is listed here until the local runtime learns to use it.
pub fn ignored_locally(s: &Scheduler) -> Vec<String> {
    let spec = serde_json::to_value(&s.spec).expect("the room template serialises");
    let mut ignored = Vec::new();
    for (key, value) in sorted(&spec) {
        let path = push_key("spec", key);
        match key {
            "containers" => {
                for (i, container) in value.as_array().into_iter().flatten().enumerate() {
                    container_fields(&push_index(&path, i), container, &mut ignored);
                }
            }
            _ if USED_IN_SPEC.contains(&key) => {}
            _ if is_default(value) => {}
            _ => ignored.push(path),
        }
    }
    ignored
}

fn container_fields(path: &str, container: &Value, ignored: &mut Vec<String>) {
    for (key, value) in sorted(container) {
        let field = push_key(path, key);
        match key {
            "ports" => {
                for (i, port) in value.as_array().into_iter().flatten().enumerate() {
                    let port_path = push_index(&field, i);
                    ignored.extend(
                        sorted(port)
                            .filter(|(k, v)| !USED_IN_PORT.contains(k) && !is_default(v))
                            .map(|(k, _)| push_key(&port_path, k)),
                    );
                }
            }
            _ if USED_IN_CONTAINER.contains(&key) => {}
            _ if is_default(value) => {}
            _ => ignored.push(field),
        }
    }
}

/// The members of a JSON object by key, whatever order the map keeps them in.
fn sorted(object: &Value) -> impl Iterator<Item = (&str, &Value)> {
    let mut members: Vec<(&str, &Value)> = object
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    members.sort_by_key(|(k, _)| *k);
    members.into_iter()
}

/// Whether a serialized value says nothing: `false`, `null`, an empty list or object. Fields a
/// template leaves unset are absent or serialize to one of these.
fn is_default(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheduler(spec: serde_json::Value) -> Scheduler {
        serde_json::from_value(serde_json::json!({
            "name": "arena",
            "game": "arena",
            "roomsReplicas": 1,
            "portRange": {"start": 40000, "end": 40100},
            "spec": spec,
            "local": {"command": ["troupe", "demo-room"]},
        }))
        .expect("the scheduler deserialises")
    }

    #[test]
    fn fields_the_local_runtime_leaves_to_the_cluster_are_named_by_path() {
        let table: &[(&str, serde_json::Value, &[&str])] = &[
            (
                "only what the local runtime uses, besides the image",
                serde_json::json!({
                    "terminationGracePeriod": "10s",
                    "hostNetwork": false,
                    "containers": [{
                        "name": "server", "image": "x:1",
                        "env": [{"name": "A", "value": "1"},
                                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                        "envFrom": [{"configMapRef": {"name": "c"}}],
                        "ports": [{"name": "game", "protocol": "UDP", "port": 7777}],
                    }],
                }),
                &["spec.containers[0].image"],
            ),
            (
                "the Kubernetes form of the grace period is used too",
                serde_json::json!({
                    "terminationGracePeriodSeconds": 10,
                    "containers": [{"name": "server", "image": "x:1"}],
                }),
                &["spec.containers[0].image"],
            ),
            (
                "placement, in Troupe's short forms and Kubernetes' own fields",
                serde_json::json!({
                    "hostNetwork": true,
                    "nodeSelector": {"pool": "game"},
                    "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 1, "preference": {"matchExpressions": [{"key": "ssd", "operator": "Exists"}]}}]}},
                    "tolerations": [{"operator": "Exists"}],
                    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}],
                    "priorityClassName": "games",
                    "containers": [{"name": "server", "image": "x:1"}],
                }),
                &[
                    "spec.affinity",
                    "spec.containers[0].image",
                    "spec.hostNetwork",
                    "spec.nodeSelector",
                    "spec.priorityClassName",
                    "spec.tolerations",
                    "spec.topologySpreadConstraints",
                ],
            ),
            (
                "volumes, security, pull secrets and init containers of the pod",
                serde_json::json!({
                    "volumes": [{"name": "maps", "emptyDir": {}}],
                    "securityContext": {"runAsNonRoot": true},
                    "imagePullSecrets": [{"name": "registry"}],
                    "initContainers": [{"name": "fetch", "image": "fetch:1"}],
                    "containers": [{"name": "server", "image": "x:1"}],
                }),
                &[
                    "spec.containers[0].image",
                    "spec.imagePullSecrets",
                    "spec.initContainers",
                    "spec.securityContext",
                    "spec.volumes",
                ],
            ),
            (
                "every container's own fields, command and args included",
                serde_json::json!({
                    "containers": [
                        {"name": "server", "image": "x:1", "command": ["/server"], "args": ["-v"],
                         "requests": {"cpu": "500m"}, "limits": {"memory": "1Gi"},
                         "volumeMounts": [{"name": "maps", "mountPath": "/maps"}],
                         "readinessProbe": {"httpGet": {"path": "/", "port": 8080}},
                         "livenessProbe": {"tcpSocket": {"port": 8080}},
                         "securityContext": {"readOnlyRootFilesystem": true},
                         "workingDir": "/srv",
                         "ports": [{"name": "game", "port": 7777, "hostIP": "10.0.0.1"}]},
                        {"name": "metrics", "image": "m:2",
                         "resources": {"limits": {"cpu": "100m"}}},
                    ],
                }),
                &[
                    "spec.containers[0].args",
                    "spec.containers[0].command",
                    "spec.containers[0].image",
                    "spec.containers[0].limits",
                    "spec.containers[0].livenessProbe",
                    "spec.containers[0].ports[0].hostIP",
                    "spec.containers[0].readinessProbe",
                    "spec.containers[0].requests",
                    "spec.containers[0].securityContext",
                    "spec.containers[0].volumeMounts",
                    "spec.containers[0].workingDir",
                    "spec.containers[1].image",
                    "spec.containers[1].resources",
                ],
            ),
        ];
        for (case, spec, want) in table {
            let got = ignored_locally(&scheduler(spec.clone()));
            assert_eq!(got, *want, "{case}");
        }
    }

    #[test]
    fn every_kubernetes_field_passed_through_is_ignored_locally_unless_used() {
        // One JSON value per field Troupe passes to Kubernetes as given: not a default, so it
        // counts as set.
        let mut spec = serde_json::Map::new();
        for field in super::super::RoomSpec::POD_FIELDS {
            spec.insert(super::super::camel_case(field), sample(field));
        }
        let mut container = serde_json::Map::new();
        for field in super::super::Container::POD_FIELDS {
            container.insert(super::super::camel_case(field), sample(field));
        }
        container.insert("name".into(), "server".into());
        container.insert("image".into(), "x:1".into());
        spec.insert("containers".into(), Value::Array(vec![container.into()]));
        let s = scheduler(Value::Object(spec));
        let got = ignored_locally(&s);
        for field in super::super::RoomSpec::POD_FIELDS {
            let path = format!("spec.{}", super::super::camel_case(field));
            let used = *field == "termination_grace_period_seconds";
            assert_eq!(got.contains(&path), !used, "{path}");
        }
        for field in super::super::Container::POD_FIELDS {
            let path = format!("spec.containers[0].{}", super::super::camel_case(field));
            let used = *field == "env_from";
            assert_eq!(got.contains(&path), !used, "{path}");
        }
    }

    /// A value of the right Kubernetes type for `field` that is not its default.
    fn sample(field: &str) -> Value {
        use serde_json::json;
        match field {
            "active_deadline_seconds" | "termination_grace_period_seconds" => json!(30),
            "priority" => json!(5),
            "automount_service_account_token"
            | "enable_service_links"
            | "host_ipc"
            | "host_pid"
            | "host_users"
            | "set_hostname_as_fqdn"
            | "share_process_namespace"
            | "stdin"
            | "stdin_once"
            | "tty" => json!(true),
            "dns_config" => json!({"nameservers": ["1.1.1.1"]}),
            "ephemeral_containers" => json!([{"name": "debug"}]),
            "host_aliases" => json!([{"ip": "10.0.0.1"}]),
            "image_pull_secrets" | "resource_claims" | "scheduling_gates" => json!([{"name": "x"}]),
            "readiness_gates" => json!([{"conditionType": "x"}]),
            "init_containers" => json!([{"name": "init"}]),
            "os" => json!({"name": "linux"}),
            "overhead" => json!({"cpu": "100m"}),
            "resources" => json!({"limits": {"cpu": "1"}}),
            "security_context" => json!({"runAsNonRoot": true}),
            "topology_spread_constraints" => {
                json!([{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}])
            }
            "volumes" => json!([{"name": "v"}]),
            "env_from" => json!([{"prefix": "X_"}]),
            "lifecycle" => json!({"preStop": {"sleep": {"seconds": 1}}}),
            "liveness_probe" | "readiness_probe" | "startup_probe" => {
                json!({"tcpSocket": {"port": 1}})
            }
            "resize_policy" => json!([{"resourceName": "cpu", "restartPolicy": "NotRequired"}]),
            "restart_policy_rules" => json!([{"action": "Restart"}]),
            "volume_devices" => json!([{"name": "d", "devicePath": "/dev/x"}]),
            "volume_mounts" => json!([{"name": "v", "mountPath": "/v"}]),
            _ => json!("x"),
        }
    }
}
