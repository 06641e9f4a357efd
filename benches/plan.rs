//! Planner throughput on a large fleet: 1,000 schedulers with 100 live rooms each, (a) all in
//! sync, (b) 10% with a template change (an image bump, so a rollout and a YAML diff each).
//! The promise to keep: well under 100 ms for either.

use std::collections::BTreeMap;

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use troupe::domain::plan::{LiveRoom, LiveScheduler, LiveState, PlanOptions, plan, render};
use troupe::domain::room::RoomStatus;
use troupe::domain::spec::Scheduler;

const SCHEDULERS: usize = 1_000;
const ROOMS_PER_SCHEDULER: usize = 100;
/// One scheduler in this many gets a new image in case (b).
const CHANGED_EVERY: usize = 10;

/// A realistic scheduler document: several containers' worth of fields, placement, autoscaling
/// on every other one, forwarders.
fn scheduler(i: usize) -> Scheduler {
    let autoscaling = if i.is_multiple_of(2) {
        "autoscaling:\n  enabled: true\n  min: 2\n  max: 200\n  policy: {type: roomOccupancy, parameters: {roomOccupancy: {readyTarget: 0.3, downThreshold: 0.9}}}\n"
    } else {
        ""
    };
    let yaml = format!(
        r#"
name: arena-{i:04}
game: arena
roomsReplicas: {ROOMS_PER_SCHEDULER}
maxSurge: 25%
portRange: {{start: 40000, end: 41000}}
matchAllocation: {{maxMatches: 2}}
timeouts: {{pending: 120s, unready: 120s, ping: 60s, terminating: 120s}}
labels: {{team: arena, region: eu-{i}}}
spec:
  terminationGracePeriod: 30s
  containers:
    - name: server
      image: registry.example/arena:1.4.2
      command: ["/server", "--mode=dedicated"]
      env: [{{name: LOG_LEVEL, value: info}}, {{name: REGION, value: eu}}]
      requests: {{cpu: 250m, memory: 256Mi}}
      limits: {{cpu: "1", memory: 512Mi}}
      ports: [{{name: game, protocol: UDP, port: 7777}}, {{name: query, protocol: TCP, port: 7778}}]
  nodeSelector: {{pool: game}}
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms: [{{matchExpressions: [{{key: pool, operator: In, values: [game]}}]}}]
  tolerations: [{{key: dedicated, operator: Equal, value: game, effect: NoSchedule}}]
{autoscaling}forwarders:
  - {{name: matchmaker, url: "http://mm.internal/events", timeout: 500ms}}
"#
    );
    serde_saphyr::from_str(&yaml).expect("bench YAML parses")
}

/// fleets-example/arena-ranked.yaml as scheduler `i`: the whole production pod (Secret,
/// ConfigMap volume, probes, sidecar, security contexts, topology spread).
fn full_pod_scheduler(i: usize) -> Scheduler {
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fleets-example/arena-ranked.yaml"
    ))
    .expect("fleets-example/arena-ranked.yaml")
    .replace("name: arena-ranked", &format!("name: ranked-{i:04}"))
    .replace(
        "roomsReplicas: 2",
        &format!("roomsReplicas: {ROOMS_PER_SCHEDULER}"),
    )
    .replace("{start: 42000, end: 42100}", "{start: 40000, end: 41000}");
    serde_saphyr::from_str(&yaml).expect("the example parses")
}

fn live_state(desired: &[Scheduler]) -> LiveState {
    let statuses = [
        RoomStatus::Ready,
        RoomStatus::Occupied,
        RoomStatus::Active,
        RoomStatus::Ready,
        RoomStatus::Allocated,
    ];
    let schedulers: BTreeMap<_, _> = desired
        .iter()
        .map(|s| {
            let version = s.version();
            let rooms = (0..ROOMS_PER_SCHEDULER)
                .map(|r| LiveRoom {
                    id: format!("{}-{r:03}", s.name),
                    version: version.clone(),
                    status: statuses[r % statuses.len()],
                })
                .collect();
            let live = LiveScheduler {
                applied: s.clone(),
                target_rooms: ROOMS_PER_SCHEDULER as u32,
                rooms,
            };
            (s.name.clone(), live)
        })
        .collect();
    LiveState { schedulers }
}

fn bench(c: &mut Criterion) {
    let in_sync: Vec<Scheduler> = (0..SCHEDULERS).map(scheduler).collect();
    let live = live_state(&in_sync);
    let changed: Vec<Scheduler> = in_sync
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut s = s.clone();
            if i % CHANGED_EVERY == 0 {
                s.spec.containers[0].image = "registry.example/arena:1.4.3".to_string();
            }
            s
        })
        .collect();
    let opts = PlanOptions {
        prune: false,
        revision: Some("bench".into()),
    };

    let p = plan(&in_sync, &live, &opts);
    assert!(!p.has_changes());
    let p = plan(&changed, &live, &opts);
    assert_eq!(p.summary.rollout as usize, SCHEDULERS / CHANGED_EVERY);

    let mut g = c.benchmark_group("plan 1000 schedulers x 100 rooms");
    g.bench_function("all in sync", |b| {
        b.iter(|| plan(black_box(&in_sync), black_box(&live), &opts))
    });
    g.bench_function("10% template changes", |b| {
        b.iter(|| plan(black_box(&changed), black_box(&live), &opts))
    });
    g.finish();

    let full: Vec<Scheduler> = (0..SCHEDULERS).map(full_pod_scheduler).collect();
    let full_live = live_state(&full);
    let full_changed: Vec<Scheduler> = full
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut s = s.clone();
            if i % CHANGED_EVERY == 0
                && let Some(probe) = s.spec.containers[0].readiness_probe.as_mut()
            {
                probe.period_seconds = Some(5);
            }
            s
        })
        .collect();
    assert!(!plan(&full, &full_live, &opts).has_changes());
    let p_full = plan(&full_changed, &full_live, &opts);
    assert_eq!(p_full.summary.rollout as usize, SCHEDULERS / CHANGED_EVERY);
    let mut g = c.benchmark_group("plan 1000 full-pod schedulers x 100 rooms");
    g.bench_function("all in sync", |b| {
        b.iter(|| plan(black_box(&full), black_box(&full_live), &opts))
    });
    g.bench_function("10% probe changes", |b| {
        b.iter(|| plan(black_box(&full_changed), black_box(&full_live), &opts))
    });
    g.finish();

    let mut g = c.benchmark_group("render 10% template changes");
    g.bench_function("text", |b| b.iter(|| render::text(black_box(&p), false)));
    g.bench_function("markdown", |b| {
        b.iter(|| render::markdown(black_box(&p), render::DEFAULT_MARKDOWN_LIMIT))
    });
    g.bench_function("json", |b| b.iter(|| render::json(black_box(&p))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
