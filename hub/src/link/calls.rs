//! Docker calls over an agent link: build the `request` frame, register the
//! waiter, and collect a whole answer or a stream of chunks.
//!
//! Every wait here is an idle timeout that restarts on each frame. A call
//! whose caller goes away (future dropped, [`EdgeStream`] dropped) is
//! forgotten and the agent is told with `stream_end` "cancelled".

use std::time::Duration;

use bytes::Bytes;
use mooring_protocol::{b64, end_reason, Frame, Request};
use tokio::sync::{mpsc, oneshot};

use super::pending::{FailSlot, StreamEvent, Waiter, WholeAnswer};
use super::LinkHandle;
use crate::envs::{DockerCall, DockerResponse, EnvError};

/// Builds the `request` frame for `call`.
///
/// A body that is JSON (by content type, or by parsing when no type is
/// given) travels as a JSON value; anything else as base64 with `isBinary`.
pub(crate) fn request_frame(id: &str, call: &DockerCall, streaming: bool) -> Frame {
    let content_type = call
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.to_ascii_lowercase());
    let (body, is_binary) = match &call.body {
        None => (None, false),
        Some(bytes) if bytes.is_empty() => (None, false),
        Some(bytes) => {
            let json_ok = content_type.as_deref().is_none_or(|ct| ct.contains("json"));
            match json_ok
                .then(|| serde_json::from_slice::<serde_json::Value>(bytes).ok())
                .flatten()
            {
                Some(value) => (Some(value), false),
                None => (Some(serde_json::Value::String(b64::encode(bytes))), true),
            }
        }
    };
    Frame::Request(Request {
        request_id: id.to_owned(),
        method: call.method.as_str().to_owned(),
        path: call.path.clone(),
        headers: call.headers.clone(),
        body,
        is_binary,
        streaming,
    })
}

/// A fresh request id: a random (v4) UUID, as before, but drawn from the
/// thread's CSPRNG (seeded from the OS, reseeded by `rand`) instead of one
/// `getrandom` system call per request.
fn new_request_id() -> String {
    let bytes: [u8; 16] = rand::random();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// Decodes a `response` body (text or base64).
pub(crate) fn answer_body(body: String, is_binary: bool) -> Result<Bytes, EnvError> {
    if is_binary {
        b64::decode(&body)
            .map(Bytes::from)
            .map_err(|e| EnvError::Docker(format!("agent sent a body that is not base64: {e}")))
    } else {
        Ok(Bytes::from(body))
    }
}

/// Forgets a request when its caller goes away before the answer.
struct CancelGuard<'a> {
    link: &'a LinkHandle,
    id: &'a str,
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        // No-op when the answer already arrived (the reader removed it).
        self.link.cancel_request(self.id);
    }
}

impl LinkHandle {
    /// Sends `call` and waits for the whole answer, at most `timeout`.
    pub async fn call_whole(
        &self,
        call: &DockerCall,
        timeout: Duration,
    ) -> Result<DockerResponse, EnvError> {
        let started = std::time::Instant::now();
        let result = self.call_whole_inner(call, timeout).await;
        let outcome = crate::metrics::outcome_of(result.as_ref().err());
        self.counters()
            .request_done(false, outcome, started.elapsed());
        result
    }

    async fn call_whole_inner(
        &self,
        call: &DockerCall,
        timeout: Duration,
    ) -> Result<DockerResponse, EnvError> {
        let id = new_request_id();
        let (tx, rx) = oneshot::channel();
        self.pending().insert(id.clone(), Waiter::Whole(tx))?;
        let _guard = CancelGuard {
            link: self,
            id: &id,
        };
        tracing::debug!(request_id = %id, method = %call.method, path = %call.path, "request to agent");
        self.send(request_frame(&id, call, false)).await?;
        let answer: WholeAnswer = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result?,
            Ok(Err(_)) => return Err(self.disconnected()),
            Err(_) => return Err(EnvError::Timeout(timeout)),
        };
        Ok(DockerResponse {
            status: answer.status,
            headers: answer.headers,
            body: answer.body,
        })
    }

    /// Sends `call` as a streaming request.
    pub async fn open_stream(&self, call: &DockerCall) -> Result<EdgeStream, EnvError> {
        let id = new_request_id();
        let (tx, rx) = mpsc::channel(self.limits().stream_buffer.max(1));
        let fail = FailSlot::default();
        self.pending().insert(
            id.clone(),
            Waiter::Stream {
                tx,
                fail: fail.clone(),
            },
        )?;
        let stream = EdgeStream {
            link: self.clone(),
            id: id.clone(),
            rx,
            fail,
            status: None,
            finished: false,
            tail: None,
            started: std::time::Instant::now(),
            metered: false,
        };
        tracing::debug!(request_id = %id, method = %call.method, path = %call.path, "stream request to agent");
        // On failure `stream` is dropped, which forgets the request.
        self.send(request_frame(&id, call, true)).await?;
        Ok(stream)
    }
}

/// A streaming answer arriving over a link. Dropping it before the end
/// cancels the request on the agent.
pub struct EdgeStream {
    link: LinkHandle,
    id: String,
    rx: mpsc::Receiver<StreamEvent>,
    fail: FailSlot,
    status: Option<u16>,
    finished: bool,
    tail: Option<Bytes>,
    started: std::time::Instant,
    /// The outcome was counted in the link's metrics.
    metered: bool,
}

impl std::fmt::Debug for EdgeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeStream")
            .field("request_id", &self.id)
            .field("status", &self.status)
            .field("finished", &self.finished)
            .finish()
    }
}

impl EdgeStream {
    /// Request id on the wire.
    pub fn request_id(&self) -> &str {
        &self.id
    }

    /// Docker's status, once the agent reported it.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// Waits until Docker's status is known (a Mooring agent sends it at
    /// once, on an empty first chunk), the first data arrives, or the stream
    /// ends — without consuming any data. A quiet stream (`/events`,
    /// `logs?follow=1`) is therefore answered at once, not at its first
    /// line.
    pub(crate) async fn prime(&mut self, idle: Option<Duration>) -> Result<(), EnvError> {
        if self.finished || self.tail.is_some() || self.status.is_some() {
            return Ok(());
        }
        match self.next_chunk_inner(idle, true).await {
            Ok(chunk) => {
                self.tail = chunk;
                if self.finished {
                    self.meter(None);
                }
                Ok(())
            }
            Err(err) => {
                self.meter(Some(&err));
                Err(err)
            }
        }
    }

    /// The next chunk; `Ok(None)` once the stream completed.
    pub async fn next_chunk(&mut self, idle: Option<Duration>) -> Result<Option<Bytes>, EnvError> {
        let result = self.next_chunk_inner(idle, false).await;
        match &result {
            Ok(Some(_)) => {}
            Ok(None) => self.meter(None),
            Err(err) => self.meter(Some(err)),
        }
        result
    }

    /// Counts the stream's outcome once.
    fn meter(&mut self, err: Option<&EnvError>) {
        if !self.metered {
            self.metered = true;
            self.link.counters().request_done(
                true,
                crate::metrics::outcome_of(err),
                self.started.elapsed(),
            );
        }
    }

    /// The next data chunk; with `until_status`, also returns `Ok(None)`
    /// (stream not finished) as soon as the status is known.
    async fn next_chunk_inner(
        &mut self,
        idle: Option<Duration>,
        until_status: bool,
    ) -> Result<Option<Bytes>, EnvError> {
        if let Some(tail) = self.tail.take() {
            return Ok(Some(tail));
        }
        if self.finished {
            return Ok(None);
        }
        loop {
            let event = match idle {
                Some(limit) => match tokio::time::timeout(limit, self.rx.recv()).await {
                    Ok(ev) => ev,
                    Err(_) => {
                        self.finish_cancel();
                        return Err(EnvError::Timeout(limit));
                    }
                },
                None => self.rx.recv().await,
            };
            let Some(event) = event else {
                self.finished = true;
                return Err(self
                    .fail
                    .get()
                    .cloned()
                    .unwrap_or_else(|| self.link.disconnected()));
            };
            match event {
                StreamEvent::Chunk { data, status } => {
                    if self.status.is_none() {
                        self.status = status;
                    }
                    if !data.is_empty() {
                        return Ok(Some(data));
                    }
                    if until_status && self.status.is_some() {
                        return Ok(None);
                    }
                }
                StreamEvent::Whole(answer) => {
                    self.finished = true;
                    self.status = Some(answer.status);
                    return Ok((!answer.body.is_empty()).then_some(answer.body));
                }
                StreamEvent::End {
                    status,
                    reason,
                    error,
                } => {
                    self.finished = true;
                    if status.is_some() {
                        self.status = status;
                    }
                    return match reason.as_deref() {
                        Some(end_reason::ERROR) => {
                            Err(EnvError::Docker(error.unwrap_or_else(|| {
                                "the agent reported a broken stream".into()
                            })))
                        }
                        Some(end_reason::CANCELLED) => Err(EnvError::Cancelled),
                        _ => Ok(None),
                    };
                }
                StreamEvent::Failed(err) => {
                    self.finished = true;
                    return Err(err);
                }
            }
        }
    }

    fn finish_cancel(&mut self) {
        if !self.finished {
            self.finished = true;
            self.link.cancel_request(&self.id);
        }
    }
}

impl Drop for EdgeStream {
    fn drop(&mut self) {
        if !self.finished {
            // The consumer went away before the end.
            self.meter(Some(&EnvError::Cancelled));
        }
        self.finish_cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mooring_protocol::Headers;

    #[test]
    fn request_ids_are_distinct_v4_uuids() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        for id in [a, b] {
            let parsed = uuid::Uuid::parse_str(&id).expect("a UUID");
            assert_eq!(parsed.get_version_num(), 4, "{id}");
            assert_eq!(id, parsed.hyphenated().to_string(), "lower-case hyphenated");
        }
    }

    fn call(body: &[u8], ct: Option<&str>) -> DockerCall {
        let mut headers = Headers::new();
        if let Some(ct) = ct {
            headers.insert("Content-Type".into(), ct.into());
        }
        DockerCall {
            method: http::Method::POST,
            path: "/x".into(),
            headers,
            body: Some(Bytes::copy_from_slice(body)),
        }
    }

    #[test]
    fn json_bodies_travel_as_json_and_others_as_base64() {
        let Frame::Request(r) = request_frame("1", &call(br#"{"a":1}"#, None), false) else {
            panic!()
        };
        assert_eq!(r.body, Some(serde_json::json!({"a":1})));
        assert!(!r.is_binary);
        let Frame::Request(r) =
            request_frame("1", &call(b"\x00tar", Some("application/x-tar")), true)
        else {
            panic!()
        };
        assert!(r.is_binary && r.streaming);
        assert_eq!(r.body, Some(serde_json::json!(b64::encode(b"\x00tar"))));
        let Frame::Request(r) = request_frame("1", &call(b"{}", Some("application/x-tar")), false)
        else {
            panic!()
        };
        assert!(r.is_binary, "a tar body is never sent as JSON");
    }

    /// A link to an agent announcing `mooring.stream-status`, and its
    /// queues (kept so frames to the agent can be sent).
    fn status_link() -> (LinkHandle, super::super::LinkQueues) {
        let agent = crate::store::AgentRecord {
            id: "a".into(),
            name: "a".into(),
            version: "0".into(),
            docker_version: "20.10".into(),
            hostname: "h".into(),
            capabilities: vec![mooring_protocol::caps::STREAM_STATUS.into()],
            connected_at: 0,
            last_seen: 0,
        };
        let limits = super::super::LinkLimits {
            max_pending: 8,
            stream_buffer: 8,
            stream_stall: Duration::from_secs(5),
            writer_queue: 8,
        };
        LinkHandle::new(
            1,
            1,
            1,
            agent,
            limits,
            &tokio_util::sync::CancellationToken::new(),
            crate::metrics::HubMetrics::new().link_counters(),
        )
    }

    #[tokio::test]
    async fn a_quiet_stream_is_primed_by_its_status_alone() {
        let (link, _queues) = status_link();
        let get = DockerCall {
            method: http::Method::GET,
            path: "/events".into(),
            headers: Headers::new(),
            body: None,
        };
        let mut stream = link.open_stream(&get).await.expect("open");
        let (tx, _) = link
            .pending()
            .stream_sender(stream.request_id())
            .expect("stream waiter");
        // The agent's first frame: Docker's status, no data yet (no event).
        tx.send(StreamEvent::Chunk {
            data: Bytes::new(),
            status: Some(200),
        })
        .await
        .unwrap();
        tokio::time::timeout(Duration::from_secs(5), stream.prime(None))
            .await
            .expect("primed by the status, without waiting for data")
            .expect("primed");
        assert_eq!(stream.status(), Some(200));
        // Data that comes later is read in full, and the end is clean.
        tx.send(StreamEvent::Chunk {
            data: Bytes::from_static(b"{}"),
            status: None,
        })
        .await
        .unwrap();
        tx.send(StreamEvent::End {
            status: None,
            reason: Some(end_reason::COMPLETED.into()),
            error: None,
        })
        .await
        .unwrap();
        let chunk = stream.next_chunk(None).await.expect("chunk");
        assert_eq!(chunk.as_deref(), Some(&b"{}"[..]));
        assert_eq!(stream.next_chunk(None).await.expect("end"), None);
    }

    #[tokio::test]
    async fn priming_keeps_the_first_data_for_the_reader() {
        let (link, _queues) = status_link();
        let get = DockerCall {
            method: http::Method::GET,
            path: "/events".into(),
            headers: Headers::new(),
            body: None,
        };
        let mut stream = link.open_stream(&get).await.expect("open");
        let (tx, _) = link
            .pending()
            .stream_sender(stream.request_id())
            .expect("stream waiter");
        tx.send(StreamEvent::Chunk {
            data: Bytes::from_static(b"first"),
            status: Some(404),
        })
        .await
        .unwrap();
        stream.prime(None).await.expect("primed");
        assert_eq!(stream.status(), Some(404));
        let chunk = stream.next_chunk(None).await.expect("chunk");
        assert_eq!(chunk.as_deref(), Some(&b"first"[..]));
    }
}
