//! Semantic checks on one parsed scheduler: everything serde's types cannot say (ranges, names,
//! uniqueness, consistency between fields).
//!
//! Must hold: [`validate`] is pure and total — it never panics on any value serde accepted — and
//! every [`Issue`] names the offending field with the path spelling of [`super::yaml_index`], so
//! the loader can put a line and column on it. Messages say what is wrong *and* what is expected.
//! Checks that need more than one scheduler (duplicate names) live in the loader.

use std::collections::{BTreeMap, HashMap};

use super::yaml_index::{push_index, push_key};
use super::{
    Affinity, Autoscaling, Container, EnvVar, LabelSelector, NodeSelectorTerm, PodAffinityTerm,
    PolicyKind, RoomSpec, Scheduler, Surge, Toleration,
};

/// One semantic problem: field path and message; the loader adds the location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub path: String,
    pub message: String,
    /// The problem is the mapping key at `path` (a label key), not its value.
    pub on_key: bool,
}

/// Longest DNS-1123 label (RFC 1123; Kubernetes names and namespaces).
const DNS_LABEL_MAX: usize = 63;
/// Longest DNS-1123 subdomain (label-key prefixes).
const DNS_SUBDOMAIN_MAX: usize = 253;
/// Longest Kubernetes port name (IANA service name).
const PORT_NAME_MAX: usize = 15;
/// Longest name part of a label key, and longest label value.
const LABEL_PART_MAX: usize = 63;
/// Environment variables Troupe sets itself (`TROUPE_ROOM_TOKEN`, ports...) start with this;
/// letting a spec set them would let it impersonate another room.
const RESERVED_ENV_PREFIX: &str = "TROUPE_";
/// Labels with this prefix are Troupe's own on every room (scheduler, room, version, status).
const TROUPE_LABEL_PREFIX: &str = "troupe.dev/";
/// The label every object Troupe manages carries.
const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Operators of a node selector requirement.
const NODE_OPERATORS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"];
/// Operators of a label selector requirement.
const LABEL_OPERATORS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist"];
/// Kubernetes weights of preferred scheduling terms are in 1..=100.
const WEIGHT_RANGE: std::ops::RangeInclusive<i32> = 1..=100;

/// Check one scheduler; an empty result means it is valid on its own.
pub fn validate(s: &Scheduler) -> Vec<Issue> {
    let mut c = Checker::default();
    c.scheduler(s);
    c.issues
}

#[derive(Default)]
struct Checker {
    issues: Vec<Issue>,
}

impl Checker {
    fn fail(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.issues.push(Issue {
            path: path.into(),
            message: message.into(),
            on_key: false,
        });
    }

    fn scheduler(&mut self, s: &Scheduler) {
        self.dns_label("name", &s.name, "scheduler name");
        if s.game.trim().is_empty() {
            self.fail(
                "game",
                "game must not be empty: name the game this fleet serves, e.g. `game: arena`",
            );
        }
        self.ports_and_range(s);
        if let Surge::Percent(p) = s.max_surge
            && !(1..=100).contains(&p)
        {
            self.fail(
                "maxSurge",
                format!("maxSurge {p}% must be between 1% and 100% (or a room count such as 3)"),
            );
        }
        if s.match_allocation.max_matches < 1 {
            self.fail(
                "matchAllocation.maxMatches",
                "matchAllocation.maxMatches must be at least 1",
            );
        }
        for (field, d) in [
            ("pending", s.timeouts.pending),
            ("unready", s.timeouts.unready),
            ("ping", s.timeouts.ping),
            ("terminating", s.timeouts.terminating),
        ] {
            if d.as_std().is_zero() {
                self.fail(
                    format!("timeouts.{field}"),
                    format!("timeouts.{field} must be greater than zero, e.g. 60s"),
                );
            }
        }
        self.labels("labels", &s.labels);
        self.annotations("annotations", &s.annotations);
        self.containers(s);
        self.pod_fields(s);
        self.placement(s);
        if let Some(local) = &s.local {
            if local.command.is_empty() {
                self.fail(
                    "local.command",
                    "local.command must name a program to run, e.g. [\"troupe\", \"demo-room\"]",
                );
            } else if local.command[0].trim().is_empty() {
                self.fail(
                    "local.command[0]",
                    "local.command[0] must name a program, not be empty",
                );
            }
            self.env("local.env", &local.env);
        }
        if let Some(a) = &s.autoscaling {
            self.autoscaling(a);
        }
        if !s.autoscaled() && s.rooms_replicas.is_none() {
            self.fail(
                "roomsReplicas",
                "roomsReplicas is required when autoscaling is off: set the number of rooms to run",
            );
        }
        self.forwarders(s);
    }

    fn ports_and_range(&mut self, s: &Scheduler) {
        let range = s.port_range;
        if range.start == 0 {
            self.fail("portRange.start", "portRange.start must be at least 1");
        }
        if range.end <= range.start {
            self.fail(
                "portRange.end",
                format!(
                    "portRange.end ({}) must be greater than portRange.start ({}); end is exclusive",
                    range.end, range.start
                ),
            );
        } else {
            let needed = s.spec.ports().count();
            if (range.len() as usize) < needed {
                self.fail(
                    "portRange",
                    format!(
                        "portRange {}..{} holds {} port(s) but one room needs {needed} (one per container port)",
                        range.start,
                        range.end,
                        range.len()
                    ),
                );
            }
        }
        let mut seen: HashMap<&str, String> = HashMap::new();
        for (ci, container) in s.spec.containers.iter().enumerate() {
            let base = push_key(&push_index("spec.containers", ci), "ports");
            for (pi, port) in container.ports.iter().enumerate() {
                let path = push_index(&base, pi);
                self.port_name(&push_key(&path, "name"), &port.name);
                if port.port == 0 {
                    self.fail(push_key(&path, "port"), "port must be between 1 and 65535");
                }
                if let Some(first) = seen.get(port.name.as_str()) {
                    self.fail(
                        push_key(&path, "name"),
                        format!("port name {:?} is already used by {first}; port names must be unique across containers", port.name),
                    );
                } else {
                    seen.insert(&port.name, path);
                }
            }
        }
    }

    fn containers(&mut self, s: &Scheduler) {
        if s.spec.containers.is_empty() {
            self.fail(
                "spec.containers",
                "spec.containers must declare at least one container",
            );
        }
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, container) in s.spec.containers.iter().enumerate() {
            let path = push_index("spec.containers", i);
            self.dns_label(&push_key(&path, "name"), &container.name, "container name");
            if let Some(first) = names.get(container.name.as_str()) {
                self.fail(
                    push_key(&path, "name"),
                    format!("container name {:?} is already used by spec.containers[{first}]; container names must be unique", container.name),
                );
            } else {
                names.insert(&container.name, i);
            }
            if container.image.trim().is_empty() {
                self.fail(
                    push_key(&path, "image"),
                    "image must not be empty, e.g. registry.example/arena:1.4.2",
                );
            }
            self.env(&push_key(&path, "env"), &container.env);
            self.requests_within_limits(&path, container);
        }
    }

    /// The Kubernetes pod fields passed through: none may take what Troupe owns (host ports,
    /// its variables, the restart policy) or say one thing twice (a short form and its
    /// Kubernetes form).
    fn pod_fields(&mut self, s: &Scheduler) {
        let spec = &s.spec;
        if spec.termination_grace_period_seconds.is_some()
            && spec.termination_grace_period != RoomSpec::default_grace()
        {
            self.fail(
                "spec.terminationGracePeriodSeconds",
                "set terminationGracePeriod or terminationGracePeriodSeconds, not both",
            );
        }
        if spec.termination_grace_period_seconds.is_some_and(|s| s < 0) {
            self.fail(
                "spec.terminationGracePeriodSeconds",
                "terminationGracePeriodSeconds must not be negative",
            );
        }
        if let Some(policy) = spec.restart_policy.as_deref().filter(|p| *p != "Never") {
            self.fail(
                "spec.restartPolicy",
                format!("restartPolicy {policy:?}: a room that ends is replaced, never restarted in place; remove it (Troupe sets Never)"),
            );
        }
        if spec.ephemeral_containers.is_some() {
            self.fail(
                "spec.ephemeralContainers",
                "ephemeralContainers cannot be set when a pod is created (add them to a running pod with kubectl debug)",
            );
        }
        for (ci, c) in spec.containers.iter().enumerate() {
            let path = push_index("spec.containers", ci);
            if c.resources.is_some() && !(c.requests.is_empty() && c.limits.is_empty()) {
                self.fail(
                    push_key(&path, "resources"),
                    "set resources or the short forms requests/limits, not both",
                );
            }
            for (pi, port) in c.ports.iter().enumerate() {
                if port.host_port.is_some() {
                    self.fail(
                        push_key(&push_index(&push_key(&path, "ports"), pi), "hostPort"),
                        "hostPort is Troupe's: every declared port gets a host port from portRange; remove it",
                    );
                }
            }
            for (vi, var) in c.env.iter().enumerate() {
                if var.value_from.is_some() && !var.value.is_empty() {
                    self.fail(
                        push_key(&push_index(&push_key(&path, "env"), vi), "valueFrom"),
                        "set value or valueFrom, not both",
                    );
                }
            }
        }
        for (ci, c) in spec.init_containers.iter().flatten().enumerate() {
            let path = push_index("spec.initContainers", ci);
            self.dns_label(&push_key(&path, "name"), &c.name, "container name");
            if spec.containers.iter().any(|o| o.name == c.name) {
                self.fail(
                    push_key(&path, "name"),
                    format!("container name {:?} is already used in spec.containers; container names must be unique", c.name),
                );
            }
            for (pi, port) in c.ports.iter().flatten().enumerate() {
                if port.host_port.is_some() {
                    self.fail(
                        push_key(&push_index(&push_key(&path, "ports"), pi), "hostPort"),
                        "hostPort is Troupe's: only the ports of spec.containers get host ports, from portRange; remove it",
                    );
                }
            }
            for (vi, var) in c.env.iter().flatten().enumerate() {
                if var.name.starts_with(RESERVED_ENV_PREFIX) {
                    self.fail(
                        push_key(&push_index(&push_key(&path, "env"), vi), "name"),
                        format!("environment variable {:?} is reserved: Troupe sets the {RESERVED_ENV_PREFIX}* variables itself", var.name),
                    );
                }
            }
        }
    }

    fn requests_within_limits(&mut self, path: &str, c: &Container) {
        for (name, req) in &c.requests.0 {
            if let Some(lim) = c.limits.get(name)
                && req.value() > lim.value()
            {
                self.fail(
                    format!("{path}.requests.{name}"),
                    format!("requests.{name} ({req}) must not exceed limits.{name} ({lim})"),
                );
            }
        }
    }

    fn env(&mut self, path: &str, env: &[EnvVar]) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, var) in env.iter().enumerate() {
            let name_path = push_key(&push_index(path, i), "name");
            if !is_env_name(&var.name) {
                self.fail(
                    &name_path,
                    format!(
                        "environment variable name {:?} is invalid: expected letters, digits and `_`, not starting with a digit",
                        var.name
                    ),
                );
            } else if var.name.starts_with(RESERVED_ENV_PREFIX) {
                self.fail(
                    &name_path,
                    format!("environment variable {:?} is reserved: Troupe sets the {RESERVED_ENV_PREFIX}* variables itself", var.name),
                );
            }
            if let Some(first) = seen.get(var.name.as_str()) {
                self.fail(
                    &name_path,
                    format!(
                        "environment variable {:?} is already set by {path}[{first}]",
                        var.name
                    ),
                );
            } else {
                seen.insert(&var.name, i);
            }
        }
    }

    fn autoscaling(&mut self, a: &Autoscaling) {
        if a.max < -1 {
            self.fail(
                "autoscaling.max",
                format!(
                    "autoscaling.max ({}) must be -1 (no ceiling) or at least 0",
                    a.max
                ),
            );
        } else if a.max != -1 && i64::from(a.min) > a.max {
            self.fail(
                "autoscaling.min",
                format!(
                    "autoscaling.min ({}) must not exceed autoscaling.max ({})",
                    a.min, a.max
                ),
            );
        }
        let params = &a.policy.parameters;
        match a.policy.kind {
            PolicyKind::RoomOccupancy => match &params.room_occupancy {
                None => self.fail(
                    "autoscaling.policy.parameters.roomOccupancy",
                    "policy type roomOccupancy needs parameters.roomOccupancy: {readyTarget: 0.3, downThreshold: 0.9}",
                ),
                Some(p) => {
                    let base = "autoscaling.policy.parameters.roomOccupancy";
                    if !(p.ready_target > 0.0 && p.ready_target < 1.0) {
                        self.fail(
                            format!("{base}.readyTarget"),
                            format!("readyTarget ({}) must be greater than 0 and less than 1, e.g. 0.3", p.ready_target),
                        );
                    }
                    if !(p.down_threshold > 0.0 && p.down_threshold <= 1.0) {
                        self.fail(
                            format!("{base}.downThreshold"),
                            format!("downThreshold ({}) must be greater than 0 and at most 1, e.g. 0.9", p.down_threshold),
                        );
                    }
                }
            },
            PolicyKind::FixedBuffer => match &params.fixed_buffer {
                None => self.fail(
                    "autoscaling.policy.parameters.fixedBuffer",
                    "policy type fixedBuffer needs parameters.fixedBuffer: {amount: 5}",
                ),
                Some(p) if p.amount < 1 => self.fail(
                    "autoscaling.policy.parameters.fixedBuffer.amount",
                    "fixedBuffer.amount must be at least 1 free room",
                ),
                Some(_) => {}
            },
        }
    }

    fn forwarders(&mut self, s: &Scheduler) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, f) in s.forwarders.iter().enumerate() {
            let path = push_index("forwarders", i);
            if f.name.trim().is_empty() {
                self.fail(push_key(&path, "name"), "forwarder name must not be empty");
            } else if let Some(first) = seen.get(f.name.as_str()) {
                self.fail(
                    push_key(&path, "name"),
                    format!(
                        "forwarder name {:?} is already used by forwarders[{first}]",
                        f.name
                    ),
                );
            } else {
                seen.insert(&f.name, i);
            }
            let host = f
                .url
                .strip_prefix("http://")
                .or_else(|| f.url.strip_prefix("https://"));
            match host {
                None => self.fail(
                    push_key(&path, "url"),
                    format!(
                        "forwarder url {:?} must start with http:// or https://",
                        f.url
                    ),
                ),
                Some(rest) if rest.is_empty() || rest.starts_with('/') => self.fail(
                    push_key(&path, "url"),
                    format!(
                        "forwarder url {:?} must name a host, e.g. http://mm.internal/events",
                        f.url
                    ),
                ),
                Some(_) => {}
            }
            if f.timeout.as_std().is_zero() {
                self.fail(
                    push_key(&path, "timeout"),
                    "forwarder timeout must be greater than zero, e.g. 500ms",
                );
            }
        }
    }

    fn placement(&mut self, s: &Scheduler) {
        self.labels("spec.nodeSelector", &s.spec.node_selector);
        for (i, t) in s.spec.tolerations.iter().enumerate() {
            self.toleration(&push_index("spec.tolerations", i), t);
        }
        if let Some(affinity) = &s.spec.affinity {
            self.affinity("spec.affinity", affinity);
        }
    }

    fn toleration(&mut self, path: &str, t: &Toleration) {
        let operator = t.operator.as_deref().unwrap_or("Equal");
        if !matches!(operator, "Exists" | "Equal") {
            self.fail(
                push_key(path, "operator"),
                format!("toleration operator {operator:?} must be Exists or Equal"),
            );
        }
        if let Some(effect) = t.effect.as_deref()
            && !matches!(effect, "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute")
        {
            self.fail(
                push_key(path, "effect"),
                format!(
                    "toleration effect {effect:?} must be NoSchedule, PreferNoSchedule or NoExecute"
                ),
            );
        }
        let key = t.key.as_deref().unwrap_or("");
        if key.is_empty() && operator != "Exists" {
            self.fail(
                push_key(path, "operator"),
                "a toleration without a key must use operator Exists",
            );
        } else if !key.is_empty() {
            self.label_key(&push_key(path, "key"), key);
        }
        if operator == "Exists" && t.value.as_deref().is_some_and(|v| !v.is_empty()) {
            self.fail(
                push_key(path, "value"),
                "a toleration with operator Exists must not set a value",
            );
        }
    }

    fn affinity(&mut self, path: &str, a: &Affinity) {
        if let Some(node) = &a.node_affinity {
            let base = push_key(path, "nodeAffinity");
            if let Some(required) = &node.required_during_scheduling_ignored_during_execution {
                let terms = push_key(
                    &push_key(&base, "requiredDuringSchedulingIgnoredDuringExecution"),
                    "nodeSelectorTerms",
                );
                for (i, term) in required.node_selector_terms.iter().enumerate() {
                    self.node_selector_term(&push_index(&terms, i), term);
                }
            }
            let preferred = push_key(&base, "preferredDuringSchedulingIgnoredDuringExecution");
            for (i, p) in node
                .preferred_during_scheduling_ignored_during_execution
                .iter()
                .enumerate()
            {
                let item = push_index(&preferred, i);
                self.weight(&push_key(&item, "weight"), p.weight);
                self.node_selector_term(&push_key(&item, "preference"), &p.preference);
            }
        }
        for (field, pod) in [
            ("podAffinity", &a.pod_affinity),
            ("podAntiAffinity", &a.pod_anti_affinity),
        ] {
            let Some(pod) = pod else { continue };
            let base = push_key(path, field);
            let required = push_key(&base, "requiredDuringSchedulingIgnoredDuringExecution");
            for (i, term) in pod
                .required_during_scheduling_ignored_during_execution
                .iter()
                .enumerate()
            {
                self.pod_affinity_term(&push_index(&required, i), term);
            }
            let preferred = push_key(&base, "preferredDuringSchedulingIgnoredDuringExecution");
            for (i, w) in pod
                .preferred_during_scheduling_ignored_during_execution
                .iter()
                .enumerate()
            {
                let item = push_index(&preferred, i);
                self.weight(&push_key(&item, "weight"), w.weight);
                self.pod_affinity_term(&push_key(&item, "podAffinityTerm"), &w.pod_affinity_term);
            }
        }
    }

    fn weight(&mut self, path: &str, weight: i32) {
        if !WEIGHT_RANGE.contains(&weight) {
            self.fail(path, format!("weight ({weight}) must be between 1 and 100"));
        }
    }

    fn node_selector_term(&mut self, path: &str, term: &NodeSelectorTerm) {
        for (field, reqs) in [
            ("matchExpressions", &term.match_expressions),
            ("matchFields", &term.match_fields),
        ] {
            let base = push_key(path, field);
            for (i, r) in reqs.iter().enumerate() {
                let item = push_index(&base, i);
                if r.key.is_empty() {
                    self.fail(push_key(&item, "key"), "key must not be empty");
                }
                self.requirement(&item, &r.operator, &r.values, NODE_OPERATORS);
            }
        }
    }

    /// A selector requirement: the operator is one of `operators`, and the values fit it.
    fn requirement(&mut self, item: &str, operator: &str, values: &[String], operators: &[&str]) {
        if !operators.contains(&operator) {
            self.fail(
                push_key(item, "operator"),
                format!(
                    "operator {operator:?} must be one of {}",
                    operators.join(", ")
                ),
            );
            return;
        }
        let problem = match operator {
            "In" | "NotIn" if values.is_empty() => "needs at least one value",
            "Exists" | "DoesNotExist" if !values.is_empty() => "takes no values",
            "Gt" | "Lt" if values.len() != 1 || values[0].parse::<i64>().is_err() => {
                "needs exactly one integer value"
            }
            _ => return,
        };
        self.fail(
            push_key(item, "values"),
            format!("operator {operator} {problem}"),
        );
    }

    fn pod_affinity_term(&mut self, path: &str, term: &PodAffinityTerm) {
        if term.topology_key.is_empty() {
            self.fail(
                push_key(path, "topologyKey"),
                "topologyKey must not be empty, e.g. kubernetes.io/hostname",
            );
        }
        for (field, selector) in [
            ("labelSelector", &term.label_selector),
            ("namespaceSelector", &term.namespace_selector),
        ] {
            if let Some(selector) = selector {
                self.label_selector(&push_key(path, field), selector);
            }
        }
    }

    fn label_selector(&mut self, path: &str, selector: &LabelSelector) {
        self.labels(&push_key(path, "matchLabels"), &selector.match_labels);
        let base = push_key(path, "matchExpressions");
        for (i, r) in selector.match_expressions.iter().enumerate() {
            let item = push_index(&base, i);
            self.label_key(&push_key(&item, "key"), &r.key);
            self.requirement(&item, &r.operator, &r.values, LABEL_OPERATORS);
        }
    }

    fn labels(&mut self, path: &str, labels: &BTreeMap<String, String>) {
        for (key, value) in labels {
            let item = push_key(path, key);
            self.map_key(&item, key);
            if key.starts_with(TROUPE_LABEL_PREFIX) || key == MANAGED_BY_LABEL {
                self.issues.push(Issue {
                    path: item.clone(),
                    message: format!(
                        "label {key:?} is Troupe's: it labels every room itself (`{TROUPE_LABEL_PREFIX}*` and `{MANAGED_BY_LABEL}`); choose another key"
                    ),
                    on_key: true,
                });
            }
            if let Err(why) = check_label_value(value) {
                self.fail(item, format!("label value {value:?} is invalid: {why}"));
            }
        }
    }

    fn annotations(&mut self, path: &str, annotations: &BTreeMap<String, String>) {
        for key in annotations.keys() {
            self.map_key(&push_key(path, key), key);
        }
    }

    fn label_key(&mut self, path: &str, key: &str) {
        if let Err(why) = check_label_key(key) {
            self.fail(path, format!("key {key:?} is invalid: {why}"));
        }
    }

    /// A label or annotation key, reported on the key itself.
    fn map_key(&mut self, path: &str, key: &str) {
        if let Err(why) = check_label_key(key) {
            let message = format!("key {key:?} is invalid: {why}");
            self.issues.push(Issue {
                path: path.to_string(),
                message,
                on_key: true,
            });
        }
    }

    fn dns_label(&mut self, path: &str, value: &str, what: &str) {
        if let Err(why) = check_dns_label(value, DNS_LABEL_MAX) {
            self.fail(path, format!("{what} {value:?} is invalid: {why}"));
        }
    }

    fn port_name(&mut self, path: &str, value: &str) {
        if let Err(why) = check_dns_label(value, PORT_NAME_MAX) {
            self.fail(path, format!("port name {value:?} is invalid: {why}"));
        } else if !value.chars().any(|c| c.is_ascii_lowercase()) {
            self.fail(
                path,
                format!("port name {value:?} is invalid: it must contain at least one letter"),
            );
        }
    }
}

/// RFC 1123 label: lowercase letters, digits and `-`, starting and ending with a letter or digit.
fn check_dns_label(s: &str, max: usize) -> Result<(), String> {
    const EXPECTED: &str =
        "expected lowercase letters, digits and '-', starting and ending with a letter or digit";
    if s.is_empty() {
        return Err(format!("it must not be empty ({EXPECTED})"));
    }
    if s.len() > max {
        return Err(format!(
            "it is {} characters long, at most {max} are allowed",
            s.len()
        ));
    }
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !s.chars().all(|c| ok_char(c) || c == '-')
        || !s.starts_with(ok_char)
        || !s.ends_with(ok_char)
    {
        return Err(EXPECTED.to_string());
    }
    Ok(())
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
fn check_dns_subdomain(s: &str) -> Result<(), String> {
    if s.len() > DNS_SUBDOMAIN_MAX {
        return Err(format!(
            "prefix is {} characters long, at most {DNS_SUBDOMAIN_MAX} are allowed",
            s.len()
        ));
    }
    s.split('.')
        .try_for_each(|label| check_dns_label(label, DNS_LABEL_MAX))
        .map_err(|why| format!("prefix {s:?} must be a DNS subdomain: {why}"))
}

/// Kubernetes qualified name part: alphanumerics, `-`, `_`, `.`, alphanumeric at both ends.
fn check_name_part(s: &str, what: &str) -> Result<(), String> {
    if s.len() > LABEL_PART_MAX {
        return Err(format!(
            "{what} is {} characters long, at most {LABEL_PART_MAX} are allowed",
            s.len()
        ));
    }
    let ok = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ok {
        return Err(format!(
            "{what} must consist of letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// Kubernetes label/annotation key: `[prefix/]name`, prefix a DNS subdomain, name ≤ 63.
fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        check_dns_subdomain(prefix)?;
    }
    if name.is_empty() {
        return Err("the name part must not be empty".to_string());
    }
    check_name_part(name, "the name part")
}

/// Kubernetes label value: empty, or a name part of at most 63 characters.
fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    check_name_part(value, "the value")
}

/// A C-identifier-like environment variable name.
fn is_env_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::spec::{FixedBuffer, Policy, PolicyParameters, RoomOccupancy};

    const BASE: &str = r#"
name: arena-eu
game: arena
roomsReplicas: 4
portRange: {start: 40000, end: 40100}
labels: {team: arena, app.kubernetes.io/name: arena}
spec:
  containers:
    - name: server
      image: registry.example/arena:1.4.2
      env: [{name: LOG_LEVEL, value: info}]
      requests: {cpu: 250m, memory: 256Mi}
      limits: {cpu: "1", memory: 512Mi}
      ports:
        - {name: game, protocol: UDP, port: 7777}
        - {name: http, port: 8080}
  nodeSelector: {pool: game}
  tolerations: [{key: dedicated, operator: Equal, value: game, effect: NoSchedule}]
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
          - matchExpressions: [{key: pool, operator: In, values: [game]}]
local:
  command: ["troupe", "demo-room"]
forwarders:
  - {name: matchmaker, url: "http://mm.internal/events", timeout: 500ms}
"#;

    fn base() -> Scheduler {
        serde_saphyr::from_str(BASE).expect("base fixture parses")
    }

    /// Assert that `s` has exactly one issue, at `path`, whose message contains `needle`.
    #[track_caller]
    fn one_issue(s: &Scheduler, path: &str, needle: &str) {
        let issues = validate(s);
        assert_eq!(issues.len(), 1, "expected one issue, got {issues:#?}");
        assert_eq!(issues[0].path, path, "{issues:#?}");
        assert!(
            issues[0].message.contains(needle),
            "{:?} should contain {needle:?}",
            issues[0].message
        );
    }

    fn autoscaling(kind: PolicyKind, parameters: PolicyParameters) -> Autoscaling {
        Autoscaling {
            enabled: true,
            min: 2,
            max: 20,
            cooldown: crate::domain::spec::Duration::from_secs(60),
            policy: Policy { kind, parameters },
        }
    }

    fn occupancy(ready_target: f64, down_threshold: f64) -> PolicyParameters {
        PolicyParameters {
            room_occupancy: Some(RoomOccupancy {
                ready_target,
                down_threshold,
            }),
            fixed_buffer: None,
        }
    }

    #[test]
    fn base_fixture_is_valid() {
        assert_eq!(validate(&base()), []);
    }

    #[test]
    fn scheduler_name_must_be_a_dns_label() {
        for bad in ["Arena", "arena_eu", "-arena", "arena-", ""] {
            let mut s = base();
            s.name = bad.to_string();
            one_issue(&s, "name", "scheduler name");
        }
        let mut s = base();
        s.name = "a".repeat(64);
        one_issue(&s, "name", "at most 63");
        s.name = "a".repeat(63);
        assert_eq!(validate(&s), []);
    }

    #[test]
    fn game_must_not_be_empty() {
        let mut s = base();
        s.game = "  ".into();
        one_issue(&s, "game", "must not be empty");
    }

    #[test]
    fn port_range_end_must_exceed_start() {
        let mut s = base();
        s.port_range.start = 41000;
        s.port_range.end = 40000;
        one_issue(
            &s,
            "portRange.end",
            "portRange.end (40000) must be greater than portRange.start (41000)",
        );
        s.port_range.end = 41000;
        one_issue(&s, "portRange.end", "must be greater");
    }

    #[test]
    fn port_range_start_must_be_at_least_one() {
        let mut s = base();
        s.port_range.start = 0;
        one_issue(&s, "portRange.start", "at least 1");
    }

    #[test]
    fn port_range_must_hold_one_room() {
        let mut s = base();
        s.port_range.end = s.port_range.start + 1;
        one_issue(&s, "portRange", "one room needs 2");
        s.port_range.end = s.port_range.start + 2;
        assert_eq!(validate(&s), []);
    }

    #[test]
    fn max_surge_percent_is_between_1_and_100() {
        let mut s = base();
        s.max_surge = Surge::Percent(0);
        one_issue(&s, "maxSurge", "between 1% and 100%");
        s.max_surge = Surge::Percent(101);
        one_issue(&s, "maxSurge", "between 1% and 100%");
        s.max_surge = Surge::Count(500);
        assert_eq!(validate(&s), []);
    }

    #[test]
    fn max_matches_is_at_least_one() {
        let mut s = base();
        s.match_allocation.max_matches = 0;
        one_issue(&s, "matchAllocation.maxMatches", "at least 1");
    }

    #[test]
    fn timeouts_must_be_positive() {
        let mut s = base();
        s.timeouts.ping = crate::domain::spec::Duration::from_millis(0);
        one_issue(&s, "timeouts.ping", "greater than zero");
    }

    #[test]
    fn at_least_one_container() {
        let mut s = base();
        s.spec.containers.clear();
        // No container means no ports either: only the container issue.
        one_issue(&s, "spec.containers", "at least one container");
    }

    #[test]
    fn container_names_are_dns_labels_and_unique() {
        let mut s = base();
        s.spec.containers[0].name = "Server".into();
        one_issue(
            &s,
            "spec.containers[0].name",
            "container name \"Server\" is invalid",
        );
        let mut s = base();
        let mut second = s.spec.containers[0].clone();
        second.ports.clear();
        s.spec.containers.push(second);
        one_issue(
            &s,
            "spec.containers[1].name",
            "already used by spec.containers[0]",
        );
    }

    #[test]
    fn image_must_not_be_empty() {
        let mut s = base();
        s.spec.containers[0].image.clear();
        one_issue(&s, "spec.containers[0].image", "must not be empty");
    }

    #[test]
    fn port_names_are_short_dns_labels_and_unique_across_containers() {
        let mut s = base();
        s.spec.containers[0].ports[1].name = "HTTP".into();
        one_issue(
            &s,
            "spec.containers[0].ports[1].name",
            "port name \"HTTP\" is invalid",
        );
        s.spec.containers[0].ports[1].name = "a-very-long-port-name".into();
        one_issue(&s, "spec.containers[0].ports[1].name", "at most 15");
        s.spec.containers[0].ports[1].name = "8080".into();
        one_issue(
            &s,
            "spec.containers[0].ports[1].name",
            "at least one letter",
        );

        let mut s = base();
        let mut sidecar = s.spec.containers[0].clone();
        sidecar.name = "sidecar".into();
        sidecar.ports.truncate(1);
        s.spec.containers.push(sidecar);
        s.port_range.end = s.port_range.start + 3;
        one_issue(
            &s,
            "spec.containers[1].ports[0].name",
            "already used by spec.containers[0].ports[0]",
        );
    }

    #[test]
    fn port_must_be_nonzero() {
        let mut s = base();
        s.spec.containers[0].ports[0].port = 0;
        one_issue(
            &s,
            "spec.containers[0].ports[0].port",
            "between 1 and 65535",
        );
    }

    #[test]
    fn requests_must_not_exceed_limits() {
        let mut s = base();
        s.spec.containers[0]
            .requests
            .0
            .insert("cpu".into(), "2".parse().unwrap());
        one_issue(
            &s,
            "spec.containers[0].requests.cpu",
            "requests.cpu (2) must not exceed limits.cpu (1)",
        );
        let mut s = base();
        s.spec.containers[0]
            .requests
            .0
            .insert("memory".into(), "1Gi".parse().unwrap());
        one_issue(
            &s,
            "spec.containers[0].requests.memory",
            "must not exceed limits.memory (512Mi)",
        );
        // Only one side given: nothing to compare.
        s.spec.containers[0].limits.0.remove("memory");
        assert_eq!(validate(&s), []);
    }

    #[test]
    fn env_names_are_identifiers_unique_and_not_reserved() {
        let mut s = base();
        s.spec.containers[0].env.push(EnvVar {
            name: "1BAD".into(),
            value: String::new(),
            value_from: None,
        });
        one_issue(
            &s,
            "spec.containers[0].env[1].name",
            "not starting with a digit",
        );
        let mut s = base();
        s.spec.containers[0].env.push(EnvVar {
            name: "LOG_LEVEL".into(),
            value: "debug".into(),
            value_from: None,
        });
        one_issue(
            &s,
            "spec.containers[0].env[1].name",
            "already set by spec.containers[0].env[0]",
        );
        let mut s = base();
        s.spec.containers[0].env.push(EnvVar {
            name: "TROUPE_ROOM_TOKEN".into(),
            value: "x".into(),
            value_from: None,
        });
        one_issue(&s, "spec.containers[0].env[1].name", "reserved");
        let mut s = base();
        if let Some(local) = s.local.as_mut() {
            local.env.push(EnvVar {
                name: "A-B".into(),
                value: String::new(),
                value_from: None,
            });
        }
        one_issue(&s, "local.env[0].name", "invalid");
    }

    #[test]
    fn rooms_replicas_required_without_autoscaling() {
        let mut s = base();
        s.rooms_replicas = None;
        one_issue(&s, "roomsReplicas", "required when autoscaling is off");
        let mut disabled = autoscaling(PolicyKind::RoomOccupancy, occupancy(0.3, 0.9));
        disabled.enabled = false;
        s.autoscaling = Some(disabled);
        one_issue(&s, "roomsReplicas", "required when autoscaling is off");
        s.autoscaling = Some(autoscaling(PolicyKind::RoomOccupancy, occupancy(0.3, 0.9)));
        assert_eq!(validate(&s), []);
    }

    #[test]
    fn autoscaling_bounds() {
        let mut s = base();
        let mut a = autoscaling(PolicyKind::RoomOccupancy, occupancy(0.3, 0.9));
        a.min = 30;
        s.autoscaling = Some(a.clone());
        one_issue(
            &s,
            "autoscaling.min",
            "autoscaling.min (30) must not exceed autoscaling.max (20)",
        );
        a.max = -1;
        s.autoscaling = Some(a.clone());
        assert_eq!(validate(&s), []);
        a.max = -2;
        s.autoscaling = Some(a);
        one_issue(
            &s,
            "autoscaling.max",
            "must be -1 (no ceiling) or at least 0",
        );
    }

    #[test]
    fn room_occupancy_parameters_present_and_in_range() {
        let mut s = base();
        s.autoscaling = Some(autoscaling(
            PolicyKind::RoomOccupancy,
            PolicyParameters::default(),
        ));
        one_issue(
            &s,
            "autoscaling.policy.parameters.roomOccupancy",
            "needs parameters.roomOccupancy",
        );
        for bad in [0.0, 1.0, -0.1, f64::NAN] {
            s.autoscaling = Some(autoscaling(PolicyKind::RoomOccupancy, occupancy(bad, 0.9)));
            one_issue(
                &s,
                "autoscaling.policy.parameters.roomOccupancy.readyTarget",
                "greater than 0 and less than 1",
            );
        }
        for bad in [0.0, 1.01] {
            s.autoscaling = Some(autoscaling(PolicyKind::RoomOccupancy, occupancy(0.3, bad)));
            one_issue(
                &s,
                "autoscaling.policy.parameters.roomOccupancy.downThreshold",
                "at most 1",
            );
        }
        s.autoscaling = Some(autoscaling(PolicyKind::RoomOccupancy, occupancy(0.3, 1.0)));
        assert_eq!(validate(&s), []);
    }

    #[test]
    fn fixed_buffer_parameters_present_and_positive() {
        let mut s = base();
        s.autoscaling = Some(autoscaling(PolicyKind::FixedBuffer, occupancy(0.3, 0.9)));
        one_issue(
            &s,
            "autoscaling.policy.parameters.fixedBuffer",
            "needs parameters.fixedBuffer",
        );
        let zero = PolicyParameters {
            room_occupancy: None,
            fixed_buffer: Some(FixedBuffer { amount: 0 }),
        };
        s.autoscaling = Some(autoscaling(PolicyKind::FixedBuffer, zero));
        one_issue(
            &s,
            "autoscaling.policy.parameters.fixedBuffer.amount",
            "at least 1",
        );
    }

    #[test]
    fn forwarders_unique_http_urls_positive_timeouts() {
        let mut s = base();
        s.forwarders.push(s.forwarders[0].clone());
        one_issue(&s, "forwarders[1].name", "already used by forwarders[0]");
        let mut s = base();
        s.forwarders[0].url = "mm.internal/events".into();
        one_issue(
            &s,
            "forwarders[0].url",
            "must start with http:// or https://",
        );
        s.forwarders[0].url = "https://".into();
        one_issue(&s, "forwarders[0].url", "must name a host");
        let mut s = base();
        s.forwarders[0].timeout = crate::domain::spec::Duration::from_millis(0);
        one_issue(&s, "forwarders[0].timeout", "greater than zero");
    }

    #[test]
    fn local_command_must_not_be_empty() {
        let mut s = base();
        if let Some(local) = s.local.as_mut() {
            local.command.clear();
        }
        one_issue(&s, "local.command", "must name a program");
    }

    #[test]
    fn label_keys_and_values_follow_kubernetes_rules() {
        let mut s = base();
        s.labels.insert("bad key".into(), "x".into());
        one_issue(&s, "labels[\"bad key\"]", "key \"bad key\" is invalid");
        assert!(validate(&s)[0].on_key, "reported on the key, not the value");
        let mut s = base();
        s.labels.insert("Example.com/name".into(), "x".into());
        one_issue(&s, "labels[\"Example.com/name\"]", "DNS subdomain");
        let mut s = base();
        s.labels
            .insert(format!("example.com/{}", "n".repeat(64)), "x".into());
        assert_eq!(validate(&s).len(), 1);
        let mut s = base();
        s.labels.insert("team".into(), "v".repeat(64));
        one_issue(&s, "labels.team", "at most 63");
        s.labels.insert("team".into(), "-arena".into());
        one_issue(
            &s,
            "labels.team",
            "starting and ending with a letter or digit",
        );
        s.labels.insert("team".into(), String::new());
        assert_eq!(validate(&s), []);
        let mut s = base();
        s.spec
            .node_selector
            .insert("pool".into(), "game pool".into());
        one_issue(&s, "spec.nodeSelector.pool", "label value");
        let mut s = base();
        s.annotations
            .insert("/x".into(), "any value at all, even long ones".into());
        assert_eq!(validate(&s).len(), 1);
    }

    #[test]
    fn toleration_operator_and_effect() {
        let mut s = base();
        s.spec.tolerations[0].operator = Some("Equals".into());
        one_issue(
            &s,
            "spec.tolerations[0].operator",
            "must be Exists or Equal",
        );
        let mut s = base();
        s.spec.tolerations[0].effect = Some("NoScheduling".into());
        one_issue(
            &s,
            "spec.tolerations[0].effect",
            "NoSchedule, PreferNoSchedule or NoExecute",
        );
        let mut s = base();
        s.spec.tolerations[0].operator = Some("Exists".into());
        one_issue(&s, "spec.tolerations[0].value", "must not set a value");
        let mut s = base();
        s.spec.tolerations[0] = Toleration {
            operator: Some("Exists".into()),
            ..Toleration::default()
        };
        assert_eq!(validate(&s), []);
    }

    #[test]
    fn node_selector_requirement_operators() {
        let path = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0]";
        let edit = |f: &mut dyn FnMut(&mut crate::domain::spec::NodeSelectorRequirement)| {
            let mut s = base();
            let req = s
                .spec
                .affinity
                .as_mut()
                .and_then(|a| a.node_affinity.as_mut())
                .and_then(|n| {
                    n.required_during_scheduling_ignored_during_execution
                        .as_mut()
                })
                .map(|r| &mut r.node_selector_terms[0].match_expressions[0])
                .expect("fixture has a node selector requirement");
            f(req);
            s
        };
        let s = edit(&mut |r| r.operator = "Within".into());
        one_issue(
            &s,
            &format!("{path}.operator"),
            "one of In, NotIn, Exists, DoesNotExist, Gt, Lt",
        );
        let s = edit(&mut |r| r.values.clear());
        one_issue(&s, &format!("{path}.values"), "at least one value");
        let s = edit(&mut |r| r.operator = "Exists".into());
        one_issue(&s, &format!("{path}.values"), "takes no values");
        let s = edit(&mut |r| r.operator = "Gt".into());
        one_issue(&s, &format!("{path}.values"), "exactly one integer");
        let s = edit(&mut |r| {
            r.operator = "Lt".into();
            r.values = vec!["8".into()];
        });
        assert_eq!(validate(&s), []);
    }

    #[test]
    fn label_selector_requirements_take_no_numeric_operators() {
        let mut s = base();
        let term = crate::domain::spec::PodAffinityTerm {
            topology_key: "kubernetes.io/hostname".into(),
            label_selector: Some(LabelSelector {
                match_expressions: vec![crate::domain::spec::LabelSelectorRequirement {
                    key: "mode".into(),
                    operator: "Gt".into(),
                    values: vec!["1".into()],
                }],
                ..LabelSelector::default()
            }),
            ..crate::domain::spec::PodAffinityTerm::default()
        };
        s.spec.affinity = Some(Affinity {
            pod_anti_affinity: Some(crate::domain::spec::PodAffinity {
                required_during_scheduling_ignored_during_execution: vec![term],
                ..crate::domain::spec::PodAffinity::default()
            }),
            ..Affinity::default()
        });
        one_issue(
            &s,
            "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector.matchExpressions[0].operator",
            "must be one of In, NotIn, Exists, DoesNotExist",
        );
    }

    #[test]
    fn every_problem_is_reported_not_just_the_first() {
        let mut s = base();
        s.name = "Bad_Name".into();
        s.game.clear();
        s.match_allocation.max_matches = 0;
        s.rooms_replicas = None;
        let paths: Vec<String> = validate(&s).into_iter().map(|i| i.path).collect();
        assert_eq!(
            paths,
            [
                "name",
                "game",
                "matchAllocation.maxMatches",
                "roomsReplicas"
            ]
        );
    }
}
