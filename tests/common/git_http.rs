//! A git host on loopback for tests: smart HTTP served by the real `git http-backend`, run as a
//! CGI program for each request, behind basic auth with a token (any user name, the token as
//! password, as GitHub and GitLab take tokens). It can be stopped and started again on the same
//! address, to play an unreachable remote.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::{HeaderMap, Request, Response, StatusCode};
use base64::Engine;
use tokio::io::AsyncWriteExt;

/// Largest request body the test server reads (fetch negotiation is small).
const MAX_REQUEST: usize = 64 * 1024 * 1024;

pub struct GitHttp {
    pub addr: SocketAddr,
    root: PathBuf,
    token: String,
    /// Requests answered (any status).
    pub requests: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl GitHttp {
    /// Serve the bare repositories under `root` on a free loopback port.
    pub async fn start(root: &Path, token: &str) -> Self {
        let mut server = Self {
            addr: "127.0.0.1:0".parse().unwrap(),
            root: root.to_path_buf(),
            token: token.to_string(),
            requests: Arc::new(AtomicUsize::new(0)),
            stop: None,
            task: None,
        };
        server.resume().await;
        server
    }

    /// `http://ADDR/NAME` (no credentials: those go in files).
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr)
    }

    /// Stop listening: connections are refused until [`GitHttp::resume`].
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Listen again, on the same address once one was chosen.
    pub async fn resume(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let root = self.root.clone();
        let token = self.token.clone();
        let requests = Arc::clone(&self.requests);
        let app = axum::Router::new().fallback(move |req: Request<Body>| {
            let root = root.clone();
            let token = token.clone();
            let requests = Arc::clone(&requests);
            async move {
                requests.fetch_add(1, Ordering::SeqCst);
                cgi(&root, &token, req).await
            }
        });
        self.task = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        }));
        self.stop = Some(stop);
    }
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(encoded) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    String::from_utf8_lossy(&decoded)
        .split_once(':')
        .is_some_and(|(_, password)| password == token)
}

async fn cgi(root: &Path, token: &str, req: Request<Body>) -> Response<Body> {
    if !authorized(req.headers(), token) {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("WWW-Authenticate", "Basic realm=\"git\"")
            .body(Body::from("token required\n"))
            .unwrap();
    }
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_REQUEST).await.unwrap();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", "test")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("git http-backend starts");
    let mut stdin = child.stdin.take().unwrap();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let out = child.wait_with_output().await.unwrap();
    let _ = writer.await;
    parse_cgi(&out.stdout)
}

/// A CGI answer: header lines (`Status:` sets the status), a blank line, the body.
fn parse_cgi(raw: &[u8]) -> Response<Body> {
    let (head, body) = match find(raw, b"\r\n\r\n") {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None => match find(raw, b"\n\n") {
            Some(i) => (&raw[..i], &raw[i + 2..]),
            None => (raw, &[][..]),
        },
    };
    let mut response = Response::builder().status(StatusCode::OK);
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(500);
            response = response.status(code);
        } else {
            response = response.header(name.trim(), value);
        }
    }
    response.body(Body::from(body.to_vec())).unwrap()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A bare repository `NAME` under `root` whose `main` holds `files`, pushed from a work tree
/// that later commits can be pushed from with [`push`].
pub fn bare_with(root: &Path, name: &str, work: &super::Repo) -> PathBuf {
    let bare = root.join(name);
    super::git(
        root,
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    push(work, &bare);
    bare
}

/// Push the work tree's `main` to `bare`.
pub fn push(work: &super::Repo, bare: &Path) {
    super::git(
        work.path(),
        &["push", "-q", bare.to_str().unwrap(), "HEAD:refs/heads/main"],
    );
}
