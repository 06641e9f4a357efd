//! The local runtime and the demo room with real processes, real sockets and real HTTP.
//!
//! Every process a test starts is registered with a [`Procs`] guard that kills it when the test
//! ends, passed or failed. Each test uses its own port range (below the ephemeral range, so the
//! OS does not hand those ports to other sockets meanwhile).

use std::net::{TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use troupe::domain::room::{Room, RoomPort, RoomStatus};
use troupe::domain::spec::Scheduler;
use troupe::runtime::local::{LocalConfig, LocalRuntime, ProcRef};
use troupe::runtime::{Runtime, RuntimeError, RuntimeEvent, StartRoom, Started};

/// Longest a test waits for something that should happen at once.
const PATIENCE: Duration = Duration::from_secs(5);

/// Kills every registered process (its whole group when it leads one) when dropped.
#[derive(Default)]
struct Procs(Mutex<Vec<ProcRef>>);

impl Procs {
    fn add(&self, proc_ref: ProcRef) {
        self.0.lock().unwrap().push(proc_ref);
    }

    fn add_started(&self, started: &Started) -> ProcRef {
        let proc_ref: ProcRef = started
            .runtime_ref
            .parse()
            .expect("runtime_ref is <pid>:<starttime>");
        self.add(proc_ref);
        proc_ref
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for proc_ref in self.0.lock().unwrap().iter() {
            if !proc_ref.is_running() {
                continue;
            }
            let pid = Pid::from_raw(proc_ref.pid).unwrap();
            if process_group(proc_ref.pid) == Some(proc_ref.pid) {
                let _ = rustix::process::kill_process_group(pid, Signal::KILL);
            } else {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
            }
        }
    }
}

/// Field 5 of `/proc/<pid>/stat`.
fn process_group(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

struct Fixture {
    dir: tempfile::TempDir,
    procs: Procs,
}

impl Fixture {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            procs: Procs::default(),
        }
    }

    fn config(&self) -> LocalConfig {
        LocalConfig {
            state_dir: self.dir.path().join("state"),
            self_exe: PathBuf::from(env!("CARGO_BIN_EXE_troupe")),
            host: "127.0.0.1".into(),
            config_dir: Some(self.dir.path().join("config")),
        }
    }

    fn runtime(&self) -> (LocalRuntime, mpsc::Receiver<RuntimeEvent>) {
        self.runtime_with(self.config())
    }

    fn runtime_with(&self, config: LocalConfig) -> (LocalRuntime, mpsc::Receiver<RuntimeEvent>) {
        // Small on purpose: exits must wait for room in the queue, never be dropped.
        LocalRuntime::with_queue(config, 2)
    }

    async fn start(&self, rt: &LocalRuntime, scheduler: &Arc<Scheduler>, room: &str) -> Started {
        let started = rt
            .start(request(scheduler, room))
            .await
            .unwrap_or_else(|e| panic!("start {room}: {e}"));
        self.procs.add_started(&started);
        started
    }
}

fn request(scheduler: &Arc<Scheduler>, room: &str) -> StartRoom {
    StartRoom {
        scheduler: scheduler.clone(),
        room_id: room.into(),
        token: format!("token-of-{room}"),
        rooms_url: "http://127.0.0.1:9".into(),
    }
}

/// A scheduler running `command` locally, with ports `(name, protocol)` from `start..end`.
fn scheduler(
    name: &str,
    range: (u16, u16),
    ports: &[(&str, &str)],
    command: &[&str],
) -> Arc<Scheduler> {
    scheduler_with(name, range, ports, serde_json::json!({"command": command}))
}

fn scheduler_with(
    name: &str,
    range: (u16, u16),
    ports: &[(&str, &str)],
    local: serde_json::Value,
) -> Arc<Scheduler> {
    let ports: Vec<_> = ports
        .iter()
        .enumerate()
        .map(|(i, (n, p))| serde_json::json!({"name": n, "protocol": p, "port": 7000 + i}))
        .collect();
    let mut doc = serde_json::json!({
        "name": name,
        "game": "test",
        "portRange": {"start": range.0, "end": range.1},
        "spec": {"containers": [{
            "name": "server", "image": "ignored",
            "env": [{"name": "LOG_LEVEL", "value": "debug"}],
            "ports": ports
        }]}
    });
    if !local.is_null() {
        doc["local"] = local;
    }
    Arc::new(serde_json::from_value(doc).expect("valid scheduler"))
}

/// The record a controller would have kept of a started room.
fn record(scheduler: &str, id: &str, started: &Started) -> Room {
    Room {
        id: id.into(),
        scheduler: scheduler.into(),
        version: "v1".into(),
        status: RoomStatus::Ready,
        running_matches: 0,
        host: started.host.clone(),
        ports: started.ports.clone(),
        created_at: 0,
        status_since: 0,
        last_ping: None,
        reason: None,
        metadata: serde_json::Value::Null,
        players: Default::default(),
        runtime_ref: Some(started.runtime_ref.clone()),
    }
}

fn record_with_ref(scheduler: &str, id: &str, runtime_ref: Option<String>) -> Room {
    let started = Started {
        host: "127.0.0.1".into(),
        ports: vec![],
        runtime_ref: String::new(),
    };
    Room {
        runtime_ref,
        ..record(scheduler, id, &started)
    }
}

async fn next_event(rx: &mut mpsc::Receiver<RuntimeEvent>) -> RuntimeEvent {
    timeout(PATIENCE, rx.recv())
        .await
        .expect("an event in time")
        .expect("channel open")
}

async fn expect_running(rx: &mut mpsc::Receiver<RuntimeEvent>, room: &str) {
    match next_event(rx).await {
        RuntimeEvent::Running { room: r, .. } if r == room => {}
        other => panic!("expected {room} running, got {other:?}"),
    }
}

/// The next event, which must be the exit of `room`: `(clean, reason)`.
async fn expect_exited(rx: &mut mpsc::Receiver<RuntimeEvent>, room: &str) -> (bool, String) {
    match next_event(rx).await {
        RuntimeEvent::Exited {
            room: r,
            clean,
            reason,
            ..
        } if r == room => (clean, reason),
        other => panic!("expected {room} to exit, got {other:?}"),
    }
}

async fn expect_silence(rx: &mut mpsc::Receiver<RuntimeEvent>) {
    if let Ok(event) = timeout(Duration::from_millis(300), rx.recv()).await {
        panic!("expected no more events, got {event:?}");
    }
}

async fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(content) = std::fs::read_to_string(path) {
            return content;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for_log_line(path: &Path, line: &str) {
    let deadline = Instant::now() + PATIENCE;
    while !std::fs::read_to_string(path).is_ok_and(|c| c.lines().any(|l| l == line)) {
        assert!(
            Instant::now() < deadline,
            "{line:?} never logged in {}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_until_gone(proc_ref: ProcRef) {
    let deadline = Instant::now() + PATIENCE;
    while proc_ref.is_running() {
        assert!(
            Instant::now() < deadline,
            "process {proc_ref} still running"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const SLEEP: &[&str] = &["/bin/sh", "-c", "exec sleep 30"];

#[tokio::test]
async fn a_room_gets_its_environment_distinct_ports_and_its_own_process_group() {
    let fx = Fixture::new();
    let (rt, mut rx) = fx.runtime();
    let out = fx.dir.path().join("env");
    std::fs::create_dir(&out).unwrap();
    let sched = scheduler_with(
        "env-test",
        (20000, 20010),
        &[("game", "UDP"), ("http-api", "TCP")],
        serde_json::json!({
            "command": ["/bin/sh", "-c", "env > \"$OUT/$TROUPE_ROOM.tmp\" && mv \"$OUT/$TROUPE_ROOM.tmp\" \"$OUT/$TROUPE_ROOM.env\"; exec sleep 30"],
            "env": [{"name": "OUT", "value": out.to_str().unwrap()}, {"name": "LOG_LEVEL", "value": "trace"}]
        }),
    );

    let a = fx.start(&rt, &sched, "env-test-a").await;
    let b = fx.start(&rt, &sched, "env-test-b").await;
    expect_running(&mut rx, "env-test-a").await;
    expect_running(&mut rx, "env-test-b").await;
    match rt.start(request(&sched, "env-test-a")).await {
        Err(RuntimeError::Start { reason, .. }) => {
            assert!(reason.contains("already running"), "{reason}")
        }
        other => panic!("a second start of a running room must be refused, got {other:?}"),
    }

    let mut all_ports = Vec::new();
    for (room, started) in [("env-test-a", &a), ("env-test-b", &b)] {
        assert_eq!(started.host, "127.0.0.1");
        assert_eq!(
            started
                .ports
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>(),
            ["game", "http-api"]
        );
        let env = wait_for_file(&out.join(format!("{room}.env"))).await;
        let var = |name: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("{name} not set"))
        };
        assert_eq!(var("TROUPE_SCHEDULER"), "env-test");
        assert_eq!(var("TROUPE_ROOM"), room);
        assert_eq!(var("TROUPE_ROOMS_URL"), "http://127.0.0.1:9");
        assert_eq!(var("TROUPE_ROOM_TOKEN"), format!("token-of-{room}"));
        assert_eq!(var("TROUPE_HOST"), "127.0.0.1");
        assert_eq!(
            var("LOG_LEVEL"),
            "trace",
            "local.env wins over the containers' env"
        );
        assert_eq!(var("TROUPE_PORT_GAME"), started.ports[0].port.to_string());
        assert_eq!(
            var("TROUPE_PORT_HTTP_API"),
            started.ports[1].port.to_string()
        );
        all_ports.extend(started.ports.iter().map(|p| p.port));

        // Its own process group: a Ctrl-C of the controller's group does not reach it.
        let proc_ref: ProcRef = started.runtime_ref.parse().unwrap();
        assert_eq!(process_group(proc_ref.pid), Some(proc_ref.pid));
        assert_eq!(
            ProcRef::of(proc_ref.pid).unwrap(),
            Some(proc_ref),
            "runtime_ref carries the start time"
        );
    }
    all_ports.sort();
    all_ports.dedup();
    assert_eq!(all_ports.len(), 4, "every port distinct");
    assert!(all_ports.iter().all(|p| (20000..20010).contains(p)));

    rt.stop(
        &record("env-test", "env-test-a", &a),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    rt.stop(
        &record("env-test", "env-test-b", &b),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let mut exits = [next_event(&mut rx).await, next_event(&mut rx).await];
    exits.sort_by_key(|e| format!("{e:?}"));
    for (event, room) in exits.iter().zip(["env-test-a", "env-test-b"]) {
        assert_eq!(
            event,
            &RuntimeEvent::Exited {
                scheduler: "env-test".into(),
                room: room.into(),
                clean: true,
                reason: "killed by signal 15".into()
            }
        );
    }
}

/// Start a room of its own scheduler running `sh -c script` and wait for its end: `(clean, reason)`.
async fn run_to_exit(
    fx: &Fixture,
    rt: &LocalRuntime,
    rx: &mut mpsc::Receiver<RuntimeEvent>,
    name: &str,
    script: &str,
) -> (bool, String) {
    let sched = scheduler(
        name,
        (20020, 20030),
        &[("game", "UDP")],
        &["/bin/sh", "-c", script],
    );
    let room = format!("{name}-1");
    fx.start(rt, &sched, &room).await;
    expect_running(rx, &room).await;
    expect_exited(rx, &room).await
}

#[tokio::test]
async fn an_exit_is_reported_at_once_with_its_status_and_last_log_line() {
    let fx = Fixture::new();
    let (rt, mut rx) = fx.runtime();
    let began = Instant::now();
    let crash =
        "echo starting; echo 'error: bind 127.0.0.1:20020: address in use' >&2; echo; exit 3";
    let (clean, reason) = run_to_exit(&fx, &rt, &mut rx, "crash", crash).await;
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "exit reported after {:?}",
        began.elapsed()
    );
    assert!(!clean);
    assert_eq!(
        reason,
        "exited with status 3: error: bind 127.0.0.1:20020: address in use"
    );
    let log = std::fs::read_to_string(rt.log_path("crash", "crash-1")).unwrap();
    assert!(
        log.starts_with("starting\n"),
        "stdout and stderr both logged: {log:?}"
    );

    let killed = run_to_exit(&fx, &rt, &mut rx, "killed", "kill -KILL $$").await;
    assert_eq!(killed, (false, "killed by signal 9".into()));
    let done = run_to_exit(&fx, &rt, &mut rx, "done", "echo match over").await;
    assert_eq!(done, (true, "exited with status 0: match over".into()));

    // What the room leaves behind in its process group goes with it.
    let pid_file = fx.dir.path().join("leftover.pid");
    let leaves = format!("sleep 30 & echo $! > {}; exit 1", pid_file.display());
    assert!(!run_to_exit(&fx, &rt, &mut rx, "leaves", &leaves).await.0);
    let leftover: i32 = wait_for_file(&pid_file).await.trim().parse().unwrap();
    if let Some(proc_ref) = ProcRef::of(leftover).unwrap() {
        fx.procs.add(proc_ref);
        wait_until_gone(proc_ref).await;
    }
    expect_silence(&mut rx).await;
}

#[tokio::test]
async fn stop_sends_sigterm_then_sigkill_after_the_grace_period() {
    let fx = Fixture::new();
    let (rt, mut rx) = fx.runtime();
    let stubborn = scheduler(
        "stubborn",
        (20040, 20050),
        &[],
        &[
            "/bin/sh",
            "-c",
            "trap 'echo got TERM' TERM; echo trapping; while :; do sleep 0.05; done",
        ],
    );
    let started = fx.start(&rt, &stubborn, "stubborn-1").await;
    expect_running(&mut rx, "stubborn-1").await;
    wait_for_log_line(&rt.log_path("stubborn", "stubborn-1"), "trapping").await;

    let room = record("stubborn", "stubborn-1", &started);
    let grace = Duration::from_millis(600);
    let asked = Instant::now();
    rt.stop(&room, grace).await.unwrap();
    rt.stop(&room, Duration::from_secs(60)).await.unwrap(); // idempotent; never lengthens the grace
    let (clean, reason) = expect_exited(&mut rx, "stubborn-1").await;
    let took = asked.elapsed();
    assert!(
        took >= grace && took < grace + Duration::from_secs(2),
        "killed after {took:?}"
    );
    assert!(clean, "asked to stop: clean whatever the status");
    assert_eq!(reason, "killed by signal 9: got TERM");

    rt.stop(&room, grace).await.unwrap(); // a room already gone is not an error
    expect_silence(&mut rx).await;
}

#[tokio::test]
async fn a_room_that_ends_on_sigterm_is_reported_at_once_and_not_killed_later() {
    let fx = Fixture::new();
    let (rt, mut rx) = fx.runtime();
    let polite = scheduler("polite", (20060, 20070), &[], SLEEP);
    let started = fx.start(&rt, &polite, "polite-1").await;
    expect_running(&mut rx, "polite-1").await;
    let asked = Instant::now();
    rt.stop(
        &record("polite", "polite-1", &started),
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    assert_eq!(
        expect_exited(&mut rx, "polite-1").await,
        (true, "killed by signal 15".into())
    );
    assert!(
        asked.elapsed() < Duration::from_millis(300),
        "reported after {:?}",
        asked.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    expect_silence(&mut rx).await;
}

#[tokio::test]
async fn rooms_of_a_previous_runtime_are_adopted_and_dead_or_recycled_ones_are_not() {
    let fx = Fixture::new();
    // One port per room, three ports in all.
    let sched = scheduler("adopt", (20080, 20083), &[("game", "UDP")], SLEEP);
    let (one, two, three) = {
        let (old, mut rx) = fx.runtime();
        let one = fx.start(&old, &sched, "adopt-1").await;
        let two = fx.start(&old, &sched, "adopt-2").await;
        let three = fx.start(&old, &sched, "adopt-3").await;
        for room in ["adopt-1", "adopt-2", "adopt-3"] {
            expect_running(&mut rx, room).await;
        }
        old.stop(&record("adopt", "adopt-3", &three), Duration::from_secs(1))
            .await
            .unwrap();
        expect_exited(&mut rx, "adopt-3").await;
        (one, two, three)
        // The old runtime is dropped here, as a controller that exits: rooms keep running.
    };
    let one_ref: ProcRef = one.runtime_ref.parse().unwrap();
    assert!(
        one_ref.is_running(),
        "dropping a runtime leaves its rooms running"
    );

    let (rt, mut rx) = fx.runtime();
    let recycled = ProcRef {
        starttime: one_ref.starttime + 1,
        ..one_ref
    };
    let records = [
        record("adopt", "adopt-1", &one),
        record("adopt", "adopt-2", &two),
        record("adopt", "adopt-3", &three),
        record_with_ref("adopt", "adopt-recycled", Some(recycled.to_string())),
        record_with_ref("adopt", "adopt-never-started", None),
        record_with_ref("adopt", "adopt-garbage", Some("not-a-ref".into())),
    ];
    assert_eq!(
        rt.adopt(&records).await.unwrap().alive,
        ["adopt-1", "adopt-2"]
    );
    assert_eq!(
        rt.adopt(&records).await.unwrap().alive,
        ["adopt-1", "adopt-2"],
        "adopting twice is harmless"
    );
    expect_silence(&mut rx).await; // adoption starts nothing

    // The adopted rooms' ports stay theirs: a new room gets the one port left, then none is left.
    let four = fx.start(&rt, &sched, "adopt-4").await;
    expect_running(&mut rx, "adopt-4").await;
    assert_eq!(four.ports, three.ports);
    match rt.start(request(&sched, "adopt-5")).await {
        Err(RuntimeError::PortsExhausted { .. }) => {}
        other => panic!("expected PortsExhausted, got {other:?}"),
    }

    rt.stop(&records[0], Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        expect_exited(&mut rx, "adopt-1").await,
        (true, "killed by signal 15".into())
    );
    let two_ref: ProcRef = two.runtime_ref.parse().unwrap();
    rustix::process::kill_process(two_ref.pid(), Signal::KILL).unwrap();
    assert_eq!(
        expect_exited(&mut rx, "adopt-2").await,
        (false, "killed by signal 9".into())
    );
    expect_silence(&mut rx).await;
}

#[tokio::test]
async fn a_room_not_started_by_this_process_is_adopted_and_stopped_without_touching_its_group() {
    let fx = Fixture::new();
    // A process that is not our child, in our own process group (not a group leader): the runtime
    // must signal it alone, or it would signal the test harness too.
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", "sleep 30 >/dev/null 2>&1 & echo $!"])
        .output()
        .unwrap();
    let pid: i32 = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let proc_ref = ProcRef::of(pid).unwrap().expect("sleep runs");
    fx.procs.add(proc_ref);
    assert_ne!(process_group(pid), Some(pid));

    let (rt, mut rx) = fx.runtime();
    let room = record_with_ref("orphan", "orphan-1", Some(proc_ref.to_string()));
    assert_eq!(
        rt.adopt(std::slice::from_ref(&room)).await.unwrap().alive,
        ["orphan-1"]
    );
    rt.stop(&room, Duration::from_secs(5)).await.unwrap();
    let (clean, reason) = expect_exited(&mut rx, "orphan-1").await;
    assert!(clean, "asked to stop: clean even with an unknown status");
    assert!(reason.starts_with("exited (status unknown"), "{reason}");
    wait_until_gone(proc_ref).await;
}

#[tokio::test]
async fn stopping_a_room_this_runtime_never_adopted_still_reports_its_end() {
    let fx = Fixture::new();
    let sched = scheduler("late", (20090, 20095), &[], SLEEP);
    let started = {
        let (old, mut rx) = fx.runtime();
        let started = fx.start(&old, &sched, "late-1").await;
        expect_running(&mut rx, "late-1").await;
        started
    };
    let (rt, mut rx) = fx.runtime();
    rt.stop(&record("late", "late-1", &started), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        expect_exited(&mut rx, "late-1").await,
        (true, "killed by signal 15".into())
    );
    // And a room that is gone is no error and no event.
    rt.stop(&record("late", "late-1", &started), Duration::from_secs(5))
        .await
        .unwrap();
    expect_silence(&mut rx).await;
}

#[tokio::test]
async fn ports_run_out_across_schedulers_and_come_back_when_a_room_ends() {
    let fx = Fixture::new();
    let (rt, mut rx) = fx.runtime();
    let first = scheduler("first", (20100, 20101), &[("game", "TCP")], SLEEP);
    let second = scheduler("second", (20100, 20101), &[("game", "TCP")], SLEEP);
    let started = fx.start(&rt, &first, "first-1").await;
    expect_running(&mut rx, "first-1").await;
    assert_eq!(
        started.ports,
        [RoomPort {
            name: "game".into(),
            protocol: Default::default(),
            port: 20100
        }]
    );

    for (sched, room) in [(&first, "first-2"), (&second, "second-1")] {
        let err = rt
            .start(request(sched, room))
            .await
            .expect_err("no port left");
        assert!(
            matches!(
                err,
                RuntimeError::PortsExhausted {
                    start: 20100,
                    end: 20101,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("20100..20101"), "{err}");
    }

    rt.stop(
        &record("first", "first-1", &started),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    expect_exited(&mut rx, "first-1").await;
    let again = fx.start(&rt, &second, "second-1").await;
    expect_running(&mut rx, "second-1").await;
    assert_eq!(again.ports[0].port, 20100);
}

/// A port in use for `protocol` on 127.0.0.1 whose next port is free for it; the socket holds it.
enum Held {
    Tcp(#[allow(dead_code)] TcpListener),
    Udp(#[allow(dead_code)] UdpSocket),
}

fn hold_port_with_free_neighbour(udp: bool) -> (Held, u16) {
    for _ in 0..50 {
        let (held, port) = if udp {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            let p = s.local_addr().unwrap().port();
            (Held::Udp(s), p)
        } else {
            let s = TcpListener::bind("127.0.0.1:0").unwrap();
            let p = s.local_addr().unwrap().port();
            (Held::Tcp(s), p)
        };
        // A held UDP port must have its TCP twin free too: the test checks that a UDP socket
        // does not hold it (an ephemeral port of some other test's TCP connection can).
        let next_free = port < u16::MAX - 1
            && if udp {
                UdpSocket::bind(("127.0.0.1", port + 1)).is_ok()
                    && TcpListener::bind(("127.0.0.1", port)).is_ok()
            } else {
                TcpListener::bind(("127.0.0.1", port + 1)).is_ok()
            };
        if next_free {
            return (held, port);
        }
    }
    panic!("no held port with a free neighbour found");
}

/// The host port a one-port room of a new scheduler with `range` and `protocol` gets.
async fn port_given(
    fx: &Fixture,
    rt: &LocalRuntime,
    rx: &mut mpsc::Receiver<RuntimeEvent>,
    name: &str,
    range: (u16, u16),
    protocol: &str,
) -> u16 {
    let sched = scheduler(name, range, &[("p", protocol)], SLEEP);
    let room = format!("{name}-1");
    let started = fx.start(rt, &sched, &room).await;
    expect_running(rx, &room).await;
    started.ports[0].port
}

#[tokio::test]
async fn a_port_held_by_another_socket_is_skipped_for_its_protocol() {
    let fx = Fixture::new();
    let (rt, mut rx) = fx.runtime();

    let (_tcp, held) = hold_port_with_free_neighbour(false);
    assert_eq!(
        port_given(&fx, &rt, &mut rx, "held-tcp", (held, held + 2), "TCP").await,
        held + 1
    );

    let (_udp, held) = hold_port_with_free_neighbour(true);
    assert_eq!(
        port_given(&fx, &rt, &mut rx, "held-udp", (held, held + 2), "UDP").await,
        held + 1
    );
    // A UDP socket does not hold the TCP port of the same number.
    assert_eq!(
        port_given(&fx, &rt, &mut rx, "tcp-on-udp", (held, held + 1), "TCP").await,
        held
    );
}

#[tokio::test]
async fn rooms_that_cannot_run_here_fail_with_the_reason_and_book_nothing() {
    let fx = Fixture::new();
    let (rt, mut rx) = fx.runtime();

    let no_local = scheduler_with(
        "no-local",
        (20110, 20111),
        &[("game", "UDP")],
        serde_json::Value::Null,
    );
    match rt.start(request(&no_local, "no-local-1")).await {
        Err(RuntimeError::Unsupported {
            scheduler,
            runtime: "local",
            reason,
        }) => {
            assert_eq!(scheduler, "no-local");
            assert!(reason.contains("local"), "{reason}");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }

    let missing = scheduler(
        "missing",
        (20110, 20111),
        &[("game", "UDP")],
        &["/nonexistent/game-server", "--x"],
    );
    let err = rt
        .start(request(&missing, "missing-1"))
        .await
        .expect_err("no such program");
    let text = err.to_string();
    assert!(matches!(err, RuntimeError::Start { .. }), "{err:?}");
    assert!(
        text.contains("/nonexistent/game-server") && text.contains("No such file"),
        "{text}"
    );

    let not_executable = fx.dir.path().join("server.txt");
    std::fs::write(&not_executable, "not a program").unwrap();
    let path = not_executable.to_str().unwrap();
    let denied = scheduler("denied", (20110, 20111), &[("game", "UDP")], &[path]);
    let text = rt
        .start(request(&denied, "denied-1"))
        .await
        .expect_err("not executable")
        .to_string();
    assert!(
        text.contains(path) && text.contains("Permission denied"),
        "{text}"
    );

    // The failed starts booked no port: the range's only port is still there.
    let fine = scheduler("fine", (20110, 20111), &[("game", "UDP")], SLEEP);
    assert_eq!(fx.start(&rt, &fine, "fine-1").await.ports[0].port, 20110);
    expect_running(&mut rx, "fine-1").await;
}

#[tokio::test]
async fn troupe_as_the_program_runs_the_configured_executable() {
    let fx = Fixture::new();
    let (rt, mut rx) = fx.runtime_with(LocalConfig {
        self_exe: "/bin/sh".into(),
        ..fx.config()
    });
    let sched = scheduler(
        "self",
        (20120, 20121),
        &[],
        &["troupe", "-c", "echo run as self; exit 4"],
    );
    fx.start(&rt, &sched, "self-1").await;
    expect_running(&mut rx, "self-1").await;
    assert_eq!(
        expect_exited(&mut rx, "self-1").await,
        (false, "exited with status 4: run as self".into())
    );
}

/// A scheduler whose one container `server` has `container` fields besides its name and image,
/// and one port from `range`.
fn scheduler_json(
    name: &str,
    range: (u16, u16),
    container: serde_json::Value,
    local: serde_json::Value,
) -> Arc<Scheduler> {
    let mut server = serde_json::json!({
        "name": "server", "image": "ignored",
        "ports": [{"name": "game", "protocol": "UDP", "port": 7777}]
    });
    server
        .as_object_mut()
        .unwrap()
        .extend(container.as_object().unwrap().clone());
    Arc::new(
        serde_json::from_value(serde_json::json!({
            "name": name,
            "game": "test",
            "portRange": {"start": range.0, "end": range.1},
            "labels": {"team": "blue"},
            "spec": {"containers": [server]},
            "local": local,
        }))
        .expect("valid scheduler"),
    )
}

#[tokio::test]
async fn secrets_and_config_maps_reach_the_room_from_the_config_directory() {
    let fx = Fixture::new();
    let config = fx.config().config_dir.unwrap();
    for (path, contents) in [
        ("secrets/arena-keys/api-key", "s3cret"),
        ("configmaps/arena-env/MODE", "ranked"),
        ("configmaps/arena-env/REGION", "eu"),
    ] {
        let path = config.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
    let (rt, mut rx) = fx.runtime();
    let out = fx.dir.path().join("room.env");
    let sched = scheduler_json(
        "keyed",
        (20130, 20131),
        serde_json::json!({
            "envFrom": [{"configMapRef": {"name": "arena-env"}, "prefix": "CFG_"}],
            "env": [
                {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "arena-keys", "key": "api-key"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "TEAM", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['team']"}}},
                // Optional and missing: not set, not even as troupe serve's own HOME.
                {"name": "HOME", "valueFrom": {"secretKeyRef": {"name": "arena-keys", "key": "home", "optional": true}}},
            ],
        }),
        serde_json::json!({
            "command": ["/bin/sh", "-c", "env > \"$OUT.tmp\" && mv \"$OUT.tmp\" \"$OUT\"; exec sleep 30"],
            "env": [{"name": "OUT", "value": out.to_str().unwrap()}],
        }),
    );
    fx.start(&rt, &sched, "keyed-1").await;
    expect_running(&mut rx, "keyed-1").await;
    let env = wait_for_file(&out).await;
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(str::to_owned)
    };
    assert_eq!(var("API_KEY").as_deref(), Some("s3cret"));
    assert_eq!(var("CFG_MODE").as_deref(), Some("ranked"));
    assert_eq!(var("CFG_REGION").as_deref(), Some("eu"));
    assert_eq!(var("POD").as_deref(), Some("keyed-1"));
    assert_eq!(var("TEAM").as_deref(), Some("blue"));
    if std::env::var_os("HOME").is_some() {
        assert_eq!(
            var("HOME"),
            None,
            "an optional value that is missing is unset"
        );
    }
}

#[tokio::test]
async fn a_missing_required_secret_fails_the_start_naming_the_file_and_books_nothing() {
    let fx = Fixture::new();
    let (rt, mut rx) = fx.runtime();
    let sched = scheduler_json(
        "keyless",
        (20140, 20141),
        serde_json::json!({"env": [
            {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "arena-keys", "key": "api-key"}}},
        ]}),
        serde_json::json!({"command": SLEEP}),
    );
    let err = rt
        .start(request(&sched, "keyless-1"))
        .await
        .expect_err("the secret is missing");
    let RuntimeError::Start { room, reason } = &err else {
        panic!("expected a failed start, got {err:?}");
    };
    assert_eq!(room, "keyless-1");
    let file = fx
        .config()
        .config_dir
        .unwrap()
        .join("secrets/arena-keys/api-key");
    assert!(
        reason.starts_with("scheduler keyless, container server, variable API_KEY: ")
            && reason.contains(&format!("no file {}", file.display())),
        "{reason}"
    );
    expect_silence(&mut rx).await;

    // Nothing was left behind: the range's only port is free, and the room starts once the
    // secret is there.
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "s3cret").unwrap();
    let started = fx.start(&rt, &sched, "keyless-1").await;
    assert_eq!(started.ports[0].port, 20140);
    expect_running(&mut rx, "keyless-1").await;
}

mod demo_room {
    //! The demo room in-process against a small rooms API that records every ping.

    use std::net::SocketAddr;

    use axum::Router;
    use axum::extract::rejection::JsonRejection;
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::put;
    use serde::Deserialize;
    use tokio::sync::{mpsc, oneshot};
    use tokio::time::{Instant, timeout};
    use troupe::domain::room::PingStatus;
    use troupe::domain::spec::Duration;
    use troupe::http::rooms::PingBody;
    use troupe::tools::demo_room::{DemoRoomArgs, run_until};

    use super::PATIENCE;

    #[derive(Debug)]
    struct Ping {
        scheduler: String,
        room: String,
        authorization: String,
        /// The body as the real rooms API reads it, or why it would refuse it.
        body: Result<PingBody, String>,
    }

    /// What the demo room's `GET /` answers (the field this test reads).
    #[derive(Debug, Deserialize)]
    struct View {
        status: PingStatus,
    }

    /// A rooms API answering `answer` to every ping; the pings arrive on the receiver.
    async fn rooms_api(answer: StatusCode) -> (SocketAddr, mpsc::Receiver<Ping>) {
        let (tx, rx) = mpsc::channel(64);
        let app = Router::new()
            .route(
                "/scheduler/{s}/rooms/{r}/ping",
                put(
                    |State((tx, answer)): State<(mpsc::Sender<Ping>, StatusCode)>,
                     Path((scheduler, room)): Path<(String, String)>,
                     headers: HeaderMap,
                     body: Result<axum::Json<PingBody>, JsonRejection>| async move {
                        let ping = Ping {
                            scheduler,
                            room,
                            authorization: headers
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned(),
                            body: body.map(|axum::Json(b)| b).map_err(|e| e.body_text()),
                        };
                        let _ = tx.send(ping).await;
                        answer
                    },
                ),
            )
            .with_state((tx, answer));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (addr, rx)
    }

    fn free_tcp_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn free_udp_port() -> u16 {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn args(rooms_url: String) -> DemoRoomArgs {
        DemoRoomArgs {
            scheduler: "demo".into(),
            room: "demo-1".into(),
            rooms_url,
            token: "secret-token".into(),
            http_port: None,
            game_port: None,
            bind: "127.0.0.1".parse().unwrap(),
            max_matches: 1,
            startup_delay: Duration::from_millis(50),
            ping_interval: Duration::from_secs(30),
            match_rate: 0.0,
            match_duration: Duration::from_secs(60),
            give_up_after: Duration::from_secs(600),
            players_per_match: 0,
        }
    }

    /// The next ping's status and running matches.
    async fn next_ping(rx: &mut mpsc::Receiver<Ping>) -> (PingStatus, Option<u32>) {
        let ping = timeout(PATIENCE, rx.recv())
            .await
            .expect("a ping in time")
            .expect("server runs");
        assert_eq!(
            (ping.scheduler.as_str(), ping.room.as_str()),
            ("demo", "demo-1")
        );
        assert_eq!(ping.authorization, "Bearer secret-token");
        let body = ping
            .body
            .unwrap_or_else(|e| panic!("a ping the rooms API would refuse: {e}"));
        (body.status, body.running_matches)
    }

    #[tokio::test]
    async fn goes_ready_pings_occupied_on_a_match_and_terminating_on_shutdown() {
        let (api, mut pings) = rooms_api(StatusCode::OK).await;
        let (http_port, game_port) = (free_tcp_port(), free_udp_port());
        let (stop, stopped) = oneshot::channel::<()>();
        let mut a = args(format!("http://{api}"));
        a.http_port = Some(http_port);
        a.game_port = Some(game_port);
        let room = tokio::spawn(run_until(a, async move {
            let _ = stopped.await;
        }));

        assert_eq!(next_ping(&mut pings).await, (PingStatus::Ready, Some(0)));
        let client = reqwest::Client::new();
        let matches = format!("http://127.0.0.1:{http_port}/matches");
        assert_eq!(client.post(&matches).send().await.unwrap().status(), 201);
        assert_eq!(next_ping(&mut pings).await, (PingStatus::Occupied, Some(1)));
        assert_eq!(
            client.post(&matches).send().await.unwrap().status(),
            409,
            "full with one match"
        );
        let view: View = client
            .get(format!("http://127.0.0.1:{http_port}/"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(view.status, PingStatus::Occupied);

        // The game port is real: it echoes.
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        udp.send_to(b"hello", ("127.0.0.1", game_port))
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let n = timeout(PATIENCE, udp.recv(&mut buf))
            .await
            .expect("echo in time")
            .unwrap();
        assert_eq!(&buf[..n], b"hello");

        assert_eq!(client.delete(&matches).send().await.unwrap().status(), 200);
        assert_eq!(next_ping(&mut pings).await, (PingStatus::Ready, Some(0)));

        let asked = Instant::now();
        stop.send(()).unwrap();
        let result = timeout(PATIENCE, room).await.expect("room ends").unwrap();
        assert!(result.is_ok(), "{result:?}");
        assert!(
            asked.elapsed() < std::time::Duration::from_secs(1),
            "took {:?}",
            asked.elapsed()
        );
        assert_eq!(
            next_ping(&mut pings).await,
            (PingStatus::Terminating, Some(0))
        );
    }

    #[tokio::test]
    async fn keeps_going_when_the_rooms_api_refuses_its_pings() {
        let (api, mut pings) = rooms_api(StatusCode::CONFLICT).await;
        let mut a = args(format!("http://{api}"));
        a.ping_interval = Duration::from_millis(50);
        let (stop, stopped) = oneshot::channel::<()>();
        let room = tokio::spawn(run_until(a, async move {
            let _ = stopped.await;
        }));
        for _ in 0..3 {
            assert_eq!(next_ping(&mut pings).await, (PingStatus::Ready, Some(0)));
        }
        stop.send(()).unwrap();
        assert!(timeout(PATIENCE, room).await.unwrap().unwrap().is_ok());
    }

    #[tokio::test]
    async fn gives_up_once_the_rooms_api_has_been_unreachable_long_enough() {
        let closed = free_tcp_port();
        let mut a = args(format!("http://127.0.0.1:{closed}"));
        a.ping_interval = Duration::from_millis(50);
        a.give_up_after = Duration::from_millis(300);
        let began = Instant::now();
        let err = timeout(PATIENCE, run_until(a, std::future::pending()))
            .await
            .expect("gives up in time");
        let err = err.expect_err("unreachable rooms API");
        assert!(began.elapsed() >= std::time::Duration::from_millis(300));
        assert!(format!("{err:#}").contains("unreachable"), "{err:#}");
    }

    #[tokio::test]
    async fn a_port_already_taken_fails_at_once_naming_the_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let mut a = args("http://127.0.0.1:9".into());
        a.http_port = Some(port);
        let err = timeout(PATIENCE, run_until(a, std::future::pending()))
            .await
            .unwrap()
            .expect_err("port taken");
        assert!(
            format!("{err:#}").contains(&format!("bind 127.0.0.1:{port}")),
            "{err:#}"
        );
    }
}

#[tokio::test]
async fn a_room_whose_start_was_never_recorded_is_found_by_its_environment_and_ended() {
    // A controller killed between spawning a room and recording it: the room's process runs,
    // its record has no runtime reference. Adoption must not leave it orphaned.
    let f = Fixture::new();
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", "exec sleep 30"])
        .env("TROUPE_SCHEDULER", "lost")
        .env("TROUPE_ROOM", "lost-abcde")
        .process_group(0)
        .spawn()
        .unwrap();
    let proc_ref = ProcRef::of(child.id() as i32).unwrap().unwrap();
    f.procs.add(proc_ref);
    // The shell execs `sleep`: wait until the program that stays has its environment in place.
    let deadline = Instant::now() + PATIENCE;
    while !std::fs::read_to_string(format!("/proc/{}/cmdline", child.id()))
        .is_ok_and(|c| c.starts_with("sleep"))
    {
        assert!(Instant::now() < deadline, "sleep never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (rt, _rx) = f.runtime();
    let records = [record_with_ref("lost", "lost-abcde", None)];
    let adopted = rt.adopt(&records).await.unwrap();
    assert!(
        adopted.alive.is_empty(),
        "a room without a reference is not adopted"
    );
    assert_eq!(
        adopted.found,
        [("lost".to_string(), "lost-abcde".to_string())],
        "but its process is found by its environment"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "adoption itself stops nothing"
    );
    let strays = troupe::domain::adoption::strays(&adopted.found, &records, &adopted.alive);
    assert_eq!(
        strays.len(),
        1,
        "the controller's rule stops it: {strays:?}"
    );
    rt.remove_stray("lost", "lost-abcde").await.unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        !status.success(),
        "the unrecorded room process was killed: {status:?}"
    );
}
