//! `fleets-example/` is what the README tells people to run: it must load, validate, and run on
//! the local runtime side by side.

use std::path::Path;

use troupe::domain::spec::load_documents;
use troupe::source::{DirSource, Source};

#[test]
fn fleets_example_loads_and_its_fleets_fit_on_one_machine() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fleets-example");
    let snapshot = DirSource { root }
        .load()
        .expect("fleets-example is readable");
    let docs = match load_documents(&snapshot.files) {
        Ok(docs) => docs,
        Err(err) => panic!(
            "fleets-example is invalid:\n{}",
            err.0.iter().map(|e| format!("{e}\n")).collect::<String>()
        ),
    };
    assert!(
        docs.len() >= 3,
        "expected at least 3 schedulers, got {}",
        docs.len()
    );

    for doc in &docs {
        let s = &doc.scheduler;
        let local = s
            .local
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no local command", s.name));
        assert_eq!(local.command[..2], ["troupe", "demo-room"], "{}", s.name);
        assert!(
            s.spec.ports().any(|p| p.name == "http"),
            "{}: the demo room serves on `http`",
            s.name
        );
        assert!(
            40000 <= s.port_range.start && s.port_range.end <= 45000,
            "{}",
            s.name
        );
    }
    // On the local runtime every room binds loopback ports: fleets must not share any.
    for (i, a) in docs.iter().enumerate() {
        for b in &docs[i + 1..] {
            let (ra, rb) = (a.scheduler.port_range, b.scheduler.port_range);
            assert!(
                ra.end <= rb.start || rb.end <= ra.start,
                "{} and {} share ports",
                a.scheduler.name,
                b.scheduler.name
            );
        }
    }
    // One fleet is the pod a production game server needs, in Kubernetes' own words.
    let full = docs
        .iter()
        .map(|d| &d.scheduler.spec)
        .find(|s| s.init_containers.is_some())
        .expect("a fleet with a sidecar");
    let server = &full.containers[0];
    assert!(
        server.env.iter().any(|e| e
            .value_from
            .as_ref()
            .is_some_and(|v| v.secret_key_ref.is_some())),
        "a Secret"
    );
    assert!(
        full.volumes
            .iter()
            .flatten()
            .any(|v| v.config_map.is_some()),
        "a ConfigMap volume"
    );
    assert!(server.readiness_probe.is_some(), "a readiness probe");
    assert!(full.image_pull_secrets.is_some(), "imagePullSecrets");
    assert!(
        full.init_containers
            .iter()
            .flatten()
            .any(|c| c.restart_policy.as_deref() == Some("Always")),
        "a native sidecar"
    );
    assert!(
        docs.iter().any(|d| d.scheduler.autoscaled()),
        "one fleet shows autoscaling"
    );
    assert!(
        docs.iter()
            .any(|d| d.scheduler.match_allocation.max_matches > 1),
        "one fleet shows multi-match rooms"
    );
}
