//! The local runtime: each room is a process on this machine, for laptops, CI and demos without a
//! cluster.
//!
//! Owns the room processes it starts or adopts, their host ports and their log files
//! (`state_dir/rooms/<scheduler>/<room>.log`, stdout and stderr appended).
//!
//! Must always hold:
//! - Every room runs in its own process group, so a Ctrl-C of the controller does not reach rooms
//!   and a `kill -9` of the controller leaves them running, to be adopted by the next controller.
//! - A room is identified by `"<pid>:<starttime>"` ([`ProcRef`]), never by its pid alone: a recycled
//!   pid is never adopted, signalled or reported as the room.
//! - Every room watched (started or adopted) gets exactly one [`RuntimeEvent::Exited`], sent as
//!   soon as its process ends (a pidfd per room, no polling), awaited on the bounded channel rather
//!   than dropped. After its leader ends, what is left of a room's process group is killed and the
//!   room's ports are released.
//! - Host ports are unique across all local rooms of every scheduler (they share one address) and
//!   never one that something else on the machine holds when the room starts.
//! - Rooms do not inherit the controller's own `TROUPE_*` variables; they get their own.
//! - A room whose environment cannot be built ([`env`]: a required Secret or ConfigMap key
//!   missing, a pod field this machine does not have) is not spawned, and keeps no port.

mod env;
mod logs;
mod ports;
mod process;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use rustix::process::{Pid, Signal};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

use super::{Adopted, Runtime, RuntimeError, RuntimeEvent, StartRoom, Started};
use crate::domain::room::{Room, RoomPort};
use crate::domain::spec::{LocalSpec, Protocol, ignored_locally};
pub use process::{BadProcRef, ProcRef};
use process::{ExitStatus, Stat};

/// The program name in `local.command` that means "this very binary".
pub const SELF_PROGRAM: &str = "troupe";

/// Name of this runtime in logs, errors and status.
/// The local runtime's [`Runtime::name`].
pub const RUNTIME_NAME: &str = "local";

/// How the local runtime runs rooms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalConfig {
    /// Where room logs go: `state_dir/rooms/<scheduler>/<room>.log`.
    pub state_dir: PathBuf,
    /// What `troupe` as a command's program means: normally the current executable.
    pub self_exe: PathBuf,
    /// Address rooms listen on and are reached at (`TROUPE_HOST`, and the pod's `status.podIP`
    /// and `status.hostIP` for `fieldRef`); ports are probed there.
    pub host: String,
    /// Where `secretKeyRef`, `configMapKeyRef` and `envFrom` read Secrets and ConfigMaps, laid
    /// out as Kubernetes mounts them: `secrets/<name>/<key>`, `configmaps/<name>/<key>`, each
    /// file's contents a key's value. `None`: rooms that need one do not start.
    pub config_dir: Option<PathBuf>,
}

impl LocalConfig {
    /// Rooms listen on loopback unless told otherwise: the local runtime is for one machine.
    pub const DEFAULT_HOST: &'static str = "127.0.0.1";

    /// Configuration for the running binary: `troupe` means [`std::env::current_exe`], rooms listen
    /// on [`Self::DEFAULT_HOST`].
    pub fn for_current_exe(state_dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        Ok(Self {
            state_dir: state_dir.into(),
            self_exe: std::env::current_exe()?,
            host: Self::DEFAULT_HOST.to_owned(),
            config_dir: None,
        })
    }
}

/// Runs rooms as local processes. See the module documentation for what it guarantees.
///
/// Dropping it stops watching (no more events) but leaves the rooms running, like a controller
/// that exits: a new `LocalRuntime` takes them back with [`Runtime::adopt`].
pub struct LocalRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    config: LocalConfig,
    /// This machine, as rooms' `fieldRef` and `resourceFieldRef` see it.
    node: env::Node,
    probe_host: IpAddr,
    /// The kernel's ephemeral port range, read once.
    ephemeral: Option<(u16, u16)>,
    events: mpsc::Sender<RuntimeEvent>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    rooms: HashMap<RoomKey, Tracked>,
    /// Rooms being spawned (not in `rooms` yet): a second start of one of them is refused.
    starting: HashSet<RoomKey>,
    ports: ports::PortBook,
    /// Schedulers already warned that their `portRange` overlaps the ephemeral range.
    warned: HashSet<String>,
    /// `(scheduler, version)` whose fields left to the cluster have been logged.
    told_ignored: HashSet<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RoomKey {
    scheduler: String,
    room: String,
}

impl RoomKey {
    fn of(room: &Room) -> Self {
        Self {
            scheduler: room.scheduler.clone(),
            room: room.id.clone(),
        }
    }

    fn span(&self) -> tracing::Span {
        info_span!("room", scheduler = %self.scheduler, room = %self.room)
    }
}

/// A room process this runtime watches.
struct Tracked {
    proc_ref: ProcRef,
    /// The process leads its own group (always so for rooms started by a local runtime): signals go
    /// to the whole group. Otherwise only to the process, through its pidfd.
    group_leader: bool,
    pidfd: Arc<OwnedFd>,
    ports: Vec<u16>,
    /// Asked to stop: its end is clean whatever its exit status.
    stopping: bool,
    /// Its leader has ended: nothing may be signalled through its pid any more.
    exited: bool,
    /// When the pending hard kill fires, if any.
    kill_at: Option<Instant>,
    kill_timer: Option<AbortHandle>,
    watcher: Option<AbortHandle>,
}

impl Tracked {
    fn new(proc_ref: ProcRef, group_leader: bool, pidfd: Arc<OwnedFd>, ports: Vec<u16>) -> Self {
        Self {
            proc_ref,
            group_leader,
            pidfd,
            ports,
            stopping: false,
            exited: false,
            kill_at: None,
            kill_timer: None,
            watcher: None,
        }
    }

    fn signal(&self, sig: Signal) -> std::io::Result<()> {
        if self.group_leader {
            process::signal_group(self.proc_ref.pid(), sig)
        } else {
            process::signal_pidfd(&*self.pidfd, sig)
        }
    }
}

impl LocalRuntime {
    /// A local runtime and the events it reports.
    pub fn new(config: LocalConfig) -> (Self, super::Events) {
        Self::with_queue(config, super::EVENT_QUEUE)
    }

    /// Like [`LocalRuntime::new`], with room for `queue` events before the runtime waits.
    pub fn with_queue(config: LocalConfig, queue: usize) -> (Self, super::Events) {
        let (events, rx) = mpsc::channel(queue);
        let probe_host = ports::probe_addr(&config.host);
        let node = env::Node::this_machine(config.host.clone(), config.config_dir.clone());
        let runtime = Self {
            inner: Arc::new(Inner {
                config,
                node,
                probe_host,
                ephemeral: ports::ephemeral_range(),
                events,
                state: Mutex::new(State::default()),
            }),
        };
        (runtime, rx)
    }

    /// Where the output of room `room` of `scheduler` goes.
    pub fn log_path(&self, scheduler: &str, room: &str) -> PathBuf {
        logs::log_path(&self.inner.config.state_dir, scheduler, room)
    }
}

impl Drop for LocalRuntime {
    fn drop(&mut self) {
        let state = self.inner.lock();
        for tracked in state.rooms.values() {
            for task in [&tracked.watcher, &tracked.kill_timer]
                .into_iter()
                .flatten()
            {
                task.abort();
            }
        }
    }
}

#[async_trait]
impl Runtime for LocalRuntime {
    fn name(&self) -> &'static str {
        RUNTIME_NAME
    }

    /// Forks, reads `/proc`, opens the log and probes ports: blocking work, done on the blocking
    /// pool so that an operation's starts run side by side and no async thread waits on them.
    async fn start(&self, req: StartRoom) -> Result<Started, RuntimeError> {
        let span = info_span!("room", scheduler = %req.scheduler.name, room = %req.room_id);
        let room = req.room_id.clone();
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || span.in_scope(|| inner.start(&req)))
            .await
            .unwrap_or_else(|e| {
                Err(RuntimeError::Start {
                    room,
                    reason: format!("the start task failed: {e}"),
                })
            })
    }

    async fn stop(&self, room: &Room, grace: std::time::Duration) -> Result<(), RuntimeError> {
        let key = RoomKey::of(room);
        let _entered = key.span().entered();
        match self.inner.stop_tracked(&key, grace)? {
            StopOutcome::Signalled | StopOutcome::Ended => Ok(()),
            StopOutcome::Untracked => {
                // Never adopted by this runtime: if it still runs, watch it first so its end is
                // reported, then stop it. If not, it is gone and there is nothing to do.
                if self.inner.adopt_one(room)? {
                    self.inner.stop_tracked(&key, grace)?;
                } else {
                    debug!("stop of a room that is not running: nothing to do");
                }
                Ok(())
            }
        }
    }

    async fn adopt(&self, rooms: &[Room]) -> Result<Adopted, RuntimeError> {
        let mut adopted = Adopted::default();
        for room in rooms {
            let _entered = RoomKey::of(room).span().entered();
            let found = if self.inner.adopt_one(room)? {
                adopted.alive.push(room.id.clone());
                true
            } else {
                // A crash between spawning the process and recording it leaves a room with no
                // reference and a process that only its environment names.
                room.runtime_ref.is_none()
                    && !process::find_room_processes(&room.scheduler, &room.id).is_empty()
            };
            if found {
                adopted
                    .found
                    .push((room.scheduler.clone(), room.id.clone()));
            }
        }
        Ok(adopted)
    }

    async fn remove_stray(&self, scheduler: &str, room: &str) -> Result<(), RuntimeError> {
        for pid in process::find_room_processes(scheduler, room) {
            if let Some(pid) = Pid::from_raw(pid) {
                let _ = process::signal_group(pid, Signal::KILL);
                let _ = rustix::process::kill_process(pid, Signal::KILL);
            }
        }
        Ok(())
    }
}

enum StopOutcome {
    /// Signalled (now or by an earlier stop); its end will be reported.
    Signalled,
    /// Already ended; its end has been or is being reported.
    Ended,
    /// Not watched by this runtime.
    Untracked,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic elsewhere (every update is a single step), so
        // a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn start(self: &Arc<Self>, req: &StartRoom) -> Result<Started, RuntimeError> {
        let scheduler = &req.scheduler;
        let unsupported = |reason: &str| RuntimeError::Unsupported {
            scheduler: scheduler.name.clone(),
            runtime: RUNTIME_NAME,
            reason: reason.to_owned(),
        };
        let start_error = |reason: String| RuntimeError::Start {
            room: req.room_id.clone(),
            reason,
        };
        let local = scheduler.local.as_ref().ok_or_else(|| {
            unsupported("it has no `local` section (add `local.command` to run it locally)")
        })?;
        if local.command.is_empty() {
            return Err(unsupported("its `local.command` is empty"));
        }
        if !logs::is_safe_component(&scheduler.name) || !logs::is_safe_component(&req.room_id) {
            return Err(start_error(
                "scheduler and room names must be usable as file names".into(),
            ));
        }
        let key = RoomKey {
            scheduler: scheduler.name.clone(),
            room: req.room_id.clone(),
        };
        let declared: Vec<_> = scheduler.spec.ports().collect();
        let protocols: Vec<Protocol> = declared.iter().map(|p| p.protocol).collect();
        let version = scheduler.version();

        let host_ports = {
            let mut state = self.lock();
            if state.rooms.contains_key(&key) || state.starting.contains(&key) {
                return Err(start_error("it is already running".into()));
            }
            if let Some(eph) = self.ephemeral {
                let overlap = ports::ephemeral_overlap(scheduler.port_range, eph);
                if overlap > 0 && state.warned.insert(scheduler.name.clone()) {
                    warn!(
                        overlap,
                        ephemeral = format!("{}-{}", eph.0, eph.1),
                        "portRange overlaps the kernel's ephemeral ports: an outgoing connection can take a room's port before it binds it; choose a range outside it"
                    );
                }
            }
            if state
                .told_ignored
                .insert((scheduler.name.clone(), version.clone()))
            {
                let ignored = ignored_locally(scheduler);
                if !ignored.is_empty() {
                    // By design, not a fault: the same template runs on Kubernetes, where these
                    // apply. Said once per version, so that nobody wonders where they went.
                    info!(
                        %version,
                        fields = %ignored.join(", "),
                        "the local runtime does not use these fields of the room template (they apply on Kubernetes)"
                    );
                }
            }
            let probe_host = self.probe_host;
            let booked = state
                .ports
                .allocate(
                    &scheduler.name,
                    scheduler.port_range,
                    &protocols,
                    |port, protocol| ports::probe(probe_host, port, protocol),
                )
                .ok_or(RuntimeError::PortsExhausted {
                    scheduler: scheduler.name.clone(),
                    start: scheduler.port_range.start,
                    end: scheduler.port_range.end,
                })?;
            state.starting.insert(key.clone());
            booked
        };
        let room_ports: Vec<RoomPort> = declared
            .iter()
            .zip(&host_ports)
            .map(|(p, &port)| RoomPort {
                name: p.name.clone(),
                protocol: p.protocol,
                port,
            })
            .collect();

        let spawned = self
            .spawn(req, local, &room_ports)
            .and_then(|(proc_ref, pidfd)| {
                let pidfd = Arc::new(pidfd);
                match process::watch_pidfd(pidfd.clone()) {
                    Ok(watched) => Ok((proc_ref, pidfd, watched)),
                    Err(e) => {
                        // Not watched means never reported: do not leave it running.
                        let _ = process::signal_group(proc_ref.pid(), Signal::KILL);
                        process::reap(&*pidfd);
                        Err(format!("cannot watch process {proc_ref}: {e}"))
                    }
                }
            });
        let (proc_ref, pidfd, watched) = match spawned {
            Ok(s) => s,
            Err(reason) => {
                let mut state = self.lock();
                state.ports.release(&host_ports);
                state.starting.remove(&key);
                drop(state);
                warn!(%reason, "room failed to start");
                return Err(start_error(reason));
            }
        };

        let mut state = self.lock();
        state.starting.remove(&key);
        let tracked = Tracked::new(proc_ref, true, pidfd, host_ports);
        self.track(&mut state, key, tracked, watched, true);
        drop(state);
        let ports_text: Vec<String> = room_ports
            .iter()
            .map(|p| format!("{}={}", p.name, p.port))
            .collect();
        info!(runtime_ref = %proc_ref, ports = %ports_text.join(","), "room started");
        Ok(Started {
            host: self.config.host.clone(),
            ports: room_ports,
            runtime_ref: proc_ref.to_string(),
        })
    }

    /// Spawn the room's process in its own process group, its output appended to its log. Returns
    /// its reference and a pidfd on it; on error, nothing is left running.
    fn spawn(
        &self,
        req: &StartRoom,
        local: &LocalSpec,
        ports: &[RoomPort],
    ) -> Result<(ProcRef, OwnedFd), String> {
        let log_path = logs::log_path(&self.config.state_dir, &req.scheduler.name, &req.room_id);
        if let Some(dir) = log_path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create log directory {}: {e}", dir.display()))?;
        }
        let open_log = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(|e| format!("cannot open log file {}: {e}", log_path.display()))
        };
        let (program, args) = local
            .command
            .split_first()
            .expect("start checked that the command is not empty");
        let program = program_path(program, &self.config.self_exe);

        let mut command = Command::new(&program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(open_log()?)
            .stderr(open_log()?)
            .process_group(0);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TROUPE_") {
                command.env_remove(name);
            }
        }
        let env = env::room_env(req, local, &self.node, ports).map_err(|e| e.to_string())?;
        if !env.skipped.is_empty() {
            warn!(
                skipped = %env.skipped.join(", "),
                "envFrom keys that cannot be variable names are left out"
            );
        }
        for (name, value) in env.vars {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", program.display()))?;

        // Our child cannot be reaped by anyone but us, so until we reap it its pid is its own: the
        // pidfd and the start time read here are the child's even if it has already exited.
        let pid = Pid::from_child(&child);
        let identify = || -> std::io::Result<(ProcRef, OwnedFd)> {
            let pidfd = process::open_pidfd(pid)?
                .ok_or_else(|| std::io::Error::other("process vanished"))?;
            let stat = process::read_stat(pid.as_raw_pid())?
                .ok_or_else(|| std::io::Error::other("process vanished"))?;
            Ok((
                ProcRef {
                    pid: pid.as_raw_pid(),
                    starttime: stat.starttime,
                },
                pidfd,
            ))
        };
        identify().map_err(|e| {
            let _ = process::signal_group(pid, Signal::KILL);
            let _ = child.wait();
            format!(
                "cannot identify process {pid:?} of {}: {e}",
                program.display()
            )
        })
        // Dropping `child` neither kills nor reaps it: the watcher reaps it through the pidfd.
    }

    /// Record a room and start watching it; `announce`: report it running first.
    fn track(
        self: &Arc<Self>,
        state: &mut State,
        key: RoomKey,
        mut tracked: Tracked,
        watched: AsyncFd<Arc<OwnedFd>>,
        announce: bool,
    ) {
        let span = key.span();
        let watcher = self.clone().watch(key.clone(), watched, announce);
        tracked.watcher = Some(tokio::spawn(watcher.instrument(span)).abort_handle());
        state.rooms.insert(key, tracked);
    }

    /// Signal a watched room to stop and arm its hard kill.
    fn stop_tracked(
        self: &Arc<Self>,
        key: &RoomKey,
        grace: std::time::Duration,
    ) -> Result<StopOutcome, RuntimeError> {
        let mut state = self.lock();
        let Some(tracked) = state.rooms.get_mut(key) else {
            return Ok(StopOutcome::Untracked);
        };
        if tracked.exited {
            return Ok(StopOutcome::Ended);
        }
        if !tracked.stopping {
            tracked
                .signal(Signal::TERM)
                .map_err(|e| RuntimeError::Stop {
                    room: key.room.clone(),
                    reason: format!("cannot send SIGTERM: {e}"),
                })?;
            tracked.stopping = true;
            info!(
                grace_ms = grace.as_millis() as u64,
                "room asked to stop (SIGTERM)"
            );
        }
        // A repeated stop may shorten the grace, never lengthen it.
        let deadline = Instant::now() + grace;
        if tracked.kill_at.is_none_or(|at| deadline < at) {
            if let Some(timer) = tracked.kill_timer.take() {
                timer.abort();
            }
            tracked.kill_at = Some(deadline);
            let timer = tokio::spawn(
                self.clone()
                    .kill_at(key.clone(), tracked.proc_ref, deadline)
                    .instrument(key.span()),
            );
            tracked.kill_timer = Some(timer.abort_handle());
        }
        Ok(StopOutcome::Signalled)
    }

    /// The hard kill of a room that outlives its grace period.
    async fn kill_at(self: Arc<Self>, key: RoomKey, proc_ref: ProcRef, deadline: Instant) {
        tokio::time::sleep_until(deadline).await;
        let state = self.lock();
        if let Some(tracked) = state.rooms.get(&key)
            && tracked.proc_ref == proc_ref
            && !tracked.exited
        {
            warn!("room still running after its grace period: SIGKILL");
            if let Err(e) = tracked.signal(Signal::KILL) {
                warn!(error = %e, "cannot send SIGKILL");
            }
        }
    }

    /// Watch a room recorded before (by this or a previous controller). `Ok(true)` when it runs and
    /// is watched from now on; `Ok(false)` when it is not running (any more).
    fn adopt_one(self: &Arc<Self>, room: &Room) -> Result<bool, RuntimeError> {
        let key = RoomKey::of(room);
        if self.lock().rooms.contains_key(&key) {
            return Ok(true);
        }
        let Some(reference) = &room.runtime_ref else {
            debug!("no runtime reference: not adopted");
            return Ok(false);
        };
        let proc_ref: ProcRef = match reference.parse() {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "not adopted");
                return Ok(false);
            }
        };
        let backend = |what: &str, e: std::io::Error| RuntimeError::Backend {
            what: format!("adopting room {}: {what}", room.id),
            source: Box::new(e),
        };
        // Open the pidfd first, then check the start time: if it still matches, the pidfd is on the
        // room's process and not on a later process that got the same pid.
        let Some(pidfd) =
            process::open_pidfd(proc_ref.pid()).map_err(|e| backend("pidfd_open", e))?
        else {
            info!(runtime_ref = %proc_ref, "room process is gone: not adopted");
            return Ok(false);
        };
        let stat: Option<Stat> =
            process::read_stat(proc_ref.pid).map_err(|e| backend("reading /proc", e))?;
        let Some(stat) = stat.filter(|s| s.starttime == proc_ref.starttime) else {
            info!(runtime_ref = %proc_ref, "room process is gone (its pid now names another process): not adopted");
            return Ok(false);
        };
        if stat.ended() {
            // Ended but not reaped yet. If it is ours, reap it here, as nobody else will.
            if stat.ppid == rustix::process::getpid().as_raw_pid() {
                process::reap(&pidfd);
            }
            info!(runtime_ref = %proc_ref, "room process has ended: not adopted");
            return Ok(false);
        }
        let pidfd = Arc::new(pidfd);
        let watched =
            process::watch_pidfd(pidfd.clone()).map_err(|e| backend("watching the pidfd", e))?;

        let mut state = self.lock();
        if state.rooms.contains_key(&key) {
            // Adopted concurrently: that watcher reports its end.
            return Ok(true);
        }
        let host_ports: Vec<u16> = room.ports.iter().map(|p| p.port).collect();
        let conflicts = state.ports.claim(host_ports.iter().copied());
        if !conflicts.is_empty() {
            warn!(
                ?conflicts,
                "adopted room holds ports booked by another room"
            );
        }
        let tracked = Tracked::new(proc_ref, stat.pgrp == proc_ref.pid, pidfd, host_ports);
        self.track(&mut state, key, tracked, watched, false);
        info!(runtime_ref = %proc_ref, "room adopted");
        Ok(true)
    }

    /// Wait for the room's process to end, then clean up and report it, once.
    async fn watch(self: Arc<Self>, key: RoomKey, pidfd: AsyncFd<Arc<OwnedFd>>, announce: bool) {
        if announce {
            self.send(RuntimeEvent::Running {
                scheduler: key.scheduler.clone(),
                room: key.room.clone(),
            })
            .await;
        }
        // A pidfd turns readable when its process has ended. `readable` only fails when the tokio
        // runtime is shutting down, and then nobody is left to report to.
        if let Err(e) = pidfd.readable().await {
            warn!(error = %e, "cannot wait for the room's process; its end will not be reported");
            return;
        }
        let (proc_ref, group_leader) = {
            let mut state = self.lock();
            let Some(tracked) = state.rooms.get_mut(&key) else {
                return;
            };
            tracked.exited = true;
            if let Some(timer) = tracked.kill_timer.take() {
                timer.abort();
            }
            (tracked.proc_ref, tracked.group_leader)
        };
        if group_leader {
            // What is left of the room would hold its ports. For our own child the unreaped leader
            // keeps the group id from being reused, so this cannot hit anything else.
            if let Err(e) = process::signal_group(proc_ref.pid(), Signal::KILL) {
                debug!(error = %e, "cannot kill what is left of the room's process group");
            }
        }
        let status = process::reap(pidfd.get_ref().as_ref());
        let stopping = {
            let mut state = self.lock();
            let Some(tracked) = state.rooms.remove(&key) else {
                return;
            };
            state.ports.release(&tracked.ports);
            tracked.stopping
        };
        let clean = stopping || status.success();
        let reason = exit_reason(
            status,
            logs::last_line(&logs::log_path(
                &self.config.state_dir,
                &key.scheduler,
                &key.room,
            )),
        );
        if clean {
            info!(%reason, "room exited");
        } else {
            warn!(%reason, "room exited unexpectedly");
        }
        self.send(RuntimeEvent::Exited {
            scheduler: key.scheduler,
            room: key.room,
            clean,
            reason,
        })
        .await;
    }

    /// Report an event, waiting for room in the channel: an exit is never dropped.
    async fn send(&self, event: RuntimeEvent) {
        if self.events.send(event).await.is_err() {
            debug!("runtime event receiver is gone; event not delivered");
        }
    }
}

/// The program to run for `program` as written in `local.command`.
fn program_path(program: &str, self_exe: &Path) -> PathBuf {
    if program == SELF_PROGRAM {
        self_exe.to_path_buf()
    } else {
        PathBuf::from(program)
    }
}

/// `exited with status 1: <last log line>`.
fn exit_reason(status: ExitStatus, last_log_line: Option<String>) -> String {
    match last_log_line {
        Some(line) => format!("{status}: {line}"),
        None => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::port_env_name;

    #[test]
    fn troupe_as_the_program_means_this_binary() {
        let me = Path::new("/opt/troupe/bin/troupe");
        assert_eq!(program_path("troupe", me), me);
        assert_eq!(program_path("/bin/sh", me), Path::new("/bin/sh"));
        assert_eq!(
            program_path("troupe-server", me),
            Path::new("troupe-server")
        );
    }

    #[test]
    fn an_exit_reason_carries_the_last_log_line() {
        assert_eq!(
            exit_reason(
                ExitStatus::Code(1),
                Some("error: bind 127.0.0.1:40001: address in use".into())
            ),
            "exited with status 1: error: bind 127.0.0.1:40001: address in use"
        );
        assert_eq!(
            exit_reason(ExitStatus::Signal(9), None),
            "killed by signal 9"
        );
        assert_eq!(port_env_name("voice.rtp"), "TROUPE_PORT_VOICE_RTP");
    }
}
