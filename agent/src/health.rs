//! The agent's small local HTTP server: `GET /_hawser/health` and
//! `GET /_hawser/info`, for container health checks and operators.
//!
//! It owns its listener and connections (bounded in number, with a header
//! timeout) and answers from the shared state plus one quick Docker ping.
//! It never exposes the token and never relays anything to Docker.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::Shared;

/// Concurrent health connections; more wait in the accept backlog.
const MAX_CONNECTIONS: usize = 32;
/// How long Docker may take to answer the health ping.
const DOCKER_PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Serves until `shutdown`.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(err) => {
                    tracing::warn!(%err, "health server accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        shared.tracker.clone().spawn(async move {
            let _permit = permit;
            let svc = service_fn(|req| answer(shared.clone(), req));
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                r = conn => if let Err(err) = r {
                    tracing::debug!(%err, %peer, "health connection ended with an error");
                },
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

async fn answer(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    let known = matches!(path, "/_hawser/health" | "/_hawser/info");
    if !known {
        return Ok(json_response(
            StatusCode::NOT_FOUND,
            json!({"error": "not found: use /_hawser/health or /_hawser/info"}),
        ));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": "use GET"}),
        ));
    }
    let connected = shared.stats.connected.load(Ordering::Relaxed);
    if path == "/_hawser/info" {
        let info = json!({
            "agentId": shared.config.agent_id,
            "agentName": shared.config.agent_name,
            "hostname": shared.config.hostname,
            "version": crate::VERSION,
            "protocol": mooring_protocol::limits::PROTOCOL_VERSION,
            "dockerVersion": shared.docker_version(),
            "apiVersion": shared.docker.api_version(),
            "mode": "edge",
            "connected": connected,
            "capabilities": shared.capabilities(),
        });
        return Ok(json_response(StatusCode::OK, info));
    }
    let docker = tokio::time::timeout(DOCKER_PING_TIMEOUT, shared.docker.ping()).await;
    let problem = match docker {
        Ok(Ok(_)) => None,
        Ok(Err(err)) => Some(err.to_string()),
        Err(_) => Some(format!(
            "Docker did not answer /_ping within {DOCKER_PING_TIMEOUT:?}"
        )),
    };
    Ok(match problem {
        None => json_response(
            StatusCode::OK,
            json!({"status": "healthy", "mode": "edge", "connected": connected}),
        ),
        Some(error) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unhealthy", "mode": "edge", "connected": connected, "error": error}),
        ),
    })
}
