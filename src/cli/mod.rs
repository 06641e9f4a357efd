//! The `troupe` command line: one clap struct per command, each in its own module; this file
//! only parses, sets up logging and dispatches. Errors are printed with their whole chain.

mod client;
mod git_auth;
mod kube;
mod load;
mod plan;
pub mod schema;
mod serve;
pub mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Troupe runs fleets of dedicated game servers from scheduler YAML in git.
#[derive(Debug, Parser)]
#[command(name = "troupe", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log filter (tracing env-filter syntax), e.g. `info` or `troupe=debug`.
    #[arg(long, global = true, env = "TROUPE_LOG", default_value = "info")]
    log: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check scheduler YAML: every error with file, line, column and field.
    Validate(validate::ValidateArgs),
    /// Show what applying a revision would change.
    Plan(plan::PlanArgs),
    /// Apply a saved plan exactly, or the server's current plan (approval in manual sync mode).
    Apply(plan::ApplyArgs),
    /// Compare two git revisions without a cluster.
    Diff(plan::DiffArgs),
    /// Run the controller: watch a source, reconcile, serve the APIs and the dashboard.
    Serve(serve::ServeArgs),
    /// Show the fleet: schedulers with rooms by status.
    Status(client::StatusArgs),
    /// List the rooms of a scheduler.
    Rooms(client::RoomsArgs),
    /// List or cancel operations.
    Ops(client::OpsArgs),
    /// Load-test the rooms API or allocation of a running server.
    Load(load::LoadArgs),
    /// Run a simulated game room (what the example fleets run).
    DemoRoom(crate::tools::demo_room::DemoRoomArgs),
    /// Write the JSON Schemas under schema/ (or check they are fresh).
    Schema(schema::SchemaArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Schema(args) => schema::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Plan(args) => block_on(plan::plan(args)),
        Command::Apply(args) => block_on(plan::apply(args)),
        Command::Diff(args) => block_on(plan::diff(args)),
        Command::Status(args) => block_on(client::status(args)),
        Command::Rooms(args) => block_on(client::rooms(args)),
        Command::Ops(args) => block_on(client::ops(args)),
        Command::Load(args) => load::main(args),
        Command::DemoRoom(args) => block_on(async {
            crate::tools::demo_room::run(args)
                .await
                .map(|_| ExitCode::SUCCESS)
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn block_on<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(
    f: F,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}
