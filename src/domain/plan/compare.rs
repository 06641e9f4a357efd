//! Comparing a desired scheduler with the applied one: which fields differ, how to say so to a
//! human, and the canonical form both sides are compared in.
//!
//! Must hold: two specs that mean the same thing compare equal (a defaulted field written out
//! explicitly is not a change), and every difference [`classify`] finds gets at least one reason
//! and one field path. Comparison is on structs; nothing is serialised here.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Display;

use crate::domain::spec::{
    Affinity, Autoscaling, Container, EnvVar, Forwarder, LocalSpec, PolicyKind, Protocol,
    Resources, Scheduler,
};

/// Longest value shown verbatim in a reason; longer ones read "changed" (the diff has them).
const MAX_SHOWN_VALUE: usize = 48;
/// How many keys a map reason names before it says "and N more".
const MAX_SHOWN_KEYS: usize = 4;

/// The scheduler with values that mean "absent" written as absent.
///
/// Deserialising already fills defaults, so `timeouts: {pending: 120s}` and no `timeouts` are
/// the same struct. What remains are optional sections written out empty: `affinity: {}` or
/// `affinity: {nodeAffinity: {}}` are the same pod as no affinity at all, yet
/// [`Scheduler::version`] hashes them differently. Borrowed when nothing needs rewriting, which
/// is the common case. An empty `labelSelector` is *not* rewritten: in Kubernetes it matches
/// every pod, unlike an absent one.
pub fn canonical(s: &Scheduler) -> Cow<'_, Scheduler> {
    match &s.spec.affinity {
        Some(a) if has_empty_sections(a) => {
            let mut owned = s.clone();
            owned.spec.affinity = canonical_affinity(a);
            Cow::Owned(owned)
        }
        _ => Cow::Borrowed(s),
    }
}

fn has_empty_sections(a: &Affinity) -> bool {
    fn empty<T: Default + PartialEq>(v: &Option<T>) -> bool {
        v.as_ref().is_some_and(|x| *x == T::default())
    }
    *a == Affinity::default()
        || empty(&a.node_affinity)
        || empty(&a.pod_affinity)
        || empty(&a.pod_anti_affinity)
}

fn canonical_affinity(a: &Affinity) -> Option<Affinity> {
    fn none_if_default<T: Default + PartialEq + Clone>(v: &Option<T>) -> Option<T> {
        v.as_ref().filter(|x| **x != T::default()).cloned()
    }
    let out = Affinity {
        node_affinity: none_if_default(&a.node_affinity),
        pod_affinity: none_if_default(&a.pod_affinity),
        pod_anti_affinity: none_if_default(&a.pod_anti_affinity),
    };
    (out != Affinity::default()).then_some(out)
}

/// What differs between two (canonical) specs, and the room count the desired one asks for.
#[derive(Debug, Default)]
pub struct Delta {
    /// The room template differs: rooms must be replaced.
    pub template: bool,
    /// A setting applied in place differs (game, maxSurge, matchAllocation, timeouts, autoscaling,
    /// forwarders).
    pub in_place: bool,
    /// Human reasons, in field order.
    pub reasons: Vec<String>,
    /// Changed top-level field paths (camelCase).
    pub fields: Vec<&'static str>,
}

/// Compare `old` (applied) with `new` (desired), both canonical. Room counts are not looked at
/// here except `roomsReplicas` as a field; the caller decides what the count means.
pub fn classify(old: &Scheduler, new: &Scheduler) -> Delta {
    let mut d = Delta::default();

    // In-place settings.
    if old.game != new.game {
        d.in_place(&["game"], format!("game {} → {}", old.game, new.game));
    }
    if old.rooms_replicas != new.rooms_replicas {
        d.fields.push("roomsReplicas");
        if new.autoscaled() {
            d.reasons.push(format!(
                "roomsReplicas {} → {} (ignored while autoscaling is on)",
                show_opt(&old.rooms_replicas),
                show_opt(&new.rooms_replicas)
            ));
        }
    }
    if old.max_surge != new.max_surge {
        d.in_place(
            &["maxSurge"],
            format!("maxSurge {} → {}", old.max_surge, new.max_surge),
        );
    }
    if old.match_allocation != new.match_allocation {
        d.in_place(
            &["matchAllocation"],
            format!(
                "matchAllocation.maxMatches {} → {}",
                old.match_allocation.max_matches, new.match_allocation.max_matches
            ),
        );
    }
    if old.timeouts != new.timeouts {
        d.in_place = true;
        d.fields.push("timeouts");
        let (o, n) = (&old.timeouts, &new.timeouts);
        for (name, a, b) in [
            ("pending", o.pending, n.pending),
            ("unready", o.unready, n.unready),
            ("ping", o.ping, n.ping),
            ("terminating", o.terminating, n.terminating),
        ] {
            if a != b {
                d.reasons.push(format!("timeouts.{name} {a} → {b}"));
            }
        }
    }
    if old.autoscaling != new.autoscaling {
        d.in_place = true;
        d.fields.push("autoscaling");
        autoscaling_reasons(
            old.autoscaling.as_ref(),
            new.autoscaling.as_ref(),
            &mut d.reasons,
        );
    }
    if old.annotations != new.annotations && old.room_annotations() == new.room_annotations() {
        d.in_place(
            &["annotations"],
            map_reason("annotations", &old.annotations, &new.annotations),
        );
    }
    if old.forwarders != new.forwarders {
        d.in_place = true;
        d.fields.push("forwarders");
        forwarder_reasons(&old.forwarders, &new.forwarders, &mut d.reasons);
    }

    // The room template.
    if old.port_range != new.port_range {
        let (a, b) = (old.port_range, new.port_range);
        d.template(
            &["portRange"],
            format!("portRange {}-{} → {}-{}", a.start, a.end, b.start, b.end),
        );
    }
    if old.labels != new.labels {
        d.template = true;
        d.fields.push("labels");
        d.reasons
            .push(map_reason("labels", &old.labels, &new.labels));
    }
    if old.room_annotations() != new.room_annotations() {
        d.template = true;
        d.fields.push("annotations");
        d.reasons.push(map_reason(
            "annotations",
            &old.annotations,
            &new.annotations,
        ));
    }
    if old.spec != new.spec {
        d.template = true;
        d.fields.push("spec");
        spec_reasons(old, new, &mut d.reasons);
    }
    if old.local != new.local {
        d.template = true;
        d.fields.push("local");
        local_reasons(old.local.as_ref(), new.local.as_ref(), &mut d.reasons);
    }
    d
}

impl Delta {
    fn in_place(&mut self, fields: &[&'static str], reason: String) {
        self.in_place = true;
        self.fields.extend_from_slice(fields);
        self.reasons.push(reason);
    }

    fn template(&mut self, fields: &[&'static str], reason: String) {
        self.template = true;
        self.fields.extend_from_slice(fields);
        self.reasons.push(reason);
    }
}

/// Order the field paths as they appear in the YAML, so reports read top to bottom.
pub fn sort_fields(fields: &mut [&'static str]) {
    const ORDER: [&str; 13] = [
        "name",
        "game",
        "roomsReplicas",
        "maxSurge",
        "portRange",
        "matchAllocation",
        "timeouts",
        "labels",
        "annotations",
        "spec",
        "local",
        "autoscaling",
        "forwarders",
    ];
    fields.sort_by_key(|f| ORDER.iter().position(|o| o == f).unwrap_or(ORDER.len()));
}

fn show_opt<T: Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "unset".to_string(), T::to_string)
}

/// `label a → b` when both fit on a line, else `label changed`.
fn change(label: &str, old: &str, new: &str) -> String {
    if old.len() + new.len() <= MAX_SHOWN_VALUE {
        format!("{label} {old} → {new}")
    } else {
        format!("{label} changed")
    }
}

fn list(items: &[String]) -> String {
    format!("[{}]", items.join(", "))
}

/// `labels: team a → b, tier added` — the keys that changed, a few of them by name.
fn map_reason(
    label: &str,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> String {
    let mut parts = Vec::new();
    for (k, v) in new {
        match old.get(k) {
            None => parts.push(format!("{k} added")),
            Some(o) if o != v => parts.push(change(k, o, v)),
            Some(_) => {}
        }
    }
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        parts.push(format!("{k} removed"));
    }
    limited(label, parts)
}

fn limited(label: &str, mut parts: Vec<String>) -> String {
    if parts.len() > MAX_SHOWN_KEYS {
        let more = parts.len() - MAX_SHOWN_KEYS;
        parts.truncate(MAX_SHOWN_KEYS);
        parts.push(format!("and {more} more"));
    }
    format!("{label}: {}", parts.join(", "))
}

/// The image change, with the repository said once when only the tag moved:
/// `image registry.example/arena:1.4.2 → 1.4.3`.
fn image_reason(prefix: &str, old: &str, new: &str) -> String {
    let tag_at = |s: &str| s.rfind(':').filter(|i| !s[*i..].contains('/'));
    let shown_new = match (tag_at(old), tag_at(new)) {
        (Some(i), Some(j)) if old[..i] == new[..j] => &new[j + 1..],
        _ => new,
    };
    format!("{prefix}image {old} → {shown_new}")
}

fn spec_reasons(old: &Scheduler, new: &Scheduler, out: &mut Vec<String>) {
    let (o, n) = (&old.spec, &new.spec);
    if o.termination_grace_period != n.termination_grace_period {
        out.push(format!(
            "terminationGracePeriod {} → {}",
            o.termination_grace_period, n.termination_grace_period
        ));
    }
    if o.containers != n.containers {
        container_reasons(&o.containers, &n.containers, out);
    }
    if o.node_selector != n.node_selector {
        out.push(map_reason(
            "nodeSelector",
            &o.node_selector,
            &n.node_selector,
        ));
    }
    if o.affinity != n.affinity {
        out.push(
            match (&o.affinity, &n.affinity) {
                (None, Some(_)) => "affinity added",
                (Some(_), None) => "affinity removed",
                _ => "affinity changed",
            }
            .to_string(),
        );
    }
    if o.tolerations != n.tolerations {
        out.push(format!(
            "tolerations changed ({} → {})",
            o.tolerations.len(),
            n.tolerations.len()
        ));
    }
    if o.host_network != n.host_network {
        out.push(format!(
            "hostNetwork {} → {}",
            o.host_network, n.host_network
        ));
    }
    pod_fields_reason("", o.pod_fields(), n.pod_fields(), out);
}

fn container_reasons(old: &[Container], new: &[Container], out: &mut Vec<String>) {
    let before = out.len();
    let single = old.len() == 1 && new.len() == 1 && old[0].name == new[0].name;
    for c in new {
        let prefix = if single {
            String::new()
        } else {
            format!("container {}: ", c.name)
        };
        let Some(o) = old.iter().find(|o| o.name == c.name) else {
            out.push(format!("container {} added ({})", c.name, c.image));
            continue;
        };
        if o.image != c.image {
            out.push(image_reason(&prefix, &o.image, &c.image));
        }
        if o.command != c.command {
            out.push(change(
                &format!("{prefix}command"),
                &list(&o.command),
                &list(&c.command),
            ));
        }
        if o.args != c.args {
            out.push(change(
                &format!("{prefix}args"),
                &list(&o.args),
                &list(&c.args),
            ));
        }
        if o.env != c.env {
            out.push(env_reason(&format!("{prefix}env"), &o.env, &c.env));
        }
        if o.requests != c.requests {
            out.push(resources_reason(
                &format!("{prefix}requests"),
                &o.requests,
                &c.requests,
            ));
        }
        if o.limits != c.limits {
            out.push(resources_reason(
                &format!("{prefix}limits"),
                &o.limits,
                &c.limits,
            ));
        }
        pod_fields_reason(&prefix, o.pod_fields(), c.pod_fields(), out);
        if o.ports != c.ports {
            let show = |c: &Container| {
                c.ports
                    .iter()
                    .map(|p| format!("{}/{}:{}", p.name, protocol(p.protocol), p.port))
                    .collect::<Vec<_>>()
            };
            out.push(change(
                &format!("{prefix}ports"),
                &list(&show(o)),
                &list(&show(c)),
            ));
        }
    }
    for o in old.iter().filter(|o| !new.iter().any(|c| c.name == o.name)) {
        out.push(format!("container {} removed", o.name));
    }
    if out.len() == before {
        // Same containers, other order.
        let names = |cs: &[Container]| cs.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        out.push(change(
            "containers reordered",
            &list(&names(old)),
            &list(&names(new)),
        ));
    }
}

fn protocol(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Sctp => "SCTP",
    }
}

fn policy(k: PolicyKind) -> &'static str {
    match k {
        PolicyKind::RoomOccupancy => "roomOccupancy",
        PolicyKind::FixedBuffer => "fixedBuffer",
    }
}

fn env_reason(label: &str, old: &[EnvVar], new: &[EnvVar]) -> String {
    let mut parts = Vec::new();
    for v in new {
        match old.iter().find(|o| o.name == v.name) {
            None => parts.push(format!("{} added", v.name)),
            Some(o) if o.value != v.value => parts.push(change(&v.name, &o.value, &v.value)),
            Some(o) if o.value_from != v.value_from => {
                parts.push(format!("{} valueFrom changed", v.name))
            }
            Some(_) => {}
        }
    }
    for o in old.iter().filter(|o| !new.iter().any(|v| v.name == o.name)) {
        parts.push(format!("{} removed", o.name));
    }
    if parts.is_empty() {
        // Same variables, other order: order matters for `$(VAR)` references.
        parts.push("reordered".to_string());
    }
    limited(label, parts)
}

fn resources_reason(label: &str, old: &Resources, new: &Resources) -> String {
    let show = |q: Option<&crate::domain::spec::Quantity>| {
        q.map_or_else(|| "unset".to_string(), |q| q.to_string())
    };
    let names: std::collections::BTreeSet<&String> = old.0.keys().chain(new.0.keys()).collect();
    let parts: Vec<String> = names
        .into_iter()
        .filter(|n| old.get(n) != new.get(n))
        .map(|n| format!("{n} {} → {}", show(old.get(n)), show(new.get(n))))
        .collect();
    format!("{label} {}", parts.join(", "))
}

/// `readinessProbe changed, volumes added`: which of the Kubernetes fields passed through as
/// given differ, by name.
fn pod_fields_reason<T: serde::Serialize + PartialEq>(
    prefix: &str,
    old: T,
    new: T,
    out: &mut Vec<String>,
) {
    if old == new {
        // The common case (an image bump): nothing to name, nothing to serialise.
        return;
    }
    let fields = |v: serde_json::Value| match v {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    let (old, new) = (
        fields(serde_json::to_value(old).unwrap_or_default()),
        fields(serde_json::to_value(new).unwrap_or_default()),
    );
    let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for name in names {
        match (old.get(name), new.get(name)) {
            (None, Some(_)) => out.push(format!("{prefix}{name} added")),
            (Some(_), None) => out.push(format!("{prefix}{name} removed")),
            (Some(o), Some(n)) if o != n => out.push(format!("{prefix}{name} changed")),
            _ => {}
        }
    }
}

fn local_reasons(old: Option<&LocalSpec>, new: Option<&LocalSpec>, out: &mut Vec<String>) {
    match (old, new) {
        (None, Some(n)) => out.push(change("local command", "unset", &list(&n.command))),
        (Some(_), None) => out.push("local removed".to_string()),
        (Some(o), Some(n)) => {
            if o.command != n.command {
                out.push(change(
                    "local command",
                    &list(&o.command),
                    &list(&n.command),
                ));
            }
            if o.env != n.env {
                out.push(env_reason("local env", &o.env, &n.env));
            }
        }
        (None, None) => {}
    }
}

fn autoscaling_reasons(
    old: Option<&Autoscaling>,
    new: Option<&Autoscaling>,
    out: &mut Vec<String>,
) {
    let on = |a: Option<&Autoscaling>| a.is_some_and(|a| a.enabled);
    let bounds = |a: &Autoscaling| {
        let max = a
            .ceiling()
            .map_or_else(|| "no ceiling".to_string(), |m| format!("max {m}"));
        format!("min {}, {max}", a.min)
    };
    match (on(old), on(new)) {
        (false, true) => {
            let n = new.expect("enabled implies present");
            out.push(format!(
                "autoscaling turned on ({}, {})",
                bounds(n),
                policy(n.policy.kind)
            ));
            return;
        }
        (true, false) => {
            out.push("autoscaling turned off".to_string());
            return;
        }
        _ => {}
    }
    let suffix = if on(new) { "" } else { " (autoscaling is off)" };
    let (Some(o), Some(n)) = (old, new) else {
        out.push(format!(
            "autoscaling settings {}{suffix}",
            if new.is_some() { "added" } else { "removed" }
        ));
        return;
    };
    if o.min != n.min {
        out.push(format!("autoscaling.min {} → {}{suffix}", o.min, n.min));
    }
    if o.max != n.max {
        out.push(format!("autoscaling.max {} → {}{suffix}", o.max, n.max));
    }
    if o.cooldown != n.cooldown {
        out.push(format!(
            "autoscaling.cooldown {} → {}{suffix}",
            o.cooldown, n.cooldown
        ));
    }
    if o.policy != n.policy {
        if o.policy.kind != n.policy.kind {
            out.push(format!(
                "autoscaling.policy {} → {}{suffix}",
                policy(o.policy.kind),
                policy(n.policy.kind)
            ));
        } else {
            out.push(format!("autoscaling.policy parameters changed{suffix}"));
        }
    }
}

fn forwarder_reasons(old: &[Forwarder], new: &[Forwarder], out: &mut Vec<String>) {
    let before = out.len();
    for f in new {
        match old.iter().find(|o| o.name == f.name) {
            None => out.push(format!("forwarder {} added", f.name)),
            Some(o) => {
                if o.url != f.url {
                    out.push(change(&format!("forwarder {} url", f.name), &o.url, &f.url));
                }
                if o.timeout != f.timeout {
                    out.push(format!(
                        "forwarder {} timeout {} → {}",
                        f.name, o.timeout, f.timeout
                    ));
                }
            }
        }
    }
    for o in old.iter().filter(|o| !new.iter().any(|f| f.name == o.name)) {
        out.push(format!("forwarder {} removed", o.name));
    }
    if out.len() == before {
        out.push("forwarders reordered".to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_reason_says_the_repository_once() {
        assert_eq!(
            image_reason(
                "",
                "registry.example/arena:1.4.2",
                "registry.example/arena:1.4.3"
            ),
            "image registry.example/arena:1.4.2 → 1.4.3"
        );
        assert_eq!(
            image_reason(
                "",
                "registry.example:5000/arena",
                "registry.example:5000/arena:2"
            ),
            "image registry.example:5000/arena → registry.example:5000/arena:2"
        );
        assert_eq!(
            image_reason("container a: ", "x:1", "y:1"),
            "container a: image x:1 → y:1"
        );
    }

    #[test]
    fn map_reasons_name_a_few_keys() {
        let m = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            map_reason(
                "labels",
                &m(&[("team", "a"), ("old", "x")]),
                &m(&[("team", "b"), ("tier", "1")])
            ),
            "labels: team a → b, tier added, old removed"
        );
        let many: BTreeMap<_, _> = (0..7).map(|i| (format!("k{i}"), "v".to_string())).collect();
        assert_eq!(
            map_reason("labels", &BTreeMap::new(), &many),
            "labels: k0 added, k1 added, k2 added, k3 added, and 3 more"
        );
    }
}
