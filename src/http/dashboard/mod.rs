//! The dashboard: a single-page app (plain HTML, CSS and JavaScript, no build step) compiled
//! into the binary. `/`, `/schedulers/{name}` and `/plan` all serve the page, which reads the
//! management API and follows `/api/v1/events`; its files are under `/assets/`.
//!
//! Must always hold: the page needs nothing from outside this server (no CDN, no web fonts), so
//! it works offline; asset URLs carry a digest of the assets, so a cached copy is never stale and
//! the assets can be cached for long.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::ApiError;

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE_CSS: &str = include_str!("style.css");

/// The placeholder in `index.html` replaced by the assets' digest.
const VERSION_PLACEHOLDER: &str = "{{ASSETS}}";
/// Hex digits of the digest in asset URLs.
const VERSION_LEN: usize = 12;
/// Assets are addressed by digest: a year is as good as forever.
const ASSET_CACHE: &str = "public, max-age=31536000, immutable";
/// The page itself is revalidated every time, so a new binary's page shows at once.
const PAGE_CACHE: &str = "no-cache";

/// (name, content type, contents) of every asset.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", "text/javascript; charset=utf-8", APP_JS),
    ("style.css", "text/css; charset=utf-8", STYLE_CSS),
];

static PAGE: LazyLock<String> = LazyLock::new(|| {
    let mut digest = Sha256::new();
    for (name, _, body) in ASSETS {
        digest.update(name.as_bytes());
        digest.update(body.as_bytes());
    }
    let version = hex::encode(digest.finalize());
    INDEX_HTML.replace(VERSION_PLACEHOLDER, &version[..VERSION_LEN])
});

pub fn router() -> Router {
    Router::new()
        .route("/", get(page))
        .route("/schedulers/{name}", get(page))
        .route("/plan", get(page))
        .route("/assets/{file}", get(asset))
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, PAGE_CACHE),
        ],
        PAGE.as_str(),
    )
        .into_response()
}

async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .ok_or_else(|| ApiError::not_found(format!("no asset {file}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, *content_type),
            (header::CACHE_CONTROL, ASSET_CACHE),
        ],
        *body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_links_every_asset_by_digest_and_nothing_outside() {
        assert!(!PAGE.contains(VERSION_PLACEHOLDER));
        for (name, _, _) in ASSETS {
            assert!(
                PAGE.contains(&format!("/assets/{name}?v=")),
                "{name} is linked"
            );
        }
        for (_, _, body) in ASSETS.iter().chain([&("index.html", "", INDEX_HTML)]) {
            assert!(
                !body.contains("http://") && !body.contains("https://"),
                "no external URL: the page works offline"
            );
        }
    }
}
