//! Kubernetes placement types (`affinity`, `tolerations`), mirrored field for field so their JSON
//! is exactly the Kubernetes form: the Kubernetes runtime converts them with serde. They predate
//! the pass-through pod fields (which use k8s-openapi's types) and stay Troupe's own because
//! their serialized field order is part of every existing template's version hash. Unknown
//! fields are refused like everywhere else.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

macro_rules! k8s_struct {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name {
            $($(#[$fm])* #[serde(default, skip_serializing_if = "is_default")] pub $field: $ty,)*
        }
    };
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

k8s_struct!(
    /// Full Kubernetes `Affinity`.
    Affinity {
        node_affinity: Option<NodeAffinity>,
        pod_affinity: Option<PodAffinity>,
        pod_anti_affinity: Option<PodAffinity>,
    }
);

k8s_struct!(NodeAffinity {
    required_during_scheduling_ignored_during_execution: Option<NodeSelector>,
    preferred_during_scheduling_ignored_during_execution: Vec<PreferredSchedulingTerm>,
});

k8s_struct!(NodeSelector { node_selector_terms: Vec<NodeSelectorTerm> });

k8s_struct!(NodeSelectorTerm {
    match_expressions: Vec<NodeSelectorRequirement>,
    match_fields: Vec<NodeSelectorRequirement>,
});

k8s_struct!(NodeSelectorRequirement {
    key: String,
    /// One of In, NotIn, Exists, DoesNotExist, Gt, Lt.
    operator: String,
    values: Vec<String>,
});

k8s_struct!(PreferredSchedulingTerm {
    weight: i32,
    preference: NodeSelectorTerm,
});

k8s_struct!(
    /// Used for both `podAffinity` and `podAntiAffinity`, which share one shape.
    PodAffinity {
        required_during_scheduling_ignored_during_execution: Vec<PodAffinityTerm>,
        preferred_during_scheduling_ignored_during_execution: Vec<WeightedPodAffinityTerm>,
    }
);

k8s_struct!(PodAffinityTerm {
    label_selector: Option<LabelSelector>,
    namespace_selector: Option<LabelSelector>,
    namespaces: Vec<String>,
    topology_key: String,
    match_label_keys: Vec<String>,
    mismatch_label_keys: Vec<String>,
});

k8s_struct!(WeightedPodAffinityTerm {
    weight: i32,
    pod_affinity_term: PodAffinityTerm,
});

k8s_struct!(LabelSelector {
    match_labels: BTreeMap<String, String>,
    match_expressions: Vec<LabelSelectorRequirement>,
});

k8s_struct!(LabelSelectorRequirement {
    key: String,
    /// One of In, NotIn, Exists, DoesNotExist.
    operator: String,
    values: Vec<String>,
});

k8s_struct!(
    /// Full Kubernetes `Toleration`.
    Toleration {
        key: Option<String>,
        /// Exists or Equal.
        operator: Option<String>,
        value: Option<String>,
        /// NoSchedule, PreferNoSchedule or NoExecute.
        effect: Option<String>,
        toleration_seconds: Option<i64>,
    }
);
