//! The web dashboard: its static assets, the agent install script, and the
//! dashboard login (`/api/session`).
//!
//! The assets (`hub/ui/`) are compiled in with `include_str!`, served with
//! their content type, `Cache-Control: no-cache` plus an `ETag` (a reload
//! revalidates and gets `304` when unchanged), and a Content-Security-Policy
//! that allows only this hub's own scripts, styles and connections
//! (`default-src 'self'; img-src 'self' data:`), no framing and no foreign
//! form targets.
//!
//! Login trades an API key for a session cookie ([`crate::sessions`]); the
//! key itself is never stored in the browser or in the cookie.
//!
//! This module never serves a file from disk and never logs a key.

use std::sync::OnceLock;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::api::{ApiError, JsonBody};
use crate::auth::verify_api_key;
use crate::install::ServedOverTls;
use crate::metrics::AuthKind;
use crate::sessions;
use crate::state::AppState;

/// The dashboard's Content-Security-Policy.
pub const CSP: &str =
    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: OnceLock<String>,
}

impl Asset {
    const fn new(body: &'static str, content_type: &'static str) -> Asset {
        Asset {
            body,
            content_type,
            etag: OnceLock::new(),
        }
    }

    fn etag(&self) -> &str {
        self.etag.get_or_init(|| {
            let d = Sha256::digest(self.body.as_bytes());
            let hex: String = d[..12].iter().map(|b| format!("{b:02x}")).collect();
            format!("\"{hex}\"")
        })
    }
}

static INDEX: Asset = Asset::new(include_str!("../ui/index.html"), "text/html; charset=utf-8");
static APP_JS: Asset = Asset::new(
    include_str!("../ui/app.js"),
    "text/javascript; charset=utf-8",
);
static APP_CSS: Asset = Asset::new(include_str!("../ui/app.css"), "text/css; charset=utf-8");

/// Dashboard, install script and session routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|h: HeaderMap| async move { serve(&INDEX, &h) }))
        .route(
            "/index.html",
            get(|h: HeaderMap| async move { serve(&INDEX, &h) }),
        )
        .route(
            "/app.js",
            get(|h: HeaderMap| async move { serve(&APP_JS, &h) }),
        )
        .route(
            "/app.css",
            get(|h: HeaderMap| async move { serve(&APP_CSS, &h) }),
        )
        .route("/install.sh", get(install_sh))
        .route("/api/session", post(login).delete(logout))
}

fn security_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn serve(asset: &'static Asset, headers: &HeaderMap) -> Response {
    let etag = asset.etag();
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = asset.body.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        r
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    security_headers(&mut resp);
    resp
}

fn is_tls(req_ext: &axum::http::Extensions, headers: &HeaderMap) -> bool {
    req_ext.get::<ServedOverTls>().is_some()
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

async fn install_sh(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let tls = is_tls(req.extensions(), req.headers());
    let base =
        crate::install::public_url(state.settings.public_url.as_deref(), req.headers(), tls)?;
    let mut resp = crate::install::install_script(&base).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/x-shellscript; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    key: String,
}

fn cookie_response(cookie: String) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn login(
    State(state): State<AppState>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Response, ApiError> {
    if state.settings.no_auth {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let key = body.key.trim();
    if key.is_empty() || key.len() > 256 {
        state.metrics.auth_failed(AuthKind::ApiKey);
        return Err(ApiError::unauthorized("Invalid or revoked API key"));
    }
    let Some(record) = verify_api_key(&state, key).await? else {
        state.metrics.auth_failed(AuthKind::ApiKey);
        return Err(ApiError::unauthorized("Invalid or revoked API key"));
    };
    let id = state.sessions.create(record.id);
    state
        .audit(
            &format!("apikey:{} ({})", record.id, record.name),
            "session.login",
            None,
            None,
        )
        .await;
    Ok(cookie_response(sessions::set_cookie(
        &id,
        is_tls(&ext, &headers),
    )))
}

async fn logout(
    State(state): State<AppState>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
) -> Response {
    if let Some(id) = sessions::cookie_value(&headers) {
        state.sessions.remove(id);
    }
    cookie_response(sessions::clear_cookie(is_tls(&ext, &headers)))
}
