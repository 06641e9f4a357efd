//! The dashboard in a real browser: `troupe serve` on a copy of fleets-example with real room
//! processes, headless Chromium driven through WebDriver (chromedriver, the `fantoccini` crate).
//! The numbers on the pages must match the management API, the Cancel button must cancel a
//! running rollout (with the API token entered on the page), and a rejected revision must show
//! its located errors. Screenshots of each page are saved under
//! `$CARGO_TARGET_DIR/dashboard-screenshots/` for a person to look at.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`tests/run` installs them when missing).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use troupe::domain::operation::{OpKind, OpStatus, Operation};
use troupe::domain::plan::{Action, Plan};
use troupe::domain::room::RoomStatus;
use troupe::http::api::SchedulerSummary;
use troupe::state::history::RevisionRecord;

use common::*;

const T: Duration = Duration::from_secs(60);
const API_TOKEN: &str = "dashboard-test-token";
/// Rooms of the edited arena-eu take this long to report ready: the rollout stays running while
/// the test clicks Cancel.
const SLOW_START: &str = "50s";

/// A chromedriver process, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

async fn start_driver() -> Driver {
    let chromedriver = which("chromedriver").expect(
        "chromedriver is not installed: apt-get install chromium chromium-driver (tests/run does)",
    );
    let port = free_port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    wait_for("chromedriver to listen", T, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    driver
}

async fn browser(driver: &Driver, profile: &Path) -> Client {
    let chromium = which("chromium").expect("chromium is not installed");
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session")
}

/// Copy fleets-example to `dir`, moving its port ranges away from the defaults a person's own
/// `troupe serve fleets-example` would use on this machine. Returns how many fleets it copied.
fn copy_fleets(dir: &Path) -> usize {
    let mut copied = 0;
    std::fs::create_dir_all(dir).unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("fleets-example");
    for entry in std::fs::read_dir(example).unwrap().flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().ends_with(".yaml") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path())
            .unwrap()
            .replace("start: 40", "start: 45")
            .replace("end: 40", "end: 45")
            .replace("start: 41", "start: 46")
            .replace("end: 41", "end: 46")
            .replace("start: 42", "start: 47")
            .replace("end: 42", "end: 47");
        std::fs::write(dir.join(name), text).unwrap();
        copied += 1;
    }
    copied
}

fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Tallest screenshot taken, in CSS pixels.
const MAX_SHOT_HEIGHT: u64 = 4000;

/// Save the whole page (not just the window) as `name.png`.
async fn screenshot(client: &Client, name: &str) {
    // Let the last refresh paint; the toast of the last click would hide part of the page.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let height = client
        .execute(
            "document.getElementById('toast').hidden = true; window.scrollTo(0, 0);
             return document.documentElement.scrollHeight;",
            vec![],
        )
        .await
        .ok()
        .and_then(|h| h.as_u64())
        .unwrap_or(1000);
    client
        .set_window_size(1400, height.min(MAX_SHOT_HEIGHT) as u32 + 100)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let png = client.screenshot().await.expect("a screenshot");
    client.set_window_size(1400, 1000).await.unwrap();
    let path = screenshots_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

/// Run `script` in the page until it returns what `api` returns now, or panic after `T`.
async fn page_matches_api<F, Fut>(client: &Client, what: &str, script: &str, mut api: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let mut last = (Value::Null, Value::Null);
    let start = std::time::Instant::now();
    while start.elapsed() < T {
        let want = api().await;
        let got = client.execute(script, vec![]).await.unwrap_or(Value::Null);
        if got == want {
            return;
        }
        last = (got, want);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!(
        "{what}: the page shows {} but the API says {}",
        last.0, last.1
    );
}

async fn wait_element(client: &Client, css: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(T)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} did not show up: {e}"))
}

/// Click the element `css` selects. The page re-renders on every change it hears of, so an
/// element found a moment ago may be gone: find it again until the click lands.
async fn click(client: &Client, css: &str) {
    wait_for(&format!("a click on {css}"), T, || async {
        let element = client.find(Locator::Css(css)).await.ok()?;
        element.click().await.ok()
    })
    .await;
}

async fn text_of(client: &Client, css: &str) -> String {
    match client.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn wait_text(client: &Client, css: &str, want: &str) {
    wait_for(&format!("{css} to read {want:?}"), T, || async {
        text_of(client, css).await.contains(want).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_what_the_api_says_and_cancels_an_operation() {
    let tmp = tempfile::tempdir().unwrap();
    let fleets = tmp.path().join("fleets");
    let fleet_count = copy_fleets(&fleets);
    let token_file = tmp.path().join("api-token");
    std::fs::write(&token_file, API_TOKEN).unwrap();
    let server = Server::start(
        &fleets,
        &tmp.path().join("state"),
        &[
            "--api-token-file",
            token_file.to_str().unwrap(),
            "--local-config-dir",
            concat!(env!("CARGO_MANIFEST_DIR"), "/fleets-example/local-config"),
        ],
    );
    wait_for("every scheduler created", T, || async {
        let ops: Vec<Operation> = server.get_as("/api/v1/operations").await;
        (ops.len() == fleet_count && ops.iter().all(|o| o.status == OpStatus::Succeeded))
            .then_some(())
    })
    .await;

    let driver = start_driver().await;
    let client = browser(&driver, &tmp.path().join("chromium")).await;
    // Close the browser even when a check fails, then report the failure.
    let result = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(drive(
        &client, &server, &fleets,
    )))
    .await;
    let _ = client.close().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

async fn drive(client: &Client, server: &Server, fleets: &Path) {
    // ---- overview: rooms per scheduler and operations match the API ----
    client.goto(&server.url).await.unwrap();
    wait_element(client, r#"tr[data-scheduler="racer-us"]"#).await;
    page_matches_api(
        client,
        "rooms and ready rooms per scheduler",
        r#"const out = {};
           for (const tr of document.querySelectorAll('#schedulers tr[data-scheduler]')) {
             const ready = tr.querySelector('.n-ready');
             out[tr.dataset.scheduler] = [Number(tr.querySelector('.total').textContent),
                                          ready ? Number(ready.textContent) : 0];
           }
           return out;"#,
        || async {
            let mut out = serde_json::Map::new();
            let schedulers: Vec<SchedulerSummary> = server.get_as("/api/v1/schedulers").await;
            for s in schedulers {
                let ready = s.rooms.get(&RoomStatus::Ready).copied().unwrap_or(0);
                out.insert(s.name, json!([s.total_rooms, ready]));
            }
            Value::Object(out)
        },
    )
    .await;
    page_matches_api(
        client,
        "schedulers and rooms in the totals",
        r#"return [Number(document.querySelector('#stat-schedulers').textContent),
                   Number(document.querySelector('#stat-rooms').textContent)];"#,
        || async {
            let s: Vec<SchedulerSummary> = server.get_as("/api/v1/schedulers").await;
            let rooms: u32 = s.iter().map(|x| x.total_rooms).sum();
            json!([s.len(), rooms])
        },
    )
    .await;
    page_matches_api(
        client,
        "operations listed",
        "return document.querySelectorAll('#ov-ops tr[data-op]').length;",
        || async {
            let ops: Vec<Operation> = server.get_as("/api/v1/operations?limit=20").await;
            json!(ops.len())
        },
    )
    .await;
    // The page fills each row's sync state as the plan arrives: wait for it, do not read once.
    wait_text(client, r#"tr[data-scheduler="arena-eu"] .sync"#, "in sync").await;
    screenshot(client, "overview").await;

    // ---- a rollout whose new rooms are slow to start, canceled from the scheduler page ----
    let path = fleets.join("arena-eu.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    let slow = yaml.replace(
        r#"command: ["troupe", "demo-room"]"#,
        &format!(r#"command: ["troupe", "demo-room", "--startup-delay", "{SLOW_START}"]"#),
    );
    assert_ne!(
        yaml, slow,
        "the example's local command changed; update this test"
    );
    std::fs::write(&path, slow).unwrap();
    let rollout = wait_for("a running rollout of arena-eu", T, || async {
        server
            .ops("arena-eu")
            .await
            .into_iter()
            .find(|o| o.kind == OpKind::Rollout && o.status == OpStatus::Running)
    })
    .await;
    let id = rollout.id;

    click(client, r#"tr[data-scheduler="arena-eu"] a"#).await;
    let cancel = format!(r#"button[data-cancel="{id}"]"#);
    wait_element(client, &cancel).await;
    page_matches_api(
        client,
        "rooms of arena-eu",
        "return Number(document.querySelector('#rooms-total').textContent);",
        || async { json!(server.rooms("arena-eu").await.len()) },
    )
    .await;
    page_matches_api(
        client,
        "operations of arena-eu",
        "return document.querySelectorAll('#sc-ops tr[data-op]').length;",
        || async { json!(server.ops("arena-eu").await.len()) },
    )
    .await;

    // Without the token the server refuses, and the page says what to do.
    click(client, &cancel).await;
    wait_text(client, "#toast", "API token").await;
    let op: Operation = server.get_as(&format!("/api/v1/operations/{id}")).await;
    assert_eq!(
        op.status,
        OpStatus::Running,
        "refused without the token: {op:#?}"
    );

    let token = client.find(Locator::Id("token")).await.unwrap();
    token.send_keys(API_TOKEN).await.unwrap();
    click(client, "#token-save").await;
    let stored = client
        .execute("return sessionStorage.getItem('troupe.apiToken');", vec![])
        .await
        .unwrap();
    assert_eq!(stored, json!(API_TOKEN));
    click(client, &cancel).await;
    wait_for("the API to say the rollout was canceled", T, || async {
        let op: Operation = server.get_as(&format!("/api/v1/operations/{id}")).await;
        (op.status == OpStatus::Canceled).then_some(())
    })
    .await;
    // The page follows by itself (server-sent events), without a reload.
    wait_text(
        client,
        &format!(r#"tr[data-op="{id}"] .status"#),
        "canceled",
    )
    .await;
    let url = client.current_url().await.unwrap();
    assert!(
        !url.as_str().contains(API_TOKEN),
        "the token never goes into the URL"
    );
    wait_element(client, "#sc-plan > *").await;
    screenshot(client, "scheduler").await;

    // ---- a change held back by a suspension: pending in the plan, with its diff ----
    client
        .goto(&format!("{}/schedulers/arena-party", server.url))
        .await
        .unwrap();
    click(client, r#"button[data-suspend="arena-party"]"#).await;
    wait_element(client, r#"button[data-resume="arena-party"]"#).await;
    let path = fleets.join("arena-party.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    let more = yaml.replace("roomsReplicas: 3", "roomsReplicas: 4");
    assert_ne!(
        yaml, more,
        "the example's replicas changed; update this test"
    );
    std::fs::write(&path, more).unwrap();
    wait_for("a scale of arena-party in the plan", T, || async {
        let plan: Plan = server.plan().await?;
        plan.changes
            .iter()
            .any(|c| c.scheduler == "arena-party" && c.action == Action::Scale)
            .then_some(())
    })
    .await;
    wait_text(client, "#sc-sync", "suspended").await;
    wait_element(client, "#sc-plan .diff .add").await;

    // ---- a rejected revision: its errors, located, on the plan page ----
    std::fs::write(
        fleets.join("broken.yaml"),
        "name: broken\ngame: arena\nroomsReplicas: four\nportRange: {start: 47000, end: 46000}\n",
    )
    .unwrap();
    let errors = wait_for("the revision to be rejected", T, || async {
        let rev = server.revision().await;
        rev.desired.error.map(|e| e.errors.len()).filter(|n| *n > 0)
    })
    .await;
    click(client, r#"a[data-nav="plan"]"#).await;
    wait_element(client, "#revision-error .located li").await;
    page_matches_api(
        client,
        "located errors",
        "return document.querySelectorAll('#revision-error .located li').length;",
        || async { json!(errors) },
    )
    .await;
    let first = text_of(client, "#revision-error .located li").await;
    assert!(
        first.starts_with("broken.yaml:"),
        "file:line:column first: {first:?}"
    );
    page_matches_api(
        client,
        "revisions listed",
        "return document.querySelectorAll('#revisions tr[data-revision]').length;",
        || async {
            let revisions: Vec<RevisionRecord> = server.get_as("/api/v1/revisions").await;
            json!(revisions.len())
        },
    )
    .await;
    wait_element(client, r#"[data-change="arena-party"] .diff .del"#).await;
    wait_element(client, "#approve").await;
    screenshot(client, "plan").await;
}
