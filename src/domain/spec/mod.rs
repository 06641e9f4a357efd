//! Scheduler spec: the YAML a team commits, as typed data.
//!
//! Owns the shape of a scheduler document and the split between a scheduler's *template* (everything
//! that shapes a room: a change needs a rollout) and its in-place settings (replicas, autoscaling,
//! timeouts, forwarders). Must always hold: deserialising refuses unknown fields (Troupe's types
//! as they parse, the Kubernetes types of pass-through pod fields through the loader), and every
//! value that reaches the planner has passed [`validate`]. The pod fields Troupe does not own are
//! k8s-openapi's plain data types (no client, no I/O); nothing here imports kube, axum or git2.

mod affinity;
pub mod load;
mod local;
pub mod schema;
mod units;
pub mod validate;
pub mod yaml_index;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1 as k8s;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KubeQuantity;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use affinity::*;
pub use load::{Declared, Document, LoadError, Located, SourceFile, load_documents};
pub use local::ignored_locally;
pub use schema::scheduler_schema;
pub use units::{Duration, Quantity, Surge};
pub use validate::{Issue, validate};

/// One fleet of identical rooms, as declared in one YAML document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scheduler {
    /// DNS-1123 label, unique across the repository; also the namespace on Kubernetes.
    pub name: String,
    /// The game this fleet serves; allocation across schedulers picks by game.
    pub game: String,
    /// Number of rooms when autoscaling is off. Ignored (and not drift) when autoscaling is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms_replicas: Option<u32>,
    /// Rollout surge: how many rooms above the target may exist while replacing rooms.
    #[serde(default)]
    pub max_surge: Surge,
    /// Host ports handed to rooms, `start` inclusive, `end` exclusive.
    pub port_range: PortRange,
    #[serde(default)]
    pub match_allocation: MatchAllocation,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The room template: what every room of this scheduler runs.
    pub spec: RoomSpec,
    /// How the embedded local runtime starts a room (the image is ignored there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwarders: Vec<Forwarder>,
}

/// Host port range handed to rooms (`end` exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    /// Number of ports in the range; zero when it is upside down.
    pub fn len(&self) -> u32 {
        u32::from(self.end).saturating_sub(u32::from(self.start))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, port: u16) -> bool {
        port >= self.start && port < self.end
    }

    /// Every port of the range once, round-robin from the `offset`-th (taken modulo the range's
    /// length), wrapping around: the order both runtimes hand host ports out in, so that a port a
    /// room just freed is the last to be handed out again.
    pub fn scan_from(self, offset: u32) -> impl Iterator<Item = u16> {
        let len = self.len();
        (0..len).map(move |i| {
            let port = u32::from(self.start) + (offset.wrapping_add(i) % len);
            u16::try_from(port).expect("a port inside the range fits u16")
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MatchAllocation {
    /// Matches one room can hold at once (at least 1).
    pub max_matches: u32,
}

impl Default for MatchAllocation {
    fn default() -> Self {
        Self { max_matches: 1 }
    }
}

/// Per-scheduler room timeouts; changing them applies in place, without replacing rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timeouts {
    /// How long a room may stay `pending` (created, not running).
    #[serde(default = "Timeouts::default_pending")]
    pub pending: Duration,
    /// How long a running room may go without its first ready ping.
    #[serde(default = "Timeouts::default_unready")]
    pub unready: Duration,
    /// How long a room may go without pinging before it is considered dead.
    #[serde(default = "Timeouts::default_ping")]
    pub ping: Duration,
    /// How long a room may stay `terminating` before it is killed.
    #[serde(default = "Timeouts::default_terminating")]
    pub terminating: Duration,
}

impl Timeouts {
    fn default_pending() -> Duration {
        Duration::from_secs(120)
    }
    fn default_unready() -> Duration {
        Duration::from_secs(120)
    }
    fn default_ping() -> Duration {
        Duration::from_secs(60)
    }
    fn default_terminating() -> Duration {
        Duration::from_secs(120)
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            pending: Self::default_pending(),
            unready: Self::default_unready(),
            ping: Self::default_ping(),
            terminating: Self::default_terminating(),
        }
    }
}

/// A struct of Troupe's own fields (each with its serde attributes) followed by fields of the
/// Kubernetes type `$k8s_type` that Troupe passes through as given: each is `Option` of Kubernetes'
/// own type under Kubernetes' own name (those in `boxed` behind a `Box`: large structs, mostly
/// unset, in a template that is cloned and moved often), absent from the serialized form when
/// unset (so a
/// template that sets none of them keeps its version). `pod_fields` is the Kubernetes object
/// with those fields set and every other one left at its default: one list for both.
macro_rules! with_pod_fields {
    (
        $(#[$m:meta])*
        pub struct $name:ident => $k8s_type:ty {
            $($(#[$om:meta])* $own:ident : $own_ty:ty,)*
        }
        pass { $($pass:ident : $pass_ty:ty,)* }
        boxed { $($big:ident : $big_ty:ty,)* }
    ) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name {
            $($(#[$om])* pub $own: $own_ty,)*
            $(
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $pass: Option<$pass_ty>,
            )*
            $(
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $big: Option<Box<$big_ty>>,
            )*
        }

        impl $name {
            /// The Kubernetes fields passed through as given, every other one at its default.
            pub fn pod_fields(&self) -> $k8s_type {
                let mut k = <$k8s_type>::default();
                $(k.$pass = self.$pass.clone();)*
                $(k.$big = self.$big.as_deref().cloned();)*
                k
            }

            /// Serde names of the fields passed through to Kubernetes as given.
            pub const POD_FIELDS: &'static [&'static str] =
                &[$(stringify!($pass),)* $(stringify!($big)),*];
        }
    };
}

/// `image_pull_policy` → `imagePullPolicy`: a field's serde name from its Rust name (what
/// `rename_all = "camelCase"` does), for the names in `POD_FIELDS`.
fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

with_pod_fields! {
    /// The room template proper: a Kubernetes `PodSpec`. Troupe reads and owns the fields before
    /// `pass` (some in a shorter form than Kubernetes'); every other `PodSpec` field is taken
    /// under its Kubernetes name and type and put on the room's pod as given.
    pub struct RoomSpec => k8s::PodSpec {
        /// Time between SIGTERM and SIGKILL when a room is stopped (Kubernetes' form,
        /// `terminationGracePeriodSeconds`, is accepted too; not both).
        #[serde(default = "RoomSpec::default_grace")]
        termination_grace_period: Duration,
        containers: Vec<Container>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        node_selector: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        affinity: Option<Affinity>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tolerations: Vec<Toleration>,
        #[serde(default)]
        host_network: bool,
    }
    pass {
        active_deadline_seconds: i64,
        automount_service_account_token: bool,
        dns_policy: String,
        enable_service_links: bool,
        ephemeral_containers: Vec<k8s::EphemeralContainer>,
        host_aliases: Vec<k8s::HostAlias>,
        host_ipc: bool,
        host_pid: bool,
        host_users: bool,
        hostname: String,
        hostname_override: String,
        image_pull_secrets: Vec<k8s::LocalObjectReference>,
        init_containers: Vec<k8s::Container>,
        node_name: String,
        overhead: BTreeMap<String, KubeQuantity>,
        preemption_policy: String,
        priority: i32,
        priority_class_name: String,
        readiness_gates: Vec<k8s::PodReadinessGate>,
        resource_claims: Vec<k8s::PodResourceClaim>,
        restart_policy: String,
        runtime_class_name: String,
        scheduler_name: String,
        scheduling_gates: Vec<k8s::PodSchedulingGate>,
        service_account: String,
        service_account_name: String,
        set_hostname_as_fqdn: bool,
        share_process_namespace: bool,
        subdomain: String,
        termination_grace_period_seconds: i64,
        topology_spread_constraints: Vec<k8s::TopologySpreadConstraint>,
        volumes: Vec<k8s::Volume>,
    }
    boxed {
        dns_config: k8s::PodDNSConfig,
        os: k8s::PodOS,
        resources: k8s::ResourceRequirements,
        security_context: k8s::PodSecurityContext,
    }
}

impl RoomSpec {
    fn default_grace() -> Duration {
        Duration::from_secs(30)
    }

    /// Time between SIGTERM and SIGKILL when a room is stopped, in whichever form it was given.
    pub fn grace(&self) -> std::time::Duration {
        match self.termination_grace_period_seconds {
            Some(s) => std::time::Duration::from_secs(s.max(0) as u64),
            None => self.termination_grace_period.as_std(),
        }
    }

    /// Every declared container port, in declaration order; each gets one host port.
    pub fn ports(&self) -> impl Iterator<Item = &ContainerPort> {
        self.containers.iter().flat_map(|c| c.ports.iter())
    }
}

with_pod_fields! {
    /// One container of the room: a Kubernetes `Container`. Troupe reads the fields before
    /// `pass` (resources also in the short form `requests`/`limits`, ports with Troupe's names);
    /// every other `Container` field is passed through as given.
    pub struct Container => k8s::Container {
        name: String,
        image: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        command: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        args: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        env: Vec<EnvVar>,
        /// Short form of `resources.requests`.
        #[serde(default, skip_serializing_if = "Resources::is_empty")]
        requests: Resources,
        /// Short form of `resources.limits`.
        #[serde(default, skip_serializing_if = "Resources::is_empty")]
        limits: Resources,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ports: Vec<ContainerPort>,
    }
    pass {
        env_from: Vec<k8s::EnvFromSource>,
        image_pull_policy: String,
        resize_policy: Vec<k8s::ContainerResizePolicy>,
        restart_policy: String,
        restart_policy_rules: Vec<k8s::ContainerRestartRule>,
        stdin: bool,
        stdin_once: bool,
        termination_message_path: String,
        termination_message_policy: String,
        tty: bool,
        volume_devices: Vec<k8s::VolumeDevice>,
        volume_mounts: Vec<k8s::VolumeMount>,
        working_dir: String,
    }
    boxed {
        lifecycle: k8s::Lifecycle,
        liveness_probe: k8s::Probe,
        readiness_probe: k8s::Probe,
        resources: k8s::ResourceRequirements,
        security_context: k8s::SecurityContext,
        startup_probe: k8s::Probe,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: String,
    /// Where the value comes from instead (a Secret, a ConfigMap, a field of the pod, a
    /// resource of the container): Kubernetes' `EnvVarSource`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<k8s::EnvVarSource>,
}

/// Amounts of resources by name (`cpu`, `memory`, `nvidia.com/gpu`, `hugepages-2Mi`, …).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Resources(pub BTreeMap<String, Quantity>);

impl Resources {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The amount of `name`, when set.
    pub fn get(&self, name: &str) -> Option<&Quantity> {
        self.0.get(name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerPort {
    /// Name the room sees in its environment (`TROUPE_PORT_<NAME>`).
    pub name: String,
    #[serde(default)]
    pub protocol: Protocol,
    /// Container port (Kubernetes' name, `containerPort`, is accepted too); the host port is
    /// picked from the scheduler's `portRange`.
    #[serde(alias = "containerPort")]
    pub port: u16,
    /// Troupe's: every declared port gets a host port from `portRange`. Setting it is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u32>,
    /// Host address to bind the host port to (Kubernetes' `hostIP`).
    #[serde(default, rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Protocol {
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "SCTP")]
    Sctp,
}

/// How the local runtime starts a room: a command line run as a child process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalSpec {
    /// Program and arguments. `troupe` as the program means this very binary.
    pub command: Vec<String>,
    /// Extra environment for the process, on top of the containers' `env` and Troupe's variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Autoscaling {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub min: u32,
    /// Upper bound; `-1` means no ceiling.
    pub max: i64,
    /// Minimum time between two scale-downs.
    #[serde(default = "Autoscaling::default_cooldown")]
    pub cooldown: Duration,
    pub policy: Policy,
}

impl Autoscaling {
    fn default_cooldown() -> Duration {
        Duration::from_secs(60)
    }

    /// The most rooms the autoscaler may ask for: `None` for `max: -1` (no ceiling).
    pub fn ceiling(&self) -> Option<u32> {
        (self.max >= 0).then(|| u32::try_from(self.max).unwrap_or(u32::MAX))
    }

    /// `n` kept within `min`..=`max`; where the two disagree (validation refuses it), `min` wins.
    /// The one place the bounds are applied: the autoscaler, the planner and the executor all
    /// call it.
    pub fn clamp(&self, n: u32) -> u32 {
        let max = self.ceiling().unwrap_or(u32::MAX);
        n.clamp(self.min, max.max(self.min))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    #[serde(rename = "type")]
    pub kind: PolicyKind,
    #[serde(default)]
    pub parameters: PolicyParameters,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PolicyKind {
    RoomOccupancy,
    FixedBuffer,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_occupancy: Option<RoomOccupancy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_buffer: Option<FixedBuffer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoomOccupancy {
    /// Fraction of match slots to keep free, in (0, 1).
    pub ready_target: f64,
    /// Scale down only when the needed free slots over the actual free slots is at most this.
    pub down_threshold: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FixedBuffer {
    /// Free rooms to keep above occupied plus allocated ones.
    pub amount: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Forwarder {
    pub name: String,
    pub url: String,
    #[serde(default = "Forwarder::default_timeout")]
    pub timeout: Duration,
}

impl Forwarder {
    fn default_timeout() -> Duration {
        Duration::from_millis(500)
    }
}

/// Everything that shapes a room. Two schedulers with equal templates run identical rooms.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Template<'a> {
    pub port_range: &'a PortRange,
    pub labels: &'a BTreeMap<String, String>,
    pub annotations: BTreeMap<&'a str, &'a str>,
    pub spec: &'a RoomSpec,
    pub local: &'a Option<LocalSpec>,
}

/// Annotations with this prefix are settings for Troupe itself (e.g. `troupe.dev/prune`), not
/// part of the room template: changing them never rolls rooms out.
pub const CONTROL_ANNOTATION_PREFIX: &str = "troupe.dev/";

impl Scheduler {
    /// The smallest valid scheduler called `name`: game `name`, no room (`roomsReplicas: 0`),
    /// one container `server` with image `example/server:1` and no ports, ports 40000..40100,
    /// every other field at its default. A starting point for tests, benchmarks and
    /// simulations, which set what they are about.
    pub fn minimal(name: &str) -> Self {
        serde_json::from_value(serde_json::json!({
            "name": name,
            "game": name,
            "roomsReplicas": 0,
            "portRange": {"start": 40000, "end": 40100},
            "spec": {"containers": [{"name": "server", "image": "example/server:1"}]},
        }))
        .expect("the minimal scheduler deserialises")
    }

    /// The part of the scheduler that shapes rooms; a change to it needs a rollout.
    pub fn template(&self) -> Template<'_> {
        Template {
            port_range: &self.port_range,
            labels: &self.labels,
            annotations: self.room_annotations(),
            spec: &self.spec,
            local: &self.local,
        }
    }

    /// The annotations rooms carry: all but Troupe's own settings.
    pub fn room_annotations(&self) -> BTreeMap<&str, &str> {
        self.annotations
            .iter()
            .filter(|(k, _)| !k.starts_with(CONTROL_ANNOTATION_PREFIX))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// Short content hash of the template: the scheduler's *version*. Deterministic, so a restarted
    /// controller computes the same version for the same YAML.
    pub fn version(&self) -> String {
        let json = serde_json::to_vec(&self.template()).expect("template serialises");
        let digest = Sha256::digest(&json);
        hex::encode(&digest[..4])
    }

    /// Whether an autoscaler, not git, owns the room count.
    pub fn autoscaled(&self) -> bool {
        self.autoscaling.as_ref().is_some_and(|a| a.enabled)
    }

    /// Room count git asks for when autoscaling is off (`None` when autoscaled).
    pub fn fixed_replicas(&self) -> Option<u32> {
        if self.autoscaled() {
            None
        } else {
            Some(self.rooms_replicas.unwrap_or(0))
        }
    }

    /// Rooms the scheduler should have when applied over a fleet whose target is `current`
    /// (`None`: a new scheduler): git's `roomsReplicas`, or for an autoscaled scheduler the
    /// autoscaler's current target kept within the bounds (a new one starts at `min`). The
    /// planner and the executor both ask here, so a plan shows the count that is applied.
    pub fn target_rooms(&self, current: Option<u32>) -> u32 {
        match self.autoscaling.as_ref().filter(|a| a.enabled) {
            Some(a) => a.clamp(current.unwrap_or(0)),
            None => self.rooms_replicas.unwrap_or(0),
        }
    }

    /// The surge as a room count for a fleet of `target` rooms: never less than one.
    pub fn surge_rooms(&self, target: u32) -> u32 {
        self.max_surge.rooms(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimal_scheduler_is_valid() {
        let s = Scheduler::minimal("arena");
        assert_eq!(validate(&s), Vec::<Issue>::new());
        assert_eq!(s.target_rooms(None), 0);
    }

    /// A version is a promise: the same YAML runs the same rooms across releases, so a controller
    /// upgraded over a running fleet never rolls it out. The short forms of every release keep
    /// their hashes (pinned here from the release before the whole pod was accepted).
    #[test]
    fn existing_yaml_keeps_its_version_across_releases() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fleets-example");
        let mut files: Vec<SourceFile> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| load::is_scheduler_file(&e.file_name().to_string_lossy()))
            .map(|e| SourceFile {
                path: e.file_name().to_string_lossy().into_owned(),
                contents: std::fs::read_to_string(e.path()).unwrap(),
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let versions: Vec<(String, String)> = load_documents(&files)
            .unwrap()
            .into_iter()
            .map(|d| (d.scheduler.name.clone(), d.scheduler.version()))
            .collect();
        let every_short_form = load_documents(&[SourceFile {
            path: "full.yaml".into(),
            contents: EVERY_SHORT_FORM.into(),
        }])
        .unwrap();
        let full = every_short_form[0].scheduler.version();
        let want = [
            ("arena-eu", "557201af"),
            ("arena-party", "24d00fe3"),
            ("racer-us", "9636494c"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let pinned: Vec<(String, String)> = versions
            .into_iter()
            .filter(|(name, _)| want.iter().any(|(n, _)| n == name))
            .collect();
        assert_eq!(pinned, want);
        assert_eq!(full, "f67534bb", "every short form at once");
    }

    const EVERY_SHORT_FORM: &str = r#"
name: full
game: arena
roomsReplicas: 2
portRange: {start: 42000, end: 42100}
labels: {team: arena}
annotations: {owner: arena-team, troupe.dev/prune: "true"}
spec:
  terminationGracePeriod: 45s
  hostNetwork: false
  nodeSelector: {pool: game}
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
          - matchExpressions: [{key: zone, operator: In, values: [a, b]}]
      preferredDuringSchedulingIgnoredDuringExecution:
        - {weight: 10, preference: {matchExpressions: [{key: ssd, operator: Exists}]}}
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 5
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector: {matchLabels: {team: arena}}
  tolerations:
    - {key: dedicated, operator: Equal, value: game, effect: NoSchedule}
    - {operator: Exists, effect: NoExecute, tolerationSeconds: 30}
  containers:
    - name: server
      image: registry.example/arena:1.4.2
      command: [/server]
      args: [--port, "7777"]
      env: [{name: MODE, value: ranked}, {name: EMPTY}]
      requests: {cpu: 500m, memory: 512Mi}
      limits: {cpu: "1", memory: 1Gi}
      ports:
        - {name: game, protocol: UDP, port: 7777}
        - {name: http, port: 8080}
    - name: metrics
      image: registry.example/metrics:2
local:
  command: [troupe, demo-room]
  env: [{name: DEMO, value: "1"}]
"#;
}
