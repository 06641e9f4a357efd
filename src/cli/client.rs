//! Commands that talk to a running `troupe serve` over its management API.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use serde::de::DeserializeOwned;

use crate::domain::room::Room;
use crate::http::api::SchedulerSummary;
use crate::state::ops::Operation;

/// Where the server is.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// URL of the troupe server's management API.
    #[arg(long, env = "TROUPE_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
}

/// A small client of the management API. The API token comes from `TROUPE_API_TOKEN`, never
/// from the command line.
pub struct Client {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Client {
    pub fn new(server: &ServerArgs) -> Self {
        Self {
            base: server.server.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            token: std::env::var("TROUPE_API_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(req, path).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<T> {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        self.send(req, path).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        path: &str,
    ) -> anyhow::Result<T> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach troupe server at {}", self.base))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .with_context(|| format!("reading the answer of {path}"))?;
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or(text);
            bail!("{path}: {status}: {message}");
        }
        serde_json::from_str(&text).with_context(|| format!("unexpected answer from {path}"))
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let schedulers: Vec<SchedulerSummary> =
        Client::new(&args.server).get("/api/v1/schedulers").await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&schedulers)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = schedulers
        .iter()
        .map(|s| {
            let rooms: Vec<String> = s.rooms.iter().map(|(st, n)| format!("{st}={n}")).collect();
            vec![
                s.name.clone(),
                s.game.clone(),
                s.version.clone(),
                format!(
                    "{}{}",
                    s.target_rooms,
                    if s.autoscaled { " (auto)" } else { "" }
                ),
                s.total_rooms.to_string(),
                rooms.join(" "),
                s.last_operation
                    .as_ref()
                    .map(|o| format!("{} {}", o.kind.as_str(), o.status.as_str()))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "SCHEDULER",
                "GAME",
                "VERSION",
                "TARGET",
                "ROOMS",
                "BY STATUS",
                "LAST OPERATION"
            ],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct RoomsArgs {
    /// Scheduler whose rooms to list.
    scheduler: String,
    #[command(flatten)]
    server: ServerArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn rooms(args: RoomsArgs) -> anyhow::Result<ExitCode> {
    let rooms: Vec<Room> = Client::new(&args.server)
        .get(&format!("/api/v1/schedulers/{}/rooms", args.scheduler))
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rooms)?);
        return Ok(ExitCode::SUCCESS);
    }
    let now = crate::clock::now_ms();
    let rows: Vec<Vec<String>> = rooms
        .iter()
        .map(|r| {
            let ports: Vec<String> = r
                .ports
                .iter()
                .map(|p| format!("{}={}", p.name, p.port))
                .collect();
            vec![
                r.id.clone(),
                r.status.to_string(),
                r.version.clone(),
                format!("{}s", now.saturating_sub(r.created_at) / 1000),
                r.host.clone(),
                ports.join(","),
                r.running_matches.to_string(),
                r.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "ROOM", "STATUS", "VERSION", "AGE", "HOST", "PORTS", "MATCHES", "REASON"
            ],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct OpsArgs {
    /// Only operations of this scheduler.
    #[arg(long)]
    scheduler: Option<String>,
    /// Cancel this operation instead of listing.
    #[arg(long, value_name = "OPERATION_ID")]
    cancel: Option<String>,
    /// Show this operation with its event history.
    #[arg(long, value_name = "OPERATION_ID", conflicts_with = "cancel")]
    show: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn ops(args: OpsArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.server);
    let one: Option<Operation> = if let Some(id) = &args.cancel {
        Some(
            client
                .post(
                    &format!("/api/v1/operations/{id}/cancel"),
                    serde_json::json!({}),
                )
                .await?,
        )
    } else if let Some(id) = &args.show {
        Some(client.get(&format!("/api/v1/operations/{id}")).await?)
    } else {
        None
    };
    if let Some(op) = one {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&op)?);
        } else {
            println!(
                "{} {} {} {}",
                op.id,
                op.scheduler,
                op.kind.as_str(),
                op.status.as_str()
            );
            for e in &op.events {
                println!("  {}  {}", e.at, e.message);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let path = match &args.scheduler {
        Some(s) => format!("/api/v1/operations?scheduler={s}"),
        None => "/api/v1/operations".to_string(),
    };
    let ops: Vec<Operation> = client.get(&path).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&ops)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = ops
        .iter()
        .map(|o| {
            vec![
                o.id.clone(),
                o.scheduler.clone(),
                o.kind.as_str().to_string(),
                o.status.as_str().to_string(),
                o.events
                    .last()
                    .map(|e| e.message.clone())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["OPERATION", "SCHEDULER", "KIND", "STATUS", "LAST EVENT"],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

/// A plain aligned table.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}
