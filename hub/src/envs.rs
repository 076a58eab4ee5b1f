//! One client interface for every environment, local or edge.
//!
//! The rest of the hub (push jobs, passthrough, status probes) talks to a
//! Docker Engine only through [`EnvClient`]: `request` for one whole answer,
//! `stream` for a chunked one. A `local` environment is the hub host's own
//! socket; an `edge` environment is a live agent link. Timeouts are idle
//! timeouts that reset on every chunk. Dropping a [`DockerStream`] cancels
//! the Docker request (for edge: a `stream_end` "cancelled" to the agent).
//!
//! This module never parses what Docker says: callers do.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use mooring_docker::{DockerClient, DockerRequest};
use mooring_protocol::Headers;

use crate::link::calls::EdgeStream;
use crate::link::Links;

/// One Docker Engine API call.
#[derive(Debug, Clone)]
pub struct DockerCall {
    /// HTTP method.
    pub method: http::Method,
    /// API path with query, without a version prefix (`/images/json`).
    pub path: String,
    /// Extra headers (`X-Registry-Auth`, `Content-Type`).
    pub headers: Headers,
    /// Raw request body, if any.
    pub body: Option<Bytes>,
}

/// A whole Docker answer.
#[derive(Debug, Clone)]
pub struct DockerResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers, first value of each.
    pub headers: Headers,
    /// Body bytes.
    pub body: Bytes,
}

/// Why a call to an environment failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EnvError {
    /// No agent is connected for this edge environment.
    #[error("Edge agent not connected")]
    NotConnected,
    /// The agent link dropped while the call was in flight.
    #[error("Edge agent disconnected: {0}")]
    Disconnected(String),
    /// Nothing arrived for the idle timeout.
    #[error("no answer from Docker for {0:?}")]
    Timeout(Duration),
    /// Docker (or the agent on its behalf) reported a failure.
    #[error("Docker error: {0}")]
    Docker(String),
    /// The call was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// Too many calls in flight on this environment; retry shortly.
    #[error("environment busy: {0}")]
    Busy(String),
    /// The call itself is unacceptable (bad path, body too large).
    #[error("invalid Docker call: {0}")]
    Invalid(String),
}

/// Timeouts and limits of an [`EnvClient`].
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Idle timeout of a whole call (until its answer, or between body
    /// chunks for a local call).
    pub request: Duration,
    /// Default idle timeout between two chunks of a stream.
    pub stream_idle: Duration,
    /// Largest whole body accepted.
    pub max_body: usize,
}

#[derive(Clone)]
enum Target {
    Local(DockerClient),
    Edge(Links),
}

/// A client for one environment, local or edge. Cheap to clone.
///
/// An edge client looks up the environment's live link on every call, so
/// it keeps working across agent reconnects.
#[derive(Clone)]
pub struct EnvClient {
    env_id: i64,
    target: Target,
    timeouts: Timeouts,
}

impl std::fmt::Debug for EnvClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.target {
            Target::Local(d) => format!("local {}", d.endpoint()),
            Target::Edge(_) => "edge".to_owned(),
        };
        f.debug_struct("EnvClient")
            .field("env_id", &self.env_id)
            .field("target", &kind)
            .finish()
    }
}

fn check_call(call: &DockerCall) -> Result<(), EnvError> {
    mooring_protocol::docker::validate_path(&call.path)
        .map_err(|e| EnvError::Invalid(e.to_string()))
}

fn docker_err(err: mooring_docker::DockerError) -> EnvError {
    EnvError::Docker(err.to_string())
}

fn first_values(headers: &http::HeaderMap) -> Headers {
    let mut out = Headers::new();
    for (name, value) in headers {
        if let Ok(v) = value.to_str() {
            out.entry(canonical(name.as_str()))
                .or_insert_with(|| v.to_owned());
        }
    }
    out
}

/// `content-type` → `Content-Type`, as the Go agent writes header names.
fn canonical(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(c) => c.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

impl EnvClient {
    /// A client for a local Docker socket.
    pub fn local(env_id: i64, docker: DockerClient, timeouts: Timeouts) -> Self {
        EnvClient {
            env_id,
            target: Target::Local(docker),
            timeouts,
        }
    }

    /// A client for an edge environment's agent link.
    pub fn edge(env_id: i64, links: Links, timeouts: Timeouts) -> Self {
        EnvClient {
            env_id,
            target: Target::Edge(links),
            timeouts,
        }
    }

    /// The environment this client talks to.
    pub fn env_id(&self) -> i64 {
        self.env_id
    }

    /// Whether this is an edge environment.
    pub fn is_edge(&self) -> bool {
        matches!(self.target, Target::Edge(_))
    }

    fn link(&self, links: &Links) -> Result<crate::link::LinkHandle, EnvError> {
        links.get(self.env_id).ok_or(EnvError::NotConnected)
    }

    /// Sends `call` to a local daemon; `idle` bounds the wait for headers.
    async fn send_local(
        docker: &DockerClient,
        call: DockerCall,
        idle: Duration,
    ) -> Result<http::Response<Incoming>, EnvError> {
        tokio::time::timeout(idle, docker.send(Self::local_request(call)))
            .await
            .map_err(|_| EnvError::Timeout(idle))?
            .map_err(docker_err)
    }

    fn local_request(call: DockerCall) -> DockerRequest {
        DockerRequest {
            method: call.method,
            path: call.path,
            headers: call.headers,
            body: call.body.unwrap_or_default(),
        }
    }

    /// One call, whole answer. Non-2xx statuses are answers, not errors.
    pub async fn request(&self, call: DockerCall) -> Result<DockerResponse, EnvError> {
        check_call(&call)?;
        let idle = self.timeouts.request;
        match &self.target {
            Target::Edge(links) => self.link(links)?.call_whole(&call, idle).await,
            Target::Local(docker) => {
                let resp = Self::send_local(docker, call, idle).await?;
                let status = resp.status().as_u16();
                let headers = first_values(resp.headers());
                let mut body = resp.into_body();
                let mut out = bytes::BytesMut::new();
                loop {
                    match tokio::time::timeout(idle, body.frame()).await {
                        Err(_) => return Err(EnvError::Timeout(idle)),
                        Ok(None) => break,
                        Ok(Some(Err(err))) => {
                            return Err(EnvError::Docker(format!(
                                "reading Docker's answer failed: {err}"
                            )))
                        }
                        Ok(Some(Ok(frame))) => {
                            if let Ok(data) = frame.into_data() {
                                if out.len() + data.len() > self.timeouts.max_body {
                                    return Err(EnvError::Invalid(format!(
                                        "Docker's answer exceeds {} bytes: use stream() for it",
                                        self.timeouts.max_body
                                    )));
                                }
                                out.extend_from_slice(&data);
                            }
                        }
                    }
                }
                Ok(DockerResponse {
                    status,
                    headers,
                    body: out.freeze(),
                })
            }
        }
    }

    /// One call whose answer is read chunk by chunk.
    ///
    /// For a local environment the status and headers are known on return;
    /// for an edge environment whose agent reports stream status (Mooring
    /// agent) this waits for the first event so the status is known too.
    pub async fn stream(&self, call: DockerCall) -> Result<DockerStream, EnvError> {
        check_call(&call)?;
        let idle = self.timeouts.stream_idle;
        match &self.target {
            Target::Edge(links) => {
                let link = self.link(links)?;
                let mut edge = link.open_stream(&call).await?;
                if link.reports_stream_status() {
                    edge.prime(Some(idle)).await?;
                }
                Ok(DockerStream {
                    inner: StreamKind::Edge(edge),
                    headers: Headers::new(),
                    idle: Some(idle),
                })
            }
            Target::Local(docker) => {
                let resp = Self::send_local(docker, call, idle).await?;
                let status = resp.status().as_u16();
                let headers = first_values(resp.headers());
                Ok(DockerStream {
                    inner: StreamKind::Local {
                        body: Some(resp.into_body()),
                        status,
                    },
                    headers,
                    idle: Some(idle),
                })
            }
        }
    }
}

enum StreamKind {
    Local { body: Option<Incoming>, status: u16 },
    Edge(EdgeStream),
}

/// A Docker answer read chunk by chunk. Dropping it cancels the Docker
/// request (local: the connection closes; edge: `stream_end` "cancelled"
/// goes to the agent).
pub struct DockerStream {
    inner: StreamKind,
    headers: Headers,
    idle: Option<Duration>,
}

impl std::fmt::Debug for DockerStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerStream")
            .field("status", &self.status())
            .field("idle", &self.idle)
            .finish()
    }
}

impl DockerStream {
    /// Next chunk of the body; `Ok(None)` = the stream ended cleanly.
    ///
    /// Fails with [`EnvError::Timeout`] when nothing arrives for the idle
    /// timeout (reset by every chunk), [`EnvError::Disconnected`] when the
    /// agent link drops, [`EnvError::Docker`] when Docker or the agent
    /// reports a failure.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, EnvError> {
        let idle = self.idle;
        match &mut self.inner {
            StreamKind::Edge(edge) => edge.next_chunk(idle).await,
            StreamKind::Local { body, .. } => loop {
                let Some(b) = body.as_mut() else {
                    return Ok(None);
                };
                let next = match idle {
                    Some(limit) => match tokio::time::timeout(limit, b.frame()).await {
                        Ok(next) => next,
                        Err(_) => {
                            *body = None;
                            return Err(EnvError::Timeout(limit));
                        }
                    },
                    None => b.frame().await,
                };
                match next {
                    None => {
                        *body = None;
                        return Ok(None);
                    }
                    Some(Err(err)) => {
                        *body = None;
                        return Err(EnvError::Docker(format!("Docker's stream broke: {err}")));
                    }
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            if !data.is_empty() {
                                return Ok(Some(data));
                            }
                        }
                    }
                }
            },
        }
    }

    /// Docker's HTTP status when known (local: always; Mooring agent: from
    /// the first chunk / `stream_end` `statusCode`; reference agent: None).
    pub fn status(&self) -> Option<u16> {
        match &self.inner {
            StreamKind::Local { status, .. } => Some(*status),
            StreamKind::Edge(edge) => edge.status(),
        }
    }

    /// Docker's response headers when known (local only; empty for edge).
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// Changes the idle timeout between chunks (`None`: wait forever, e.g.
    /// for `/events` or `logs?follow=1`).
    pub fn set_idle_timeout(&mut self, idle: Option<Duration>) {
        self.idle = idle;
    }
}
