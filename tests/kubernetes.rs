//! End to end on a real Kubernetes control plane (etcd, kube-apiserver, kube-scheduler, and kwok
//! playing the kubelet of three nodes): `troupe serve --runtime kubernetes` as a child process,
//! rooms as pods, and the test playing each game server — kwok pods run nothing, so the test pings
//! the rooms API for them with each room's own token.
//!
//! The cluster is found through `TROUPE_TEST_KUBECONFIG` (set by `tests/run`, which starts one
//! with `tests/cluster/up.sh`). Without it every test here fails, saying how to get one: a suite
//! that silently skipped them would prove nothing. Each test works under its own namespace
//! prefix and its own port range, so tests run side by side on one cluster.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use serde_json::Value;
use troupe::domain::operation::{OpKind, OpStatus, Operation};
use troupe::domain::plan::{LiveState, Plan};
use troupe::domain::room::{Room, RoomStatus};
use troupe::http::allocate::Allocation;
use troupe::http::api::SchedulerSummary;

const T: Duration = Duration::from_secs(90);
/// How often the simulated game servers ping.
const PING_EVERY: Duration = Duration::from_millis(300);

/// The test control plane.
struct Cluster {
    kubeconfig: PathBuf,
    client: Client,
}

async fn cluster() -> Cluster {
    let Ok(path) = std::env::var("TROUPE_TEST_KUBECONFIG") else {
        panic!(
            "TROUPE_TEST_KUBECONFIG is not set: the Kubernetes tests need a real control plane.\n\
             Run `bash tests/run` (it starts one), or start one and point the tests at it:\n  \
             env_file=$(tests/cluster/up.sh | tail -n1) && . \"$env_file\"\n  \
             TROUPE_TEST_KUBECONFIG=$KUBECONFIG cargo test --test kubernetes\n  \
             tests/cluster/down.sh \"$TROUPE_CLUSTER_DIR\""
        )
    };
    let kubeconfig = Kubeconfig::read_from(&path)
        .unwrap_or_else(|e| panic!("TROUPE_TEST_KUBECONFIG={path}: {e}"));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("TROUPE_TEST_KUBECONFIG={path}: {e}"));
    let client = Client::try_from(config).expect("a client for the test cluster");
    let kubeconfig = PathBuf::from(path);
    // The Scheduler resource is defined as deploy/ defines it, once per run.
    static DEFINED: std::sync::Once = std::sync::Once::new();
    DEFINED.call_once(|| {
        let crd = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/crd.yaml");
        kubectl(&kubeconfig, &["apply", "-f", crd.to_str().unwrap()]);
        kubectl(
            &kubeconfig,
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/schedulers.troupe.dev",
            ],
        );
    });
    Cluster { kubeconfig, client }
}

/// One test's corner of the cluster: its namespace prefix, git repository, state directory and
/// room-token secret (kept outside the state directory, as in deploy/, so a lost state
/// directory does not change every room's token).
struct Env {
    cluster: Cluster,
    prefix: String,
    repo: Repo,
    dir: tempfile::TempDir,
}

impl Drop for Env {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Every server's log (replicas have one each).
            let logs = std::fs::read_dir(self.dir.path())
                .into_iter()
                .flatten()
                .flatten();
            for log in logs.filter(|e| e.file_name().to_string_lossy().ends_with(".serve.log")) {
                let text = std::fs::read_to_string(log.path()).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(60)..];
                eprintln!(
                    "--- last lines of {}:\n{}",
                    log.file_name().to_string_lossy(),
                    tail.join("\n")
                );
            }
        }
        // The server (declared after the Env) is gone by now: nothing recreates the pods.
        let (client, prefix) = (self.cluster.client.clone(), self.prefix.clone());
        let cleanup = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the cleanup")
                .block_on(delete_pods(client, &prefix))
        });
        let _ = cleanup.join();
    }
}

/// Delete every pod under `prefix` (namespaces stay: the test cluster runs no namespace
/// controller to finalize their deletion), so their host ports are free for other tests.
async fn delete_pods(client: Client, prefix: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let Ok(list) = namespaces.list(&ListParams::default()).await else {
        return;
    };
    for ns in list.items {
        let name = ns.name_any();
        if !name.starts_with(prefix) {
            continue;
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), &name);
        let _ = pods
            .delete_collection(
                &DeleteParams {
                    grace_period_seconds: Some(0),
                    ..DeleteParams::default()
                },
                &ListParams::default(),
            )
            .await;
    }
}

impl Env {
    async fn new(name: &str) -> Self {
        let cluster = cluster().await;
        let mut bytes = [0u8; 3];
        getrandom::fill(&mut bytes).unwrap();
        let prefix = format!("{name}-{}-", hex::encode(bytes));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "test-room-secret").unwrap();
        Self {
            cluster,
            prefix,
            repo: Repo::new(),
            dir,
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn secret(&self) -> Vec<u8> {
        b"test-room-secret".to_vec()
    }

    fn serve(&self, extra: &[&str]) -> Server {
        self.serve_in(&self.state_dir(), extra)
    }

    /// A server with its own state directory (another replica).
    fn serve_in(&self, state_dir: &Path, extra: &[&str]) -> Server {
        let secret = self.dir.path().join("secret");
        let mut args = vec![
            "--runtime",
            "kubernetes",
            "--kube-namespace-prefix",
            &self.prefix,
            "--secret-file",
            secret.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        Server::start_with_env(
            self.repo.path(),
            state_dir,
            &args,
            &[("KUBECONFIG", self.cluster.kubeconfig.to_str().unwrap())],
        )
    }

    fn namespace(&self, scheduler: &str) -> String {
        format!("{}{scheduler}", self.prefix)
    }

    /// The scheduler's pods that are not being deleted.
    async fn pods(&self, scheduler: &str) -> Vec<Pod> {
        let api: Api<Pod> =
            Api::namespaced(self.cluster.client.clone(), &self.namespace(scheduler));
        match api.list(&ListParams::default()).await {
            Ok(list) => list
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect(),
            Err(kube::Error::Api(s)) if s.is_not_found() => vec![],
            Err(e) => panic!("listing pods: {e}"),
        }
    }
}

/// A scheduler document for the Kubernetes runtime. `spec_extra` goes inside `spec:` (indented
/// by two spaces), `extra` at the top level.
fn kube_yaml(
    name: &str,
    replicas: u32,
    ports: (u16, u16),
    image_tag: &str,
    spec_extra: &str,
    extra: &str,
) -> String {
    format!(
        r#"name: {name}
game: arena
roomsReplicas: {replicas}
maxSurge: 1
portRange: {{start: {}, end: {}}}
timeouts: {{pending: 60s, unready: 60s, ping: 30s, terminating: 30s}}
labels: {{team: arena}}
spec:
  terminationGracePeriod: 1s
  containers:
    - name: server
      image: registry.example/arena:{image_tag}
      env: [{{name: BUILD, value: "{image_tag}"}}]
      ports: [{{name: game, protocol: UDP, port: 7777}}]
{spec_extra}
{extra}"#,
        ports.0, ports.1
    )
}

const ON_GAME_NODES: &str = "  nodeSelector: {pool: game}";

/// The game servers of one scheduler, played by the test: every room that runs pings `ready`,
/// or `occupied` when its id is in `occupied`, every [`PING_EVERY`], with its own token.
struct Game {
    occupied: Arc<Mutex<HashSet<String>>>,
    /// Pings answered with something else than 200, by room.
    refused: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Game {
    fn start(server: &Server, secret: Vec<u8>, scheduler: &str) -> Self {
        Self::start_on(&[server], secret, scheduler)
    }

    /// Game servers that talk to whichever of `servers` answers (the leader of replicas).
    fn start_on(servers: &[&Server], secret: Vec<u8>, scheduler: &str) -> Self {
        let occupied: Arc<Mutex<HashSet<String>>> = Arc::default();
        let refused: Arc<Mutex<Vec<String>>> = Arc::default();
        let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
        let scheduler = scheduler.to_owned();
        let (occ, refs) = (occupied.clone(), refused.clone());
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let mut rooms = vec![];
                let mut url = urls[0].clone();
                for u in &urls {
                    // Before the scheduler is known, while the server restarts, or on a
                    // standby replica: no rooms there.
                    let Ok(r) = http
                        .get(format!("{u}/api/v1/schedulers/{scheduler}/rooms"))
                        .send()
                        .await
                    else {
                        continue;
                    };
                    if !r.status().is_success() {
                        continue;
                    }
                    if let Ok(body) = r.text().await {
                        rooms = serde_json::from_str::<Vec<Room>>(&body)
                            .unwrap_or_else(|e| panic!("not a list of rooms ({e}): {body}"));
                        url = u.clone();
                        break;
                    }
                }
                for room in rooms {
                    let id = room.id.clone();
                    if ![
                        RoomStatus::Unready,
                        RoomStatus::Ready,
                        RoomStatus::Occupied,
                        RoomStatus::Active,
                        RoomStatus::Allocated,
                    ]
                    .contains(&status_of(&room))
                    {
                        continue;
                    }
                    let status = if occ.lock().unwrap().contains(&id) {
                        "occupied"
                    } else {
                        "ready"
                    };
                    let token = troupe::domain::room::token::room_token(&secret, &scheduler, &id);
                    let resp = http
                        .put(format!("{url}/scheduler/{scheduler}/rooms/{id}/ping"))
                        .bearer_auth(token)
                        .json(&serde_json::json!({"status": status}))
                        .send()
                        .await;
                    match resp {
                        Ok(r) if r.status().is_success() => {}
                        // A room stopped between the list and the ping; a replica that stopped
                        // leading meanwhile.
                        Ok(r) if [409, 404, 503].contains(&r.status().as_u16()) => {}
                        Ok(r) => refs.lock().unwrap().push(format!("{id}: {}", r.status())),
                        Err(_) => {}
                    }
                }
                tokio::time::sleep(PING_EVERY).await;
            }
        });
        Self {
            occupied,
            refused,
            task,
        }
    }

    fn occupy(&self, room: &str) {
        self.occupied.lock().unwrap().insert(room.to_owned());
    }

    fn free(&self, room: &str) {
        self.occupied.lock().unwrap().remove(room);
    }
}

impl Drop for Game {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn id(room: &Room) -> String {
    room.id.clone()
}

fn ids(rooms: &[Room]) -> BTreeSet<String> {
    rooms.iter().map(id).collect()
}

/// The host port of the room's first port (0 when it has none).
fn game_port(room: &Room) -> u16 {
    room.ports.first().map_or(0, |p| p.port)
}

/// The scheduler's version (`GET /api/v1/schedulers/{name}` is its summary and its specs).
async fn version_of(server: &Server, scheduler: &str) -> String {
    server
        .get_as::<SchedulerSummary>(&format!("/api/v1/schedulers/{scheduler}"))
        .await
        .version
}

async fn wait_ready(server: &Server, scheduler: &str, n: usize) -> Vec<Room> {
    wait_for(&format!("{n} ready rooms of {scheduler}"), T, || async {
        let rooms = server.rooms(scheduler).await;
        (rooms.len() == n && count(&rooms, RoomStatus::Ready) == n).then_some(rooms)
    })
    .await
}

/// The newest finished operation of `kind` on `scheduler`.
async fn wait_op(server: &Server, scheduler: &str, kind: OpKind) -> Operation {
    wait_for(
        &format!("a finished {} operation on {scheduler}", kind.as_str()),
        T,
        || async {
            server
                .ops(scheduler)
                .await
                .into_iter()
                .find(|o| o.kind == kind)
                .filter(op_finished)
        },
    )
    .await
}

fn node_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

fn label<'a>(pod: &'a Pod, key: &str) -> &'a str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map_or("", String::as_str)
}

fn running(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

async fn kube_requests(server: &Server) -> u64 {
    let text = server
        .http
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("troupe_kube_requests_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_run_as_pods_get_their_address_and_become_ready_when_they_ping() {
    let env = Env::new("create").await;
    env.repo.commit(
        "arena",
        &[(
            "arena.yaml",
            &kube_yaml("arena", 3, (42000, 42100), "1", ON_GAME_NODES, ""),
        )],
    );
    let server = env.serve(&[]);

    // Pods run on the game nodes; each room knows its node's address and its own host port.
    let rooms = wait_for("3 placed, running rooms", T, || async {
        let rooms = server.rooms("arena").await;
        (rooms.len() == 3
            && rooms
                .iter()
                .all(|r| status_of(r) == RoomStatus::Unready && !r.host.is_empty()))
        .then_some(rooms)
    })
    .await;
    let pods = env.pods("arena").await;
    assert_eq!(pods.len(), 3);
    assert_eq!(
        pods.iter().map(|p| p.name_any()).collect::<BTreeSet<_>>(),
        ids(&rooms),
        "one pod per room, named after it"
    );
    let node_ips = BTreeMap::from([("kwok-node-0", "127.0.1.1"), ("kwok-node-1", "127.0.1.2")]);
    for pod in &pods {
        assert!(running(pod));
        let node = node_of(pod);
        let room = rooms.iter().find(|r| id(r) == pod.name_any()).unwrap();
        assert_eq!(
            Some(room.host.as_str()),
            node_ips.get(node.as_str()).copied(),
            "room {} on {node}",
            id(room)
        );
        assert_eq!(label(pod, "app.kubernetes.io/managed-by"), "troupe");
        assert_eq!(label(pod, "troupe.dev/scheduler"), "arena");
        assert_eq!(label(pod, "team"), "arena");
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let env_of = |name: &str| {
            container
                .env
                .iter()
                .flatten()
                .find(|e| e.name == name)
                .and_then(|e| e.value.clone())
                .unwrap_or_default()
        };
        assert_eq!(
            env_of("TROUPE_ROOM_TOKEN"),
            troupe::domain::room::token::room_token(&env.secret(), "arena", &pod.name_any())
        );
        assert_eq!(env_of("TROUPE_ROOMS_URL"), server.url);
        assert_eq!(env_of("TROUPE_PORT_GAME"), game_port(room).to_string());
        let port = &container.ports.as_ref().unwrap()[0];
        assert_eq!(port.host_port, Some(i32::from(game_port(room))));
    }
    let ports: BTreeSet<u16> = rooms.iter().map(game_port).collect();
    assert_eq!(ports.len(), 3, "host ports are unique: {rooms:?}");
    assert!(ports.iter().all(|p| (42000..42100).contains(p)));

    let game = Game::start(&server, env.secret(), "arena");
    wait_ready(&server, "arena", 3).await;
    // Statuses are written to the pods, asynchronously.
    wait_for("the ready status on every pod", T, || async {
        let pods = env.pods("arena").await;
        pods.iter()
            .all(|p| label(p, "troupe.dev/status") == "ready")
            .then_some(())
    })
    .await;

    // Pings that change nothing make no API call. First the writes that follow the rooms'
    // readiness settle: the scheduler's status resource (every 2 s) and the records queue.
    let ns = env.namespace("arena");
    wait_for(
        "the scheduler's status to show the ready rooms",
        T,
        || async {
            let out = kubectl_run(
                &env.cluster.kubeconfig,
                &[
                    "get",
                    "tsch",
                    "arena",
                    "-n",
                    &ns,
                    "-o=jsonpath={.status.rooms.ready} {.status.lastOperation}",
                ],
            );
            let shown = String::from_utf8_lossy(&out.stdout).into_owned();
            (shown.starts_with("3 ") && shown.ends_with(" succeeded")).then_some(())
        },
    )
    .await;
    wait_for("the records to land", T, || async {
        let metrics = server
            .http
            .get(format!("{}/metrics", server.url))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        metrics
            .lines()
            .any(|l| l == "troupe_runtime_records_pending 0")
            .then_some(())
    })
    .await;
    let before = kube_requests(&server).await;
    server
        .metric_grows(r#"troupe_pings_total{outcome="ok""#, 30.0, T)
        .await;
    assert_eq!(
        kube_requests(&server).await,
        before,
        "30 pings that change nothing sent no request to the API server"
    );
    assert!(game.refused.lock().unwrap().is_empty());

    // `troupe plan --runtime kubernetes` reads live state from the cluster alone.
    let plan = |source: &Path| kube_plan(&env, source);
    let out = plan(env.repo.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "no changes: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let changed = tempfile::tempdir().unwrap();
    std::fs::write(
        changed.path().join("arena.yaml"),
        kube_yaml("arena", 5, (42000, 42100), "1", ON_GAME_NODES, ""),
    )
    .unwrap();
    let out = plan(changed.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("arena"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_change_rolls_out_within_max_surge_and_never_deletes_an_occupied_room() {
    let env = Env::new("rollout").await;
    let yaml = |tag: &str| kube_yaml("arena", 3, (42100, 42200), tag, ON_GAME_NODES, "");
    env.repo.commit("v1", &[("arena.yaml", &yaml("1"))]);
    let server = env.serve(&[]);
    let game = Game::start(&server, env.secret(), "arena");
    let rooms = wait_ready(&server, "arena", 3).await;
    let v1 = version_of(&server, "arena").await;
    let busy = id(&rooms[0]);
    game.occupy(&busy);
    wait_for("the room to report occupied", T, || async {
        let rooms = server.rooms("arena").await;
        rooms
            .iter()
            .any(|r| id(r) == busy && status_of(r) == RoomStatus::Occupied)
            .then_some(())
    })
    .await;

    env.repo.commit("v2", &[("arena.yaml", &yaml("2"))]);
    let mut max_free = 0;
    let op = loop {
        let rooms = server.rooms("arena").await;
        let free = rooms
            .iter()
            .filter(|r| {
                ![
                    RoomStatus::Occupied,
                    RoomStatus::Active,
                    RoomStatus::Allocated,
                    RoomStatus::Terminating,
                ]
                .contains(&status_of(r))
            })
            .count();
        max_free = max_free.max(free);
        assert!(
            rooms
                .iter()
                .any(|r| id(r) == busy && status_of(r) == RoomStatus::Occupied),
            "the occupied room was touched: {rooms:#?}"
        );
        let pods = env.pods("arena").await;
        assert!(
            pods.iter().any(|p| p.name_any() == busy),
            "the occupied room's pod was deleted"
        );
        if let Some(op) = server
            .ops("arena")
            .await
            .into_iter()
            .find(|o| o.kind == OpKind::Rollout && op_finished(o))
        {
            break op;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(op.status, OpStatus::Succeeded, "{op:#?}");
    assert!(
        max_free <= 3 + 1,
        "free rooms went to {max_free}, above 3 + maxSurge 1"
    );
    let v2 = version_of(&server, "arena").await;
    assert_ne!(v1, v2);
    let rooms = server.rooms("arena").await;
    let new: Vec<&Room> = rooms.iter().filter(|r| r.version == v2).collect();
    assert_eq!(new.len(), 3, "{rooms:#?}");
    let pods = env.pods("arena").await;
    for pod in &pods {
        let expected = if pod.name_any() == busy { &v1 } else { &v2 };
        assert_eq!(label(pod, "troupe.dev/version"), expected);
    }
    assert_eq!(pods.len(), 4, "3 new pods and the occupied one");

    // Once its match ends, the outdated room goes, pod and all.
    game.free(&busy);
    wait_for("the outdated room and its pod to go", T, || async {
        let rooms = server.rooms("arena").await;
        let pods = env.pods("arena").await;
        (rooms.len() == 3
            && rooms.iter().all(|r| r.version == v2)
            && pods.len() == 3
            && pods.iter().all(|p| p.name_any() != busy))
        .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_up_and_down_and_pruning_a_scheduler_create_and_delete_pods() {
    let env = Env::new("scale").await;
    let yaml = |n: u32| kube_yaml("arena", n, (42200, 42300), "1", ON_GAME_NODES, "");
    env.repo.commit("2 rooms", &[("arena.yaml", &yaml(2))]);
    let server = env.serve(&["--prune"]);
    let _game = Game::start(&server, env.secret(), "arena");
    wait_ready(&server, "arena", 2).await;

    env.repo.commit("4 rooms", &[("arena.yaml", &yaml(4))]);
    let rooms = wait_ready(&server, "arena", 4).await;
    assert_eq!(env.pods("arena").await.len(), 4);

    env.repo.commit("1 room", &[("arena.yaml", &yaml(1))]);
    let left = wait_for("one room and one pod", T, || async {
        let rooms = server.rooms("arena").await;
        let pods = env.pods("arena").await;
        (rooms.len() == 1 && pods.len() == 1 && pods[0].name_any() == id(&rooms[0]))
            .then_some(rooms)
    })
    .await;
    assert!(
        ids(&rooms).contains(&id(&left[0])),
        "an existing room is kept"
    );

    env.repo.commit("no arena", &[("arena.yaml", "")]);
    wait_for(
        "the scheduler, its rooms and pods to be gone",
        T,
        || async {
            let schedulers: Vec<SchedulerSummary> = server.get_as("/api/v1/schedulers").await;
            let gone = schedulers.iter().all(|s| s.name != "arena");
            (gone && env.pods("arena").await.is_empty()).then_some(())
        },
    )
    .await;
    let ns: Api<Namespace> = Api::all(env.cluster.client.clone());
    let ns = ns.get(&env.namespace("arena")).await.unwrap();
    assert!(
        ns.annotations().get("troupe.dev/applied").is_none(),
        "the deleted scheduler's spec is no longer recorded: {:?}",
        ns.annotations()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placement_change_recreates_the_rooms_on_the_matching_nodes() {
    let env = Env::new("place").await;
    env.repo.commit(
        "game pool",
        &[(
            "arena.yaml",
            &kube_yaml("arena", 2, (42300, 42400), "1", ON_GAME_NODES, ""),
        )],
    );
    let server = env.serve(&[]);
    let _game = Game::start(&server, env.secret(), "arena");
    wait_ready(&server, "arena", 2).await;
    for pod in env.pods("arena").await {
        assert!(
            ["kwok-node-0", "kwok-node-1"].contains(&node_of(&pod).as_str()),
            "{}",
            node_of(&pod)
        );
    }

    let batch = "  nodeSelector: {pool: batch}\n  tolerations: [{key: dedicated, operator: Equal, value: batch, effect: NoSchedule}]";
    env.repo.commit(
        "batch pool",
        &[(
            "arena.yaml",
            &kube_yaml("arena", 2, (42300, 42400), "1", batch, ""),
        )],
    );
    let op = wait_op(&server, "arena", OpKind::Rollout).await;
    assert_eq!(op.status, OpStatus::Succeeded, "{op:#?}");
    let rooms = wait_ready(&server, "arena", 2).await;
    assert!(rooms.iter().all(|r| r.host == "127.0.1.3"), "{rooms:#?}");
    let pods = wait_for("only the new pods", T, || async {
        let pods = env.pods("arena").await;
        (pods.len() == 2).then_some(pods)
    })
    .await;
    for pod in &pods {
        assert_eq!(node_of(pod), "kwok-node-2");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_whose_host_port_is_taken_on_its_node_moves_to_a_free_port() {
    let env = Env::new("ports").await;
    const FIRST: u16 = 42400;
    // Something else on the room's only node holds the first two ports of its range.
    let blockers = format!("{}blocker", env.prefix);
    let namespaces: Api<Namespace> = Api::all(env.cluster.client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": blockers}})).unwrap(),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(env.cluster.client.clone(), &blockers);
    for port in [FIRST, FIRST + 1] {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("holds-{port}")},
            "spec": {
                "nodeSelector": {"kubernetes.io/hostname": "kwok-node-0"},
                "containers": [{"name": "c", "image": "registry.example/other:1",
                    "ports": [{"containerPort": 7000, "hostPort": port, "protocol": "UDP"}]}]
            }
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    wait_for("the blocking pods to run", T, || async {
        let list = pods.list(&ListParams::default()).await.ok()?;
        (list.items.len() == 2 && list.items.iter().all(running)).then_some(())
    })
    .await;

    let pinned = "  nodeSelector: {kubernetes.io/hostname: kwok-node-0}";
    env.repo.commit(
        "arena",
        &[(
            "arena.yaml",
            &kube_yaml("arena", 1, (FIRST, FIRST + 4), "1", pinned, ""),
        )],
    );
    let server = env.serve(&[]);
    let _game = Game::start(&server, env.secret(), "arena");
    let rooms = wait_ready(&server, "arena", 1).await;
    let port = game_port(&rooms[0]);
    assert!(
        port == FIRST + 2 || port == FIRST + 3,
        "the room moved off the taken ports: {port}"
    );
    let op = wait_op(&server, "arena", OpKind::Create).await;
    assert_eq!(op.status, OpStatus::Succeeded, "{op:#?}");
    let pods = env.pods("arena").await;
    assert_eq!(pods.len(), 1);
    assert_eq!(
        pods[0].name_any(),
        id(&rooms[0]),
        "same room, same pod name"
    );
    let host_port = pods[0].spec.as_ref().unwrap().containers[0]
        .ports
        .as_ref()
        .unwrap()[0]
        .host_port;
    assert_eq!(host_port, Some(i32::from(port)));
    assert!(
        server.log().contains("recreating the pod on other ports"),
        "the first choice of port (the bottom of the range) was taken and healed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_cannot_be_pulled_fails_the_rollout_within_seconds_and_keeps_the_old_rooms() {
    let env = Env::new("pull").await;
    let yaml = |tag: &str| kube_yaml("arena", 2, (42500, 42600), tag, ON_GAME_NODES, "");
    env.repo.commit("v1", &[("arena.yaml", &yaml("1"))]);
    let server = env.serve(&[]);
    let _game = Game::start(&server, env.secret(), "arena");
    let old = ids(&wait_ready(&server, "arena", 2).await);

    env.repo
        .commit("v2", &[("arena.yaml", &yaml("cannot-pull"))]);
    let began = Instant::now();
    let op = wait_op(&server, "arena", OpKind::Rollout).await;
    let took = began.elapsed();
    assert_eq!(op.status, OpStatus::Failed, "{op:#?}");
    let error = op.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("ErrImagePull") || error.contains("ImagePullBackOff"),
        "the reason names the pull failure: {error}"
    );
    assert!(
        took < Duration::from_secs(20),
        "failed within seconds, not after a timeout: {took:?}"
    );
    // The old rooms keep serving, their pods untouched.
    let rooms = server.rooms("arena").await;
    let ready: BTreeSet<String> = rooms
        .iter()
        .filter(|r| status_of(r) == RoomStatus::Ready)
        .map(id)
        .collect();
    assert_eq!(ready, old, "{rooms:#?}");
    let pods: BTreeSet<String> = env
        .pods("arena")
        .await
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert!(pods.is_superset(&old));
    let failed = rooms
        .iter()
        .find(|r| status_of(r) == RoomStatus::Error)
        .expect("the failed room is shown");
    let reason = failed.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("Err") || reason.contains("BackOff"),
        "{failed:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_restarted_without_its_state_directory_rebuilds_the_fleet_from_the_cluster() {
    let env = Env::new("restart").await;
    env.repo.commit(
        "arena",
        &[(
            "arena.yaml",
            &kube_yaml("arena", 3, (42600, 42700), "1", ON_GAME_NODES, ""),
        )],
    );
    let mut server = env.serve(&[]);
    let game = Game::start(&server, env.secret(), "arena");
    let rooms = wait_ready(&server, "arena", 3).await;
    let version = version_of(&server, "arena").await;
    let busy = id(&rooms[0]);
    game.occupy(&busy);
    // Wait until the cluster has every room's status: the writes are asynchronous.
    let uids = wait_for("statuses recorded on the pods", T, || async {
        let pods = env.pods("arena").await;
        let recorded = pods.len() == 3
            && pods.iter().all(|p| {
                let want = if p.name_any() == busy {
                    "occupied"
                } else {
                    "ready"
                };
                label(p, "troupe.dev/status") == want
            });
        recorded.then(|| {
            pods.iter()
                .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
                .collect::<BTreeMap<_, _>>()
        })
    })
    .await;
    // History a person would miss: the operation that made the fleet, a suspension, the
    // revision seen, all recorded in the cluster before the state directory goes.
    let (status, body) = server.post("/api/v1/schedulers/arena/suspend", &()).await;
    assert_eq!(status, 200, "{body}");
    let records: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(env.cluster.client.clone(), &env.namespace("arena"));
    let create = wait_for("the finished create recorded in the cluster", T, || async {
        let cm = records.get_opt("troupe-operations").await.ok()??;
        let op: Operation = serde_json::from_str(cm.data?.values().next()?).ok()?;
        (op.status == OpStatus::Succeeded).then_some(op)
    })
    .await;
    let seen: Vec<troupe::controller::RevisionRecord> = server.get_as("/api/v1/revisions").await;
    let own: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::default_namespaced(env.cluster.client.clone());
    wait_for("the revision recorded in the cluster", T, || async {
        let cm = own
            .get_opt(&format!("{}troupe-revisions", env.prefix))
            .await
            .ok()??;
        cm.data?
            .get("revisions.json")?
            .contains(&seen[0].id)
            .then_some(())
    })
    .await;

    server.kill9();
    drop(game);
    std::fs::remove_dir_all(env.state_dir()).unwrap();
    server.spawn();

    let rooms = wait_for("the rooms rebuilt from the cluster", T, || async {
        let rooms = server.rooms("arena").await;
        (rooms.len() == 3).then_some(rooms)
    })
    .await;
    assert_eq!(ids(&rooms), uids.keys().cloned().collect());
    let busy_room = rooms.iter().find(|r| id(r) == busy).unwrap();
    assert_eq!(status_of(busy_room), RoomStatus::Occupied, "{rooms:#?}");
    assert!(
        rooms
            .iter()
            .filter(|r| id(r) != busy)
            .all(|r| status_of(r) == RoomStatus::Ready),
        "{rooms:#?}"
    );
    assert!(
        rooms
            .iter()
            .all(|r| !r.host.is_empty() && game_port(r) >= 42600)
    );
    assert_eq!(version_of(&server, "arena").await, version);
    let ops = server.ops("arena").await;
    assert!(
        ops.iter().any(|o| o.id == create.id
            && o.status == OpStatus::Succeeded
            && o.events == create.events),
        "the create and its events: {ops:#?}"
    );
    let schedulers: Vec<SchedulerSummary> = server.get_as("/api/v1/schedulers").await;
    assert!(schedulers[0].suspended, "{schedulers:#?}");
    let revisions: Vec<troupe::controller::RevisionRecord> =
        server.get_as("/api/v1/revisions").await;
    assert_eq!(revisions, seen, "the first sighting, not this start's");

    // The game servers carry on with their tokens; nothing is replaced.
    let game = Game::start(&server, env.secret(), "arena");
    game.occupy(&busy);
    server
        .metric_grows(r#"troupe_pings_total{outcome="ok""#, 10.0, T)
        .await;
    server.next_reconcile().await;
    let after: BTreeMap<String, String> = env
        .pods("arena")
        .await
        .iter()
        .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
        .collect();
    assert_eq!(after, uids, "the same pods run: none recreated");
    assert!(
        game.refused.lock().unwrap().is_empty(),
        "{:?}",
        game.refused.lock().unwrap()
    );
    let plan: Plan = server.get_as("/api/v1/plan").await;
    assert!(plan.changes.is_empty(), "nothing to change: {plan:#?}");
}

/// `kubectl` of the test cluster, as `kubeconfig`'s user: what it printed and how it exited.
fn kubectl_run(kubeconfig: &Path, args: &[&str]) -> std::process::Output {
    let kubectl = std::env::var("TROUPE_KUBECTL").unwrap_or_else(|_| {
        panic!("TROUPE_KUBECTL is not set: the cluster's env file (tests/cluster/up.sh) exports it")
    });
    std::process::Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs")
}

/// [`kubectl_run`] that must succeed: its standard output.
fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = kubectl_run(kubeconfig, args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kubectl {args:?}:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Where `actual` differs from `expected`, for every value `expected` sets (the API server adds
/// defaults; nothing written may be missing or changed).
fn differences(expected: &serde_json::Value, actual: &serde_json::Value, at: &str) -> Vec<String> {
    use serde_json::Value;
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .flat_map(|(k, v)| match a.get(k) {
                Some(got) => differences(v, got, &format!("{at}.{k}")),
                None => vec![format!("{at}.{k}: missing")],
            })
            .collect(),
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => e
            .iter()
            .zip(a)
            .enumerate()
            .flat_map(|(i, (v, got))| differences(v, got, &format!("{at}[{i}]")))
            .collect(),
        _ if expected == actual => vec![],
        _ => vec![format!("{at}: wrote {expected}, read back {actual}")],
    }
}

/// deploy/ as a platform team installs it: every object is created for real and reads back as
/// written; then two controllers run with the Deployment's own arguments and its
/// ServiceAccount's token, so what they may do is exactly what deploy/rbac.yaml grants: one
/// leads, its rooms run, it allocates; the ServiceAccount may not read Secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_creates_every_object_and_its_service_account_runs_two_replicas() {
    let env = Env::new("deploy").await;
    let admin = env.cluster.kubeconfig.clone();
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let deploy = deploy.to_str().unwrap();
    // Namespaced objects need their namespace first, as on a real cluster.
    kubectl(
        &admin,
        &["apply", "-f", &format!("{deploy}/namespace.yaml")],
    );
    kubectl(&admin, &["apply", "-f", deploy]);
    let written: serde_json::Value = serde_json::from_str(&kubectl(
        &admin,
        &["apply", "--dry-run=client", "-o", "json", "-f", deploy],
    ))
    .unwrap();
    let items = written["items"].as_array().expect("a list of objects");
    let mut kinds = BTreeSet::new();
    for item in items {
        let mut expected = item.clone();
        if let Some(a) = expected["metadata"]["annotations"].as_object_mut() {
            a.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
        let kind = item["kind"].as_str().unwrap();
        let name = item["metadata"]["name"].as_str().unwrap();
        let mut get = vec!["get", kind, name, "-o", "json"];
        if let Some(ns) = item["metadata"]["namespace"].as_str() {
            get.extend(["-n", ns]);
        }
        let actual: serde_json::Value = serde_json::from_str(&kubectl(&admin, &get)).unwrap();
        let diff = differences(&expected, &actual, &format!("{kind}/{name}"));
        assert!(diff.is_empty(), "{diff:#?}");
        kinds.insert(format!("{kind}/{name}"));
    }
    for kind in [
        "ServiceAccount/troupe",
        "ClusterRole/troupe",
        "ClusterRoleBinding/troupe",
        "Role/troupe-leader-election",
        "RoleBinding/troupe-leader-election",
        "Deployment/troupe",
        "PodDisruptionBudget/troupe",
        "Service/troupe",
        "Namespace/troupe-system",
        "CustomResourceDefinition/schedulers.troupe.dev",
    ] {
        assert!(kinds.contains(kind), "{kind} missing from {kinds:?}");
    }

    // The room-token secret, created as deployment.yaml says; each replica reads it as its
    // volume would hold it.
    let secret = String::from_utf8(env.secret()).unwrap();
    let literal = format!("--from-literal=secret={secret}");
    let made = kubectl_run(
        &admin,
        &[
            "-n",
            "troupe-system",
            "create",
            "secret",
            "generic",
            "troupe-room-secret",
            &literal,
        ],
    );
    let stderr = String::from_utf8_lossy(&made.stderr);
    assert!(
        made.status.success() || stderr.contains("already exists"),
        "{stderr}"
    );

    // The ServiceAccount's own credentials, in the namespace it runs in.
    let token = kubectl(
        &admin,
        &["-n", "troupe-system", "create", "token", "troupe"],
    );
    let kubeconfig = env.dir.path().join("troupe.kubeconfig");
    std::fs::copy(&admin, &kubeconfig).unwrap();
    let cluster_name = kubectl(
        &kubeconfig,
        &["config", "view", "-o", "jsonpath={.clusters[0].name}"],
    );
    kubectl(
        &kubeconfig,
        &[
            "config",
            "set-credentials",
            "troupe",
            &format!("--token={}", token.trim()),
        ],
    );
    kubectl(
        &kubeconfig,
        &[
            "config",
            "set-context",
            "troupe",
            &format!("--cluster={cluster_name}"),
            "--user=troupe",
            "--namespace=troupe-system",
        ],
    );
    kubectl(&kubeconfig, &["config", "use-context", "troupe"]);
    let can = |verb: &str, resource: &str, ns: &str| {
        let out = kubectl_run(&kubeconfig, &["auth", "can-i", verb, resource, "-n", ns]);
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    assert!(can("create", "pods", "any-scheduler"));
    assert!(can("update", "leases", "troupe-system"));
    assert!(
        !can("list", "secrets", "troupe-system"),
        "no Secret is the controller's to read"
    );
    assert!(
        !can("update", "leases", "any-scheduler"),
        "leases in troupe-system only"
    );
    assert!(!can("delete", "nodes", ""), "nodes are read only");

    // The Deployment's arguments, as the cluster stored them, with what this machine has instead
    // of the pod's: the test's repository, its own listener and state directory (given by the
    // harness), the secret's volume.
    let deployment: serde_json::Value = serde_json::from_str(&kubectl(
        &admin,
        &[
            "-n",
            "troupe-system",
            "get",
            "deployment",
            "troupe",
            "-o",
            "json",
        ],
    ))
    .unwrap();
    let secret_file = env.dir.path().join("room-secret");
    std::fs::write(&secret_file, &secret).unwrap();
    let container_args: Vec<String> =
        deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
    assert_eq!(container_args[0], "serve");
    assert!(
        container_args[1].starts_with("https://"),
        "Troupe clones the repository itself"
    );
    let mut args: Vec<String> = container_args[2..]
        .iter()
        .filter(|a| !a.starts_with("--state-dir=") && !a.starts_with("--listen="))
        .map(|a| match a.split_once('=') {
            Some(("--secret-file", _)) => format!("--secret-file={}", secret_file.display()),
            _ => a.clone(),
        })
        .collect();
    args.extend(["--kube-namespace-prefix".into(), env.prefix.clone()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let yaml = kube_yaml("arena", 3, (43400, 43450), "1", ON_GAME_NODES, "");
    env.repo.commit("3 rooms", &[("arena.yaml", &yaml)]);
    let replicas: Vec<Server> = ["a", "b"]
        .iter()
        .map(|d| {
            Server::start_with_env(
                env.repo.path(),
                &env.dir.path().join(d),
                &args,
                &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
            )
        })
        .collect();
    let leader = wait_for("one replica leads", T, || async {
        match [is_ready(&replicas[0]).await, is_ready(&replicas[1]).await] {
            [true, false] => Some(0),
            [false, true] => Some(1),
            [true, true] => panic!("two replicas lead"),
            _ => None,
        }
    })
    .await;
    let _game = Game::start_on(&[&replicas[0], &replicas[1]], env.secret(), "arena");
    wait_ready(&replicas[leader], "arena", 3).await;
    let http = reqwest::Client::new();
    let urls: Vec<String> = replicas.iter().map(|r| r.url.clone()).collect();
    let room = tokio::time::timeout(T, allocate_on_any(&http, &urls))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no room allocated in {T:?}; the leader's log:\n{}",
                replicas[leader].log()
            )
        })
        .expect("a room is allocated");
    let recorded = recorded_allocations(&env, "arena").await;
    assert!(
        recorded.contains(&room),
        "{room} is recorded in the cluster: {recorded:?}"
    );
    for r in &replicas {
        assert!(
            !r.log().contains("Forbidden"),
            "every request the controller made was allowed:\n{}",
            r.log()
        );
    }
}

/// A test's fleet for allocation: scheduler `arena` of `rooms` rooms on `ports`, served with
/// allocations kept 10 minutes, its game servers pinging, every room ready.
async fn allocatable(env: &Env, rooms: u32, ports: (u16, u16)) -> (Server, Game) {
    let yaml = kube_yaml("arena", rooms, ports, "1", ON_GAME_NODES, "");
    env.repo
        .commit(&format!("{rooms} rooms"), &[("arena.yaml", &yaml)]);
    let server = env.serve(&["--allocation-ttl", "10m"]);
    let game = Game::start(&server, env.secret(), "arena");
    wait_ready(&server, "arena", rooms as usize).await;
    (server, game)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocation_hands_each_pod_room_out_once_and_records_it_on_the_pod() {
    let env = Env::new("alloc").await;
    let (server, _game) = allocatable(&env, 20, (42600, 42700)).await;

    let http = reqwest::Client::new();
    let calls = (0..64).map(|_| {
        let (http, url) = (http.clone(), server.url.clone());
        async move {
            let resp = http
                .post(format!("{url}/scheduler/arena/rooms/allocate"))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body = Reply(resp.text().await.unwrap());
            (status, body)
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    let got: Vec<String> = answers
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b.json::<Allocation>().room)
        .collect();
    assert_eq!(got.len(), 20, "{answers:?}");
    assert_eq!(
        got.iter().collect::<BTreeSet<_>>().len(),
        20,
        "no room handed out twice"
    );
    assert!(
        answers
            .iter()
            .filter(|(s, _)| *s != 200)
            .all(|(s, b)| *s == 409 && b.error().code == "no_room")
    );
    // Every answer names the node's address and the room's host port.
    let one = answers.iter().find(|(s, _)| *s == 200).unwrap();
    assert!(
        one.1.json::<Allocation>().host.starts_with("127.0.1."),
        "{:?}",
        one.1
    );

    // Recorded in the cluster before they were answered (on the namespace, many per write), so
    // a controller that loses its state directory, or another replica, keeps them allocated.
    assert_eq!(
        recorded_allocations(&env, "arena").await,
        got.iter().cloned().collect::<BTreeSet<_>>()
    );
}

/// `troupe plan SOURCE --runtime kubernetes --detailed-exitcode` under the test's prefix, against
/// the test cluster.
fn kube_plan(env: &Env, source: &Path) -> std::process::Output {
    std::process::Command::new(TROUPE)
        .arg("plan")
        .arg(source)
        .args([
            "--runtime",
            "kubernetes",
            "--kube-namespace-prefix",
            &env.prefix,
        ])
        .args(["--detailed-exitcode", "--no-color"])
        .env("KUBECONFIG", &env.cluster.kubeconfig)
        .output()
        .unwrap()
}

/// The rooms whose allocation is recorded in the scheduler's namespace (its
/// `troupe-allocations-N` ConfigMaps).
async fn recorded_allocations(env: &Env, scheduler: &str) -> BTreeSet<String> {
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(env.cluster.client.clone(), &env.namespace(scheduler));
    let shards = api
        .list(&ListParams::default().labels("troupe.dev/allocations=true"))
        .await
        .unwrap();
    shards
        .items
        .iter()
        .flat_map(|cm| cm.data.iter().flatten().map(|(room, _)| room.clone()))
        .collect()
}

/// One allocation against whichever replica answers: `Some(room)` for a 200, `None` for "no room"
/// from a leader; other answers (a standby's or a failing leader's 503, a refused connection)
/// are retried, as a matchmaker's client does. Panics on anything else.
async fn allocate_on_any(http: &reqwest::Client, urls: &[String]) -> Option<String> {
    for attempt in 0.. {
        let url = &urls[attempt % urls.len()];
        let Ok(resp) = http
            .post(format!("{url}/scheduler/arena/rooms/allocate"))
            .send()
            .await
        else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let status = resp.status().as_u16();
        let retry_after = resp.headers().contains_key("retry-after");
        let body = Reply(resp.text().await.unwrap_or_default());
        match status {
            200 => return Some(body.json::<Allocation>().room),
            409 if body.error().code == "no_room" => return None,
            503 => {
                assert!(retry_after, "a 503 says when to retry: {body}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("allocation answered {other}: {body}"),
        }
    }
    unreachable!()
}

async fn is_ready(server: &Server) -> bool {
    server
        .http
        .get(format!("{}/readyz", server.url))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Two replicas on one cluster: one leads, the other stands by and refuses every write with a
/// retryable 503. Matchmakers allocate through both while the leader is killed with -9, then
/// while the next leader is stopped with SIGTERM: no room is handed out twice, every answered
/// room is `allocated` on its pod, the standby takes over each time, and no pod is lost or added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_elect_one_leader_and_allocations_survive_its_kill_9_and_sigterm() {
    let env = Env::new("ha").await;
    // Enough rooms for the 60 allocations answered and those recorded but never answered when
    // the leader is killed (at most one per matchmaker).
    let rooms = 200;
    let yaml = kube_yaml("arena", rooms, (43000, 43300), "1", ON_GAME_NODES, "");
    env.repo.commit("200 rooms", &[("arena.yaml", &yaml)]);
    let args = [
        "--leader-elect",
        "--lease-duration",
        "3s",
        "--allocation-ttl",
        "10m",
    ];
    let dirs = [env.dir.path().join("a"), env.dir.path().join("b")];
    let mut replicas = [env.serve_in(&dirs[0], &args), env.serve_in(&dirs[1], &args)];
    let urls: Vec<String> = replicas.iter().map(|r| r.url.clone()).collect();
    let leader = wait_for("one replica leads", T, || async {
        let ready = [is_ready(&replicas[0]).await, is_ready(&replicas[1]).await];
        match ready {
            [true, false] => Some(0),
            [false, true] => Some(1),
            [true, true] => panic!("two replicas lead"),
            _ => None,
        }
    })
    .await;
    let standby = &replicas[1 - leader];
    let (status, body) = standby.get("/api/v1/schedulers").await;
    assert_eq!(
        (status, body.error().code.as_str()),
        (503, "standby"),
        "{body}"
    );

    let game = Game::start_on(&[&replicas[0], &replicas[1]], env.secret(), "arena");
    wait_ready(&replicas[leader], "arena", rooms as usize).await;
    let pods_before: BTreeSet<String> = env
        .pods("arena")
        .await
        .iter()
        .map(|p| p.name_any())
        .collect();

    // 64 matchmakers, until `stop` rooms were handed out in all.
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let allocate_until = |stop: usize| {
        let (got, urls) = (got.clone(), urls.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let clients = (0..64).map(|_| {
                let (got, urls, http) = (got.clone(), urls.clone(), http.clone());
                async move {
                    while got.lock().unwrap().len() < stop {
                        match allocate_on_any(&http, &urls).await {
                            Some(room) => got.lock().unwrap().push(room),
                            None => return,
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            });
            futures_util::future::join_all(clients).await;
        })
    };
    let first = allocate_until(30);
    wait_for("the first allocations", T, || async {
        (got.lock().unwrap().len() >= 5).then_some(())
    })
    .await;
    replicas[leader].kill9();
    let killed_at = Instant::now();
    first.await.unwrap();
    // Ten more, which only the standby can hand out.
    let n = got.lock().unwrap().len();
    allocate_until(n + 10).await.unwrap();
    let leader = 1 - leader;
    assert!(is_ready(&replicas[leader]).await, "the standby took over");
    println!(
        "allocations went on {:?} after the kill",
        killed_at.elapsed()
    );

    // The killed replica comes back standing by; the leader is upgraded (SIGTERM).
    replicas[1 - leader].spawn();
    let n = got.lock().unwrap().len();
    let second = allocate_until(n + 30);
    wait_for("allocations by the new leader", T, || async {
        (got.lock().unwrap().len() >= n + 5).then_some(())
    })
    .await;
    let status = replicas[leader].terminate();
    assert!(
        status.success(),
        "a replica stopped by SIGTERM exits cleanly: {status:?}"
    );
    second.await.unwrap();
    let leader = 1 - leader;
    wait_for(
        "the standby takes over from the stopped leader",
        T,
        || async { is_ready(&replicas[leader]).await.then_some(()) },
    )
    .await;
    let room = allocate_on_any(&reqwest::Client::new(), &urls).await;
    got.lock()
        .unwrap()
        .push(room.expect("the new leader allocates"));

    let got = got.lock().unwrap().clone();
    let distinct: BTreeSet<String> = got.iter().cloned().collect();
    assert!(got.len() > 40, "{got:?}");
    assert_eq!(
        distinct.len(),
        got.len(),
        "a room was handed out twice: {got:?}"
    );
    // The leader read the fleet back from the cluster twice: what it holds allocated is what the
    // cluster recorded, on the namespace or on the pods.
    let rooms_now = replicas[leader].rooms("arena").await;
    let allocated: BTreeSet<String> = rooms_now
        .iter()
        .filter(|r| status_of(r) == RoomStatus::Allocated)
        .map(id)
        .collect();
    assert!(
        distinct.is_subset(&allocated),
        "every answered room is allocated: {:?}",
        distinct.difference(&allocated).collect::<Vec<_>>()
    );
    // Beyond those: allocations recorded when the leader was killed, before their answers went out
    // (at most one per matchmaker). They stay allocated until their TTL gives them back.
    assert!(allocated.len() - distinct.len() <= 64, "{allocated:?}");
    let pods = env.pods("arena").await;
    let on_pods: BTreeSet<String> = pods
        .iter()
        .filter(|p| label(p, "troupe.dev/status") == "allocated")
        .map(|p| p.name_any())
        .collect();
    let on_namespace = recorded_allocations(&env, "arena").await;
    for room in &allocated {
        assert!(
            on_pods.contains(room) || on_namespace.contains(room),
            "{room} is allocated but the cluster does not say so"
        );
    }
    let pods_after: BTreeSet<String> = pods.iter().map(|p| p.name_any()).collect();
    assert_eq!(pods_after, pods_before, "no pod lost, replaced or added");
    assert_eq!(ids(&rooms_now), pods_after, "the leader knows every room");
    drop(game);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_autoscaler_adds_pods_as_occupancy_rises_and_removes_free_ones_when_it_falls() {
    let env = Env::new("autoscale").await;
    let autoscaling = "autoscaling:
  enabled: true
  min: 2
  max: 8
  cooldown: 2s
  policy:
    type: roomOccupancy
    parameters:
      roomOccupancy: {readyTarget: 0.5, downThreshold: 0.9}
";
    let yaml = kube_yaml("arena", 1, (42700, 42800), "1", ON_GAME_NODES, autoscaling);
    env.repo.commit("autoscaled", &[("arena.yaml", &yaml)]);
    let server = env.serve(&["--autoscale-interval", "300ms"]);
    let game = Game::start(&server, env.secret(), "arena");
    let rooms = wait_ready(&server, "arena", 2).await;
    for r in &rooms {
        game.occupy(&id(r));
    }
    wait_for("4 rooms and 4 pods", T, || async {
        let rooms = server.rooms("arena").await;
        let pods = env.pods("arena").await;
        (rooms.len() == 4 && count(&rooms, RoomStatus::Ready) == 2 && pods.len() == 4).then_some(())
    })
    .await;
    // One match ends: 1 match → 2 rooms; the occupied one stays.
    game.free(&id(&rooms[0]));
    let left = wait_for("2 rooms and 2 pods", T, || async {
        let rooms = server.rooms("arena").await;
        let pods = env.pods("arena").await;
        (rooms.len() == 2 && pods.len() == 2).then_some(rooms)
    })
    .await;
    assert!(
        ids(&left).contains(&id(&rooms[1])),
        "the occupied room is kept: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_survive_a_kill_9_of_the_controller_without_a_duplicate() {
    let env = Env::new("allockill").await;
    let yaml = kube_yaml("arena", 20, (42800, 42900), "1", ON_GAME_NODES, "");
    env.repo.commit("20 rooms", &[("arena.yaml", &yaml)]);
    let mut server = env.serve(&["--allocation-ttl", "10m"]);
    let game = Game::start(&server, env.secret(), "arena");
    wait_ready(&server, "arena", 20).await;
    drop(game);

    let url = server.url.clone();
    let http = reqwest::Client::new();
    let got = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut callers = tokio::task::JoinSet::new();
    for i in 0..64u64 {
        let (http, url, got) = (http.clone(), url.clone(), Arc::clone(&got));
        callers.spawn(async move {
            tokio::time::sleep(Duration::from_millis(15 * i)).await;
            loop {
                match http
                    .post(format!("{url}/scheduler/arena/rooms/allocate"))
                    .send()
                    .await
                {
                    Ok(resp) if resp.status() == 200 => {
                        let body = Reply(resp.text().await.unwrap());
                        got.lock().unwrap().push(body.json::<Allocation>().room);
                        return;
                    }
                    Ok(resp) if resp.status() == 409 => return,
                    // The controller is down (or not ready to answer yet): retry like a matchmaker.
                    _ => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
    }
    wait_for("some allocations", T, || async {
        (got.lock().unwrap().len() >= 5).then_some(())
    })
    .await;
    server.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.spawn();
    while callers.join_next().await.is_some() {}

    let got = got.lock().unwrap().clone();
    let distinct: BTreeSet<&String> = got.iter().collect();
    assert_eq!(
        distinct.len(),
        got.len(),
        "a room was handed out twice: {got:?}"
    );
    let rooms = server.rooms("arena").await;
    let allocated: BTreeSet<String> = rooms
        .iter()
        .filter(|r| status_of(r) == RoomStatus::Allocated)
        .map(id)
        .collect();
    assert!(
        distinct.iter().all(|r| allocated.contains(*r)),
        "an answered allocation was forgotten"
    );
    assert_eq!(allocated.len(), 20, "{rooms:#?}");
    assert!(
        got.len() >= 18,
        "at most the requests in flight at the kill lose their answer: {}",
        got.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_at_start_up_degrades_to_retries_and_the_apis_keep_serving() {
    // A kubeconfig whose API server is a closed loopback port: nothing answers there.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: gone, cluster: {{server: \"https://127.0.0.1:{port}\", insecure-skip-tls-verify: true}}}}]\nusers: [{{name: u, user: {{token: x}}}}]\ncontexts: [{{name: c, context: {{cluster: gone, user: u}}}}]\ncurrent-context: c\n"
        ),
    )
    .unwrap();
    let repo = Repo::new();
    repo.commit(
        "arena",
        &[(
            "arena.yaml",
            &kube_yaml("arena", 1, (42900, 43000), "1", ON_GAME_NODES, ""),
        )],
    );
    let mut server = Server::start_with_env(
        repo.path(),
        &dir.path().join("state"),
        &["--runtime", "kubernetes"],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    // Adoption is retried, and the server is still up after the second failure.
    wait_for("two failed adoptions", T, || async {
        let log = server.log();
        (log.matches("cannot adopt the rooms recorded before yet")
            .count()
            >= 2)
            .then_some(())
    })
    .await;
    assert!(
        server.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "serve exited: {}",
        server.log()
    );
    assert_eq!(server.text("/healthz").await.trim(), "ok");
    let ready = server
        .http
        .get(format!("{}/readyz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ready.status(),
        503,
        "not ready while the cluster cannot be reached"
    );
    // The rooms API answers (from the journal), at once: a room it does not know may be in the
    // cluster it cannot read yet, so the answer is a retryable 503, not a 404 and not a hang.
    let token = troupe::domain::room::token::room_token(&server.secret(), "arena", "arena-zzzzz");
    let resp = server
        .http
        .put(format!(
            "{}/scheduler/arena/rooms/arena-zzzzz/ping",
            server.url
        ))
        .bearer_auth(token)
        .json(&serde_json::json!({"status": "ready"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert!(
        Reply(resp.text().await.unwrap())
            .error()
            .message
            .contains("starting"),
    );
    assert!(
        server
            .log()
            .contains("cannot adopt the rooms recorded before yet"),
        "{}",
        server.log()
    );
}

/// Whether every field of `given` is in `actual` with the same value: the API server adds its
/// defaults (a probe's `timeoutSeconds`, a volume's `defaultMode`), it must change nothing given.
fn holds(actual: &Value, given: &Value) -> Result<(), String> {
    match (given, actual) {
        (Value::Object(g), Value::Object(a)) => g.iter().try_for_each(|(k, v)| {
            let got = a.get(k).ok_or(format!("{k} missing"))?;
            holds(got, v).map_err(|e| format!("{k}.{e}"))
        }),
        (Value::Array(g), Value::Array(a)) if g.len() == a.len() => g
            .iter()
            .zip(a)
            .enumerate()
            .try_for_each(|(i, (g, a))| holds(a, g).map_err(|e| format!("[{i}].{e}"))),
        _ if given == actual => Ok(()),
        _ => Err(format!(" {given} became {actual}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_pod_template_reaches_the_api_server_as_written_and_a_probe_change_rolls_out() {
    let env = Env::new("fullpod").await;
    // The realistic example, on a port range of its own; its priority class must exist.
    let classes: Api<k8s_openapi::api::scheduling::v1::PriorityClass> =
        Api::all(env.cluster.client.clone());
    let class: k8s_openapi::api::scheduling::v1::PriorityClass = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "game-server"}, "value": 1000}),
    )
    .unwrap();
    match classes.create(&PostParams::default(), &class).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.is_already_exists() => {}
        Err(e) => panic!("creating the priority class: {e}"),
    }
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fleets-example/arena-ranked.yaml"),
    )
    .unwrap()
    .replace("{start: 42000, end: 42100}", "{start: 43000, end: 43100}");
    env.repo.commit("ranked", &[("arena.yaml", &example)]);
    let server = env.serve(&[]);
    let game = Game::start(&server, env.secret(), "arena-ranked");
    let rooms = wait_ready(&server, "arena-ranked", 2).await;

    let doc: Value = serde_saphyr::from_str(&example).unwrap();
    let given = &doc["spec"];
    let pods = env.pods("arena-ranked").await;
    assert_eq!(pods.len(), 2);
    for pod in &pods {
        let spec = serde_json::to_value(pod.spec.as_ref().unwrap()).unwrap();
        // Every Kubernetes field given reaches the pod unchanged (Troupe's own are below).
        let own = [
            "containers",
            "initContainers",
            "nodeSelector",
            "tolerations",
        ];
        for (k, v) in given.as_object().unwrap() {
            if !own.contains(&k.as_str()) {
                holds(&spec[k], v).unwrap_or_else(|e| panic!("spec.{k}{e}"));
            }
        }
        holds(&spec["nodeSelector"], &given["nodeSelector"]).unwrap();
        // The API server adds its default tolerations (not-ready, unreachable) after ours.
        let given_tolerations = given["tolerations"].as_array().unwrap();
        let first = Value::Array(
            spec["tolerations"].as_array().unwrap()[..given_tolerations.len()].to_vec(),
        );
        holds(&first, &given["tolerations"]).unwrap();
        let mut sidecar = given["initContainers"][0].clone();
        let mut server_c = given["containers"][0].clone();
        for c in [&mut sidecar, &mut server_c] {
            let c = c.as_object_mut().unwrap();
            c.remove("env");
            c.remove("ports");
            c.remove("requests");
            c.remove("limits");
        }
        holds(&spec["initContainers"][0], &sidecar).unwrap_or_else(|e| panic!("sidecar {e}"));
        holds(&spec["containers"][0], &server_c).unwrap_or_else(|e| panic!("server {e}"));
        // Troupe's additions: host ports from the range, its variables after the declared
        // ones (a Secret reference kept as one), the short-form resources, its labels.
        let c = &spec["containers"][0];
        let env_names: Vec<&str> = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(env_names[..3], ["LOG_DIR", "API_KEY", "POD_NAME"]);
        assert!(env_names.contains(&"TROUPE_ROOM_TOKEN"), "{env_names:?}");
        assert_eq!(c["env"][1], given["containers"][0]["env"][1]);
        for (i, p) in c["ports"].as_array().unwrap().iter().enumerate() {
            assert_eq!(
                p["containerPort"],
                given["containers"][0]["ports"][i]["containerPort"]
            );
            let host = p["hostPort"].as_u64().unwrap();
            assert!((43000..43100).contains(&host), "{p}");
        }
        assert_eq!(c["resources"]["requests"]["cpu"], "500m");
        assert_eq!(c["resources"]["limits"]["memory"], "1Gi");
        let sidecar_env = spec["initContainers"][0]["env"].as_array().unwrap();
        assert!(
            sidecar_env.iter().any(|e| e["name"] == "TROUPE_ROOM"),
            "the sidecar gets Troupe's variables"
        );
        assert_eq!(spec["restartPolicy"], "Never");
        assert_eq!(spec["terminationGracePeriodSeconds"], 60);
        assert_eq!(label(pod, "troupe.dev/scheduler"), "arena-ranked");
        assert_eq!(label(pod, "team"), "arena");
        // Nothing else: beyond what was given, only Troupe's and the API server's defaults.
        let allowed = [
            "restartPolicy",
            "automountServiceAccountToken",
            "dnsPolicy",
            "schedulerName",
            "enableServiceLinks",
            "preemptionPolicy",
            "priority",
            "nodeName",
            "serviceAccount",
        ];
        for k in spec.as_object().unwrap().keys() {
            assert!(
                given.get(k).is_some() || allowed.contains(&k.as_str()),
                "spec.{k} was added: {}",
                spec[k]
            );
        }
    }

    // A probe change is a new version: rolled out, the occupied room kept until its match ends.
    let v1 = version_of(&server, "arena-ranked").await;
    let busy = id(&rooms[0]);
    game.occupy(&busy);
    wait_for("the room to report occupied", T, || async {
        server
            .rooms("arena-ranked")
            .await
            .iter()
            .any(|r| id(r) == busy && status_of(r) == RoomStatus::Occupied)
            .then_some(())
    })
    .await;
    env.repo.commit(
        "slower probe",
        &[(
            "arena.yaml",
            &example.replace("periodSeconds: 2", "periodSeconds: 5"),
        )],
    );
    let v2 = wait_for("the new version", T, || async {
        let v = version_of(&server, "arena-ranked").await;
        (v != v1).then_some(v)
    })
    .await;
    wait_for(
        "two ready rooms of the new version beside the occupied one",
        T,
        || async {
            let rooms = server.rooms("arena-ranked").await;
            let new = rooms
                .iter()
                .filter(|r| r.version == v2 && status_of(r) == RoomStatus::Ready)
                .count();
            let kept = rooms
                .iter()
                .any(|r| id(r) == busy && status_of(r) == RoomStatus::Occupied);
            assert!(kept, "the occupied room was touched: {rooms:#?}");
            (new == 2).then_some(())
        },
    )
    .await;
    let probes: Vec<Value> = env
        .pods("arena-ranked")
        .await
        .iter()
        .filter(|p| label(p, "troupe.dev/version") == v2)
        .map(|p| {
            serde_json::to_value(&p.spec.as_ref().unwrap().containers[0].readiness_probe).unwrap()
        })
        .collect();
    assert_eq!(probes.len(), 2);
    assert!(probes.iter().all(|p| p["periodSeconds"] == 5), "{probes:?}");
}

/// A scheduler for a namespace that enforces PodSecurity `restricted`: no ports (host ports are
/// refused from `baseline` up) and the security context `restricted` asks for, or, with
/// `privileged`, a privileged container.
fn restricted_yaml(name: &str, ports: (u16, u16), tag: &str, privileged: bool) -> String {
    let container_context = if privileged {
        "{privileged: true, capabilities: {drop: [ALL]}}"
    } else {
        "{allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}"
    };
    format!(
        r#"name: {name}
game: arena
roomsReplicas: 2
maxSurge: 1
portRange: {{start: {}, end: {}}}
timeouts: {{pending: 60s, unready: 60s, ping: 30s, terminating: 30s}}
spec:
  terminationGracePeriod: 1s
  securityContext: {{runAsNonRoot: true, seccompProfile: {{type: RuntimeDefault}}}}
  nodeSelector: {{pool: game}}
  containers:
    - name: server
      image: registry.example/arena:{tag}
      securityContext: {container_context}
"#,
        ports.0, ports.1
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_refused_by_pod_security_show_in_the_plan_and_fail_the_operation_before_any_starts() {
    let env = Env::new("admit").await;
    // The operator's namespaces enforce PodSecurity `restricted` before Troupe ever runs there.
    let namespaces: Api<Namespace> = Api::all(env.cluster.client.clone());
    for scheduler in ["arena", "party"] {
        let ns = serde_json::json!({"metadata": {
            "name": env.namespace(scheduler),
            "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
        }});
        namespaces
            .create(&PostParams::default(), &serde_json::from_value(ns).unwrap())
            .await
            .unwrap();
    }
    let good = restricted_yaml("arena", (43000, 43100), "1", false);
    env.repo
        .commit("restricted arena", &[("arena.yaml", &good)]);
    let server = env.serve(&[]);
    let _game = Game::start(&server, env.secret(), "arena");
    let old = ids(&wait_ready(&server, "arena", 2).await);
    let create = wait_op(&server, "arena", OpKind::Create).await;
    assert_eq!(create.status, OpStatus::Succeeded, "{create:#?}");
    let v1 = version_of(&server, "arena").await;

    // `troupe plan --runtime kubernetes` asks the API server before anything is committed.
    let plan = |files: &[(&str, &str)]| {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let out = kube_plan(&env, dir.path());
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let (code, text) = plan(&[("arena.yaml", &good)]);
    assert_eq!(code, Some(0), "in sync: {text}");
    // A compliant rollout is admitted: a change, no error.
    let (code, text) = plan(&[(
        "arena.yaml",
        &restricted_yaml("arena", (43000, 43100), "2", false),
    )]);
    assert_eq!(code, Some(2), "an admitted rollout: {text}");
    assert!(!text.contains("refused"), "{text}");

    let bad = restricted_yaml("arena", (43000, 43100), "2", true);
    // A new scheduler's document starts on line 3 of its file.
    let party = format!(
        "# party rooms\n# owned by the party team\n{}",
        restricted_yaml("party", (43100, 43200), "1", true)
    );
    let (code, text) = plan(&[("arena.yaml", &bad), ("party.yaml", &party)]);
    assert_eq!(code, Some(1), "refused pods are an error: {text}");
    let refusal = text
        .lines()
        .find(|l| l.starts_with("      ! arena.yaml:1: refused by the API server: "))
        .unwrap_or_else(|| panic!("no refusal of arena with its file and line:\n{text}"));
    assert!(
        refusal.contains("violates PodSecurity \"restricted:latest\"")
            && refusal.contains("privileged"),
        "the API server's reason: {refusal}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("      ! party.yaml:3: refused by the API server: ")),
        "{text}"
    );
    assert!(
        text.contains("Error: the API server refuses the pods of 2 schedulers (arena, party)"),
        "{text}"
    );

    // Committed anyway: the server's operations fail before any pod of them is created.
    env.repo.commit(
        "privileged arena, new party",
        &[("arena.yaml", &bad), ("party.yaml", &party)],
    );
    let began = Instant::now();
    let rollout = wait_op(&server, "arena", OpKind::Rollout).await;
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(rollout.status, OpStatus::Failed, "{rollout:#?}");
    let error = rollout.error.clone().unwrap_or_default();
    assert!(
        error.starts_with("arena.yaml:1: scheduler arena version ")
            && error.contains("refused by the API server: ")
            && error.contains("violates PodSecurity \"restricted:latest\"")
            && error.contains("privileged"),
        "{error}"
    );
    let refused = rollout.admission.clone().expect("the refusal, structured");
    assert_eq!(
        refused.declared.as_ref().map(|d| (d.file.as_str(), d.line)),
        Some(("arena.yaml", 1))
    );
    let party_op = wait_op(&server, "party", OpKind::Create).await;
    assert_eq!(party_op.status, OpStatus::Failed, "{party_op:#?}");
    let party_error = party_op.error.clone().unwrap_or_default();
    assert!(
        party_error.starts_with("party.yaml:3: scheduler party version ")
            && party_error.contains("privileged"),
        "{party_error}"
    );

    // Nothing of the refused versions exists; the old version keeps serving.
    server.next_reconcile().await;
    assert_eq!(version_of(&server, "arena").await, v1);
    let pods = env.pods("arena").await;
    assert_eq!(
        pods.iter().map(|p| p.name_any()).collect::<BTreeSet<_>>(),
        old,
        "only the old version's pods"
    );
    assert!(
        pods.iter().all(|p| label(p, "troupe.dev/version") == v1),
        "{pods:#?}"
    );
    let rooms = server.rooms("arena").await;
    assert_eq!(
        ids(&rooms),
        old,
        "no room of the refused version: {rooms:#?}"
    );
    assert!(
        rooms.iter().all(|r| status_of(r) == RoomStatus::Ready),
        "{rooms:#?}"
    );
    assert!(env.pods("party").await.is_empty());
    assert!(server.rooms("party").await.is_empty());
    for name in ["arena", "party"] {
        let failed: Vec<String> = server
            .ops(name)
            .await
            .iter()
            .filter(|o| o.status == OpStatus::Failed)
            .map(|o| o.id.clone())
            .collect();
        assert_eq!(failed.len(), 1, "held, not retried in a loop: {failed:?}");
    }
    let live: LiveState = server.get_as("/api/v1/live").await;
    assert!(
        !live.schedulers.contains_key("party"),
        "a refused scheduler is not applied: {live:#?}"
    );
    let party_ns = namespaces.get(&env.namespace("party")).await.unwrap();
    assert!(
        party_ns.annotations().get("troupe.dev/applied").is_none(),
        "nor recorded in the cluster: {:?}",
        party_ns.annotations()
    );
    assert_eq!(
        party_ns
            .labels()
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("restricted"),
        "the operator's labels are kept: {:?}",
        party_ns.labels()
    );

    // The server's plan shows what its operations were told, on the changes that wait.
    let plan = server.plan().await.expect("a plan");
    for (name, line) in [("arena", 1), ("party", 3)] {
        let change = plan
            .changes
            .iter()
            .find(|c| c.scheduler == name)
            .unwrap_or_else(|| panic!("{name} still waits: {plan:#?}"));
        let admission = change
            .admission
            .as_ref()
            .unwrap_or_else(|| panic!("{name}'s refusal in the plan: {change:#?}"));
        assert_eq!(
            admission.declared.as_ref().map(|d| d.line),
            Some(line),
            "{admission:?}"
        );
        assert!(admission.reason.contains("privileged"), "{admission:?}");
    }
}

/// Two replicas with a 3 s lease, each with its own state directory: the first leads (waited
/// for), the second stands by.
async fn leader_and_standby(env: &Env) -> (Server, Server) {
    let args = ["--leader-elect", "--lease-duration", "3s"];
    let first = env.serve_in(&env.dir.path().join("a"), &args);
    wait_for("the first replica leads", T, || async {
        is_ready(&first).await.then_some(())
    })
    .await;
    let second = env.serve_in(&env.dir.path().join("b"), &args);
    (first, second)
}

/// A suspension is recorded on the scheduler's namespace before it is answered: the standby that
/// takes over, with a state directory that never saw it, keeps the scheduler suspended (a git
/// change waits), and its resume clears the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_outlives_its_leader_and_reaches_a_replica_with_an_empty_disk() {
    let env = Env::new("suspend").await;
    let yaml = |rooms| kube_yaml("arena", rooms, (43500, 43550), "1", ON_GAME_NODES, "");
    env.repo.commit("2 rooms", &[("arena.yaml", &yaml(2))]);
    let (mut first, second) = leader_and_standby(&env).await;
    let _game = Game::start_on(&[&first, &second], env.secret(), "arena");
    wait_ready(&first, "arena", 2).await;

    let (status, body) = first.post("/api/v1/schedulers/arena/suspend", &()).await;
    assert_eq!(status, 200, "{body}");
    let namespaces: Api<Namespace> = Api::all(env.cluster.client.clone());
    let suspended_on_namespace = || async {
        namespaces
            .get(&env.namespace("arena"))
            .await
            .unwrap()
            .annotations()
            .contains_key("troupe.dev/suspended")
    };
    assert!(suspended_on_namespace().await, "recorded before answered");

    assert!(first.terminate().success());
    wait_for("the standby leads", T, || async {
        is_ready(&second).await.then_some(())
    })
    .await;
    env.repo.commit("3 rooms", &[("arena.yaml", &yaml(3))]);
    wait_for("the new leader's plan to show the change", T, || async {
        let p: Plan = second.get_as("/api/v1/plan").await;
        p.changes
            .iter()
            .any(|c| c.scheduler == "arena" && c.action == troupe::domain::plan::Action::Scale)
            .then_some(())
    })
    .await;
    second.next_reconcile().await;
    let schedulers: Vec<SchedulerSummary> = second.get_as("/api/v1/schedulers").await;
    assert!(schedulers[0].suspended, "{schedulers:#?}");
    let ops = second.ops("arena").await;
    assert!(
        ops.iter().all(|o| o.target != Some(3)),
        "suspended: nothing applied: {ops:#?}"
    );
    assert_eq!(env.pods("arena").await.len(), 2);

    let (status, body) = second.post("/api/v1/schedulers/arena/resume", &()).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !suspended_on_namespace().await,
        "the resume is recorded too"
    );
    wait_ready(&second, "arena", 3).await;
}

/// The leader is killed in the middle of a rollout: the standby that takes over, its disk
/// empty, shows the operation with the events the first leader recorded in the cluster,
/// resumes it, and it succeeds there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rollout_resumes_on_the_new_leader_with_its_history() {
    let env = Env::new("resume").await;
    let yaml = |tag| kube_yaml("arena", 2, (43600, 43650), tag, ON_GAME_NODES, "");
    env.repo.commit("v1", &[("arena.yaml", &yaml("1"))]);
    let (mut first, second) = leader_and_standby(&env).await;
    let game = Game::start_on(&[&first], env.secret(), "arena");
    wait_ready(&first, "arena", 2).await;
    // No game server answers for the new version's rooms: the rollout waits for them to start.
    drop(game);
    env.repo.commit("v2", &[("arena.yaml", &yaml("2"))]);
    let records: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(env.cluster.client.clone(), &env.namespace("arena"));
    let rollout = wait_for(
        "the rollout, running, recorded in the cluster",
        T,
        || async {
            let cm = records.get_opt("troupe-operations").await.ok()??;
            cm.data?.values().find_map(|text| {
                let op: Operation = serde_json::from_str(text).ok()?;
                (op.kind == OpKind::Rollout
                    && op.status == OpStatus::Running
                    && op.events.iter().any(|e| e.message.starts_with("starting")))
                .then_some(op)
            })
        },
    )
    .await;
    first.kill9();

    wait_for("the standby leads", T, || async {
        is_ready(&second).await.then_some(())
    })
    .await;
    let resumed = wait_for("the new leader shows the rollout", T, || async {
        second
            .ops("arena")
            .await
            .into_iter()
            .find(|o| o.id == rollout.id)
    })
    .await;
    let said = |op: &Operation, what: &str| op.events.iter().any(|e| e.message.contains(what));
    assert!(
        said(&resumed, "starting") && said(&resumed, "resuming"),
        "the first leader's events, then the resume: {resumed:#?}"
    );
    // The revisions seen: v1 only by the first leader, taken from the cluster.
    let revisions: Vec<troupe::controller::RevisionRecord> =
        second.get_as("/api/v1/revisions").await;
    let commits: Vec<&str> = revisions
        .iter()
        .filter_map(|r| r.commit.as_deref())
        .collect();
    assert!(
        commits.iter().any(|c| c.ends_with(": v1")) && commits.iter().any(|c| c.ends_with(": v2")),
        "{revisions:#?}"
    );
    let _game = Game::start_on(&[&second], env.secret(), "arena");
    let done = wait_for("the rollout to finish", T, || async {
        second
            .ops("arena")
            .await
            .into_iter()
            .find(|o| o.id == rollout.id && o.status.is_finished())
    })
    .await;
    assert_eq!(done.status, OpStatus::Succeeded, "{done:#?}");
    let rollouts = second
        .ops("arena")
        .await
        .into_iter()
        .filter(|o| o.kind == OpKind::Rollout)
        .count();
    assert_eq!(rollouts, 1, "resumed, not started again");
    let images: Vec<String> = env
        .pods("arena")
        .await
        .iter()
        .filter_map(|p| p.spec.as_ref()?.containers[0].image.clone())
        .collect();
    assert_eq!(images, vec!["registry.example/arena:2"; 2]);
}

/// An allocation whose client hangs up while its record is being written must not take the
/// shard's writer down with it. The writer once ran inside the request: a request dropped
/// mid-write left its shard marked as being written, and every later allocation of that shard
/// waited forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_abandoned_by_their_clients_leave_the_ledger_writing() {
    let env = Env::new("abandon").await;
    let (server, _game) = allocatable(&env, 12, (43700, 43750)).await;
    let url = format!("{}/scheduler/arena/rooms/allocate", server.url);
    // Clients that give up after a few milliseconds, while their allocations are being
    // recorded: whatever room each got stays recorded as allocated, nobody answered.
    for wait_ms in [2, 4, 6, 8, 10, 12, 14, 16] {
        let impatient = reqwest::Client::builder()
            .timeout(Duration::from_millis(wait_ms))
            .build()
            .unwrap();
        let _ = impatient.post(&url).send().await;
    }
    let http = reqwest::Client::new();
    let mut handed = BTreeSet::new();
    for _ in 0..2 {
        let room =
            tokio::time::timeout(T, allocate_on_any(&http, std::slice::from_ref(&server.url)))
                .await
                .expect("allocations are answered after the abandoned ones")
                .expect("a room is left");
        handed.insert(room);
    }
    let recorded = recorded_allocations(&env, "arena").await;
    assert!(handed.is_subset(&recorded), "{handed:?} in {recorded:?}");
}

/// `kubectl get schedulers.troupe.dev` lists the fleet: each scheduler's resource has the
/// version, the target and the rooms by status in its status, and follows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_lists_each_scheduler_with_its_rooms_by_status() {
    let env = Env::new("kget").await;
    let yaml = kube_yaml("arena", 3, (43800, 43850), "1", ON_GAME_NODES, "");
    env.repo.commit("3 rooms", &[("arena.yaml", &yaml)]);
    let server = env.serve(&[]);
    let game = Game::start(&server, env.secret(), "arena");
    let rooms = wait_ready(&server, "arena", 3).await;
    let admin = env.cluster.kubeconfig.clone();
    let ns = env.namespace("arena");
    // Made within a status period of the fleet's adoption: not found until then.
    let status = || {
        let out = kubectl_run(
            &admin,
            &[
                "get",
                "schedulers.troupe.dev",
                "arena",
                "-n",
                &ns,
                "-o",
                "json",
            ],
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap_or_default()["status"].clone()
    };
    let shown = wait_for("the resource to show 3 ready rooms", T, || async {
        let s = status();
        (s["rooms"]["ready"] == 3 && s["targetRooms"] == 3).then_some(s)
    })
    .await;
    assert_eq!(shown["version"], rooms[0].version.as_str(), "{shown}");
    assert_eq!(shown["game"], "arena");
    assert!(
        shown["lastOperation"]
            .as_str()
            .is_some_and(|o| o.starts_with("create ")),
        "{shown}"
    );

    game.occupy(&rooms[0].id);
    wait_for("the resource to follow a match", T, || async {
        let s = status();
        (s["rooms"]["occupied"] == 1 && s["rooms"]["ready"] == 2 && s["busyRooms"] == 1)
            .then_some(())
    })
    .await;
    let table = kubectl(&admin, &["get", "tsch", "-n", &ns]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        &header[..8],
        [
            "NAME",
            "GAME",
            "VERSION",
            "TARGET",
            "READY",
            "BUSY",
            "TOTAL",
            "SUSPENDED"
        ],
        "{table}"
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..8],
        [
            "arena",
            "arena",
            rooms[0].version.as_str(),
            "3",
            "2",
            "1",
            "3",
            "false"
        ],
        "{table}"
    );
}
