//! `troupe plan`, `troupe apply` and `troupe diff`.
//!
//! `plan SOURCE` loads a revision locally and plans it against a server's live state (or against
//! nothing, without `--server`); `plan` alone shows the server's current plan. `-o FILE` saves
//! the plan for `troupe apply FILE`, which applies exactly that or is refused. With `--runtime
//! kubernetes` the pods of creates and rollouts are dry-run against the cluster and a refusal is
//! shown on its change. Exit codes with `--detailed-exitcode`: 0 no changes, 2 changes, 1 error
//! (a refusal included, also without the flag).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use super::client::{Client, ServerArgs};
use super::git_auth::{GitAuthArgs, open_source};
use crate::clock::now_ms;
use crate::domain::admission::Refusal;
use crate::domain::plan::live::{LiveRoom, LiveScheduler, LiveState};
use crate::domain::plan::saved::SavedPlan;
use crate::domain::plan::{Plan, PlanOptions, render};
use crate::domain::room::RoomStatus;
use crate::domain::spec::{Document, Duration, Scheduler};

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

/// How a plan is printed.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Never colour the text output.
    #[arg(long, env = "NO_COLOR", value_parser = clap::builder::FalseyValueParser::new())]
    no_color: bool,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error (pods the cluster refuses
    /// included).
    #[arg(long)]
    detailed_exitcode: bool,
}

impl OutputArgs {
    fn print(&self, plan: &Plan) -> ExitCode {
        let out = match self.format {
            Format::Text => render::text(plan, !self.no_color && std::io::stdout().is_terminal()),
            Format::Markdown => render::markdown(plan, render::DEFAULT_MARKDOWN_LIMIT),
            Format::Json => render::json(plan),
        };
        print!("{out}");
        if !out.ends_with('\n') {
            println!();
        }
        ExitCode::from(exit_status(plan, self.detailed_exitcode))
    }
}

/// `troupe plan`'s exit status: 1 when the API server refuses the pods of a change (an error,
/// like invalid YAML: applying the plan would fail), else with `--detailed-exitcode` 2 when
/// there are changes and 0 when there are none; 0 without it.
pub fn exit_status(plan: &Plan, detailed: bool) -> u8 {
    if plan.refused().next().is_some() {
        1
    } else if detailed && plan.has_changes() {
        2
    } else {
        0
    }
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Git repository, directory or remote repository URL to plan. Without it, show the server's
    /// current plan.
    source: Option<String>,
    /// Branch to read (git sources; default: the branch HEAD points to).
    #[arg(long, conflicts_with = "revision")]
    branch: Option<String>,
    /// Plan this commit, tag or revision expression instead of the branch head (git sources).
    #[arg(long)]
    revision: Option<String>,
    /// Sub-directory of the source that holds the scheduler files.
    #[arg(long = "path", value_name = "SUBPATH")]
    sub_path: Option<String>,
    /// Plan against this server's live state. Without it (and with SOURCE), everything is new.
    #[arg(long, env = "TROUPE_SERVER", conflicts_with = "runtime")]
    server: Option<String>,
    /// Plan against what runs in this runtime instead of a server: `kubernetes` reads the applied
    /// schedulers and rooms from the cluster of your kubeconfig (no server needed) and dry-runs
    /// one room's pod of every create and rollout; pods it refuses are an error.
    #[arg(long, value_enum, requires = "source")]
    runtime: Option<PlanRuntime>,
    /// With `--runtime kubernetes`: the controller's namespace prefix.
    #[arg(long, env = "TROUPE_KUBE_NAMESPACE_PREFIX", default_value = "")]
    kube_namespace_prefix: String,
    /// Plan deletion of schedulers that are live but no longer in the source.
    #[arg(long)]
    prune: bool,
    /// Save the plan to this file, for `troupe apply FILE`.
    #[arg(long, short = 'o', value_name = "FILE")]
    out: Option<PathBuf>,
    /// How long a saved plan may be applied.
    #[arg(long, default_value = "1h")]
    expires_in: Duration,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    git: GitAuthArgs,
}

/// Load and validate the schedulers of a source (a remote is cloned for this one read into a
/// temporary directory); errors are printed with their positions. Cloning and reading block, so
/// they run on the blocking pool, not on the thread that drives the HTTP calls.
async fn load(
    source: &str,
    branch: Option<&str>,
    sub_path: Option<&str>,
    git: &GitAuthArgs,
) -> anyhow::Result<(String, Vec<Document>)> {
    let (source, branch, sub_path, git) = (
        source.to_owned(),
        branch.map(str::to_owned),
        sub_path.map(str::to_owned),
        git.clone(),
    );
    tokio::task::spawn_blocking(move || {
        load_blocking(&source, branch.as_deref(), sub_path.as_deref(), &git)
    })
    .await
    .context("reading the source")?
}

fn load_blocking(
    source: &str,
    branch: Option<&str>,
    sub_path: Option<&str>,
    git: &GitAuthArgs,
) -> anyhow::Result<(String, Vec<Document>)> {
    let cache = tempfile::tempdir().context("creating a temporary directory for the clone")?;
    let source = open_source(source, branch, sub_path, cache.path(), git)?;
    let snapshot = source.load()?;
    match crate::domain::spec::load_documents(&snapshot.files) {
        Ok(docs) => Ok((snapshot.revision, docs)),
        Err(err) => {
            for e in &err.0 {
                eprintln!("{e}");
            }
            bail!(
                "revision {} has {} error(s); nothing to plan",
                snapshot.revision,
                err.0.len()
            )
        }
    }
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
            let branch = args.revision.as_deref().or(args.branch.as_deref());
            let (revision, docs) = load(path, branch, args.sub_path.as_deref(), &args.git).await?;
            let desired: Vec<Scheduler> = docs.iter().map(|d| d.scheduler.clone()).collect();
            let cluster = match args.runtime {
                Some(PlanRuntime::Kubernetes) => Some(super::kube::connect(None).await?),
                None => None,
            };
            let live: LiveState = match (&server, &cluster) {
                (_, Some(client)) => live_from_cluster(client, &args.kube_namespace_prefix).await?,
                (Some(s), None) => Client::new(s)
                    .get("/api/v1/live")
                    .await
                    .context("reading live state")?,
                (None, None) => LiveState::default(),
            };
            let mut plan = crate::domain::plan::plan(
                &desired,
                &live,
                &PlanOptions {
                    prune: args.prune,
                    revision: Some(revision),
                },
            );
            if let Some(client) = &cluster {
                check_admission(client, &args.kube_namespace_prefix, &docs, &mut plan).await?;
            }
            plan
        }
    };
    if let Some(out) = &args.out {
        let saved = SavedPlan::new(
            plan.clone(),
            now_ms(),
            args.expires_in.as_std().as_millis() as u64,
        );
        let json = serde_json::to_string_pretty(&saved)?;
        std::fs::write(out, json + "\n").with_context(|| format!("writing {}", out.display()))?;
        eprintln!(
            "Saved plan {} to {}; apply it with: troupe apply {}",
            plan.id,
            out.display(),
            out.display()
        );
    }
    Ok(args.output.print(&plan))
}

/// Dry runs a plan's changes can run at once against the API server.
const ADMISSION_CONCURRENCY: usize = 8;

/// Ask the cluster whether it admits the pods of every change that would create rooms of a new
/// version (a create, a rollout): a server-side dry run of one room's pod each, which changes
/// nothing. A refusal is put on its change with where the scheduler is declared; a pod that
/// cannot be checked (its namespace does not exist yet, a webhook without dry-run support) is
/// said on stderr.
async fn check_admission(
    client: &kube::Client,
    prefix: &str,
    docs: &[Document],
    plan: &mut Plan,
) -> anyhow::Result<()> {
    use crate::runtime::kubernetes::admission::{self, Verdict};
    use futures_util::StreamExt;

    let checks = plan
        .changes
        .iter()
        .enumerate()
        .filter(|(_, c)| crate::domain::admission::change_needs_check(c))
        .filter_map(|(i, c)| Some((i, c.desired.clone()?)))
        .map(|(i, desired)| async move {
            let verdict = admission::check(client, prefix, &desired).await;
            (i, verdict)
        });
    let verdicts: Vec<_> = futures_util::stream::iter(checks)
        .buffer_unordered(ADMISSION_CONCURRENCY)
        .collect()
        .await;
    for (i, verdict) in verdicts {
        let change = &mut plan.changes[i];
        let declared = docs
            .iter()
            .find(|d| d.scheduler.name == change.scheduler)
            .map(Document::declared);
        match verdict.with_context(|| format!("checking the pods of {}", change.scheduler))? {
            Verdict::Admitted => {}
            Verdict::Refused(reason) => change.admission = Some(Refusal { declared, reason }),
            Verdict::Unchecked(why) => {
                let at = declared.map(|d| format!("{d}: ")).unwrap_or_default();
                eprintln!(
                    "note: {at}pods of {} not checked against the cluster's admission: {why}",
                    change.scheduler
                );
            }
        }
    }
    Ok(())
}

/// Live state read from the cluster alone: the applied specs recorded on the schedulers'
/// namespaces and the rooms recorded on their pods.
async fn live_from_cluster(client: &kube::Client, prefix: &str) -> anyhow::Result<LiveState> {
    let found = crate::runtime::kubernetes::discover(client, prefix)
        .await
        .context("reading live state from the cluster")?;
    let applied = found.schedulers;
    let mut rooms = found.rooms;
    rooms.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(crate::domain::plan::LiveState::of(applied, rooms))
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved with `troupe plan -o FILE`: applied exactly, or refused if git or live state
    /// moved since. Without it, the server's current plan is applied.
    plan_file: Option<PathBuf>,
    #[command(flatten)]
    server: ServerArgs,
    /// Apply the server's current plan only if it still has this id (from `troupe plan --format json`).
    #[arg(long, conflicts_with = "plan_file")]
    plan_id: Option<String>,
    /// Delete schedulers without waiting for their busy rooms (ends matches being played).
    #[arg(long, conflicts_with = "plan_file")]
    force: bool,
}

#[derive(serde::Deserialize)]
struct AppliedPlan {
    plan: String,
    operations: Vec<crate::state::ops::Operation>,
}

pub async fn apply(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.server);
    if let Some(file) = &args.plan_file {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let saved: SavedPlan = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a saved troupe plan", file.display()))?;
        let applied: AppliedPlan = client
            .post("/api/v1/plans/apply", serde_json::to_value(&saved)?)
            .await?;
        for op in &applied.operations {
            println!("{}  {}  {}", op.id, op.scheduler, op.kind.as_str());
        }
        println!(
            "Applied plan {}: {} operation(s) queued.",
            applied.plan,
            applied.operations.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let body = serde_json::json!({ "planId": args.plan_id, "force": args.force });
    let plan: Plan = client.post("/api/v1/plan/apply", body).await?;
    print!("{}", render::text(&plan, false));
    println!("Applied plan {}.", plan.id);
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The revision to compare from (commit, tag, branch).
    from: String,
    /// The revision to compare to.
    to: String,
    /// Git repository (or remote URL) holding both revisions.
    #[arg(long, default_value = ".")]
    repo: String,
    /// Sub-directory of the repository that holds the scheduler files.
    #[arg(long = "path", value_name = "SUBPATH")]
    sub_path: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    git: GitAuthArgs,
}

/// Compare two revisions without a cluster: the second is planned against the first as if the
/// first ran exactly as declared (every room of its version, ready), so impacts read as they would
/// on a settled fleet.
pub async fn diff(args: DiffArgs) -> anyhow::Result<ExitCode> {
    let (_, before) = load(
        &args.repo,
        Some(&args.from),
        args.sub_path.as_deref(),
        &args.git,
    )
    .await?;
    let (to_rev, after) = load(
        &args.repo,
        Some(&args.to),
        args.sub_path.as_deref(),
        &args.git,
    )
    .await?;
    let schedulers =
        |docs: Vec<Document>| -> Vec<Scheduler> { docs.into_iter().map(|d| d.scheduler).collect() };
    let (before, after) = (schedulers(before), schedulers(after));
    let live = settled(&before);
    let plan = crate::domain::plan::plan(
        &after,
        &live,
        &PlanOptions {
            prune: true,
            revision: Some(to_rev),
        },
    );
    Ok(args.output.print(&plan))
}

/// Live state of a fleet that runs `schedulers` exactly as declared.
fn settled(schedulers: &[Scheduler]) -> LiveState {
    let schedulers = schedulers
        .iter()
        .map(|s| {
            let target = match &s.autoscaling {
                Some(a) if a.enabled => a.min,
                _ => s.rooms_replicas.unwrap_or(0),
            };
            let version = s.version();
            let rooms = (0..target)
                .map(|i| LiveRoom {
                    id: format!("{}-{i}", s.name),
                    version: version.clone(),
                    status: RoomStatus::Ready,
                })
                .collect();
            (
                s.name.clone(),
                LiveScheduler {
                    applied: s.clone(),
                    target_rooms: target,
                    rooms,
                },
            )
        })
        .collect();
    LiveState { schedulers }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::plan::{Action, Change};

    fn plan_of(changes: Vec<Change>) -> Plan {
        Plan {
            id: "p".into(),
            prints: Default::default(),
            revision: None,
            changes,
            in_sync: vec![],
            summary: Default::default(),
        }
    }

    fn change(action: Action, refused: bool) -> Change {
        Change {
            admission: refused.then(|| Refusal {
                declared: None,
                reason: "forbidden".into(),
            }),
            ..Change::bare("arena", action)
        }
    }

    #[test]
    fn a_refused_change_makes_the_plan_exit_1_with_or_without_detailed_exit_codes() {
        for (changes, detailed, want) in [
            (vec![], false, 0),
            (vec![], true, 0),
            (vec![change(Action::Orphan, false)], true, 0),
            (vec![change(Action::Rollout, false)], false, 0),
            (vec![change(Action::Rollout, false)], true, 2),
            (vec![change(Action::Rollout, true)], false, 1),
            (vec![change(Action::Rollout, true)], true, 1),
            (
                vec![change(Action::Create, true), change(Action::Scale, false)],
                true,
                1,
            ),
        ] {
            let p = plan_of(changes);
            assert_eq!(exit_status(&p, detailed), want, "{:?}", p.changes);
        }
    }
}
