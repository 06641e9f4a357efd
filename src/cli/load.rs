//! `troupe load`: drive a running server's rooms API or allocation with N concurrent clients
//! over loopback and print throughput and latency percentiles.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use super::client::{Client, ServerArgs};
use crate::domain::room::Room;
use crate::domain::room::token::room_token;
use crate::domain::spec::Duration;
use crate::tools::loadgen::{self, Load, Mode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoadMode {
    /// Ping the scheduler's rooms `ready`, as game rooms do.
    Ping,
    /// Allocate rooms until none is left, as matchmakers do (changes the fleet!).
    Allocate,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// What to drive.
    #[arg(long, value_enum)]
    mode: LoadMode,
    /// Scheduler whose rooms are pinged or allocated.
    #[arg(long)]
    scheduler: String,
    #[command(flatten)]
    server: ServerArgs,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// How long to run (allocation stops earlier when no room is left).
    #[arg(long, default_value = "10s")]
    duration: Duration,
    /// The server's room-token secret, to ping as the rooms (ping mode).
    #[arg(long, env = "TROUPE_SECRET_FILE", default_value = ".troupe/secret")]
    secret_file: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs on all cores: the clients are the load.
pub fn main(args: LoadArgs) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.server);
    let mode = match args.mode {
        LoadMode::Ping => {
            let secret = std::fs::read_to_string(&args.secret_file).with_context(|| {
                format!(
                    "reading the room-token secret {}",
                    args.secret_file.display()
                )
            })?;
            let secret = secret.trim().as_bytes().to_vec();
            let rooms: Vec<Room> = client
                .get(&format!("/api/v1/schedulers/{}/rooms", args.scheduler))
                .await?;
            let rooms: Vec<(String, String, String)> = rooms
                .into_iter()
                .filter(|r| r.status == crate::domain::room::RoomStatus::Ready)
                .map(|r| {
                    let token = room_token(&secret, &r.scheduler, &r.id);
                    (r.scheduler, r.id, token)
                })
                .collect();
            if rooms.is_empty() {
                bail!("scheduler {} has no ready room to ping", args.scheduler);
            }
            Mode::Ping { rooms }
        }
        LoadMode::Allocate => Mode::Allocate {
            scheduler: args.scheduler.clone(),
            api_token: std::env::var("TROUPE_API_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
        },
    };
    let report = loadgen::run(Load {
        base_url: args.server.server.trim_end_matches('/').to_string(),
        clients: args.clients,
        duration: args.duration.as_std(),
        mode,
    })
    .await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} requests in {:.2} s: {:.0}/s; ok {}, no room {}, unavailable (503, retried) {}, errors {}, duplicates {}",
            report.requests,
            report.seconds,
            report.per_second,
            report.ok,
            report.no_room,
            report.unavailable,
            report.errors,
            report.duplicates
        );
        println!(
            "latency ms: p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2}",
            report.p50_ms, report.p90_ms, report.p99_ms, report.max_ms
        );
    }
    Ok(if report.errors > 0 || report.duplicates > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
