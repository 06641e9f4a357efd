//! A local room's environment: the variables its template declares, resolved the way a kubelet
//! resolves them for a pod, with this machine in the place of the node.
//!
//! - `secretKeyRef`, `configMapKeyRef` and `envFrom` read a directory laid out as Kubernetes
//!   mounts Secrets and ConfigMaps: `DIR/secrets/<name>/<key>`, `DIR/configmaps/<name>/<key>`, a
//!   file's contents (as they are, a final newline included) being the key's value. A source
//!   that is missing leaves its variables unset when it is `optional`, and fails the start
//!   otherwise.
//! - `fieldRef`: the room's id is the pod's `metadata.name`, its scheduler's name the namespace
//!   (as on Kubernetes with an empty namespace prefix), the runtime's address both `status.podIP`
//!   and `status.hostIP`, the scheduler's labels and annotations the pod's.
//! - `resourceFieldRef`: the container's requests and limits (either form), rounded up after
//!   the `divisor` as Kubernetes does; an unset CPU or memory limit is this machine's.
//!
//! [`room_env`] does nothing but read the [`Node`]'s directory, so a test runs it on a real
//! directory without starting anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1 as kube;

use super::super::{StartRoom, port_env_name};
use crate::domain::room::RoomPort;
use crate::domain::spec::{Container, EnvVar, LocalSpec, Quantity, Resources, Scheduler};

/// What this machine offers the rooms it runs, as a node offers them to its pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The address rooms listen on and are reached at: `TROUPE_HOST`, `status.hostIP` and
    /// `status.podIP`.
    pub host: String,
    /// Where Secrets and ConfigMaps are read from (see the module documentation).
    pub config_dir: Option<PathBuf>,
    /// The CPU limit, in millicores, of a container that sets none: the CPUs this process may
    /// use (`None`: unknown).
    pub cpu_millis: Option<u128>,
    /// The memory limit, in bytes, of a container that sets none: the machine's memory.
    pub memory_bytes: Option<u128>,
}

impl Node {
    /// This machine: the CPUs this process may run on, and its memory from `/proc/meminfo`.
    pub fn this_machine(host: String, config_dir: Option<PathBuf>) -> Self {
        let cpu_millis = std::thread::available_parallelism()
            .ok()
            .map(|n| n.get() as u128 * 1000);
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| mem_total(&m));
        Self {
            host,
            config_dir,
            cpu_millis,
            memory_bytes,
        }
    }
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn mem_total(meminfo: &str) -> Option<u128> {
    let line = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    let kib: u128 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

/// A room's environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomEnv {
    /// Each variable's value; `None` for one that must not be set at all, not even inherited
    /// from `troupe serve` (an optional value whose source is missing).
    pub vars: BTreeMap<String, Option<String>>,
    /// Keys of `envFrom` sources that cannot be variable names, left out as a kubelet leaves
    /// them out: `configmaps/<name>/<key>`.
    pub skipped: Vec<String>,
}

impl RoomEnv {
    fn set(&mut self, name: String, value: Option<String>) {
        match value {
            Some(v) => {
                self.vars.insert(name, Some(v));
            }
            // A missing optional value leaves what an earlier source set, as on Kubernetes.
            None => {
                self.vars.entry(name).or_insert(None);
            }
        }
    }
}

/// Why a room's environment cannot be built: `scheduler arena, container server, variable
/// API_KEY: …`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scheduler {scheduler}, {place}: {problem}")]
pub struct EnvError {
    pub scheduler: String,
    /// `container server, variable API_KEY`, `container server, envFrom[0]`, `local.env,
    /// variable MODE`.
    pub place: String,
    pub problem: String,
}

/// The environment of room `req.room_id`, in order of precedence (later wins): container by
/// container its `envFrom` sources then its `env`, then `local.env`, then Troupe's own
/// variables, which a room can always rely on.
pub fn room_env(
    req: &StartRoom,
    local: &LocalSpec,
    node: &Node,
    ports: &[RoomPort],
) -> Result<RoomEnv, EnvError> {
    let scheduler = &*req.scheduler;
    let fail = |place: String| {
        let scheduler = scheduler.name.clone();
        move |problem: String| EnvError {
            scheduler,
            place,
            problem,
        }
    };
    let mut env = RoomEnv::default();
    for c in &scheduler.spec.containers {
        for (i, source) in c.env_from.iter().flatten().enumerate() {
            env_from(source, node, &mut env)
                .map_err(fail(format!("container {}, envFrom[{i}]", c.name)))?;
        }
        for var in &c.env {
            let value = value_of(var, Some(c), req, node)
                .map_err(fail(format!("container {}, variable {}", c.name, var.name)))?;
            env.set(var.name.clone(), value);
        }
    }
    for var in &local.env {
        let value = value_of(var, None, req, node)
            .map_err(fail(format!("local.env, variable {}", var.name)))?;
        env.set(var.name.clone(), value);
    }
    let troupe = [
        ("TROUPE_SCHEDULER".to_owned(), scheduler.name.clone()),
        ("TROUPE_ROOM".to_owned(), req.room_id.clone()),
        ("TROUPE_ROOMS_URL".to_owned(), req.rooms_url.clone()),
        ("TROUPE_ROOM_TOKEN".to_owned(), req.token.clone()),
        ("TROUPE_HOST".to_owned(), node.host.clone()),
    ];
    let port_vars = ports
        .iter()
        .map(|p| (port_env_name(&p.name), p.port.to_string()));
    for (name, value) in troupe.into_iter().chain(port_vars) {
        env.set(name, Some(value));
    }
    Ok(env)
}

/// A Secret or a ConfigMap.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Secret,
    ConfigMap,
}

impl Kind {
    /// Its directory under the config directory.
    fn dir(self) -> &'static str {
        match self {
            Kind::Secret => "secrets",
            Kind::ConfigMap => "configmaps",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
        }
    }
}

/// The value of `var`: `Ok(None)` when it comes from an optional source that is missing.
/// `container` is the container that declares it (`None`: `local.env`).
fn value_of(
    var: &EnvVar,
    container: Option<&Container>,
    req: &StartRoom,
    node: &Node,
) -> Result<Option<String>, String> {
    let Some(from) = &var.value_from else {
        return Ok(Some(var.value.clone()));
    };
    let sources = [
        from.secret_key_ref.is_some(),
        from.config_map_key_ref.is_some(),
        from.field_ref.is_some(),
        from.resource_field_ref.is_some(),
        from.file_key_ref.is_some(),
    ];
    match sources.iter().filter(|set| **set).count() {
        0 => {
            return Err(
                "valueFrom names no source (secretKeyRef, configMapKeyRef, fieldRef or resourceFieldRef)"
                    .into(),
            );
        }
        1 => {}
        _ => return Err("valueFrom may name only one source".into()),
    }
    if let Some(r) = &from.secret_key_ref {
        return key_ref(
            node,
            Kind::Secret,
            &r.name,
            &r.key,
            r.optional == Some(true),
        );
    }
    if let Some(r) = &from.config_map_key_ref {
        return key_ref(
            node,
            Kind::ConfigMap,
            &r.name,
            &r.key,
            r.optional == Some(true),
        );
    }
    if let Some(r) = &from.field_ref {
        return field(&r.field_path, req, node).map(Some);
    }
    if let Some(r) = &from.resource_field_ref {
        return resource(r, container, &req.scheduler, node).map(Some);
    }
    let volume = from
        .file_key_ref
        .as_ref()
        .map_or("", |r| r.volume_name.as_str());
    Err(format!(
        "fileKeyRef reads a file of volume {volume:?}, and the local runtime mounts no volumes"
    ))
}

/// The value of `key` of the Secret or ConfigMap `name`.
fn key_ref(
    node: &Node,
    kind: Kind,
    name: &str,
    key: &str,
    optional: bool,
) -> Result<Option<String>, String> {
    let what = format!("key {key:?} of {} {name:?}", kind.name());
    check_component(name, &format!("the name of {} {name:?}", kind.name()))?;
    check_component(key, &what)?;
    let Some(root) = &node.config_dir else {
        return if optional {
            Ok(None)
        } else {
            Err(format!(
                "{what} is read from {}/{name}/{key} under troupe serve's --local-config-dir, which is not set (or mark it optional: true)",
                kind.dir()
            ))
        };
    };
    let path = root.join(kind.dir()).join(name).join(key);
    match read_value(&path)? {
        Some(value) => Ok(Some(value)),
        None if optional => Ok(None),
        None => Err(format!(
            "{what} not found: no file {} (or mark it optional: true)",
            path.display()
        )),
    }
}

/// Add every key of the Secret or ConfigMap of `source` to `env`, its `prefix` before it.
fn env_from(source: &kube::EnvFromSource, node: &Node, env: &mut RoomEnv) -> Result<(), String> {
    let (kind, name, optional) = match (&source.config_map_ref, &source.secret_ref) {
        (Some(c), None) => (Kind::ConfigMap, &c.name, c.optional == Some(true)),
        (None, Some(s)) => (Kind::Secret, &s.name, s.optional == Some(true)),
        (None, None) => return Err("envFrom names neither a configMapRef nor a secretRef".into()),
        (Some(_), Some(_)) => {
            return Err("envFrom may name a configMapRef or a secretRef, not both".into());
        }
    };
    check_component(name, &format!("the name of {} {name:?}", kind.name()))?;
    let Some(root) = &node.config_dir else {
        return if optional {
            Ok(())
        } else {
            Err(format!(
                "{} {name:?} is read from {}/{name}/ under troupe serve's --local-config-dir, which is not set (or mark it optional: true)",
                kind.name(),
                kind.dir()
            ))
        };
    };
    let dir = root.join(kind.dir()).join(name);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && optional => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "{} {name:?} not found: no directory {} (or mark it optional: true)",
                kind.name(),
                dir.display()
            ));
        }
        Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
    };
    let mut keys = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let key = entry.file_name().to_string_lossy().into_owned();
        // A mounted Secret's own files (`..data`, `..2024_01_01…`); no key starts with `..`.
        if key.starts_with("..") || entry.path().is_dir() {
            continue;
        }
        keys.push(key);
    }
    keys.sort();
    let prefix = source.prefix.as_deref().unwrap_or("");
    for key in keys {
        let var = format!("{prefix}{key}");
        if !is_env_from_name(&var) {
            env.skipped.push(format!("{}/{name}/{key}", kind.dir()));
            continue;
        }
        // Gone since the listing: as if it had not been there.
        if let Some(value) = read_value(&dir.join(&key))? {
            env.set(var, Some(value));
        }
    }
    Ok(())
}

/// A file's contents as a variable's value: `None` when there is no such file.
fn read_value(path: &Path) -> Result<Option<String>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if bytes.contains(&0) {
        return Err(format!(
            "{} holds a NUL byte, which no environment variable can",
            path.display()
        ));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| format!("{} is not UTF-8 text", path.display()))
}

/// A Secret's or ConfigMap's name or key is one path component below the config directory.
fn check_component(s: &str, what: &str) -> Result<(), String> {
    if s.is_empty() || s == "." || s == ".." || s.contains(['/', '\0']) {
        return Err(format!(
            "{what} cannot name a file: it must be a non-empty name without `/`, not `.` or `..`"
        ));
    }
    Ok(())
}

/// A variable name a kubelet takes from `envFrom`: printable ASCII other than `=`.
fn is_env_from_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b'=')
}

/// The field paths [`field`] knows.
const FIELD_PATHS: &str = "metadata.name, metadata.namespace, metadata.labels['KEY'], metadata.annotations['KEY'], status.podIP, status.podIPs, status.hostIP, status.hostIPs";

/// The value of the pod field `path`, as this room on this machine has it.
fn field(path: &str, req: &StartRoom, node: &Node) -> Result<String, String> {
    let scheduler = &req.scheduler;
    match path {
        "metadata.name" => return Ok(req.room_id.clone()),
        "metadata.namespace" => return Ok(scheduler.name.clone()),
        "status.podIP" | "status.podIPs" | "status.hostIP" | "status.hostIPs" => {
            return Ok(node.host.clone());
        }
        _ => {}
    }
    // A label or annotation that is not set is empty, as on Kubernetes.
    if let Some(key) = subscript(path, "metadata.labels") {
        return Ok(scheduler.labels.get(key).cloned().unwrap_or_default());
    }
    if let Some(key) = subscript(path, "metadata.annotations") {
        let annotations = scheduler.room_annotations();
        return Ok(annotations
            .get(key)
            .map(|v| v.to_string())
            .unwrap_or_default());
    }
    Err(format!(
        "fieldRef {path:?} is not available on the local runtime (it has {FIELD_PATHS})"
    ))
}

/// `KEY` of `FIELD['KEY']`.
fn subscript<'a>(path: &'a str, field: &str) -> Option<&'a str> {
    path.strip_prefix(field)?
        .strip_prefix("['")?
        .strip_suffix("']")
}

/// The value of `sel`'s resource of the container it names (or `own`, the container that
/// declares the variable; for `local.env`, the first container).
fn resource(
    sel: &kube::ResourceFieldSelector,
    own: Option<&Container>,
    scheduler: &Scheduler,
    node: &Node,
) -> Result<String, String> {
    let container = match sel.container_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => scheduler
            .spec
            .containers
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| {
                format!(
                    "resourceFieldRef names container {name:?}, which spec.containers does not have"
                )
            })?,
        None => own
            .or(scheduler.spec.containers.first())
            .ok_or("resourceFieldRef: the template has no container")?,
    };
    let unknown = || {
        format!(
            "resourceFieldRef {:?} is not a resource a container can read (limits.cpu, limits.memory, limits.ephemeral-storage, limits.hugepages-SIZE, or the same of requests)",
            sel.resource
        )
    };
    let (which, name) = sel.resource.split_once('.').ok_or_else(unknown)?;
    let cpu = name == "cpu";
    if !(cpu || name == "memory" || name == "ephemeral-storage" || name.starts_with("hugepages-")) {
        return Err(unknown());
    }
    // CPU in millicores, everything else in bytes.
    let unit: u128 = if cpu { 1000 } else { 1 };
    let limit = amount(container, Which::Limits, name, unit)?;
    let value = match which {
        "limits" => match limit {
            Some(l) => l,
            // As a kubelet takes the node's allocatable amount for an unset limit.
            None => match name {
                "cpu" => node.cpu_millis.ok_or(
                    "limits.cpu is not set and the number of CPUs of this machine is unknown",
                )?,
                "memory" => node
                    .memory_bytes
                    .ok_or("limits.memory is not set and the memory of this machine is unknown")?,
                _ if name.starts_with("hugepages-") => 0,
                _ => {
                    return Err(format!(
                        "limits.{name} of container {} is not set, and the local runtime has no amount of it to use instead: set it",
                        container.name
                    ));
                }
            },
        },
        // As Kubernetes defaults an unset request to its limit (to none without one).
        "requests" => amount(container, Which::Requests, name, unit)?
            .or(limit)
            .unwrap_or(0),
        _ => return Err(unknown()),
    };
    let divisor = match &sel.divisor {
        Some(d) => quantity(&d.0, "divisor")?
            .ceil_times(unit)
            .filter(|d| *d > 0)
            .ok_or_else(|| format!("divisor {:?} must be more than zero", d.0))?,
        None => unit,
    };
    Ok(value.div_ceil(divisor).to_string())
}

#[derive(Debug, Clone, Copy)]
enum Which {
    Requests,
    Limits,
}

/// The container's amount of resource `name`, in `unit`s of it, from `resources` or the short
/// forms `requests` and `limits`.
fn amount(c: &Container, which: Which, name: &str, unit: u128) -> Result<Option<u128>, String> {
    let text = match &c.resources {
        Some(r) => {
            let list = match which {
                Which::Requests => &r.requests,
                Which::Limits => &r.limits,
            };
            list.as_ref().and_then(|l| l.get(name)).map(|q| q.0.clone())
        }
        None => {
            let short: &Resources = match which {
                Which::Requests => &c.requests,
                Which::Limits => &c.limits,
            };
            short.get(name).map(|q| q.to_string())
        }
    };
    let Some(text) = text else {
        return Ok(None);
    };
    let what = match which {
        Which::Requests => format!("requests.{name}"),
        Which::Limits => format!("limits.{name}"),
    };
    quantity(&text, &what)?
        .ceil_times(unit)
        .map(Some)
        .ok_or_else(|| format!("{what} {text:?} is too large"))
}

fn quantity(text: &str, what: &str) -> Result<Quantity, String> {
    text.parse::<Quantity>().map_err(|e| format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::spec::Protocol;

    /// A config directory with the given files (`secrets/arena/api-key`, …).
    fn config_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, contents) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents).unwrap();
        }
        dir
    }

    fn node(dir: Option<&Path>) -> Node {
        Node {
            host: "127.0.0.1".into(),
            config_dir: dir.map(Path::to_path_buf),
            cpu_millis: Some(8000),
            memory_bytes: Some(16 << 30),
        }
    }

    /// A request for room `arena-1` of a scheduler `arena` whose first container has `env`
    /// and `extra` fields, and whose `local.env` is `local_env`.
    fn request(
        container: serde_json::Value,
        local_env: serde_json::Value,
    ) -> (StartRoom, LocalSpec) {
        let mut server = serde_json::json!({"name": "server", "image": "x"});
        server
            .as_object_mut()
            .unwrap()
            .extend(container.as_object().unwrap().clone());
        let scheduler: Scheduler = serde_json::from_value(serde_json::json!({
            "name": "arena",
            "game": "arena",
            "portRange": {"start": 40000, "end": 40010},
            "labels": {"team": "arena", "region": "eu"},
            "annotations": {"owner": "arena-team", "troupe.dev/prune": "true"},
            "spec": {"containers": [
                server,
                {"name": "sidecar", "image": "y", "limits": {"cpu": "250m", "memory": "64Mi"}}
            ]},
            "local": {"command": ["troupe", "demo-room"], "env": local_env}
        }))
        .unwrap();
        let local = scheduler.local.clone().unwrap();
        let req = StartRoom {
            scheduler: Arc::new(scheduler),
            room_id: "arena-1".into(),
            token: "tok".into(),
            rooms_url: "http://h:1".into(),
        };
        (req, local)
    }

    fn env_of(
        container: serde_json::Value,
        dir: Option<&Path>,
    ) -> Result<BTreeMap<String, Option<String>>, EnvError> {
        let (req, local) = request(container, serde_json::json!([]));
        room_env(&req, &local, &node(dir), &[]).map(|e| e.vars)
    }

    fn value(env: &BTreeMap<String, Option<String>>, name: &str) -> Option<String> {
        env.get(name).cloned().flatten()
    }

    #[test]
    fn troupes_own_variables_win_over_declared_ones_and_local_env_over_containers() {
        let (req, local) = request(
            serde_json::json!({
                "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "MODE", "value": "a"}],
                "ports": [{"name": "game", "protocol": "UDP", "port": 7777}],
            }),
            serde_json::json!([{"name": "MODE", "value": "b"}, {"name": "TROUPE_ROOM", "value": "spoof"}]),
        );
        let ports = [
            RoomPort {
                name: "game".into(),
                protocol: Protocol::Udp,
                port: 40000,
            },
            RoomPort {
                name: "http-admin".into(),
                protocol: Protocol::Tcp,
                port: 40001,
            },
        ];
        let env = room_env(&req, &local, &node(None), &ports).unwrap().vars;
        let v = |name: &str| value(&env, name);
        assert_eq!(v("LOG_LEVEL").as_deref(), Some("info"));
        assert_eq!(v("MODE").as_deref(), Some("b"));
        assert_eq!(v("TROUPE_ROOM").as_deref(), Some("arena-1"));
        assert_eq!(v("TROUPE_SCHEDULER").as_deref(), Some("arena"));
        assert_eq!(v("TROUPE_ROOMS_URL").as_deref(), Some("http://h:1"));
        assert_eq!(v("TROUPE_ROOM_TOKEN").as_deref(), Some("tok"));
        assert_eq!(v("TROUPE_HOST").as_deref(), Some("127.0.0.1"));
        assert_eq!(v("TROUPE_PORT_GAME").as_deref(), Some("40000"));
        assert_eq!(v("TROUPE_PORT_HTTP_ADMIN").as_deref(), Some("40001"));
    }

    #[test]
    fn secret_and_config_map_keys_are_read_from_the_config_directory() {
        let dir = config_dir(&[
            ("secrets/arena-keys/api-key", "s3cret\n"),
            ("configmaps/arena-config/mode", "ranked"),
        ]);
        let env = env_of(
            serde_json::json!({"env": [
                {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "arena-keys", "key": "api-key"}}},
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "arena-config", "key": "mode"}}},
            ]}),
            Some(dir.path()),
        )
        .unwrap();
        assert_eq!(
            value(&env, "API_KEY").as_deref(),
            Some("s3cret\n"),
            "the file as it is"
        );
        assert_eq!(value(&env, "MODE").as_deref(), Some("ranked"));
    }

    #[test]
    fn a_missing_optional_key_leaves_the_variable_unset_even_without_a_directory() {
        let dir = config_dir(&[("secrets/arena-keys/other", "x")]);
        let container = serde_json::json!({"env": [
            {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "arena-keys", "key": "api-key", "optional": true}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "nowhere", "key": "mode", "optional": true}}},
        ]});
        for dir in [Some(dir.path()), None] {
            let env = env_of(container.clone(), dir).unwrap();
            assert_eq!(env.get("API_KEY"), Some(&None), "unset, not inherited");
            assert_eq!(env.get("MODE"), Some(&None));
        }
    }

    #[test]
    fn a_missing_required_key_names_the_scheduler_container_variable_and_file() {
        let dir = config_dir(&[]);
        let container = serde_json::json!({"env": [
            {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "arena-keys", "key": "api-key"}}},
        ]});
        let err = env_of(container.clone(), Some(dir.path())).unwrap_err();
        assert_eq!(err.scheduler, "arena");
        assert_eq!(err.place, "container server, variable API_KEY");
        let file = dir.path().join("secrets/arena-keys/api-key");
        assert!(
            err.problem.contains(&format!("no file {}", file.display())),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("scheduler arena, container server, variable API_KEY: "),
            "{err}"
        );

        let err = env_of(container, None).unwrap_err();
        assert!(
            err.problem.contains("secrets/arena-keys/api-key")
                && err.problem.contains("--local-config-dir"),
            "{err}"
        );
    }

    #[test]
    fn a_name_or_key_that_leaves_the_directory_is_refused() {
        let dir = config_dir(&[("secrets/arena/key", "x")]);
        for (name, key) in [
            ("..", "secrets"),
            ("arena/../arena", "key"),
            ("arena", ".."),
        ] {
            let err = env_of(
                serde_json::json!({"env": [
                    {"name": "A", "valueFrom": {"secretKeyRef": {"name": name, "key": key, "optional": true}}},
                ]}),
                Some(dir.path()),
            )
            .unwrap_err();
            assert!(err.problem.contains("cannot name a file"), "{err}");
        }
    }

    #[test]
    fn env_from_takes_every_key_with_its_prefix_and_env_wins_over_it() {
        let dir = config_dir(&[
            ("configmaps/arena-env/MODE", "casual"),
            ("configmaps/arena-env/REGION", "eu"),
            ("configmaps/arena-env/bad=name", "x"),
            ("configmaps/arena-env/..data/MODE", "hidden"),
            ("secrets/arena-keys/API_KEY", "k"),
        ]);
        let env = env_of(
            serde_json::json!({
                "envFrom": [
                    {"configMapRef": {"name": "arena-env"}},
                    {"secretRef": {"name": "arena-keys"}, "prefix": "SECRET_"},
                    {"secretRef": {"name": "absent", "optional": true}},
                ],
                "env": [{"name": "MODE", "value": "ranked"}],
            }),
            Some(dir.path()),
        );
        let (req, local) = request(
            serde_json::json!({"envFrom": [{"configMapRef": {"name": "arena-env"}}]}),
            serde_json::json!([]),
        );
        let skipped = room_env(&req, &local, &node(Some(dir.path())), &[])
            .unwrap()
            .skipped;
        let env = env.unwrap();
        assert_eq!(value(&env, "MODE").as_deref(), Some("ranked"));
        assert_eq!(value(&env, "REGION").as_deref(), Some("eu"));
        assert_eq!(value(&env, "SECRET_API_KEY").as_deref(), Some("k"));
        assert!(!env.contains_key("API_KEY"));
        assert!(!env.keys().any(|k| k.contains("data") || k.contains('=')));
        assert_eq!(skipped, ["configmaps/arena-env/bad=name"]);
    }

    #[test]
    fn a_missing_required_env_from_source_names_its_directory() {
        let dir = config_dir(&[]);
        let err = env_of(
            serde_json::json!({"envFrom": [{"secretRef": {"name": "arena-keys"}}]}),
            Some(dir.path()),
        )
        .unwrap_err();
        assert_eq!(err.place, "container server, envFrom[0]");
        let path = dir.path().join("secrets/arena-keys");
        assert!(
            err.problem
                .contains(&format!("no directory {}", path.display())),
            "{err}"
        );
    }

    #[test]
    fn an_optional_missing_value_keeps_what_env_from_set() {
        let dir = config_dir(&[("configmaps/arena-env/MODE", "casual")]);
        let env = env_of(
            serde_json::json!({
                "envFrom": [{"configMapRef": {"name": "arena-env"}}],
                "env": [{"name": "MODE", "valueFrom": {"secretKeyRef": {"name": "x", "key": "y", "optional": true}}}],
            }),
            Some(dir.path()),
        )
        .unwrap();
        assert_eq!(value(&env, "MODE").as_deref(), Some("casual"));
    }

    #[test]
    fn pod_fields_are_what_this_room_on_this_machine_has() {
        let field =
            |path: &str| serde_json::json!({"valueFrom": {"fieldRef": {"fieldPath": path}}});
        let vars = [
            ("NAME", "metadata.name", "arena-1"),
            ("NAMESPACE", "metadata.namespace", "arena"),
            ("POD_IP", "status.podIP", "127.0.0.1"),
            ("HOST_IP", "status.hostIP", "127.0.0.1"),
            ("TEAM", "metadata.labels['team']", "arena"),
            ("NO_LABEL", "metadata.labels['absent']", ""),
            ("OWNER", "metadata.annotations['owner']", "arena-team"),
            ("PRUNE", "metadata.annotations['troupe.dev/prune']", ""),
        ];
        let env: Vec<serde_json::Value> = vars
            .iter()
            .map(|(name, path, _)| {
                let mut v = field(path);
                v["name"] = (*name).into();
                v
            })
            .collect();
        let got = env_of(serde_json::json!({"env": env}), None).unwrap();
        for (name, path, want) in vars {
            assert_eq!(value(&got, name).as_deref(), Some(want), "{path}");
        }

        let err = env_of(
            serde_json::json!({"env": [{"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}}]}),
            None,
        )
        .unwrap_err();
        assert_eq!(err.place, "container server, variable UID");
        assert!(err.problem.contains("\"metadata.uid\""), "{err}");
    }

    #[test]
    fn resources_are_the_containers_rounded_up_after_the_divisor() {
        let res = |resource: &str, divisor: Option<&str>, container: Option<&str>| {
            let mut sel = serde_json::json!({"resource": resource});
            if let Some(d) = divisor {
                sel["divisor"] = d.into();
            }
            if let Some(c) = container {
                sel["containerName"] = c.into();
            }
            serde_json::json!({"resourceFieldRef": sel})
        };
        let table: &[(&str, serde_json::Value, serde_json::Value, &str)] = &[
            (
                "cores, rounded up",
                serde_json::json!({"requests": {"cpu": "500m"}}),
                res("requests.cpu", None, None),
                "1",
            ),
            (
                "millicores",
                serde_json::json!({"requests": {"cpu": "500m"}}),
                res("requests.cpu", Some("1m"), None),
                "500",
            ),
            (
                "memory in bytes",
                serde_json::json!({"limits": {"memory": "1Gi"}}),
                res("limits.memory", None, None),
                "1073741824",
            ),
            (
                "memory in Mi",
                serde_json::json!({"limits": {"memory": "1Gi"}}),
                res("limits.memory", Some("1Mi"), None),
                "1024",
            ),
            (
                "the Kubernetes form",
                serde_json::json!({"resources": {"limits": {"cpu": "2"}}}),
                res("limits.cpu", Some("1m"), None),
                "2000",
            ),
            (
                "a request defaults to its limit",
                serde_json::json!({"limits": {"memory": "512Mi"}}),
                res("requests.memory", Some("1Mi"), None),
                "512",
            ),
            (
                "no request and no limit: none",
                serde_json::json!({}),
                res("requests.cpu", None, None),
                "0",
            ),
            (
                "no limit: the machine's CPUs",
                serde_json::json!({}),
                res("limits.cpu", None, None),
                "8",
            ),
            (
                "no limit: the machine's memory",
                serde_json::json!({}),
                res("limits.memory", Some("1Gi"), None),
                "16",
            ),
            (
                "another container by name",
                serde_json::json!({}),
                res("limits.cpu", Some("1m"), Some("sidecar")),
                "250",
            ),
            (
                "hugepages",
                serde_json::json!({"limits": {"hugepages-2Mi": "4Mi"}}),
                res("limits.hugepages-2Mi", Some("2Mi"), None),
                "2",
            ),
        ];
        for (case, resources, from, want) in table {
            let mut container = resources.clone();
            container["env"] = serde_json::json!([{"name": "R", "valueFrom": from}]);
            let env = env_of(container, None).unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(value(&env, "R").as_deref(), Some(*want), "{case}");
        }

        for (from, problem) in [
            (
                res("limits.ephemeral-storage", None, None),
                "limits.ephemeral-storage of container server is not set",
            ),
            (
                res("limits.gpu", None, None),
                "\"limits.gpu\" is not a resource",
            ),
            (res("limits.cpu", None, Some("nope")), "container \"nope\""),
            (res("limits.cpu", Some("0"), None), "divisor \"0\""),
        ] {
            let container = serde_json::json!({"env": [{"name": "R", "valueFrom": from}]});
            let err = env_of(container, None).unwrap_err();
            assert!(err.problem.contains(problem), "{err}");
        }
    }

    #[test]
    fn local_env_reads_resources_of_the_first_container_and_says_where_it_failed() {
        let (req, local) = request(
            serde_json::json!({"limits": {"cpu": "3"}}),
            serde_json::json!([
                {"name": "CPUS", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "k", "key": "k"}}},
            ]),
        );
        let err = room_env(&req, &local, &node(None), &[]).unwrap_err();
        assert_eq!(err.place, "local.env, variable KEY");
        let dir = config_dir(&[("secrets/k/k", "v")]);
        let env = room_env(&req, &local, &node(Some(dir.path())), &[])
            .unwrap()
            .vars;
        assert_eq!(value(&env, "CPUS").as_deref(), Some("3"));
        assert_eq!(value(&env, "KEY").as_deref(), Some("v"));
    }

    #[test]
    fn a_volume_file_is_not_available_locally() {
        let err = env_of(
            serde_json::json!({"env": [{"name": "F", "valueFrom": {"fileKeyRef": {"volumeName": "cfg", "path": "env", "key": "F"}}}]}),
            None,
        )
        .unwrap_err();
        assert!(err.problem.contains("volume \"cfg\""), "{err}");
    }

    #[test]
    fn the_machines_memory_is_read_from_meminfo() {
        assert_eq!(
            mem_total("MemTotal:       16303612 kB\nMemFree: 1 kB\n"),
            Some(16303612 * 1024)
        );
        assert_eq!(mem_total("nothing"), None);
    }
}
