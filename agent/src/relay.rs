//! The Docker relay of one link: each hub `request` becomes one task that
//! calls Docker and answers with a `response`, or with `stream` frames and
//! exactly one `stream_end`.
//!
//! This module owns the table of in-flight requests (request id → its
//! cancellation token), its size limit (beyond it: `error` code `BUSY`), and
//! the translation between frames and Docker calls (see [`crate::translate`]).
//! Every request token is a child of the link's token: losing the link
//! cancels them all, and a hub `stream_end` cancels one. Cancelling drops the
//! Docker response, which closes that connection to the daemon.
//!
//! It never touches the WebSocket: all output goes through the
//! [`Outbox`], whose waits are the backpressure.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use mooring_docker::{DockerClient, DockerError, DockerRequest};
use mooring_protocol::binary;
use mooring_protocol::codec::encode_stream_chunk;
use mooring_protocol::{
    end_reason, error_code, ErrorFrame, Frame, Request, StreamChunk, StreamEnd,
};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::stats::{Gauge, Stats, Which};
use crate::translate::{build_request, response_frame, ResponseTooLarge};
use crate::writer::{LinkClosed, Outbox};

/// Limits a relay works within.
#[derive(Debug, Clone)]
pub(crate) struct RelaySettings {
    /// In-flight requests per link.
    pub(crate) max_concurrent: usize,
    /// Raw bytes per `stream` frame.
    pub(crate) chunk_bytes: usize,
    /// Idle timeout of a non-streaming request.
    pub(crate) request_timeout: Duration,
    /// Largest non-streaming body read into memory.
    pub(crate) max_response_bytes: usize,
    /// Largest encoded frame the relay sends.
    pub(crate) max_frame_bytes: usize,
    /// Stream data goes as binary messages (extension negotiated).
    pub(crate) binary_stream: bool,
}

type Table = Arc<Mutex<HashMap<String, CancellationToken>>>;

/// The relay of one link.
pub(crate) struct Relay {
    docker: DockerClient,
    out: Outbox,
    table: Table,
    link: CancellationToken,
    tracker: TaskTracker,
    settings: Arc<RelaySettings>,
    stats: Arc<Stats>,
}

impl Relay {
    /// A relay whose requests die with `link` and are tracked by `tracker`.
    pub(crate) fn new(
        docker: DockerClient,
        out: Outbox,
        link: CancellationToken,
        tracker: TaskTracker,
        settings: RelaySettings,
        stats: Arc<Stats>,
    ) -> Self {
        Relay {
            docker,
            out,
            table: Arc::default(),
            link,
            tracker,
            settings: Arc::new(settings),
            stats,
        }
    }

    /// Starts one request; never waits. Refusals (duplicate id, limit
    /// reached) are answered on the control queue.
    pub(crate) fn start(&self, req: Request) {
        let token = self.link.child_token();
        let refusal = match self.table.lock() {
            Ok(table) if table.contains_key(&req.request_id) => Some((
                error_code::PARSE_ERROR,
                "a request with this requestId is already in flight".to_owned(),
            )),
            Ok(table) if table.len() >= self.settings.max_concurrent => Some((
                error_code::BUSY,
                format!(
                    "agent is at its limit of {} concurrent Docker requests: retry later",
                    self.settings.max_concurrent
                ),
            )),
            Ok(mut table) => {
                table.insert(req.request_id.clone(), token.clone());
                None
            }
            Err(_) => Some((
                error_code::DOCKER_ERROR,
                "agent request table unavailable".to_owned(),
            )),
        };
        if let Some((code, text)) = refusal {
            tracing::warn!(request_id = %req.request_id, code, "{text}");
            refuse(&self.out, &req.request_id, req.streaming, code, &text);
            return;
        }
        let entry = Entry {
            id: req.request_id.clone(),
            table: self.table.clone(),
            _gauge: Gauge::inc(&self.stats, Which::InFlight),
        };
        self.stats.requests_total.fetch_add(1, Ordering::Relaxed);
        let task = Task {
            docker: self.docker.clone(),
            out: self.out.clone(),
            settings: self.settings.clone(),
            stats: self.stats.clone(),
            token,
        };
        let span = tracing::info_span!("request", request_id = %req.request_id, method = %req.method, path = %req.path, streaming = req.streaming);
        self.tracker.spawn(
            async move {
                let _entry = entry;
                task.run(req).await;
            }
            .instrument(span),
        );
    }

    /// Cancels one request (hub `stream_end`); false when it is not in flight.
    pub(crate) fn cancel(&self, request_id: &str) -> bool {
        let token = self
            .table
            .lock()
            .ok()
            .and_then(|t| t.get(request_id).cloned());
        match token {
            Some(t) => {
                t.cancel();
                true
            }
            None => false,
        }
    }
}

/// Answers a request that will not run: `error`, plus `stream_end` for a
/// streaming one (so the hub's stream ends either way).
pub(crate) fn refuse(out: &Outbox, request_id: &str, streaming: bool, code: &str, text: &str) {
    out.send_control(&Frame::Error(ErrorFrame::for_request(
        request_id, code, text,
    )));
    if streaming {
        out.send_control(&Frame::StreamEnd(StreamEnd {
            request_id: request_id.to_owned(),
            reason: Some(end_reason::ERROR.into()),
            status_code: None,
            error: Some(text.to_owned()),
        }));
    }
}

/// Removes a request from the table when its task ends, however it ends.
struct Entry {
    id: String,
    table: Table,
    _gauge: Gauge,
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Ok(mut t) = self.table.lock() {
            t.remove(&self.id);
        }
    }
}

struct Task {
    docker: DockerClient,
    out: Outbox,
    settings: Arc<RelaySettings>,
    stats: Arc<Stats>,
    token: CancellationToken,
}

/// Why a request stopped before Docker's answer ended.
enum Stop {
    /// The hub cancelled it.
    Cancelled,
    /// The link is gone.
    LinkLost,
}

/// How a stream ended.
enum Ended {
    /// Docker's body ended normally.
    Completed,
    /// Reading Docker's body failed.
    Broke(String),
    /// The request was stopped.
    Stopped(Stop),
}

impl Task {
    async fn run(self, req: Request) {
        let id = req.request_id.clone();
        let docker_req = match build_request(&req) {
            Ok(r) => r,
            Err(text) => {
                tracing::warn!(%text, "request refused");
                return self
                    .fail(&id, req.streaming, error_code::PARSE_ERROR, &text)
                    .await;
            }
        };
        if req.streaming {
            self.stream(&id, docker_req).await;
        } else {
            self.single(&id, docker_req).await;
        }
    }

    /// Sends a frame unless the request is cancelled meanwhile.
    async fn send(&self, frame: Frame) -> Result<(), Stop> {
        self.send_encoded(frame.encode()).await
    }

    /// [`Task::send`] for a frame already encoded.
    async fn send_encoded(&self, text: String) -> Result<(), Stop> {
        tokio::select! {
            biased;
            _ = self.token.cancelled() => Err(self.why_stopped()),
            r = self.out.send_message(Message::text(text)) => r.map_err(|LinkClosed| Stop::LinkLost),
        }
    }

    fn why_stopped(&self) -> Stop {
        if self.out.is_closed() {
            Stop::LinkLost
        } else {
            Stop::Cancelled
        }
    }

    async fn fail(&self, id: &str, streaming: bool, code: &str, text: &str) {
        let _ = self
            .send(Frame::Error(ErrorFrame::for_request(id, code, text)))
            .await;
        if streaming {
            let _ = self
                .send(Frame::StreamEnd(StreamEnd {
                    request_id: id.to_owned(),
                    reason: Some(end_reason::ERROR.into()),
                    error: Some(text.to_owned()),
                    status_code: None,
                }))
                .await;
        }
    }

    async fn single(&self, id: &str, req: DockerRequest) {
        let answer = tokio::select! {
            _ = self.token.cancelled() => {
                tracing::debug!("cancelled before Docker answered");
                return;
            }
            a = self.read_whole(id, req) => a,
        };
        let text = match answer {
            Ok(text) => text,
            Err((code, text)) => {
                tracing::warn!(code, %text, "Docker request failed");
                Frame::Error(ErrorFrame::for_request(id, code, text)).encode()
            }
        };
        let _ = self.send_encoded(text).await;
    }

    /// Docker's whole answer as an encoded `response` frame (encoded once:
    /// its size is checked on the text that is sent).
    async fn read_whole(
        &self,
        id: &str,
        req: DockerRequest,
    ) -> Result<String, (&'static str, String)> {
        let idle = self.settings.request_timeout;
        let resp = match tokio::time::timeout(idle, self.docker.send(req)).await {
            Err(_) => {
                return Err((
                    error_code::DOCKER_ERROR,
                    format!("Docker did not answer within {}s", idle.as_secs_f64()),
                ))
            }
            Ok(Err(e)) => return Err(docker_error(&e)),
            Ok(Ok(r)) => r,
        };
        let _open = Gauge::inc(&self.stats, Which::OpenDocker);
        let (parts, mut body) = resp.into_parts();
        let mut buf = bytes::BytesMut::new();
        loop {
            let next = tokio::time::timeout(idle, body.frame())
                .await
                .map_err(|_| {
                    (
                        error_code::READ_ERROR,
                        format!("Docker sent nothing for {}s", idle.as_secs_f64()),
                    )
                })?;
            match next {
                None => break,
                Some(Err(e)) => {
                    return Err((
                        error_code::READ_ERROR,
                        format!("reading Docker's answer failed: {e}"),
                    ))
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if buf.len() + data.len() > self.settings.max_response_bytes {
                            return Err((
                                error_code::READ_ERROR,
                                ResponseTooLarge(self.settings.max_response_bytes).to_string(),
                            ));
                        }
                        buf.extend_from_slice(&data);
                    }
                }
            }
        }
        let text = response_frame(id, &parts, &buf).encode();
        if text.len() > self.settings.max_frame_bytes {
            return Err((
                error_code::READ_ERROR,
                ResponseTooLarge(self.settings.max_response_bytes).to_string(),
            ));
        }
        tracing::debug!(status = parts.status.as_u16(), "answered");
        Ok(text)
    }

    async fn stream(&self, id: &str, req: DockerRequest) {
        let sent = tokio::select! {
            _ = self.token.cancelled() => return self.end_cancelled(id, None).await,
            r = self.docker.send(req) => r,
        };
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let (code, text) = docker_error(&e);
                tracing::warn!(%text, "Docker request failed");
                return self.fail(id, true, code, &text).await;
            }
        };
        let status = resp.status().as_u16();
        tracing::debug!(status, "stream opened");
        let open = Gauge::inc(&self.stats, Which::OpenDocker);
        let mut body = resp.into_body();
        // The first frame carries the status at once, before any data:
        // the hub learns "404" or "200, push running" without waiting.
        let ended = match self.send(chunk(id, Vec::new(), Some(status))).await {
            Err(stop) => Ended::Stopped(stop),
            Ok(()) => self.pump(id, &mut body).await,
        };
        // Dropping the body closes the connection to the daemon.
        drop(body);
        drop(open);
        match ended {
            Ended::Completed => {
                tracing::debug!(status, "stream completed");
                let _ = self
                    .send(end(id, end_reason::COMPLETED, Some(status), None))
                    .await;
            }
            Ended::Broke(text) => {
                tracing::warn!(%text, "stream broke");
                let frame = ErrorFrame::for_request(id, error_code::READ_ERROR, text.clone());
                let _ = self.send(Frame::Error(frame)).await;
                let _ = self
                    .send(end(id, end_reason::ERROR, Some(status), Some(text)))
                    .await;
            }
            Ended::Stopped(Stop::Cancelled) => self.end_cancelled(id, Some(status)).await,
            Ended::Stopped(Stop::LinkLost) => tracing::info!("link lost: Docker request cancelled"),
        }
    }

    /// Forwards Docker's body until it ends, breaks, or the request stops.
    async fn pump(&self, id: &str, body: &mut Incoming) -> Ended {
        loop {
            let next = tokio::select! {
                biased;
                _ = self.token.cancelled() => return Ended::Stopped(self.why_stopped()),
                f = body.frame() => f,
            };
            match next {
                None => return Ended::Completed,
                Some(Err(e)) => {
                    return Ended::Broke(format!("reading Docker's stream failed: {e}"))
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if let Err(stop) = self.send_chunks(id, &data).await {
                            return Ended::Stopped(stop);
                        }
                    }
                }
            }
        }
    }

    async fn send_chunks(&self, id: &str, data: &[u8]) -> Result<(), Stop> {
        let header = match self.settings.binary_stream {
            true => binary::stream_data_header(id).ok(),
            false => None,
        };
        for piece in data.chunks(self.settings.chunk_bytes.max(1)) {
            // Encoded from the borrowed bytes: no intermediate `Frame`.
            let msg = match &header {
                Some(header) => {
                    let mut bytes = Vec::with_capacity(header.len() + piece.len());
                    bytes.extend_from_slice(header);
                    bytes.extend_from_slice(piece);
                    Message::binary(bytes)
                }
                None => Message::text(encode_stream_chunk(id, piece, None, None)),
            };
            tokio::select! {
                biased;
                _ = self.token.cancelled() => return Err(self.why_stopped()),
                r = self.out.send_message(msg) => r.map_err(|LinkClosed| Stop::LinkLost)?,
            }
        }
        Ok(())
    }

    /// The hub cancelled: the Docker request is already dropped; confirm
    /// with one `stream_end` (the reference agent does the same).
    async fn end_cancelled(&self, id: &str, status: Option<u16>) {
        tracing::info!("cancelled by the hub: Docker request closed");
        if !self.out.is_closed() {
            let _ = self
                .out
                .send(&end(id, end_reason::CANCELLED, status, None))
                .await;
        }
    }
}

fn chunk(id: &str, data: Vec<u8>, status_code: Option<u16>) -> Frame {
    Frame::Stream(StreamChunk {
        request_id: id.to_owned(),
        data,
        stream: None,
        status_code,
    })
}

fn end(id: &str, reason: &str, status_code: Option<u16>, error: Option<String>) -> Frame {
    Frame::StreamEnd(StreamEnd {
        request_id: id.to_owned(),
        reason: Some(reason.to_owned()),
        status_code,
        error,
    })
}

fn docker_error(err: &DockerError) -> (&'static str, String) {
    match err {
        DockerError::BadRequest(_) => (error_code::PARSE_ERROR, err.to_string()),
        DockerError::Body(_) | DockerError::TooLarge { .. } => {
            (error_code::READ_ERROR, err.to_string())
        }
        _ => (error_code::DOCKER_ERROR, err.to_string()),
    }
}
