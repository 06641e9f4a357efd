//! `troupe serve`: the controller, the rooms and management APIs and the dashboard, in one
//! process, until SIGINT or SIGTERM stops them all together.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use tokio_util::sync::CancellationToken;

use super::git_auth::{GitAuthArgs, open_source, read_secret, secret_from};
use crate::app::{Server, ServerConfig};
use crate::controller::{ControllerOptions, FleetConfig, SyncMode};
use crate::domain::spec::Duration;
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::runtime::kubernetes::lease::{Elector, Leadership, LeaseConfig};
use crate::runtime::kubernetes::{KubeConfig, KubernetesRuntime};
use crate::runtime::local::{LocalConfig, LocalRuntime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeKind {
    /// Each room is a process on this machine.
    Local,
    /// Each room is a pod, in one namespace per scheduler, on the cluster of the kubeconfig
    /// (`KUBECONFIG`, `~/.kube/config`) or, inside a cluster, of the service account.
    Kubernetes,
}

/// How often a remote repository is polled when `--poll-interval` is not given: each poll is a
/// round trip to the git host, and webhooks bring pushes in at once anyway.
const REMOTE_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
/// How often a local repository or directory is polled when `--poll-interval` is not given.
const LOCAL_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a stopping server waits for the status writes still queued for the cluster.
const FLUSH_AT_EXIT: std::time::Duration = std::time::Duration::from_secs(3);
/// Environment variable holding the API token itself (the file flag is preferred).
const API_TOKEN_ENV: &str = "TROUPE_API_TOKEN";
/// Environment variable holding the webhook secret itself (the file flag is preferred).
const WEBHOOK_SECRET_ENV: &str = "TROUPE_WEBHOOK_SECRET";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Git repository or directory holding scheduler YAML, or a remote repository's URL
    /// (https://, http://, ssh://, git@host:path, file://), cloned into STATE_DIR/git.
    #[arg(value_name = "SOURCE")]
    source: String,
    /// Branch to follow (git sources; default: the branch HEAD points to).
    #[arg(long, env = "TROUPE_BRANCH")]
    branch: Option<String>,
    /// Sub-directory of the source that holds the scheduler files.
    #[arg(long = "path", value_name = "SUBPATH", env = "TROUPE_PATH")]
    sub_path: Option<String>,
    /// How often to look for new commits [default: 30s for a remote repository, 5s otherwise].
    /// Directories are also watched for changes; webhooks (POST /hooks/git) check at once.
    #[arg(long, env = "TROUPE_POLL_INTERVAL")]
    poll_interval: Option<Duration>,
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
    /// Local runtime: directory holding the Secrets and ConfigMaps that rooms' `secretKeyRef`,
    /// `configMapKeyRef` and `envFrom` read, laid out as Kubernetes mounts them:
    /// DIR/secrets/NAME/KEY and DIR/configmaps/NAME/KEY, each file's contents (exactly, a final
    /// newline included) the value of its key. A room needing one that is missing (or this
    /// directory, when unset) fails to start, unless the reference is `optional`.
    #[arg(long, env = "TROUPE_LOCAL_CONFIG_DIR", value_name = "DIR")]
    local_config_dir: Option<PathBuf>,
    /// Kubernetes runtime: prefix of every scheduler's namespace (`PREFIX` + scheduler name).
    /// Controllers sharing a cluster need different prefixes.
    #[arg(long, env = "TROUPE_KUBE_NAMESPACE_PREFIX", default_value = "")]
    kube_namespace_prefix: String,
    /// Kubernetes runtime: run as one of several replicas. They elect a leader on the Lease
    /// `PREFIX`troupe-leader in the namespace of the kubeconfig's context (in a pod: its own).
    /// Until a replica leads, every route but /healthz answers 503 with Retry-After (/readyz
    /// too, so a Service sends it nothing); a leader that loses its lease exits. Needs
    /// --secret-file: every replica must derive the same room tokens.
    #[arg(long, env = "TROUPE_LEADER_ELECT")]
    leader_elect: bool,
    /// With --leader-elect: how long the lease of a leader that stopped renewing stays held. A
    /// leader stops leading 2/3 of it after its last renewal, before anyone may take it over.
    #[arg(long, env = "TROUPE_LEASE_DURATION", default_value = "15s")]
    lease_duration: Duration,
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
    /// How often the autoscaler looks at occupancy.
    #[arg(long, env = "TROUPE_AUTOSCALE_INTERVAL", default_value = "10s")]
    autoscale_interval: Duration,
    /// How long an allocated room has to confirm its allocation (report a match) before it is
    /// free again.
    #[arg(long, env = "TROUPE_ALLOCATION_TTL", default_value = "30s")]
    allocation_ttl: Duration,
    /// File holding the secret that authenticates git webhooks on POST /hooks/git (or the secret
    /// itself in TROUPE_WEBHOOK_SECRET). Without it, webhooks are off.
    #[arg(long, env = "TROUPE_WEBHOOK_SECRET_FILE", value_name = "FILE")]
    webhook_secret_file: Option<PathBuf>,
    #[command(flatten)]
    git: GitAuthArgs,
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
    let api_token = secret_from(args.api_token_file.as_deref(), API_TOKEN_ENV)?;
    let webhook_secret = secret_from(args.webhook_secret_file.as_deref(), WEBHOOK_SECRET_ENV)?;
    // Opened before anything starts, so a bad URL or unreadable key file stops serve at once.
    let source: Arc<dyn crate::source::Source> = Arc::from(open_source(
        &args.source,
        args.branch.as_deref(),
        args.sub_path.as_deref(),
        &args.state_dir.join("git"),
        &args.git,
    )?);
    let poll = args.poll_interval.map_or_else(
        || match crate::source::Location::parse(&args.source) {
            Ok(crate::source::Location::Remote(_)) => REMOTE_POLL_INTERVAL,
            _ => LOCAL_POLL_INTERVAL,
        },
        |d| d.as_std(),
    );

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        on_signal.cancel();
    });
    let metrics = Arc::new(Metrics::new());
    let client = match args.runtime {
        RuntimeKind::Kubernetes => {
            Some(super::kube::connect(Some(metrics.kube_requests.clone())).await?)
        }
        RuntimeKind::Local => None,
    };
    let (listener, election) = if args.leader_elect {
        let Some(client) = &client else {
            bail!("--leader-elect needs --runtime kubernetes: the lease is in the cluster");
        };
        if args.secret_file.is_none() {
            bail!(
                "--leader-elect needs --secret-file: every replica must derive the same room tokens"
            );
        }
        match stand_by(&args, client, listener, &shutdown).await? {
            Some(led) => led,
            None => return Ok(ExitCode::SUCCESS),
        }
    } else {
        (listener, None)
    };
    let rooms_url = args
        .rooms_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));

    let config = ServerConfig {
        state_dir: args.state_dir.clone(),
        fleet: FleetConfig {
            secret,
            rooms_url,
            allocation_ttl: args.allocation_ttl.as_std(),
        },
        controller: ControllerOptions {
            prune: args.prune,
            sync: args.sync,
            autoscale_interval: args.autoscale_interval.as_std(),
        },
        api_token,
        webhook_secret: webhook_secret.map(String::into_bytes),
    };
    let (runtime, events): (Arc<dyn Runtime>, _) = match args.runtime {
        RuntimeKind::Local => {
            // Absolute, so that a room that cannot start names the very file it looked for.
            let config_dir = match &args.local_config_dir {
                Some(dir) if dir.is_dir() => Some(
                    std::fs::canonicalize(dir)
                        .with_context(|| format!("--local-config-dir {}", dir.display()))?,
                ),
                Some(dir) => bail!("--local-config-dir {} is not a directory", dir.display()),
                None => None,
            };
            let local = LocalConfig {
                state_dir: args.state_dir.clone(),
                self_exe: std::env::current_exe().context("finding the troupe executable")?,
                host: "127.0.0.1".into(),
                config_dir,
            };
            let (runtime, events) = LocalRuntime::new(local);
            (Arc::new(runtime), events)
        }
        RuntimeKind::Kubernetes => {
            let client = client.context("a Kubernetes client")?;
            let kube = KubeConfig {
                namespace_prefix: args.kube_namespace_prefix.clone(),
                leadership: election.as_ref().map(|e| e.leadership.clone()),
                ..KubeConfig::default()
            };
            let (runtime, events) = KubernetesRuntime::new(client, kube);
            (Arc::new(runtime), events)
        }
    };
    let server = Server::open(config, metrics, runtime, events)?;
    let fleet = Arc::clone(&server.controller.fleet);
    let described = source.describe();
    let watch = crate::source::watch(source, poll);
    announce(format_args!(
        "troupe is serving {described} on http://{addr}  (dashboard: http://{addr}/  API: http://{addr}/api/v1/schedulers)"
    ));
    tracing::info!(%addr, source = %described, runtime = ?args.runtime, poll = ?poll, webhooks = server.state.webhook_secret.is_some(), "serving");

    // A leader that loses its lease stops serving at once, and exits: it starts again standing by.
    let lost = election.as_ref().map(|e| {
        let (mut leadership, stop) = (e.leadership.clone(), shutdown.clone());
        tokio::spawn(async move {
            leadership.lost().await;
            stop.cancel();
        })
    });
    let result = server.run(listener, watch.into(), shutdown).await;
    let lost = match lost {
        Some(task) if task.is_finished() => true,
        Some(task) => {
            task.abort();
            false
        }
        None => false,
    };
    // What the next leader reads back: the statuses still queued for the cluster.
    if tokio::time::timeout(FLUSH_AT_EXIT, fleet.runtime.flush())
        .await
        .is_err()
    {
        tracing::warn!(
            pending = fleet.runtime.pending_records(),
            "status writes still queued at exit; the next controller reads older statuses for those rooms"
        );
    }
    if let Some(e) = election {
        // Stopped by a signal: hand the lease over at once.
        e.stop.cancel();
        let _ = e.task.await;
    }
    if lost {
        tracing::error!("lost the lease: another replica leads now");
        eprintln!(
            "troupe serve: lost the lease; exiting so that this replica starts over standing by"
        );
        return Ok(ExitCode::FAILURE);
    }
    if args.stop_rooms_on_exit {
        for room in fleet.registry.list(None) {
            fleet
                .stop_room(&room, std::time::Duration::from_secs(5))
                .await;
        }
    }
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            tracing::error!(error = %e, "troupe serve stopped");
            eprintln!("troupe serve: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// A line on stdout for whoever started the server. A closed stdout (`troupe serve | head -1`, a
/// supervisor that read the first line) is no reason to stop serving.
fn announce(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// A replica's part in the election, once it leads.
struct Election {
    leadership: Leadership,
    /// Cancel to leave the election (releasing the lease).
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Join the election and answer as a standby on `listener` until this replica leads; then the
/// listener, to serve as the leader on. `None`: stopped by a signal first.
async fn stand_by(
    args: &ServeArgs,
    client: &kube::Client,
    listener: tokio::net::TcpListener,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<(tokio::net::TcpListener, Option<Election>)>> {
    let namespace = client.default_namespace().to_owned();
    let name = format!("{}troupe-leader", args.kube_namespace_prefix);
    let config = LeaseConfig::new(
        &namespace,
        &name,
        &replica_identity(),
        args.lease_duration.as_std(),
    );
    tracing::info!(lease = %format!("{namespace}/{name}"), identity = %config.identity, "standing by for the lease");
    announce(format_args!(
        "troupe is standing by on http://{}  (lease {namespace}/{name}): it serves once it leads",
        listener.local_addr()?
    ));
    let (elector, mut leadership) =
        Elector::new(kube::Api::namespaced(client.clone(), &namespace), config);
    let stop = CancellationToken::new();
    let task = tokio::spawn(elector.run(stop.clone()));
    // The standby server answers on a second handle of the same socket, so that no connection
    // is refused when the leader's server takes over.
    let std_listener = listener.into_std()?;
    let standby_listener = tokio::net::TcpListener::from_std(std_listener.try_clone()?)?;
    let standing_by = CancellationToken::new();
    let standby = tokio::spawn(crate::http::serve(
        standby_listener,
        crate::http::standby::router(format!("{namespace}/{name}")),
        standing_by.clone(),
    ));
    let led = tokio::select! {
        _ = leadership.acquired() => true,
        _ = shutdown.cancelled() => false,
    };
    standing_by.cancel();
    // Connections still open on the standby server are answered 503 until they close.
    drop(standby);
    if !led {
        stop.cancel();
        let _ = task.await;
        return Ok(None);
    }
    // The cluster is the store: rooms, applied specs, suspensions, operations and revisions seen
    // that a former leadership left on this disk may be stale. The leader rebuilds them from the
    // cluster.
    for stale in [
        "rooms.jsonl",
        "schedulers.jsonl",
        "suspended.jsonl",
        "operations.jsonl",
        "revisions.jsonl",
    ] {
        match std::fs::remove_file(args.state_dir.join(stale)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e)
                    .with_context(|| format!("removing {stale} from the state directory"));
            }
            _ => {}
        }
    }
    Ok(Some((
        tokio::net::TcpListener::from_std(std_listener)?,
        Some(Election {
            leadership,
            stop,
            task,
        }),
    )))
}

/// This process's name in the lease: the host's (a pod's) name and a random part, unique per
/// start.
fn replica_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "troupe".into());
    let mut suffix = [0u8; 3];
    let _ = getrandom::fill(&mut suffix);
    format!("{host}-{}", hex::encode(suffix))
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

/// The room-token secret: from the given file, or STATE_DIR/secret (created on first start, 0600).
fn read_or_create_secret(file: Option<&Path>, state_dir: &Path) -> anyhow::Result<Vec<u8>> {
    if let Some(f) = file {
        return Ok(read_secret(f)?.into_bytes());
    }
    let path = state_dir.join("secret");
    if path.exists() {
        return Ok(read_secret(&path)?.into_bytes());
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
