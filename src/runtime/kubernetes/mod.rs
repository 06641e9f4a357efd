//! The Kubernetes runtime: each room is a pod named after the room, in one namespace per
//! scheduler (`{prefix}{scheduler}`, created on demand).
//!
//! Owns the pods of its namespace prefix, and two watches: pods labelled
//! `app.kubernetes.io/managed-by=troupe` (a reflector, the only way pod state is read while
//! serving — never an API call per room or per ping) and nodes (for their InternalIP). The pure
//! parts live in submodules: [`pod`] builds a room's pod, `observe` turns pod changes into
//! events, `ports` picks host ports, `discover` reads rooms back from pods.
//!
//! Must always hold:
//! - Only pods and namespaces of this runtime's prefix are ever touched or reported: controllers
//!   with different prefixes share a cluster.
//! - Every room started or adopted gets exactly one [`RuntimeEvent::Exited`]: when its pod is
//!   deleted or finishes. A pod replaced because its host ports were taken on every node is not
//!   an exit; its replacement speaks for the room from then on.
//! - Failures that will not heal by themselves (image pull errors, crash loops, bad config, an
//!   unschedulable pod) are reported as [`RuntimeEvent::Failed`] as soon as the watch shows them.
//! - Room statuses and applied specs are written to the cluster asynchronously, newest first,
//!   through a queue bounded by the number of rooms ([`Runtime::record`]); nothing on the ping
//!   path waits for the API server.

pub mod admission;
pub mod discover;
pub mod lease;
pub mod ledger;
pub mod observe;
pub mod pod;
pub mod ports;
pub mod record;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
    Preconditions,
};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector::store::Writer};
use kube::{Client, ResourceExt};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::{Instrument, debug, info, info_span, warn};

use super::{
    Adopted, AllocationRefused, Discovered, Runtime, RuntimeError, RuntimeEvent, SchedulerStatus,
    StartRoom, Started,
};
use crate::clock::now_ms;
use crate::domain::Applied;
use crate::domain::operation::Operation;
use crate::domain::room::{Room, RoomStatus};
use observe::{Action, Track, read_pod};
use pod::{
    ANNOTATION_APPLIED, ANNOTATION_MATCHES, ANNOTATION_STATUS_SINCE, ANNOTATION_SUSPENDED,
    LABEL_OPERATIONS, LABEL_SCHEDULER, LABEL_STATUS, MANAGED_BY, MANAGED_SELECTOR, MANAGER,
    OPERATIONS, namespace_of,
};
use record::{Object, Queue, Target, What, Write};

/// Name of this runtime in logs, errors and status.
const RUNTIME_NAME: &str = "kubernetes";
/// Longest namespace and label value Kubernetes accepts.
const MAX_NAME: usize = 63;
/// Status writes sent to the API server at once.
const RECORD_CONCURRENCY: usize = 16;
/// A status write that fails is retried this often, with exponential pauses (and jitter) from
/// [`RECORD_RETRY_FIRST`] to [`RECORD_RETRY_MAX`], before it is given up (a later transition
/// writes again).
const RECORD_ATTEMPTS: u32 = 8;
const RECORD_RETRY_FIRST: Duration = Duration::from_millis(500);
const RECORD_RETRY_MAX: Duration = Duration::from_secs(60);
/// A pod replaced for other host ports may still be on its way out; its name is free again
/// within moments (an unscheduled pod has no node to wait for).
const RECREATE_ATTEMPTS: u32 = 20;
const RECREATE_PAUSE: Duration = Duration::from_millis(100);

/// How the Kubernetes runtime runs rooms.
#[derive(Debug, Clone)]
pub struct KubeConfig {
    /// Prefix of every scheduler's namespace (`{prefix}{scheduler}`). Controllers sharing a
    /// cluster use different prefixes and never see each other's rooms.
    pub namespace_prefix: String,
    /// How often a room's pod is recreated on other host ports when no eligible node has its
    /// ports free, before the room is reported failed.
    pub max_port_moves: u32,
    /// How long a call waits for the pod watch's first complete list before it gives up.
    pub ready_timeout: Duration,
    /// With several replicas: whether this one leads. Allocations are refused when it does not.
    pub leadership: Option<lease::Leadership>,
}

impl Default for KubeConfig {
    fn default() -> Self {
        Self {
            namespace_prefix: String::new(),
            max_port_moves: 5,
            ready_timeout: Duration::from_secs(30),
            leadership: None,
        }
    }
}

/// Runs rooms as pods. See the module documentation for what it guarantees.
///
/// Dropping it stops its watches and writes (no more events); pods keep running, to be adopted
/// by the next controller.
pub struct KubernetesRuntime {
    inner: Arc<Inner>,
    tasks: Vec<AbortHandle>,
}

struct Inner {
    client: Client,
    config: KubeConfig,
    events: mpsc::Sender<RuntimeEvent>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    state: Mutex<State>,
    records: Queue,
    ledger: ledger::Ledger,
    /// The cluster does not define the Scheduler resource: no status is written.
    no_scheduler_resource: AtomicBool,
}

#[derive(Default)]
struct State {
    rooms: HashMap<RoomKey, Tracked>,
    /// Namespaces known to exist with Troupe's labels.
    namespaces: HashSet<String>,
    /// Per scheduler, where the next host-port scan starts (round-robin through `portRange`).
    port_cursors: HashMap<String, u32>,
}

impl State {
    /// Pick host ports for a room of `scheduler` and move its cursor past them.
    fn pick_ports(
        &mut self,
        scheduler: &str,
        range: crate::domain::spec::PortRange,
        n: usize,
        used: &HashSet<u16>,
        avoid: &std::collections::BTreeSet<u16>,
    ) -> Option<Vec<u16>> {
        let cursor = self.port_cursors.get(scheduler).copied().unwrap_or(0);
        let picked = ports::pick(range, n, used, avoid, cursor)?;
        self.port_cursors
            .insert(scheduler.to_owned(), ports::next_offset(range, &picked));
        Some(picked)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RoomKey {
    scheduler: String,
    room: String,
}

impl RoomKey {
    fn new(scheduler: &str, room: &str) -> Self {
        Self {
            scheduler: scheduler.to_owned(),
            room: room.to_owned(),
        }
    }

    fn span(&self) -> tracing::Span {
        info_span!("room", scheduler = %self.scheduler, room = %self.room)
    }
}

/// A room this runtime watches.
struct Tracked {
    track: Track,
    /// How the room was started, to recreate its pod on other host ports; `None` when adopted.
    request: Option<StartRoom>,
}

fn backend(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> RuntimeError {
    RuntimeError::Backend {
        what: what.to_owned(),
        source: Box::new(e),
    }
}

/// Why a pod could not be created.
#[derive(Debug, thiserror::Error)]
enum CreatePodError {
    /// A pod of that name still exists (the old pod of a room whose ports move is going away).
    #[error("{0}")]
    AlreadyExists(String),
    /// The spec cannot become a pod, or the API server refused it.
    #[error("{0}")]
    Failed(String),
}

fn is_status(e: &kube::Error, check: impl Fn(&kube::core::Status) -> bool) -> bool {
    matches!(e, kube::Error::Api(s) if check(s))
}

/// `Reason: message` of an API error, else the error itself.
fn api_reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => other.to_string(),
    }
}

impl KubernetesRuntime {
    /// Start watching pods and nodes through `client`; returns the runtime and the room events
    /// it reports. Must be called within a Tokio runtime.
    pub fn new(client: Client, config: KubeConfig) -> (Self, super::Events) {
        let (events, rx) = mpsc::channel(super::EVENT_QUEUE);
        let (pods, pod_writer) = reflector::store();
        let (nodes, node_writer) = reflector::store();
        let prefix = config.namespace_prefix.clone();
        let inner = Arc::new(Inner {
            client,
            config,
            events,
            pods,
            nodes,
            state: Mutex::new(State::default()),
            records: Queue::default(),
            ledger: ledger::Ledger::default(),
            no_scheduler_resource: AtomicBool::new(false),
        });
        let span = info_span!("kubernetes", prefix = %prefix);
        let tasks = vec![
            tokio::spawn(
                Arc::clone(&inner)
                    .watch_pods(pod_writer)
                    .instrument(span.clone()),
            )
            .abort_handle(),
            tokio::spawn(watch_nodes(inner.client.clone(), node_writer).instrument(span.clone()))
                .abort_handle(),
            tokio::spawn(Arc::clone(&inner).write_records().instrument(span)).abort_handle(),
        ];
        (Self { inner, tasks }, rx)
    }
}

impl Drop for KubernetesRuntime {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[async_trait]
impl Runtime for KubernetesRuntime {
    fn name(&self) -> &'static str {
        RUNTIME_NAME
    }

    async fn start(&self, req: StartRoom) -> Result<Started, RuntimeError> {
        let key = RoomKey::new(&req.scheduler.name, &req.room_id);
        let span = key.span();
        self.inner.start(key, req).instrument(span).await
    }

    async fn stop(&self, room: &Room, grace: Duration) -> Result<(), RuntimeError> {
        let key = RoomKey::new(&room.scheduler, &room.id);
        let span = key.span();
        self.inner.stop(key, room, grace).instrument(span).await
    }

    async fn adopt(&self, rooms: &[Room]) -> Result<Adopted, RuntimeError> {
        self.inner.adopt(rooms).await
    }

    async fn remove_stray(&self, scheduler: &str, room: &str) -> Result<(), RuntimeError> {
        let namespace = self.inner.namespace(scheduler);
        let uid = self
            .inner
            .pods
            .get(&ObjectRef::new(room).within(&namespace))
            .and_then(|p| p.uid());
        self.inner.delete_pod(scheduler, room, uid).await;
        Ok(())
    }

    fn record(&self, room: &Room, from: RoomStatus) {
        // An allocation is recorded on the namespace before it is answered (`ledger`); writing
        // it to the pod as well would double the API server's work on the allocation path.
        if matches!(room.status, RoomStatus::Terminated | RoomStatus::Allocated)
            || discover::inferred(room, from)
        {
            return;
        }
        self.inner.push(
            &room.scheduler,
            Object::Pod(room.id.clone()),
            What::Room {
                status: room.status,
                since_ms: room.status_since,
                matches: room.running_matches,
            },
        );
    }

    async fn confirm_allocation(&self, room: &Room) -> Result<(), AllocationRefused> {
        self.inner
            .leading()
            .map_err(|e| AllocationRefused::Unavailable(e.to_string()))?;
        let namespace = self.inner.namespace(&room.scheduler);
        ledger::Ledger::record(&self.inner, &namespace, &room.id, room.status_since).await
    }

    async fn flush(&self) {
        self.inner.records.drained().await;
    }

    fn record_scheduler(&self, name: &str, applied: Option<&Applied>) {
        self.inner.push(
            name,
            Object::Namespace,
            What::Scheduler {
                scheduler: name.to_owned(),
                applied: applied.and_then(|a| serde_json::to_string(a).ok()),
            },
        );
    }

    fn record_revisions(&self, revisions: &[crate::state::history::RevisionRecord]) {
        let Ok(json) = serde_json::to_string(revisions) else {
            return;
        };
        self.inner.records.push(
            Target {
                namespace: self.inner.client.default_namespace().to_owned(),
                object: Object::Revisions,
            },
            What::Revisions(json),
        );
    }

    fn record_status(&self, name: &str, status: &SchedulerStatus) {
        let Ok(status) = serde_json::to_value(status) else {
            return;
        };
        self.inner.push(
            name,
            Object::Status,
            What::Status {
                scheduler: name.to_owned(),
                status,
            },
        );
    }

    fn record_operation(&self, op: &Operation, drop: &[String]) {
        let Ok(record) = serde_json::to_string(op) else {
            return;
        };
        self.inner.push(
            &op.scheduler,
            Object::Operation(op.id.clone()),
            What::Operation {
                scheduler: op.scheduler.clone(),
                record,
                drop: drop.to_vec(),
            },
        );
    }

    async fn record_suspension(
        &self,
        name: &str,
        since_ms: Option<u64>,
    ) -> Result<(), RuntimeError> {
        self.inner
            .leading()
            .map_err(|e| backend("recording the suspension", e))?;
        let namespace = self.inner.namespace(name);
        self.inner
            .write_suspension(&namespace, name, since_ms)
            .await
            .map_err(|e| backend("recording the suspension on the namespace", e))
    }

    async fn discover(&self) -> Result<Discovered, RuntimeError> {
        self.inner.discover().await
    }

    async fn check_admission(
        &self,
        scheduler: &crate::domain::spec::Scheduler,
    ) -> Result<(), RuntimeError> {
        let span = info_span!("admission", scheduler = %scheduler.name);
        self.inner.check_admission(scheduler).instrument(span).await
    }

    fn pending_records(&self) -> usize {
        self.inner.records.depth()
    }
}

impl Inner {
    /// Queue a write of `object` in scheduler `scheduler`'s namespace.
    fn push(&self, scheduler: &str, object: Object, what: What) {
        let namespace = self.namespace(scheduler);
        self.records.push(Target { namespace, object }, what);
    }

    /// Writes that must not come from a deposed leader check this first.
    fn leading(&self) -> Result<(), std::io::Error> {
        match &self.config.leadership {
            Some(leadership) if !leadership.is_leading() => {
                Err(std::io::Error::other("this replica no longer leads"))
            }
            _ => Ok(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update of the state is a single step: a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn namespace(&self, scheduler: &str) -> String {
        namespace_of(&self.config.namespace_prefix, scheduler)
    }

    fn pod_api(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// The InternalIP of a node, from the node watch.
    fn node_ip(&self, node: &str) -> Option<String> {
        internal_ip(&*self.nodes.get(&ObjectRef::new(node))?)
    }

    /// Wait for the pod watch's first complete list: decisions on ports and adoption need it.
    async fn wait_ready(&self) -> Result<(), RuntimeError> {
        match tokio::time::timeout(self.config.ready_timeout, self.pods.wait_until_ready()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(backend("the pod watch stopped", e)),
            Err(_) => Err(RuntimeError::Unreachable(format!(
                "no complete list of pods from the API server within {:?}: is the cluster reachable?",
                self.config.ready_timeout
            ))),
        }
    }

    /// Report an event, waiting for room in the channel: an exit is never dropped.
    async fn send(&self, event: RuntimeEvent) {
        if self.events.send(event).await.is_err() {
            debug!("runtime event receiver is gone; event not delivered");
        }
    }

    /// Create the scheduler's namespace with Troupe's labels, unless known to exist.
    async fn ensure_namespace(&self, namespace: &str, scheduler: &str) -> Result<(), kube::Error> {
        if self.lock().namespaces.contains(namespace) {
            return Ok(());
        }
        let labels = BTreeMap::from([
            (MANAGED_BY.to_owned(), MANAGER.to_owned()),
            (LABEL_SCHEDULER.to_owned(), scheduler.to_owned()),
        ]);
        let api: Api<Namespace> = Api::all(self.client.clone());
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(namespace.to_owned()),
                labels: Some(labels.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &ns).await {
            Ok(_) => info!(%namespace, "namespace created"),
            Err(e) if is_status(&e, |s| s.is_already_exists()) => {
                // Made by someone else (or a previous controller): make sure discovery finds it.
                let patch = serde_json::json!({"metadata": {"labels": labels}});
                api.patch(namespace, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            Err(e) => return Err(e),
        }
        self.ledger.prepare(&self.client, namespace).await;
        self.lock().namespaces.insert(namespace.to_owned());
        Ok(())
    }

    /// Host ports held by live Troupe pods (any namespace: they share the nodes) and booked by
    /// rooms being created.
    fn used_ports(&self, state: &State) -> HashSet<u16> {
        let mut used: HashSet<u16> = state
            .rooms
            .values()
            .filter(|t| !t.track.exited())
            .flat_map(|t| t.track.host_ports.iter().copied())
            .collect();
        for pod in self.pods.state() {
            let finished = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|p| p == "Succeeded" || p == "Failed");
            if finished {
                continue;
            }
            used.extend(
                pod.spec
                    .iter()
                    .flat_map(|s| s.containers.iter())
                    .flat_map(|c| c.ports.iter().flatten())
                    .filter_map(|p| p.host_port.and_then(|h| u16::try_from(h).ok())),
            );
        }
        used
    }

    async fn start(
        self: &Arc<Self>,
        key: RoomKey,
        req: StartRoom,
    ) -> Result<Started, RuntimeError> {
        let scheduler = Arc::clone(&req.scheduler);
        let namespace = self.namespace(&scheduler.name);
        let start_error = |reason: String| RuntimeError::Start {
            room: req.room_id.clone(),
            reason,
        };
        if namespace.len() > MAX_NAME || req.room_id.len() > MAX_NAME {
            return Err(RuntimeError::Unsupported {
                scheduler: scheduler.name.clone(),
                runtime: RUNTIME_NAME,
                reason: format!(
                    "namespace {namespace} or room id {} is longer than {MAX_NAME} characters",
                    req.room_id
                ),
            });
        }
        self.ensure_namespace(&namespace, &scheduler.name)
            .await
            .map_err(|e| {
                start_error(format!(
                    "creating namespace {namespace}: {}",
                    api_reason(&e)
                ))
            })?;
        self.wait_ready().await?;

        let declared = scheduler.spec.ports().count();
        let host_ports = {
            let mut state = self.lock();
            if state.rooms.get(&key).is_some_and(|t| !t.track.exited()) {
                return Err(start_error("it is already running".into()));
            }
            let used = self.used_ports(&state);
            let picked = state
                .pick_ports(
                    &scheduler.name,
                    scheduler.port_range,
                    declared,
                    &used,
                    &Default::default(),
                )
                .ok_or(RuntimeError::PortsExhausted {
                    scheduler: scheduler.name.clone(),
                    start: scheduler.port_range.start,
                    end: scheduler.port_range.end,
                })?;
            state.rooms.insert(
                key.clone(),
                Tracked {
                    track: Track::new(&key.scheduler, &key.room, picked.clone(), true),
                    request: Some(req.clone()),
                },
            );
            picked
        };
        let created = match self.create_pod(&req, &namespace, &host_ports).await {
            Ok(created) => created,
            Err(e) => {
                let reason = e.to_string();
                self.lock().rooms.remove(&key);
                warn!(%reason, "room failed to start");
                return Err(start_error(reason));
            }
        };
        let uid = created.uid().unwrap_or_default();
        if let Some(t) = self.lock().rooms.get_mut(&key)
            && t.track.uid.is_none()
            && !t.track.moving
        {
            t.track.uid = Some(uid.clone());
        }
        let room_ports =
            pod::room_ports(&req, &host_ports).map_err(|e| start_error(e.to_string()))?;
        info!(%namespace, ports = ?host_ports, "pod created");
        Ok(Started {
            // Known once the pod is placed: reported by `RuntimeEvent::Placed`.
            host: String::new(),
            ports: room_ports,
            runtime_ref: uid,
        })
    }

    /// A dry run of one room's pod in the scheduler's namespace, which is created first when
    /// missing, for real and with Troupe's labels: the first room's start would create it
    /// anyway, and only a namespace that exists can answer for its pods (its PodSecurity labels,
    /// its quotas and limits). A namespace someone else made, labels and all, is kept as is.
    async fn check_admission(
        &self,
        scheduler: &crate::domain::spec::Scheduler,
    ) -> Result<(), RuntimeError> {
        let namespace = self.namespace(&scheduler.name);
        if namespace.len() > MAX_NAME {
            return Err(RuntimeError::Unsupported {
                scheduler: scheduler.name.clone(),
                runtime: RUNTIME_NAME,
                reason: format!("namespace {namespace} is longer than {MAX_NAME} characters"),
            });
        }
        if let Err(e) = self.ensure_namespace(&namespace, &scheduler.name).await {
            let what = format!("creating namespace {namespace}");
            return Err(match &e {
                kube::Error::Api(s) => match admission::verdict(s) {
                    Some(admission::Verdict::Refused(reason)) => RuntimeError::Refused {
                        scheduler: scheduler.name.clone(),
                        reason: format!("{what}: {reason}"),
                    },
                    _ => backend(&what, e),
                },
                _ => backend(&what, e),
            });
        }
        let scheduler = Arc::new(scheduler.clone());
        match admission::dry_run(&self.client, &namespace, &scheduler).await? {
            admission::Verdict::Admitted => {
                debug!(%namespace, version = %scheduler.version(), "a room's pod passes a dry run");
                Ok(())
            }
            admission::Verdict::Refused(reason) => {
                warn!(%namespace, version = %scheduler.version(), %reason, "the API server refuses the scheduler's pods");
                Err(RuntimeError::Refused {
                    scheduler: scheduler.name.clone(),
                    reason,
                })
            }
            admission::Verdict::Unchecked(why) => {
                warn!(%namespace, %why, "pods cannot be checked with a dry run; starting rooms unchecked");
                Ok(())
            }
        }
    }

    async fn create_pod(
        &self,
        req: &StartRoom,
        namespace: &str,
        host_ports: &[u16],
    ) -> Result<Pod, CreatePodError> {
        let pod = pod::build_pod(req, namespace, host_ports, now_ms())
            .map_err(|e| CreatePodError::Failed(e.to_string()))?;
        self.pod_api(namespace)
            .create(&PostParams::default(), &pod)
            .await
            .map_err(|e| {
                let reason = format!(
                    "creating pod {namespace}/{}: {}",
                    req.room_id,
                    api_reason(&e)
                );
                if is_status(&e, |s| s.reason == "AlreadyExists" || s.code == 409) {
                    CreatePodError::AlreadyExists(reason)
                } else {
                    CreatePodError::Failed(reason)
                }
            })
    }

    async fn stop(
        self: &Arc<Self>,
        key: RoomKey,
        room: &Room,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        let known = {
            let mut state = self.lock();
            state.rooms.get_mut(&key).map(|t| {
                t.track.stopping = true;
                t.track.exited()
            })
        };
        match known {
            Some(true) => return Ok(()),
            Some(false) => {}
            None => {
                // Never adopted by this runtime: watch it first so its end is reported.
                self.wait_ready().await?;
                if !self.adopt_one(room, true) {
                    debug!("stop of a room that has no pod: reported ended");
                    self.send(RuntimeEvent::Exited {
                        scheduler: key.scheduler.clone(),
                        room: key.room.clone(),
                        clean: true,
                        reason: "pod already gone".into(),
                    })
                    .await;
                    return Ok(());
                }
            }
        }
        let namespace = self.namespace(&key.scheduler);
        let params = DeleteParams {
            grace_period_seconds: Some(u32::try_from(grace.as_secs()).unwrap_or(u32::MAX)),
            ..DeleteParams::default()
        };
        match self.pod_api(&namespace).delete(&key.room, &params).await {
            Ok(_) => {
                info!(
                    grace_s = grace.as_secs(),
                    "pod deleted (room asked to stop)"
                );
                Ok(())
            }
            Err(e) if is_status(&e, |s| s.is_not_found()) => Ok(()),
            Err(e) => Err(RuntimeError::Stop {
                room: key.room.clone(),
                reason: api_reason(&e),
            }),
        }
    }

    /// Watch the pod of a room recorded before. True when it exists and has not finished.
    fn adopt_one(&self, room: &Room, stopping: bool) -> bool {
        let namespace = self.namespace(&room.scheduler);
        let Some(pod) = self.pods.get(&ObjectRef::new(&room.id).within(&namespace)) else {
            return false;
        };
        let owner = discover::owner(&pod, &self.config.namespace_prefix);
        if owner.as_ref() != Some(&(room.scheduler.clone(), room.id.clone())) {
            return false;
        }
        let view = read_pod(&pod);
        if view.finished() {
            return false;
        }
        let key = RoomKey::new(&room.scheduler, &room.id);
        let mut state = self.lock();
        let tracked = state.rooms.entry(key).or_insert_with(|| {
            let mut track = Track::new(
                &room.scheduler,
                &room.id,
                view.host_ports().collect(),
                false,
            );
            track.uid = Some(view.uid.clone());
            Tracked {
                track,
                request: None,
            }
        });
        tracked.track.stopping |= stopping;
        true
    }

    async fn adopt(self: &Arc<Self>, rooms: &[Room]) -> Result<Adopted, RuntimeError> {
        self.wait_ready().await?;
        let prefix = &self.config.namespace_prefix;
        let mut alive = Vec::new();
        for room in rooms {
            let _entered = RoomKey::new(&room.scheduler, &room.id).span().entered();
            if self.adopt_one(room, room.status == RoomStatus::Terminating) {
                alive.push(room.id.clone());
            } else {
                info!("room has no live pod: not adopted");
            }
        }
        let found: Vec<(String, String)> = self
            .pods
            .state()
            .iter()
            .filter_map(|pod| discover::owner(pod, prefix))
            .collect();
        let alive_set: HashSet<&str> = alive.iter().map(String::as_str).collect();
        // Report what happened to the adopted rooms while nobody watched.
        for room in rooms.iter().filter(|r| alive_set.contains(r.id.as_str())) {
            let namespace = self.namespace(&room.scheduler);
            if let Some(pod) = self.pods.get(&ObjectRef::new(&room.id).within(&namespace)) {
                self.on_pod(&pod).await;
            }
        }
        info!(rooms = rooms.len(), adopted = alive.len(), "pods adopted");
        Ok(Adopted { alive, found })
    }

    /// Delete one pod (`uid`: only that one), ignoring a pod that is already gone.
    async fn delete_pod(&self, scheduler: &str, room: &str, uid: Option<String>) {
        let params = DeleteParams {
            preconditions: uid.map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let namespace = self.namespace(scheduler);
        match self.pod_api(&namespace).delete(room, &params).await {
            Ok(_) => {}
            Err(e) if is_status(&e, |s| s.is_not_found() || s.is_conflict()) => {}
            Err(e) => warn!(%scheduler, %room, error = %api_reason(&e), "cannot delete pod"),
        }
    }

    /// What the cluster records; the allocations it holds become this replica's to replace.
    async fn discover(&self) -> Result<Discovered, RuntimeError> {
        let (discovered, allocations) =
            read_cluster(&self.client, &self.config.namespace_prefix).await?;
        for (namespace, entries) in allocations {
            self.ledger.adopt(&namespace, entries);
        }
        Ok(discovered)
    }

    /// Follow every Troupe pod; the store is what ports, adoption and events are decided from.
    async fn watch_pods(self: Arc<Self>, writer: Writer<Pod>) {
        let api: Api<Pod> = Api::all(self.client.clone());
        let config = watcher::Config::default().labels(MANAGED_SELECTOR);
        follow(api, config, writer, "pods", |event| {
            let this = Arc::clone(&self);
            async move {
                match event {
                    Event::Apply(pod) | Event::InitApply(pod) => this.on_pod(&pod).await,
                    Event::Delete(pod) => this.on_deleted(&pod).await,
                    Event::InitDone => this.on_relisted().await,
                    Event::Init => {}
                }
            }
        })
        .await
    }

    async fn on_pod(self: &Arc<Self>, pod: &Pod) {
        if let Some((key, actions)) = self.observe(pod) {
            self.act(&key, actions).await;
        }
    }

    /// What a watched room's pod change calls for (`None`: not a watched room's pod).
    fn observe(&self, pod: &Pod) -> Option<(RoomKey, Vec<Action>)> {
        let (scheduler, room) = discover::owner(pod, &self.config.namespace_prefix)?;
        let key = RoomKey::new(&scheduler, &room);
        let view = read_pod(pod);
        let node_ip = view.node.as_deref().and_then(|n| self.node_ip(n));
        let mut state = self.lock();
        let tracked = state.rooms.get_mut(&key)?;
        let actions = tracked
            .track
            .on_pod(&view, node_ip.as_deref(), self.config.max_port_moves);
        Some((key, actions))
    }

    async fn on_deleted(self: &Arc<Self>, pod: &Pod) {
        let Some((scheduler, room)) = discover::owner(pod, &self.config.namespace_prefix) else {
            return;
        };
        let key = RoomKey::new(&scheduler, &room);
        let uid = pod.uid().unwrap_or_default();
        let actions = self.gone(&key, &uid);
        self.act(&key, actions).await;
    }

    /// The room's pod `uid` is gone: its exit, and the room forgotten once it has exited.
    fn gone(&self, key: &RoomKey, uid: &str) -> Vec<Action> {
        let mut state = self.lock();
        let Some(tracked) = state.rooms.get_mut(key) else {
            return vec![];
        };
        let actions = tracked.track.on_gone(uid);
        if tracked.track.exited() && tracked.track.uid.as_deref().is_none_or(|u| u == uid) {
            state.rooms.remove(key);
        }
        actions
    }

    /// The watch listed everything again (after a disconnect): pods deleted meanwhile sent no
    /// event, so every watched room whose pod is missing has ended.
    async fn on_relisted(self: &Arc<Self>) {
        let missing: Vec<(RoomKey, String)> = {
            let state = self.lock();
            state
                .rooms
                .iter()
                .filter(|(_, t)| !t.track.moving)
                .filter_map(|(key, t)| {
                    let uid = t.track.uid.clone()?;
                    let namespace = self.namespace(&key.scheduler);
                    let present = self
                        .pods
                        .get(&ObjectRef::new(&key.room).within(&namespace))
                        .is_some_and(|p| p.uid().as_deref() == Some(uid.as_str()));
                    (!present).then(|| (key.clone(), uid))
                })
                .collect()
        };
        for (key, uid) in missing {
            let actions = self.gone(&key, &uid);
            self.act(&key, actions).await;
        }
    }

    async fn act(self: &Arc<Self>, key: &RoomKey, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Emit(event) => {
                    match &event {
                        RuntimeEvent::Failed { reason, .. } => {
                            warn!(scheduler = %key.scheduler, room = %key.room, %reason, "room failed")
                        }
                        RuntimeEvent::Exited { clean, reason, .. } => {
                            info!(scheduler = %key.scheduler, room = %key.room, clean, %reason, "room ended")
                        }
                        _ => {}
                    }
                    self.send(event).await;
                }
                Action::DeletePod { uid } => {
                    let inner = Arc::clone(self);
                    let key = key.clone();
                    let span = key.span();
                    tokio::spawn(
                        async move { inner.delete_pod(&key.scheduler, &key.room, Some(uid)).await }
                            .instrument(span),
                    );
                }
                Action::MovePorts { uid } => {
                    let inner = Arc::clone(self);
                    let key = key.clone();
                    let span = key.span();
                    tokio::spawn(
                        async move {
                            let mut next = Some(uid);
                            while let Some(uid) = next.take() {
                                next = inner.move_ports(&key, uid).await;
                            }
                        }
                        .instrument(span),
                    );
                }
            }
        }
    }

    /// Replace a room's pod that no eligible node can take (its host ports are taken) by one on
    /// other host ports: same room, same name. Returns the new pod's uid when it, too, needs a
    /// move.
    async fn move_ports(self: &Arc<Self>, key: &RoomKey, uid: String) -> Option<String> {
        let namespace = self.namespace(&key.scheduler);
        let request = {
            let mut state = self.lock();
            let tracked = state.rooms.get_mut(key)?;
            tracked.track.retire_current();
            tracked.request.clone()
        };
        let request = request?;
        warn!(old_uid = %uid, "host ports taken on every eligible node: recreating the pod on other ports");
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        if let Err(e) = self.pod_api(&namespace).delete(&key.room, &params).await
            && !is_status(&e, |s| s.is_not_found() || s.is_conflict())
        {
            self.move_failed(
                key,
                format!("deleting the unschedulable pod: {}", api_reason(&e)),
            )
            .await;
            return None;
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let range = request.scheduler.port_range;
            let next = {
                let mut state = self.lock();
                let used = self.used_ports(&state);
                match state.rooms.get_mut(key) {
                    None => return None,
                    // Stopped meanwhile: the old pod is gone, nothing replaces it.
                    Some(tracked) if tracked.track.stopping => {
                        let end = tracked
                            .track
                            .end(true, "stopped while its pod was being recreated");
                        state.rooms.remove(key);
                        Err(end)
                    }
                    Some(tracked) => {
                        let declared = request.scheduler.spec.ports().count();
                        let own: HashSet<u16> = tracked.track.host_ports.iter().copied().collect();
                        let used: HashSet<u16> = used.difference(&own).copied().collect();
                        let avoid = tracked.track.avoid_ports.clone();
                        let picked =
                            state.pick_ports(&key.scheduler, range, declared, &used, &avoid);
                        if let (Some(p), Some(tracked)) = (&picked, state.rooms.get_mut(key)) {
                            tracked.track.host_ports = p.clone();
                        }
                        Ok(picked)
                    }
                }
            };
            let host_ports = match next {
                Err(end) => {
                    if let Some(Action::Emit(event)) = end {
                        self.send(event).await;
                    }
                    return None;
                }
                Ok(None) => {
                    let reason = format!(
                        "no free port left in portRange {}..{}",
                        range.start, range.end
                    );
                    self.move_failed(key, reason).await;
                    return None;
                }
                Ok(Some(p)) => p,
            };
            match self.create_pod(&request, &namespace, &host_ports).await {
                Ok(created) => {
                    let uid = created.uid();
                    let stopping = {
                        let mut state = self.lock();
                        match state.rooms.get_mut(key) {
                            Some(t) => {
                                t.track.moved(uid.clone(), host_ports.clone());
                                t.track.stopping
                            }
                            None => true,
                        }
                    };
                    info!(ports = ?host_ports, "pod recreated on other host ports");
                    if stopping {
                        self.delete_pod(&key.scheduler, &key.room, uid).await;
                        return None;
                    }
                    // Changes of the new pod seen while the move was under way were not acted
                    // on (the room was moving): look at it again now. The watch puts a change
                    // in the store before it reports it, so none can fall in between.
                    let current = self.pods.get(&ObjectRef::new(&key.room).within(&namespace));
                    let actions = current
                        .and_then(|pod| self.observe(&pod))
                        .map(|(_, actions)| actions)
                        .unwrap_or_default();
                    let mut again = None;
                    for action in actions {
                        match action {
                            Action::Emit(event) => self.send(event).await,
                            Action::DeletePod { uid } => {
                                self.delete_pod(&key.scheduler, &key.room, Some(uid)).await
                            }
                            Action::MovePorts { uid } => again = Some(uid),
                        }
                    }
                    return again;
                }
                Err(CreatePodError::AlreadyExists(_)) if attempt < RECREATE_ATTEMPTS => {
                    tokio::time::sleep(RECREATE_PAUSE).await;
                }
                Err(e) => {
                    self.move_failed(key, e.to_string()).await;
                    return None;
                }
            }
        }
    }

    async fn move_failed(&self, key: &RoomKey, reason: String) {
        let action = self
            .lock()
            .rooms
            .get_mut(key)
            .and_then(|t| t.track.fail(reason));
        if let Some(Action::Emit(event)) = action {
            self.send(event).await;
        }
    }

    /// Send queued status and spec writes, newest first, a few at a time.
    async fn write_records(self: Arc<Self>) {
        loop {
            self.records.wait().await;
            loop {
                let batch = self.records.take();
                if batch.is_empty() {
                    break;
                }
                futures_util::stream::iter(batch)
                    .for_each_concurrent(RECORD_CONCURRENCY, |(target, write)| {
                        let inner = Arc::clone(&self);
                        async move { inner.write_one(target, write).await }
                    })
                    .await;
            }
        }
    }

    async fn write_one(self: Arc<Self>, target: Target, write: Write) {
        self.write_queued(&target, write).await;
        self.records.done(&target);
    }

    async fn write_queued(self: &Arc<Self>, target: &Target, mut write: Write) {
        let result = match (&target.object, &write.what) {
            (
                Object::Pod(pod),
                What::Room {
                    status,
                    since_ms,
                    matches,
                },
            ) => {
                let patch = room_patch(*status, *since_ms, *matches);
                let written = match self
                    .pod_api(&target.namespace)
                    .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Err(e) if is_status(&e, |s| s.is_not_found()) => Ok(()),
                    other => other.map(|_| ()),
                };
                // A status after an allocation is on the pod now: the ledger's entry may go.
                if written.is_ok() && *status != RoomStatus::Allocated {
                    ledger::Ledger::landed(self, &target.namespace, pod, *since_ms);
                }
                written
            }
            (Object::Namespace, What::Scheduler { scheduler, applied }) => {
                self.write_applied(&target.namespace, scheduler, applied.as_deref())
                    .await
            }
            (Object::Revisions, What::Revisions(json)) => {
                self.write_revisions(&target.namespace, json).await
            }
            (Object::Status, What::Status { scheduler, status }) => {
                self.write_status(&target.namespace, scheduler, status)
                    .await
            }
            (
                Object::Operation(id),
                What::Operation {
                    scheduler,
                    record,
                    drop,
                },
            ) => {
                self.write_operation(&target.namespace, scheduler, id, record, drop)
                    .await
            }
            _ => Ok(()),
        };
        let Err(e) = result else {
            return;
        };
        write.attempts += 1;
        if write.attempts >= RECORD_ATTEMPTS {
            warn!(namespace = %target.namespace, object = ?target.object, error = %api_reason(&e),
                "giving up writing a room status or spec to the cluster");
            return;
        }
        let pause = crate::supervise::backoff(RECORD_RETRY_FIRST, RECORD_RETRY_MAX)
            .nth(write.attempts as usize - 1)
            .unwrap_or(RECORD_RETRY_MAX);
        debug!(namespace = %target.namespace, object = ?target.object, error = %api_reason(&e), ?pause,
            "writing to the cluster failed; retrying");
        let (inner, target) = (Arc::clone(self), target.clone());
        tokio::spawn(async move {
            tokio::time::sleep(pause).await;
            inner.records.retry(target, write);
        });
    }

    /// Write the revisions seen to this controller's revisions ConfigMap in `namespace` (its
    /// own), made on first use.
    async fn write_revisions(&self, namespace: &str, json: &str) -> Result<(), kube::Error> {
        let name = revisions_name(&self.config.namespace_prefix);
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let patch = serde_json::json!({"data": {REVISIONS_KEY: json}});
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Err(e) if is_status(&e, |s| s.is_not_found()) => {
                let cm = ConfigMap {
                    metadata: kube::api::ObjectMeta {
                        name: Some(name),
                        labels: Some(BTreeMap::from([(
                            MANAGED_BY.to_owned(),
                            MANAGER.to_owned(),
                        )])),
                        ..Default::default()
                    },
                    data: Some(BTreeMap::from([(
                        REVISIONS_KEY.to_owned(),
                        json.to_owned(),
                    )])),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &cm).await.map(|_| ())
            }
            other => other.map(|_| ()),
        }
    }

    /// Write the status of scheduler `scheduler`'s Scheduler resource, making the resource on
    /// first use. Without the resource's definition in the cluster (deploy/crd.yaml) this says
    /// so once and writes no status again.
    async fn write_status(
        &self,
        namespace: &str,
        scheduler: &str,
        status: &serde_json::Value,
    ) -> Result<(), kube::Error> {
        if self.no_scheduler_resource.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.ensure_namespace(namespace, scheduler).await?;
        let resource = scheduler_resource();
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        let patch = serde_json::json!({"status": status});
        let params = PatchParams::default();
        match api
            .patch_status(scheduler, &params, &Patch::Merge(&patch))
            .await
        {
            Err(e) if is_status(&e, |s| s.is_not_found()) => {}
            other => return other.map(|_| ()),
        }
        let mut object = DynamicObject::new(scheduler, &resource)
            .within(namespace)
            .data(serde_json::json!({"spec": {"game": status["game"]}}));
        object.metadata.labels = Some(BTreeMap::from([
            (MANAGED_BY.to_owned(), MANAGER.to_owned()),
            (LABEL_SCHEDULER.to_owned(), scheduler.to_owned()),
        ]));
        match api.create(&PostParams::default(), &object).await {
            Err(e) if is_status(&e, |s| s.is_not_found()) => {
                if !self.no_scheduler_resource.swap(true, Ordering::Relaxed) {
                    warn!(
                        "the Scheduler resource (schedulers.troupe.dev) is not defined in this cluster: `kubectl get` will not list schedulers; apply deploy/crd.yaml"
                    );
                }
                return Ok(());
            }
            Err(e) if is_status(&e, |s| s.is_already_exists()) => {}
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        api.patch_status(scheduler, &params, &Patch::Merge(&patch))
            .await
            .map(|_| ())
    }

    /// Record operation `id` in its scheduler's operations ConfigMap (made on first use), and
    /// drop the entries of `drop`.
    async fn write_operation(
        &self,
        namespace: &str,
        scheduler: &str,
        id: &str,
        record: &str,
        drop: &[String],
    ) -> Result<(), kube::Error> {
        self.ensure_namespace(namespace, scheduler).await?;
        let mut data = serde_json::Map::new();
        data.insert(id.to_owned(), record.into());
        for old in drop {
            data.insert(old.clone(), serde_json::Value::Null);
        }
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let patch = serde_json::json!({"data": data});
        match api
            .patch(OPERATIONS, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Err(e) if is_status(&e, |s| s.is_not_found()) => {
                let labels = BTreeMap::from([
                    (MANAGED_BY.to_owned(), MANAGER.to_owned()),
                    (LABEL_SCHEDULER.to_owned(), scheduler.to_owned()),
                    (LABEL_OPERATIONS.to_owned(), "true".to_owned()),
                ]);
                let cm = ConfigMap {
                    metadata: kube::api::ObjectMeta {
                        name: Some(OPERATIONS.to_owned()),
                        labels: Some(labels),
                        ..Default::default()
                    },
                    data: Some(BTreeMap::from([(id.to_owned(), record.to_owned())])),
                    ..Default::default()
                };
                // Made meanwhile by another operation's write: a conflict, and the queue's retry
                // patches it.
                api.create(&PostParams::default(), &cm).await.map(|_| ())
            }
            other => other.map(|_| ()),
        }
    }

    /// Record on the scheduler's namespace that syncing it is suspended since `since_ms`, or
    /// (`None`) that it is not.
    async fn write_suspension(
        &self,
        namespace: &str,
        scheduler: &str,
        since_ms: Option<u64>,
    ) -> Result<(), kube::Error> {
        let value = since_ms.map(|ms| ms.to_string());
        self.write_annotation(namespace, scheduler, ANNOTATION_SUSPENDED, value.as_deref())
            .await
    }

    async fn write_applied(
        &self,
        namespace: &str,
        scheduler: &str,
        applied: Option<&str>,
    ) -> Result<(), kube::Error> {
        self.write_annotation(namespace, scheduler, ANNOTATION_APPLIED, applied)
            .await
    }

    /// Set annotation `key` of the scheduler's namespace (made first if need be), or remove it
    /// (`None`; a namespace that is gone has nothing to remove).
    async fn write_annotation(
        &self,
        namespace: &str,
        scheduler: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), kube::Error> {
        if value.is_some() {
            self.ensure_namespace(namespace, scheduler).await?;
        }
        let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
        let api: Api<Namespace> = Api::all(self.client.clone());
        match api
            .patch(namespace, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Err(e) if value.is_none() && is_status(&e, |s| s.is_not_found()) => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

/// The ConfigMap, in the controller's own namespace, that records the revisions it saw.
fn revisions_name(prefix: &str) -> String {
    format!("{prefix}troupe-revisions")
}

/// Its one entry: the revisions, newest first, JSON.
const REVISIONS_KEY: &str = "revisions.json";

/// The Scheduler resource of deploy/crd.yaml.
fn scheduler_resource() -> ApiResource {
    ApiResource {
        group: "troupe.dev".into(),
        version: "v1alpha1".into(),
        api_version: "troupe.dev/v1alpha1".into(),
        kind: "Scheduler".into(),
        plural: "schedulers".into(),
    }
}

/// The merge patch that records a room's status on its pod.
fn room_patch(status: RoomStatus, since_ms: u64, matches: u32) -> serde_json::Value {
    serde_json::json!({"metadata": {
        "labels": {LABEL_STATUS: status.as_str()},
        "annotations": {
            ANNOTATION_STATUS_SINCE: since_ms.to_string(),
            ANNOTATION_MATCHES: matches.to_string(),
        },
    }})
}

fn internal_ip(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
}

/// Rooms and applied specs recorded in the cluster, read with three lists and no watch: what
/// `troupe plan --runtime kubernetes` needs, and what a controller takes at start-up that its
/// state directory does not know.
pub async fn discover(client: &Client, prefix: &str) -> Result<Discovered, RuntimeError> {
    Ok(read_cluster(client, prefix).await?.0)
}

/// Rooms and applied schedulers as the cluster records them, and the allocations recorded on
/// each namespace.
async fn read_cluster(
    client: &Client,
    prefix: &str,
) -> Result<(Discovered, HashMap<String, ledger::Entries>), RuntimeError> {
    let selector = ListParams::default().labels(MANAGED_SELECTOR);
    let pods = Api::<Pod>::all(client.clone())
        .list(&selector)
        .await
        .map_err(|e| backend("listing pods", e))?;
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| backend("listing nodes", e))?;
    let namespaces = Api::<Namespace>::all(client.clone())
        .list(&selector)
        .await
        .map_err(|e| backend("listing namespaces", e))?;
    let node_ips: HashMap<String, String> = nodes
        .items
        .iter()
        .filter_map(|n| Some((n.name_any(), internal_ip(n)?)))
        .collect();
    let shards = Api::<ConfigMap>::all(client.clone())
        .list(&ListParams::default().labels(&format!(
            "{MANAGED_SELECTOR},{}=true",
            ledger::LABEL_ALLOCATIONS
        )))
        .await
        .map_err(|e| backend("listing the allocation records", e))?;
    let recorded_ops = Api::<ConfigMap>::all(client.clone())
        .list(&ListParams::default().labels(&format!("{MANAGED_SELECTOR},{LABEL_OPERATIONS}=true")))
        .await
        .map_err(|e| backend("listing the operation records", e))?;
    let operations = recorded_ops
        .items
        .iter()
        .flat_map(|cm| discover::operations_of(cm, prefix))
        .collect();
    let revisions = Api::<ConfigMap>::namespaced(client.clone(), client.default_namespace())
        .get_opt(&revisions_name(prefix))
        .await
        // History only: a reader that may not see it (`troupe plan` with a narrower account)
        // goes on without.
        .unwrap_or_else(|e| {
            warn!(error = %api_reason(&e), "cannot read the revisions seen; going on without them");
            None
        })
        .and_then(|cm| cm.data?.remove(REVISIONS_KEY))
        .and_then(|json| match serde_json::from_str(&json) {
            Ok(revisions) => Some(revisions),
            Err(e) => {
                warn!(error = %e, "revisions recorded in the cluster are unreadable; ignored");
                None
            }
        })
        .unwrap_or_default();
    let now = now_ms();
    let mut allocations: HashMap<String, ledger::Entries> = HashMap::new();
    for shard in &shards.items {
        if let Some(ns) = shard.namespace() {
            allocations
                .entry(ns)
                .or_default()
                .extend(ledger::entries_of(shard));
        }
    }
    let none = ledger::Entries::new();
    let rooms = pods
        .items
        .iter()
        .filter_map(|p| {
            let recorded = p
                .namespace()
                .and_then(|ns| allocations.get(&ns))
                .unwrap_or(&none);
            discover::room_from_pod(p, prefix, recorded, |n| node_ips.get(n).cloned(), now)
        })
        .collect();
    let schedulers = namespaces
        .items
        .iter()
        .filter_map(|ns| discover::applied_from_namespace(ns, prefix))
        .collect();
    let suspended = namespaces
        .items
        .iter()
        .filter_map(|ns| discover::suspension_from_namespace(ns, prefix))
        .collect();
    Ok((
        Discovered {
            rooms,
            schedulers,
            suspended: Some(suspended),
            operations,
            revisions,
        },
        allocations,
    ))
}

/// Follow nodes for their addresses.
async fn watch_nodes(client: Client, writer: Writer<Node>) {
    let api: Api<Node> = Api::all(client);
    follow(
        api,
        watcher::Config::default(),
        writer,
        "nodes",
        |_| async {},
    )
    .await
}

/// First and longest pause before a watch whose stream ended starts again.
const REWATCH_MIN: Duration = Duration::from_millis(200);
const REWATCH_MAX: Duration = Duration::from_secs(10);

/// Keep `writer`'s store in step with the objects of `api` and hand every event to `on_event`,
/// for as long as the runtime lives. The watcher retries API errors with backoff by itself;
/// should its stream ever end, a new watch starts (listing everything again, which `on_event`
/// sees as `Init`…`InitDone`) instead of events stopping for good.
async fn follow<K, F, Fut>(
    api: Api<K>,
    config: watcher::Config,
    writer: Writer<K>,
    what: &'static str,
    on_event: F,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    F: FnMut(Event<K>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let watch = || {
        watcher::watcher(api.clone(), config.clone())
            .default_backoff()
            .modify(|o| o.managed_fields_mut().clear())
    };
    follow_streams(watch, writer, what, on_event).await
}

/// [`follow`], for any source of watch streams: `watch` starts one, and is called again (after
/// a pause) each time the one before has ended.
async fn follow_streams<K, W, S, F, Fut>(
    mut watch: W,
    mut writer: Writer<K>,
    what: &'static str,
    mut on_event: F,
) where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
    W: FnMut() -> S,
    S: futures_util::Stream<Item = Result<Event<K>, watcher::Error>>,
    F: FnMut(Event<K>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut delays = crate::supervise::backoff(REWATCH_MIN, REWATCH_MAX);
    loop {
        let mut stream = std::pin::pin!(watch());
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => {
                    writer.apply_watcher_event(&event);
                    on_event(event).await;
                }
                Err(e) => warn!(error = %e, what, "watch failed; retrying with backoff"),
            }
        }
        let pause = delays.next().unwrap_or(REWATCH_MAX);
        warn!(what, ?pause, "watch ended; watching again");
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "arena"},
        }))
        .unwrap()
    }

    /// A room whose pod started is not written back (discovery infers it); any other change is.
    /// On a current-thread runtime the writer task cannot run in between: the queue shows what
    /// `record` pushed.
    #[tokio::test(flavor = "current_thread")]
    async fn a_pod_that_starts_sends_no_status_write_and_later_changes_do() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let (runtime, _events) =
            KubernetesRuntime::new(Client::try_from(config).unwrap(), KubeConfig::default());
        let mut room = Room::pending("arena-a", "arena", "v1", 1);
        room.status = RoomStatus::Unready;
        runtime.record(&room, RoomStatus::Pending);
        assert_eq!(
            runtime.pending_records(),
            0,
            "pending -> unready is inferred"
        );
        room.status = RoomStatus::Ready;
        runtime.record(&room, RoomStatus::Unready);
        room.status = RoomStatus::Unready;
        runtime.record(&room, RoomStatus::Ready);
        assert_eq!(runtime.pending_records(), 1, "ready -> unready is written");
    }

    /// Regression: when the pod watch stream ended, only a warning was logged and no room event
    /// ever arrived again.
    #[tokio::test]
    async fn a_watch_whose_stream_ends_starts_again_and_events_keep_coming() {
        let (store, writer) = reflector::store::<Pod>();
        let mut streams = 0;
        let watch = move || {
            streams += 1;
            // Each stream lists one pod, then ends.
            let name = format!("pod-{streams}");
            futures_util::stream::iter(vec![
                Ok(Event::Init),
                Ok(Event::InitApply(pod(&name))),
                Ok(Event::InitDone),
            ])
        };
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let following = tokio::spawn(follow_streams(watch, writer, "pods", move |event| {
            if let Event::InitApply(p) = event {
                let _ = seen_tx.send(p.name_any());
            }
            std::future::ready(())
        }));
        let names: Vec<String> = vec![
            seen.recv().await.unwrap(),
            seen.recv().await.unwrap(),
            seen.recv().await.unwrap(),
        ];
        assert_eq!(
            names,
            ["pod-1", "pod-2", "pod-3"],
            "a new watch after each end"
        );
        let listed: Vec<String> = store.state().iter().map(|p| p.name_any()).collect();
        assert_eq!(
            listed.len(),
            1,
            "each relist replaces the store: {listed:?}"
        );
        following.abort();
    }
}
