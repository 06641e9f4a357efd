//! `troupe serve`: the controller, the rooms and management APIs and the dashboard, in one
//! process, until SIGINT or SIGTERM stops them all together.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::controller::{Controller, ControllerOptions, Fleet, FleetConfig, History, SyncMode};
use crate::http::{AppState, router};
use crate::metrics::Metrics;
use crate::ops::Operations;
use crate::runtime::Runtime;
use crate::runtime::local::{LocalConfig, LocalRuntime};
use crate::spec::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeKind {
    /// Each room is a process on this machine.
    Local,
}

/// Room events waiting for the controller; exits are never dropped (the runtime waits).
const RUNTIME_EVENT_QUEUE: usize = 4096;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Git repository or directory holding scheduler YAML.
    source: PathBuf,
    /// Branch to follow (git sources; default: the branch HEAD points to).
    #[arg(long, env = "TROUPE_BRANCH")]
    branch: Option<String>,
    /// Sub-directory of the source that holds the scheduler files.
    #[arg(long = "path", value_name = "SUBPATH", env = "TROUPE_PATH")]
    sub_path: Option<String>,
    /// How often to look for new commits (directories are also watched for changes).
    #[arg(long, env = "TROUPE_POLL_INTERVAL", default_value = "5s")]
    poll_interval: Duration,
    /// Address for the rooms API, the management API and the dashboard.
    #[arg(long, env = "TROUPE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// URL rooms use to reach the rooms API (default: http://LISTEN).
    #[arg(long, env = "TROUPE_ROOMS_URL")]
    rooms_url: Option<String>,
    /// Where rooms, operations and logs are kept across restarts.
    #[arg(long, env = "TROUPE_STATE_DIR", default_value = ".troupe")]
    state_dir: PathBuf,
    /// Where rooms run.
    #[arg(long, value_enum, env = "TROUPE_RUNTIME", default_value = "local")]
    runtime: RuntimeKind,
    /// Whether new revisions apply by themselves or wait for `troupe apply`.
    #[arg(long, value_enum, env = "TROUPE_SYNC", default_value = "auto")]
    sync: SyncMode,
    /// Delete schedulers that were removed from the source (otherwise they are listed as orphaned).
    #[arg(long, env = "TROUPE_PRUNE")]
    prune: bool,
    /// File holding the secret room tokens are derived from (default: STATE_DIR/secret, created).
    #[arg(long, env = "TROUPE_SECRET_FILE")]
    secret_file: Option<PathBuf>,
    /// File holding the bearer token required on management write routes.
    #[arg(long, env = "TROUPE_API_TOKEN_FILE")]
    api_token_file: Option<PathBuf>,
    /// Stop every room when the server stops (by default rooms keep running and are re-adopted).
    #[arg(long)]
    stop_rooms_on_exit: bool,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("creating state directory {}", args.state_dir.display()))?;
    let _lock = lock_state_dir(&args.state_dir)?;
    let secret = read_or_create_secret(args.secret_file.as_deref(), &args.state_dir)?;
    let api_token = match &args.api_token_file {
        Some(f) => Some(read_trimmed(f)?),
        None => std::env::var("TROUPE_API_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
    };

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let rooms_url = args
        .rooms_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));

    let metrics = Arc::new(Metrics::new());
    let (events_tx, mut events_rx) = tokio::sync::mpsc::channel(RUNTIME_EVENT_QUEUE);
    let runtime: Arc<dyn Runtime> = match args.runtime {
        RuntimeKind::Local => Arc::new(LocalRuntime::new(
            LocalConfig {
                state_dir: args.state_dir.clone(),
                self_exe: std::env::current_exe().context("finding the troupe executable")?,
                host: "127.0.0.1".into(),
            },
            events_tx,
        )),
    };
    let fleet = Arc::new(Fleet::open(
        &args.state_dir,
        runtime,
        FleetConfig { secret, rooms_url },
    )?);
    fleet
        .adopt()
        .await
        .context("adopting rooms recorded before")?;
    let ops = Operations::open(args.state_dir.join("operations.jsonl"))?;
    let controller = Arc::new(Controller::new(
        Arc::clone(&fleet),
        Arc::clone(&ops),
        Arc::clone(&metrics),
        ControllerOptions {
            prune: args.prune,
            sync: args.sync,
        },
        History::open(&args.state_dir)?,
    ));

    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    {
        let fleet = Arc::clone(&fleet);
        let m = Arc::clone(&metrics);
        tasks.spawn(async move {
            while let Some(event) = events_rx.recv().await {
                let kind = match &event {
                    crate::runtime::RuntimeEvent::Running { .. } => "running",
                    crate::runtime::RuntimeEvent::Exited { .. } => "exited",
                    crate::runtime::RuntimeEvent::Failed { .. } => "failed",
                };
                m.runtime_events.with_label_values(&[kind]).inc();
                fleet.handle_event(event);
            }
        });
    }
    {
        let mut finished = ops.subscribe_finished();
        let m = Arc::clone(&metrics);
        tasks.spawn(async move {
            while let Ok(op) = finished.recv().await {
                m.operations
                    .with_label_values(&[op.kind.as_str(), op.status.as_str()])
                    .inc();
                if let (Some(s), Some(f)) = (op.started_at, op.finished_at) {
                    m.operation_seconds
                        .with_label_values(&[op.kind.as_str()])
                        .observe((f - s) as f64 / 1000.0);
                }
            }
        });
    }
    ops.start(Arc::clone(&fleet) as Arc<dyn crate::ops::Executor>);

    let source: Arc<dyn crate::source::Source> = Arc::from(crate::source::open(
        &args.source,
        args.branch.as_deref(),
        args.sub_path.as_deref(),
    )?);
    let described = source.describe();
    let (snapshots, _watcher) = crate::source::watch(source, args.poll_interval.as_std());
    tasks.spawn(Arc::clone(&controller).run(snapshots, shutdown.clone()));
    tasks.spawn(crate::controller::samples::run(
        Arc::clone(&controller),
        shutdown.clone(),
    ));

    let state = AppState {
        controller: Arc::clone(&controller),
        api_token: api_token.map(Arc::from),
    };
    println!(
        "troupe is serving {described} on http://{addr}  (dashboard: http://{addr}/  API: http://{addr}/api/v1/schedulers)"
    );
    tracing::info!(%addr, source = %described, runtime = ?args.runtime, "serving");

    let http_shutdown = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        http_shutdown.cancel();
    });
    crate::http::serve(listener, router(state), shutdown.clone())
        .await
        .context("HTTP server failed")?;
    shutdown.cancel();
    if args.stop_rooms_on_exit {
        for room in fleet.registry.list(None) {
            fleet
                .stop_room(&room, std::time::Duration::from_secs(5))
                .await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Two controllers on one state directory would start every room twice: refuse the second.
fn lock_state_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        bail!(
            "state directory {} is in use by another troupe serve",
            dir.display()
        );
    }
    Ok(file)
}

fn read_trimmed(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let text = text.trim().to_string();
    if text.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(text)
}

/// The room-token secret: from the given file, or STATE_DIR/secret (created on first start, 0600).
fn read_or_create_secret(file: Option<&Path>, state_dir: &Path) -> anyhow::Result<Vec<u8>> {
    if let Some(f) = file {
        return Ok(read_trimmed(f)?.into_bytes());
    }
    let path = state_dir.join("secret");
    if path.exists() {
        return Ok(read_trimmed(&path)?.into_bytes());
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    let secret = hex::encode(bytes);
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut f, secret.as_bytes())?;
    Ok(secret.into_bytes())
}
