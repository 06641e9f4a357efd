//! `POST /hooks/git`: push webhooks from GitHub and GitLab make the source watcher fetch now,
//! instead of at its next poll.
//!
//! Must always hold: nothing is triggered before the delivery is authenticated (GitHub: HMAC-SHA256
//! of the raw body with the webhook secret, `X-Hub-Signature-256`; GitLab: `X-Gitlab-Token` equal
//! to the secret), both compared in constant time; an unauthenticated body is not even parsed;
//! the secret and the signature never appear in a log line or an answer. With no secret
//! configured the route answers 404 `webhooks_disabled`: an unauthenticated trigger would let
//! anyone make Troupe hammer the git host. Every delivery is counted in
//! `troupe_webhooks_total{provider,outcome}`.
//!
//! Answers: 200 for a ping; 202 `{"triggered": true}` for a push to the followed branch (or when
//! the branch is not known yet); 202 `{"triggered": false, "reason"}` for anything else that is
//! authentic; 401 for a missing or wrong signature or token; 400 for a malformed body or an
//! unknown provider; 413 for a body over [`MAX_HOOK_BODY_BYTES`].

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};

/// Largest webhook body: push payloads list commits and their files, far beyond the 64 KiB the
/// rest of the API accepts (GitHub caps deliveries at 25 MB, but the followed branch needs only
/// `ref`; a push big enough to exceed this is still noticed by the next poll).
pub const MAX_HOOK_BODY_BYTES: usize = 1024 * 1024;

const GITHUB_EVENT: &str = "x-github-event";
const GITHUB_SIGNATURE: &str = "x-hub-signature-256";
const GITHUB_DELIVERY: &str = "x-github-delivery";
const GITLAB_EVENT: &str = "x-gitlab-event";
const GITLAB_TOKEN: &str = "x-gitlab-token";
const GITLAB_DELIVERY: &str = "x-gitlab-event-uuid";

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/hooks/git", post(git_hook))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_HOOK_BODY_BYTES))
        .with_state(state)
}

/// Who sent the delivery, by its event header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    GitHub,
    GitLab,
}

impl Provider {
    fn label(provider: Option<Provider>) -> &'static str {
        match provider {
            Some(Provider::GitHub) => "github",
            Some(Provider::GitLab) => "gitlab",
            None => "unknown",
        }
    }
}

/// What to do with an authentic delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The provider checks the hook is reachable.
    Ping,
    /// A push to the followed branch: fetch now.
    Trigger,
    /// Authentic but not news for this source.
    Ignore(String),
}

/// Why a delivery is refused.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// No webhook secret is configured, so no delivery can be authenticated.
    #[error(
        "webhooks are off: start troupe serve with --webhook-secret-file (or TROUPE_WEBHOOK_SECRET)"
    )]
    Disabled,
    /// Neither `X-GitHub-Event` nor `X-Gitlab-Event` is present.
    #[error("unknown webhook provider: expected an X-GitHub-Event or X-Gitlab-Event header")]
    UnknownProvider,
    /// The signature or token is missing or wrong.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The body is not the JSON the event promises.
    #[error("malformed {event} payload: {reason}")]
    Malformed { event: String, reason: String },
}

impl HookError {
    fn outcome(&self) -> &'static str {
        match self {
            HookError::Disabled => "disabled",
            HookError::UnknownProvider | HookError::Malformed { .. } => "malformed",
            HookError::Unauthorized(_) => "unauthorized",
        }
    }

    fn into_api(self) -> ApiError {
        let (status, code) = match &self {
            HookError::Disabled => (StatusCode::NOT_FOUND, "webhooks_disabled"),
            HookError::UnknownProvider => (StatusCode::BAD_REQUEST, "unknown_provider"),
            HookError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            HookError::Malformed { .. } => (StatusCode::BAD_REQUEST, "malformed_body"),
        };
        ApiError::new(status, code, self.to_string())
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The provider and its event name, from the headers.
pub fn provider_of(headers: &HeaderMap) -> Option<(Provider, String)> {
    if let Some(event) = header(headers, GITHUB_EVENT) {
        return Some((Provider::GitHub, event.to_string()));
    }
    header(headers, GITLAB_EVENT).map(|event| (Provider::GitLab, event.to_string()))
}

/// Check the delivery is from someone who knows `secret`, in constant time.
pub fn authenticate(
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
    secret: &[u8],
) -> Result<(), HookError> {
    match provider {
        Provider::GitHub => {
            let signature = header(headers, GITHUB_SIGNATURE).ok_or(HookError::Unauthorized(
                "missing X-Hub-Signature-256 header",
            ))?;
            let hex_digest = signature
                .strip_prefix("sha256=")
                .ok_or(HookError::Unauthorized(
                    "X-Hub-Signature-256 must be sha256=<hex>",
                ))?;
            let digest = hex::decode(hex_digest)
                .map_err(|_| HookError::Unauthorized("X-Hub-Signature-256 must be sha256=<hex>"))?;
            let mut mac =
                Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
            mac.update(body);
            mac.verify_slice(&digest)
                .map_err(|_| HookError::Unauthorized("signature does not match the body"))
        }
        Provider::GitLab => {
            let token = header(headers, GITLAB_TOKEN)
                .ok_or(HookError::Unauthorized("missing X-Gitlab-Token header"))?;
            if bool::from(token.as_bytes().ct_eq(secret)) {
                Ok(())
            } else {
                Err(HookError::Unauthorized("X-Gitlab-Token does not match"))
            }
        }
    }
}

/// The one field of a push payload Troupe needs (GitHub and GitLab agree on it).
#[derive(Debug, Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    reference: String,
}

/// What an authentic delivery means for a source following `watched` (`None`: not known yet,
/// or a source without branches, where any push may be news).
pub fn decide(
    provider: Provider,
    event: &str,
    body: &[u8],
    watched: Option<&str>,
) -> Result<Verdict, HookError> {
    let is_push = match provider {
        Provider::GitHub if event == "ping" => return Ok(Verdict::Ping),
        Provider::GitHub => event == "push",
        Provider::GitLab => event == "Push Hook",
    };
    if !is_push {
        return Ok(Verdict::Ignore(format!("event {event:?} is not a push")));
    }
    let push: Push = serde_json::from_slice(body).map_err(|e| HookError::Malformed {
        event: event.to_string(),
        reason: e.to_string(),
    })?;
    let Some(branch) = push.reference.strip_prefix("refs/heads/") else {
        return Ok(Verdict::Ignore(format!(
            "{} is not a branch",
            push.reference
        )));
    };
    match watched {
        Some(w) if w != branch => Ok(Verdict::Ignore(format!(
            "push to branch {branch:?}; the source follows {w:?}"
        ))),
        _ => Ok(Verdict::Trigger),
    }
}

async fn git_hook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let provider = provider_of(&headers);
    let result = handle(&state, &headers, provider.as_ref(), body);
    let label = Provider::label(provider.as_ref().map(|p| p.0));
    let event = provider.as_ref().map_or("", |p| p.1.as_str());
    let delivery = header(&headers, GITHUB_DELIVERY)
        .or_else(|| header(&headers, GITLAB_DELIVERY))
        .unwrap_or("");
    let outcome = match &result {
        Ok(Verdict::Ping) => "ping",
        Ok(Verdict::Trigger) => "triggered",
        Ok(Verdict::Ignore(_)) => "ignored",
        Err(Refusal::Hook(e)) => e.outcome(),
        Err(Refusal::Body(_)) => "malformed",
    };
    state
        .controller
        .metrics
        .webhooks
        .with_label_values(&[label, outcome])
        .inc();
    match result {
        Ok(Verdict::Ping) => {
            tracing::info!(provider = label, event, delivery, "webhook ping");
            (StatusCode::OK, Json(json!({"ok": true}))).into_response()
        }
        Ok(Verdict::Trigger) => {
            tracing::info!(
                provider = label,
                event,
                delivery,
                "webhook push: checking the source now"
            );
            (StatusCode::ACCEPTED, Json(json!({"triggered": true}))).into_response()
        }
        Ok(Verdict::Ignore(reason)) => {
            tracing::info!(provider = label, event, delivery, %reason, "webhook ignored");
            (
                StatusCode::ACCEPTED,
                Json(json!({"triggered": false, "reason": reason})),
            )
                .into_response()
        }
        Err(Refusal::Hook(e)) => {
            tracing::warn!(provider = label, event, delivery, error = %e, "webhook refused");
            e.into_api().into_response()
        }
        Err(Refusal::Body(rejection)) => {
            tracing::warn!(provider = label, event, delivery, error = %rejection.body_text(), "webhook body refused");
            let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "body_too_large"
            } else {
                "malformed_body"
            };
            ApiError::new(rejection.status(), code, rejection.body_text()).into_response()
        }
    }
}

enum Refusal {
    Hook(HookError),
    Body(BytesRejection),
}

fn handle(
    state: &AppState,
    headers: &HeaderMap,
    provider: Option<&(Provider, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Verdict, Refusal> {
    let secret = state
        .webhook_secret
        .as_deref()
        .ok_or(Refusal::Hook(HookError::Disabled))?;
    let (provider, event) = provider.ok_or(Refusal::Hook(HookError::UnknownProvider))?;
    let body = body.map_err(Refusal::Body)?;
    authenticate(*provider, headers, &body, secret).map_err(Refusal::Hook)?;
    let watched = state.source.as_ref().and_then(|s| s.status().branch);
    let verdict = decide(*provider, event, &body, watched.as_deref()).map_err(Refusal::Hook)?;
    if verdict != Verdict::Trigger {
        return Ok(verdict);
    }
    match &state.source {
        Some(source) => {
            source.trigger();
            Ok(Verdict::Trigger)
        }
        None => Ok(Verdict::Ignore("this server watches no source".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn github_signature_is_checked_against_the_raw_body() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = headers(&[(GITHUB_SIGNATURE, &sign(b"s3cret", body))]);
        assert!(authenticate(Provider::GitHub, &good, body, b"s3cret").is_ok());
        assert!(authenticate(Provider::GitHub, &good, b"{}", b"s3cret").is_err());
        assert!(authenticate(Provider::GitHub, &good, body, b"other").is_err());
        for bad in ["", "sha1=00", "sha256=zz", "sha256=00"] {
            let h = headers(&[(GITHUB_SIGNATURE, bad)]);
            assert!(
                matches!(
                    authenticate(Provider::GitHub, &h, body, b"s3cret"),
                    Err(HookError::Unauthorized(_))
                ),
                "{bad:?}"
            );
        }
        assert!(authenticate(Provider::GitHub, &HeaderMap::new(), body, b"s3cret").is_err());
    }

    #[test]
    fn gitlab_token_must_equal_the_secret() {
        let good = headers(&[(GITLAB_TOKEN, "s3cret")]);
        assert!(authenticate(Provider::GitLab, &good, b"", b"s3cret").is_ok());
        let bad = headers(&[(GITLAB_TOKEN, "s3cre")]);
        assert!(authenticate(Provider::GitLab, &bad, b"", b"s3cret").is_err());
        assert!(authenticate(Provider::GitLab, &HeaderMap::new(), b"", b"s3cret").is_err());
    }

    #[test]
    fn only_pushes_to_the_followed_branch_trigger() {
        let push = |r: &str| format!(r#"{{"ref":"{r}","commits":[]}}"#).into_bytes();
        let main = push("refs/heads/main");
        assert_eq!(
            decide(Provider::GitHub, "push", &main, Some("main")).unwrap(),
            Verdict::Trigger
        );
        assert_eq!(
            decide(Provider::GitLab, "Push Hook", &main, Some("main")).unwrap(),
            Verdict::Trigger
        );
        assert_eq!(
            decide(Provider::GitHub, "push", &main, None).unwrap(),
            Verdict::Trigger,
            "branch not known yet: check"
        );
        assert!(matches!(
            decide(Provider::GitHub, "push", &push("refs/heads/dev"), Some("main")).unwrap(),
            Verdict::Ignore(r) if r.contains("dev")
        ));
        assert!(matches!(
            decide(
                Provider::GitHub,
                "push",
                &push("refs/tags/v1"),
                Some("main")
            )
            .unwrap(),
            Verdict::Ignore(_)
        ));
        assert_eq!(
            decide(Provider::GitHub, "ping", b"{}", Some("main")).unwrap(),
            Verdict::Ping
        );
        assert!(matches!(
            decide(Provider::GitHub, "issues", b"{}", Some("main")).unwrap(),
            Verdict::Ignore(_)
        ));
        assert!(matches!(
            decide(Provider::GitHub, "push", b"{not json", Some("main")),
            Err(HookError::Malformed { .. })
        ));
        assert!(matches!(
            decide(Provider::GitLab, "Push Hook", b"{}", Some("main")),
            Err(HookError::Malformed { .. })
        ));
    }
}
