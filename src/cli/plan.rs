//! `troupe plan` and `troupe apply`.
//!
//! `plan SOURCE` loads a revision locally and plans it against a server's live state (or against
//! nothing, without `--server`); `plan` alone shows the server's current plan. Exit codes with
//! `--detailed-exitcode`: 0 no changes, 2 changes, 1 error.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};

use super::client::{Client, ServerArgs};
use crate::plan::live::LiveState;
use crate::plan::{Plan, PlanOptions, render};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable, coloured on a terminal.
    Text,
    /// A pull-request comment.
    Markdown,
    /// Machine-readable (schema/plan.schema.json).
    Json,
}

/// Where `troupe plan` can read live state from, besides a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanRuntime {
    /// The cluster of the kubeconfig (`KUBECONFIG`, `~/.kube/config`).
    Kubernetes,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Git repository or directory to plan. Without it, show the server's current plan.
    source: Option<PathBuf>,
    /// Branch to read (git sources; default: the branch HEAD points to).
    #[arg(long)]
    branch: Option<String>,
    /// Sub-directory of the source that holds the scheduler files.
    #[arg(long = "path", value_name = "SUBPATH")]
    sub_path: Option<String>,
    /// Plan against this server's live state. Without it (and with SOURCE), everything is new.
    #[arg(long, env = "TROUPE_SERVER", conflicts_with = "runtime")]
    server: Option<String>,
    /// Plan against what runs in this runtime instead of a server: `kubernetes` reads the
    /// applied schedulers and rooms from the cluster of your kubeconfig (no server needed).
    #[arg(long, value_enum, requires = "source")]
    runtime: Option<PlanRuntime>,
    /// With `--runtime kubernetes`: the controller's namespace prefix.
    #[arg(long, env = "TROUPE_KUBE_NAMESPACE_PREFIX", default_value = "")]
    kube_namespace_prefix: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Never colour the text output.
    #[arg(long, env = "NO_COLOR", value_parser = clap::builder::FalseyValueParser::new())]
    no_color: bool,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error.
    #[arg(long)]
    detailed_exitcode: bool,
    /// Plan deletion of schedulers that are live but no longer in the source.
    #[arg(long)]
    prune: bool,
}

pub async fn plan(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let server = args.server.clone().map(|server| ServerArgs { server });
    let plan: Plan = match &args.source {
        None => {
            let server = server.unwrap_or(ServerArgs {
                server: "http://127.0.0.1:8080".into(),
            });
            Client::new(&server).get("/api/v1/plan").await?
        }
        Some(path) => {
            let source =
                crate::source::open(path, args.branch.as_deref(), args.sub_path.as_deref())?;
            let snapshot = tokio::task::spawn_blocking(move || source.load()).await??;
            let docs = match crate::spec::load_documents(&snapshot.files) {
                Ok(docs) => docs,
                Err(err) => {
                    for e in &err.0 {
                        eprintln!("{e}");
                    }
                    anyhow::bail!(
                        "revision {} has {} error(s); nothing to plan",
                        snapshot.revision,
                        err.0.len()
                    );
                }
            };
            let live: LiveState = match (&server, args.runtime) {
                (_, Some(PlanRuntime::Kubernetes)) => {
                    live_from_cluster(&args.kube_namespace_prefix).await?
                }
                (Some(s), None) => Client::new(s)
                    .get("/api/v1/live")
                    .await
                    .context("reading live state")?,
                (None, None) => LiveState::default(),
            };
            let desired: Vec<_> = docs.into_iter().map(|d| d.scheduler).collect();
            crate::plan::plan(
                &desired,
                &live,
                &PlanOptions {
                    prune: args.prune,
                    revision: Some(snapshot.revision),
                },
            )
        }
    };
    let out = match args.format {
        Format::Text => {
            let color = !args.no_color && std::io::stdout().is_terminal();
            render::text(&plan, color)
        }
        Format::Markdown => render::markdown(&plan, render::DEFAULT_MARKDOWN_LIMIT),
        Format::Json => render::json(&plan),
    };
    print!("{out}");
    if !out.ends_with('\n') {
        println!();
    }
    Ok(if args.detailed_exitcode && plan.has_changes() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// Live state read from the cluster alone: the applied specs recorded on the schedulers'
/// namespaces and the rooms recorded on their pods.
async fn live_from_cluster(prefix: &str) -> anyhow::Result<LiveState> {
    use crate::runtime::Runtime;
    use crate::runtime::kubernetes::{KubeConfig, KubernetesRuntime};

    let client = super::kube::connect(None).await?;
    // Events are not read: discovery lists once and watches nothing.
    let (events, _) = tokio::sync::mpsc::channel(1);
    let runtime = KubernetesRuntime::new(
        client,
        KubeConfig {
            namespace_prefix: prefix.to_owned(),
            ..KubeConfig::default()
        },
        events,
    );
    let found = runtime
        .discover()
        .await
        .context("reading live state from the cluster")?;
    let mut applied = std::collections::BTreeMap::new();
    for (name, value) in found.schedulers {
        let a: crate::controller::Applied = serde_json::from_value(value)
            .with_context(|| format!("reading the applied spec of scheduler {name}"))?;
        applied.insert(name, a);
    }
    let mut rooms = found.rooms;
    rooms.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(crate::controller::fleet::live_state_of(applied, rooms))
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Apply only if the server's current plan still has this id (from `troupe plan --format json`).
    #[arg(long)]
    plan_id: Option<String>,
}

pub async fn apply(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let body = serde_json::json!({ "planId": args.plan_id });
    let plan: Plan = Client::new(&args.server)
        .post("/api/v1/plan/apply", body)
        .await?;
    print!("{}", render::text(&plan, false));
    println!("Applied plan {}.", plan.id);
    Ok(ExitCode::SUCCESS)
}
