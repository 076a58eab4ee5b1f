//! `ANY /api/environments/{id}/docker/{path}`: the Docker Engine API of an
//! environment, relayed as is, so `curl` or any Docker API client reaches a
//! host behind NAT through the hub. Needs `docker:proxy` on that
//! environment.
//!
//! Answers that Docker streams (events, logs, pulls, pushes, builds,
//! exports, attach) are streamed chunk by chunk; the client may force
//! either mode with `X-Mooring-Stream: 1|0`. A client that goes away
//! cancels the Docker request. Paths with `..` are refused.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use mooring_protocol::Headers;

use super::ApiError;
use crate::auth::Auth;
use crate::envs::{DockerCall, DockerStream};
use crate::state::AppState;

/// Request headers relayed to Docker (everything else is dropped: the
/// hub's own `Authorization`, hop-by-hop headers, `Host`).
const RELAYED: &[&str] = &[
    "content-type",
    "x-registry-auth",
    "x-registry-config",
    "accept",
];

/// Passthrough route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/environments/{id}/docker/{*path}", any(relay))
}

/// Whether Docker streams the answer to `method path`.
pub fn is_streaming(method: &Method, path: &str) -> bool {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let (_, route) = mooring_protocol::docker::split_version(route);
    let q = |k: &str| {
        query.split('&').any(|kv| {
            kv == k
                || kv.starts_with(&format!("{k}="))
                    && !kv.ends_with("=0")
                    && !kv.ends_with("=false")
        })
    };
    let ends = |s: &str| route.ends_with(s);
    match *method {
        Method::GET => {
            route == "/events"
                || (ends("/logs") && q("follow"))
                || (ends("/stats")
                    && !query.contains("stream=0")
                    && !query.contains("stream=false"))
                || ends("/export")
                || ends("/get")
                || route == "/images/get"
        }
        Method::POST => {
            route == "/images/create"
                || ends("/push")
                || route == "/build"
                || ends("/attach")
                || route == "/images/load"
        }
        _ => false,
    }
}

fn docker_path(uri: &axum::http::Uri, env_id: i64) -> Result<String, ApiError> {
    let raw = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let prefix = format!("/api/environments/{env_id}/docker");
    let rest = raw
        .strip_prefix(&prefix)
        .ok_or_else(|| ApiError::bad_request("malformed passthrough path"))?;
    let path = if rest.starts_with('/') {
        rest.to_owned()
    } else {
        format!("/{rest}")
    };
    mooring_protocol::docker::validate_path(&path)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(path)
}

fn relayed_headers(headers: &HeaderMap) -> Headers {
    let mut out = Headers::new();
    for name in RELAYED {
        if let Some(v) = headers.get(*name).and_then(|v| v.to_str().ok()) {
            let canonical = match *name {
                "content-type" => "Content-Type",
                "x-registry-auth" => "X-Registry-Auth",
                "x-registry-config" => "X-Registry-Config",
                _ => "Accept",
            };
            out.insert(canonical.to_owned(), v.to_owned());
        }
    }
    out
}

/// Framing headers hyper sets itself (compared without case).
const NOT_COPIED: &[&str] = &["content-length", "transfer-encoding", "connection"];

fn copy_headers(src: &Headers, resp: &mut Response) {
    let headers = resp.headers_mut();
    headers.reserve(src.len());
    for (k, v) in src {
        if NOT_COPIED.iter().any(|h| k.eq_ignore_ascii_case(h)) {
            continue;
        }
        // `from_bytes` lower-cases the name itself (no copy of it first).
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.insert(name, value);
        }
    }
}

async fn relay(
    State(state): State<AppState>,
    auth: Auth,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let env_id: i64 = parts
        .uri
        .path()
        .strip_prefix("/api/environments/")
        .and_then(|r| r.split('/').next())
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| ApiError::bad_request("environment id must be an integer"))?;
    auth.require("docker:proxy", Some(env_id))?;
    let path = docker_path(&parts.uri, env_id)?;
    let client = state.env_client(env_id).await?;
    let limit = (state.settings.max_frame_bytes / 4 * 3).saturating_sub(64 * 1024);
    let body: Bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {limit} bytes (one agent frame)"),
        )
    })?;
    let streaming = match parts
        .headers
        .get("x-mooring-stream")
        .and_then(|v| v.to_str().ok())
    {
        Some("1") | Some("true") => true,
        Some("0") | Some("false") => false,
        _ => is_streaming(&parts.method, &path),
    };
    let call = DockerCall {
        method: parts.method.clone(),
        path: path.clone(),
        headers: relayed_headers(&parts.headers),
        body: (!body.is_empty()).then_some(body),
    };
    tracing::debug!(env_id, method = %call.method, %path, streaming, "docker passthrough");
    if !streaming {
        let answer = client.request(call).await?;
        let mut resp = Response::new(Body::from(answer.body));
        *resp.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
        copy_headers(&answer.headers, &mut resp);
        return Ok(resp);
    }
    let mut stream = client.stream(call).await?;
    if path.contains("/events") || path.contains("follow=") {
        stream.set_idle_timeout(None);
    }
    let status = stream
        .status()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let headers = stream.headers().clone();
    let mut resp = Response::new(Body::from_stream(chunks(stream)));
    *resp.status_mut() = status;
    copy_headers(&headers, &mut resp);
    if !resp.headers().contains_key("content-type") {
        let guess = if path.contains("/logs")
            || path.contains("/attach")
            || path.contains("/export")
            || path.contains("/get")
        {
            "application/octet-stream"
        } else {
            "application/json"
        };
        resp.headers_mut()
            .insert("content-type", HeaderValue::from_static(guess));
    }
    Ok(resp.into_response())
}

/// The stream's chunks as a body; a failure mid-stream ends the body with
/// an error (the client sees a truncated response), and dropping the body
/// drops the stream, which cancels the Docker request.
fn chunks(
    stream: DockerStream,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures_util::stream::unfold(Some(stream), |state| async move {
        let mut stream = state?;
        match stream.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(stream))),
            Ok(None) => None,
            Err(err) => {
                tracing::warn!(%err, "passthrough stream failed");
                Some((Err(std::io::Error::other(err.to_string())), None))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copied_headers_keep_values_and_skip_framing() {
        let mut src = Headers::new();
        src.insert("Api-Version".into(), "1.41".into());
        src.insert("Content-Type".into(), "application/json".into());
        src.insert("Content-Length".into(), "2".into());
        src.insert("Transfer-Encoding".into(), "chunked".into());
        src.insert("CONNECTION".into(), "close".into());
        src.insert("X-Docker-Odd".into(), "a b".into());
        src.insert("Bad Name".into(), "dropped".into());
        let mut resp = Response::new(Body::empty());
        copy_headers(&src, &mut resp);
        let h = resp.headers();
        assert_eq!(h.get("api-version").unwrap(), "1.41");
        assert_eq!(h.get("content-type").unwrap(), "application/json");
        assert_eq!(h.get("x-docker-odd").unwrap(), "a b");
        assert!(h.get("content-length").is_none());
        assert!(h.get("transfer-encoding").is_none());
        assert!(h.get("connection").is_none());
        assert_eq!(h.len(), 3, "{h:?}");
    }
}
