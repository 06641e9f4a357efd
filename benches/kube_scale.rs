//! Benchmark: one scheduler scaled from 0 to 1,000 rooms on the Kubernetes runtime, against the
//! real test control plane (kwok nodes): time until every pod runs and until the controller has
//! seen every room running, requests the controller sent to the API server, and its CPU time.
//!
//! Run: `TROUPE_TEST_KUBECONFIG=... cargo bench --bench kube_scale` (`ROOMS=2000` to change the
//! size; `tests/cluster/up.sh` starts a cluster and prints its env file, which sets KUBECONFIG).
//! `TEMPLATE=ranked` runs the whole production pod of fleets-example/arena-ranked.yaml (Secret,
//! ConfigMap volume, probe, sidecar, …) instead of a bare container, its requests scaled down so
//! that 1,000 rooms fit on the test nodes.
//! First, in the same run, the baseline: the pods Troupe creates for the same rooms (rendered by
//! its own pod builder from the same template) posted straight to the API server by 32
//! concurrent clients, timed until every one runs. Troupe's figure is read against it (the
//! goal: Troupe's rate at least 80 % of the baseline's).
//! Under `cargo test` it only checks that it builds.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Give up when the fleet is not up by then.
const LIMIT: Duration = Duration::from_secs(600);

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("kube_scale: skipped (run it with `cargo bench --bench kube_scale`)");
        return;
    }
    let kubeconfig = std::env::var("TROUPE_TEST_KUBECONFIG")
        .or_else(|_| std::env::var("KUBECONFIG"))
        .expect("kube_scale needs a cluster: set TROUPE_TEST_KUBECONFIG (tests/cluster/up.sh starts one)");
    let wanted: u32 = std::env::var("ROOMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    // Two threads, as many as the machine's cores: the 64 matchmakers of the allocation phase
    // must not queue behind one another on one thread.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(&kubeconfig, wanted));
}

fn scheduler_yaml(rooms: u32) -> String {
    if std::env::var("TEMPLATE").as_deref() == Ok("ranked") {
        return ranked_yaml(rooms);
    }
    format!(
        r#"name: scale
game: bench
roomsReplicas: {rooms}
portRange: {{start: 43000, end: 46000}}
timeouts: {{pending: 600s, unready: 600s, ping: 600s, terminating: 60s}}
spec:
  terminationGracePeriod: 1s
  containers:
    - name: server
      image: registry.example/bench:1
      requests: {{cpu: 10m, memory: 16Mi}}
      ports: [{{name: game, protocol: UDP, port: 7777}}]
  nodeSelector: {{pool: game}}
"#
    )
}

/// fleets-example/arena-ranked.yaml as the `scale` scheduler of `rooms` rooms.
fn ranked_yaml(rooms: u32) -> String {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fleets-example/arena-ranked.yaml"
    ))
    .expect("fleets-example/arena-ranked.yaml");
    let spec = &example[example.find("\nspec:\n").expect("the example has a spec")..];
    let spec = spec
        .replace("cpu: 500m, memory: 512Mi", "cpu: 10m, memory: 16Mi")
        .replace("cpu: 50m, memory: 64Mi", "cpu: 5m, memory: 8Mi");
    format!(
        "name: scale\ngame: bench\nroomsReplicas: {rooms}\nportRange: {{start: 43000, end: 46000}}\ntimeouts: {{pending: 600s, unready: 600s, ping: 600s, terminating: 60s}}{spec}"
    )
}

async fn run(kubeconfig: &str, wanted: u32) {
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(kubeconfig).expect("a readable kubeconfig"),
        &KubeConfigOptions::default(),
    )
    .await
    .expect("a usable kubeconfig");
    let client = kube::Client::try_from(config).unwrap();
    // The ranked template names a priority class: it must exist.
    let classes: Api<k8s_openapi::api::scheduling::v1::PriorityClass> = Api::all(client.clone());
    let class = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "game-server"}, "value": 1000}),
    )
    .unwrap();
    let _ = classes
        .create(&kube::api::PostParams::default(), &class)
        .await;
    // As deployed: the Scheduler resource is defined, so its status writes are measured too.
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let crd = serde_saphyr::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/crd.yaml"))
            .expect("deploy/crd.yaml"),
    )
    .expect("deploy/crd.yaml");
    let _ = crds.create(&kube::api::PostParams::default(), &crd).await;
    let mut suffix = [0u8; 3];
    getrandom::fill(&mut suffix).unwrap();
    let prefix = format!("bench-{}-", hex::encode(suffix));
    let namespace = format!("{prefix}scale");
    let raw_s = raw_pods(
        &client,
        &format!("{prefix}raw"),
        &scheduler_yaml(wanted),
        wanted,
    )
    .await;
    println!(
        "kube_scale: baseline: Troupe's {wanted} pods posted by {RAW_CLIENTS} clients: every pod Running after {raw_s:.1} s"
    );

    let dir = tempfile::tempdir().unwrap();
    let fleets = dir.path().join("fleets");
    std::fs::create_dir_all(&fleets).unwrap();
    std::fs::write(fleets.join("scale.yaml"), scheduler_yaml(0)).unwrap();
    let child = common::Serve::start(
        &[
            fleets.to_str().unwrap(),
            "--runtime",
            "kubernetes",
            "--kube-namespace-prefix",
            &prefix,
        ],
        &dir.path().join("state"),
        &[("KUBECONFIG", kubeconfig)],
    );
    let url = child.url.clone();
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        async move { http.get(path).send().await.ok()?.text().await.ok() }
    };
    // The scheduler exists with no rooms: from here on only the scale-up is measured.
    let start = Instant::now();
    loop {
        let text = get(format!("{url}/api/v1/schedulers/scale")).await;
        if text.is_some_and(|t| t.contains("\"version\"")) {
            break;
        }
        assert!(start.elapsed() < LIMIT, "the scheduler was never applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let requests_before = requests(&get(format!("{url}/metrics")).await.unwrap_or_default());
    let cpu_before = cpu_seconds(child.id());

    std::fs::write(fleets.join("scale.yaml"), scheduler_yaml(wanted)).unwrap();
    let began = Instant::now();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let (mut pods_running_after, mut rooms_running_after) = (None, None);
    while pods_running_after.is_none() || rooms_running_after.is_none() {
        assert!(
            began.elapsed() < LIMIT,
            "not all {wanted} rooms running after {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        if pods_running_after.is_none() && running(&pods).await == wanted as usize {
            pods_running_after = Some(began.elapsed());
        }
        if rooms_running_after.is_none() {
            let rooms: serde_json::Value = get(format!(
                "{url}/api/v1/schedulers/scale/rooms?status=unready"
            ))
            .await
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
            if rooms.as_array().map_or(0, Vec::len) == wanted as usize {
                rooms_running_after = Some(began.elapsed());
            }
        }
    }
    // Let the status writes (pending → unready on every pod) drain before counting.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let metrics = get(format!("{url}/metrics")).await.unwrap_or_default();
    let requests_after = requests(&metrics);
    let cpu_after = cpu_seconds(child.id());

    let pods_s = pods_running_after.unwrap().as_secs_f64();
    let rooms_s = rooms_running_after.unwrap().as_secs_f64();
    println!(
        "kube_scale: 0 -> {wanted} rooms: every pod Running after {pods_s:.1} s ({:.0} % of the baseline's rate)",
        100.0 * raw_s / pods_s
    );
    println!(
        "kube_scale: 0 -> {wanted} rooms: the controller saw every room running after {rooms_s:.1} s"
    );
    println!(
        "kube_scale: API requests sent by the controller: {} ({:.2} per room; by method: {})",
        requests_after.0 - requests_before.0,
        (requests_after.0 - requests_before.0) as f64 / f64::from(wanted.max(1)),
        requests_after.1
    );
    println!(
        "kube_scale: controller CPU time during the scale-up: {:.2} s",
        cpu_after - cpu_before
    );

    // Allocation on the Kubernetes runtime: every room pings ready (as its game server would),
    // then 64 matchmakers allocate until none is left.
    let secret = std::fs::read_to_string(dir.path().join("state").join("secret")).unwrap();
    let rooms: Vec<serde_json::Value> = serde_json::from_str(
        &get(format!("{url}/api/v1/schedulers/scale/rooms"))
            .await
            .unwrap(),
    )
    .unwrap();
    let tokens: Vec<(String, String, String)> = rooms
        .iter()
        .map(|r| {
            let id = r["id"].as_str().unwrap().to_string();
            let token =
                troupe::domain::room::token::room_token(secret.trim().as_bytes(), "scale", &id);
            ("scale".to_string(), id, token)
        })
        .collect();
    let load = |clients, seconds, mode| troupe::tools::loadgen::Load {
        base_url: url.clone(),
        clients,
        duration: Duration::from_secs(seconds),
        mode,
    };
    troupe::tools::loadgen::run(load(
        16,
        3,
        troupe::tools::loadgen::Mode::Ping { rooms: tokens },
    ))
    .await;
    // The rooms' `ready` statuses are written to their pods from a queue: let it drain, so that
    // allocation is measured, not a backlog of label writes that real rooms (ready over minutes,
    // not in one second) do not make.
    let drained = Instant::now();
    loop {
        let metrics = get(format!("{url}/metrics")).await.unwrap_or_default();
        if common::gauge(&metrics, "troupe_runtime_records_pending") == 0.0 {
            break;
        }
        assert!(drained.elapsed() < LIMIT, "the status writes never drained");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let alloc = troupe::tools::loadgen::run(load(
        64,
        30,
        troupe::tools::loadgen::Mode::Allocate {
            scheduler: "scale".into(),
            api_token: None,
        },
    ))
    .await;
    println!(
        "kube_scale: allocations on the Kubernetes runtime: {:.0}/s, {} rooms handed out, duplicates {}; p50 {:.2} ms, p99 {:.2} ms; errors {}",
        alloc.ok as f64 / alloc.seconds,
        alloc.ok,
        alloc.duplicates,
        alloc.p50_ms,
        alloc.p99_ms,
        alloc.errors
    );

    drop(child);
    delete_now(&pods).await;
}

/// Delete every pod of `pods`, without grace.
async fn delete_now(pods: &Api<Pod>) {
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    let _ = pods.delete_collection(&now, &ListParams::default()).await;
}

/// Clients of the baseline.
const RAW_CLIENTS: usize = 32;

/// Post the pods Troupe would create for `n` rooms of scheduler `yaml` (its template, Troupe's
/// labels, variables and host ports) to a new namespace from [`RAW_CLIENTS`] concurrent
/// clients; seconds until every one runs. They are deleted, and gone, before this returns.
async fn raw_pods(client: &kube::Client, namespace: &str, yaml: &str, n: u32) -> f64 {
    use futures_util::StreamExt;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}})).unwrap();
    namespaces
        .create(&kube::api::PostParams::default(), &ns)
        .await
        .expect("the baseline's namespace");
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let scheduler: std::sync::Arc<troupe::domain::spec::Scheduler> =
        std::sync::Arc::new(serde_saphyr::from_str(yaml).expect("the bench's scheduler parses"));
    let per_room: u16 = scheduler
        .spec
        .containers
        .iter()
        .map(|c| c.ports.len() as u16)
        .sum();
    let pod = |i: u32| -> Pod {
        let first = 43000 + i as u16 * per_room;
        let host_ports: Vec<u16> = (first..first + per_room).collect();
        let room = troupe::runtime::StartRoom {
            scheduler: scheduler.clone(),
            room_id: format!("raw-{i}"),
            token: "t".repeat(43),
            rooms_url: "http://127.0.0.1:8080".into(),
        };
        troupe::runtime::kubernetes::pod::build_pod(&room, namespace, &host_ports, 0)
            .expect("the bench's pod")
    };
    let began = Instant::now();
    futures_util::stream::iter(0..n)
        .for_each_concurrent(RAW_CLIENTS, |i| {
            let pods = pods.clone();
            async move {
                pods.create(&kube::api::PostParams::default(), &pod(i))
                    .await
                    .expect("a baseline pod");
            }
        })
        .await;
    loop {
        assert!(began.elapsed() < LIMIT, "the baseline's pods never all ran");
        tokio::time::sleep(Duration::from_millis(500)).await;
        if running(&pods).await == n as usize {
            break;
        }
    }
    let took = began.elapsed().as_secs_f64();
    let _ = namespaces.delete(namespace, &DeleteParams::default()).await;
    delete_now(&pods).await;
    // Their host ports and node capacity must be free before Troupe's rooms come.
    while pods
        .list(&ListParams::default())
        .await
        .map_or(true, |l| !l.items.is_empty())
    {
        assert!(began.elapsed() < LIMIT, "the baseline's pods never went");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    took
}

/// How many of `pods` run. Only their metadata is listed, and only the running ones: polling
/// full pods twice a second would load the API server (and this process) with megabytes of
/// JSON that grow with the template, and slow what is measured.
async fn running(pods: &Api<Pod>) -> usize {
    pods.list_metadata(&ListParams::default().fields("status.phase=Running"))
        .await
        .map_or(0, |l| l.items.len())
}

/// The total of `troupe_kube_requests_total`, and its lines by method.
fn requests(metrics: &str) -> (u64, String) {
    let lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("troupe_kube_requests_total{"))
        .collect();
    let total = lines
        .iter()
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64;
    let by_method = lines
        .iter()
        .map(|l| {
            l.trim_start_matches("troupe_kube_requests_total{method=\"")
                .replace("\"} ", "=")
        })
        .collect::<Vec<_>>()
        .join(", ");
    (total, by_method)
}

/// User plus system CPU time of a process, from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After the command name: state is field 3, utime 14 and stime 15 (1-based, see proc(5)).
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let per_second = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    (ticks(14) + ticks(15)) as f64 / per_second
}
