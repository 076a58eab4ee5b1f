//! The tasks that own one agent's WebSocket after the handshake.
//!
//! The socket is split once: a writer task owns the sink and drains the
//! link's bounded frame queue (pings from the hub's heartbeat sweep
//! included) and its cancellation queue; the reader (the session task
//! itself) owns the stream, dispatches answers to the pending table by
//! request id, and keeps the link's last-seen clock that the sweep judges
//! silence by. Neither task has a timer of its own. Nothing else touches the
//! socket.
//!
//! # Backpressure policy for streams
//! Each stream has a bounded buffer of `stream_buffer` chunks. When it is
//! full the reader waits for the consumer — this pushes back on the agent
//! through TCP, which is the only flow control the protocol has — but at
//! most `stream_stall` per chunk. A consumer that takes nothing for that
//! long has its stream failed ("stream consumer too slow") and cancelled
//! on the agent; the link and every other request on it carry on. Memory
//! per stream is therefore bounded by `stream_buffer` chunks, and a stuck
//! consumer delays the link by at most `stream_stall` once.
//!
//! Malformed frames are logged and ignored; one that names a pending
//! request fails that request with a clear error instead of leaving it to
//! time out.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use mooring_protocol::{end_reason, Frame, Pong, StreamEnd};
use tracing::Instrument;

use super::pending::{StreamEvent, Waiter, WholeAnswer};
use super::{LinkHandle, LinkQueues};
use crate::envs::EnvError;
use crate::state::AppState;

/// Runs the link until it closes, then unregisters it and records the end.
pub(crate) async fn run(ws: WebSocket, link: LinkHandle, queues: LinkQueues, state: AppState) {
    let (sink, stream) = ws.split();
    let writer = state
        .tracker
        .spawn(write_loop(sink, link.clone(), queues).instrument(tracing::Span::current()));
    let reason = read_loop(stream, &link, &state).await;
    link.close(&reason);
    let reason = link.close_reason().unwrap_or(reason);
    // Records last-seen, reason and count, then unregisters the link (so
    // the environment reads offline with its reason), then publishes
    // agent.disconnected.
    crate::status::on_disconnect(&state, &link, &reason).await;
    link.retire();
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    let actor = format!("agent:{}", link.agent().id);
    let target = format!("environment:{}", link.env_id());
    let _ = state
        .store
        .audit(&actor, "agent.disconnect", Some(&target), Some(&reason))
        .await;
}

async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    link: LinkHandle,
    mut queues: LinkQueues,
) {
    // One cancellation future for the task's life: a fresh one per loop
    // turn registers with (and leaves) the token's waiter list every time.
    let cancel = link.cancelled_token().clone();
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    loop {
        let frame = tokio::select! {
            biased;
            _ = &mut cancelled => break,
            frame = queues.out_rx.recv() => match frame {
                Some(frame) => frame,
                None => break,
            },
            Some(id) = queues.cancels_rx.recv() => Frame::StreamEnd(StreamEnd {
                request_id: id,
                reason: Some(end_reason::CANCELLED.to_owned()),
                ..Default::default()
            }),
        };
        let text = frame.encode();
        let len = text.len();
        tokio::select! {
            sent = sink.send(Message::Text(text.into())) => {
                if let Err(err) = sent {
                    link.close(&format!("writing to the agent failed: {err}"));
                    break;
                }
                link.counters().frame_out(len);
                forget_write_waker(&mut sink);
            }
            _ = &mut cancelled => break,
        }
    }
    let reason = link
        .close_reason()
        .unwrap_or_else(|| "link closed".to_owned());
    let close = Message::Close(Some(CloseFrame {
        code: 1001,
        reason: truncate(&reason, 120).into(),
    }));
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(close)).await;
}

/// Reads until the link ends; returns why it ended.
async fn read_loop(
    mut stream: SplitStream<WebSocket>,
    link: &LinkHandle,
    state: &AppState,
) -> String {
    let settings = &state.settings;
    let cancel = link.cancelled_token().clone();
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    loop {
        tokio::select! {
            biased;
            _ = &mut cancelled => {
                return link.close_reason().unwrap_or_else(|| "link closed".to_owned());
            }
            msg = stream.next() => match msg {
                None => return "agent closed the connection".to_owned(),
                Some(Err(err)) => return format!("connection to the agent broke: {err}"),
                Some(Ok(Message::Close(frame))) => {
                    return match frame {
                        Some(f) if !f.reason.is_empty() => {
                            format!("agent closed the connection ({}: {})", f.code, f.reason)
                        }
                        _ => "agent closed the connection".to_owned(),
                    };
                }
                Some(Ok(Message::Text(text))) => {
                    link.touch();
                    link.counters().frame_in(text.len());
                    match Frame::decode_limited(text.as_str(), settings.max_frame_bytes) {
                        Ok(frame) => dispatch(link, frame, state).await,
                        Err(err) => malformed(link, text.as_str(), &err.to_string()),
                    }
                }
                Some(Ok(Message::Binary(bytes))) => {
                    link.touch();
                    link.counters().frame_in(bytes.len());
                    if link.binary_stream() {
                        binary(link, bytes).await;
                    } else {
                        tracing::warn!("binary WebSocket message from agent ignored (protocol uses text frames)");
                    }
                }
                Some(Ok(_)) => link.touch(),
            }
        }
    }
}

fn malformed(link: &LinkHandle, text: &str, err: &str) {
    tracing::warn!(%err, "malformed frame from agent ignored");
    let id = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| {
            v.get("requestId")
                .and_then(|i| i.as_str())
                .map(str::to_owned)
        });
    if let Some(id) = id {
        let waiter = link.pending().remove(&id);
        if let Some(waiter) = waiter {
            waiter.fail(EnvError::Docker(format!(
                "the agent sent a malformed answer: {err}"
            )));
            link.cancel_request(&id);
        }
    }
}

async fn dispatch(link: &LinkHandle, frame: Frame, state: &AppState) {
    match frame {
        Frame::Response(resp) => {
            let waiter = link.pending().remove(&resp.request_id);
            let Some(waiter) = waiter else {
                tracing::debug!(request_id = %resp.request_id, "response for no pending request ignored");
                return;
            };
            let answer = crate::link::calls::answer_body(resp.body, resp.is_binary).map(|body| {
                WholeAnswer {
                    status: resp.status_code,
                    headers: resp.headers,
                    body,
                }
            });
            match (waiter, answer) {
                (Waiter::Whole(tx), answer) => {
                    let _ = tx.send(answer);
                }
                (Waiter::Stream { tx, fail }, Ok(answer)) => {
                    deliver(
                        link,
                        &resp.request_id,
                        &tx,
                        &fail,
                        StreamEvent::Whole(answer),
                    )
                    .await;
                }
                (waiter, Err(err)) => waiter.fail(err),
            }
        }
        Frame::Stream(chunk) => {
            let data = Bytes::from(chunk.data);
            stream_data(link, &chunk.request_id, data, chunk.status_code).await;
        }
        Frame::StreamEnd(end) => {
            let waiter = link.pending().remove(&end.request_id);
            match waiter {
                Some(Waiter::Stream { tx, fail }) => {
                    let event = StreamEvent::End {
                        status: end.status_code,
                        reason: end.reason,
                        error: end.error,
                    };
                    deliver(link, &end.request_id, &tx, &fail, event).await;
                }
                Some(waiter @ Waiter::Whole(_)) => waiter.fail(EnvError::Docker(
                    "the agent ended a stream for a non-streaming request".into(),
                )),
                None => {}
            }
        }
        Frame::Error(err) => match err.request_id.clone() {
            Some(id) => {
                let waiter = link.pending().remove(&id);
                if let Some(waiter) = waiter {
                    let code = err.code.as_deref().unwrap_or("ERROR");
                    waiter.fail(EnvError::Docker(format!("{} ({code})", err.text())));
                }
            }
            None => tracing::warn!(error = %err.text(), "agent reported an error"),
        },
        Frame::Ping(ping) => {
            let _ = link.try_send(Frame::Pong(Pong {
                timestamp: ping.timestamp,
            }));
        }
        Frame::Pong(pong) => link.pong_received(pong.timestamp.as_ref()),
        Frame::Hello(_) => tracing::warn!("second hello on a live link ignored"),
        Frame::Metrics(metrics) => crate::status::on_metrics(state, link, &metrics),
        Frame::ContainerEvent(event) => {
            crate::status::on_container_event(state, link, &event.event);
        }
        other => tracing::debug!(kind = other.kind(), "frame ignored"),
    }
}

/// One chunk of stream data (from a `stream` frame or a binary message).
async fn stream_data(link: &LinkHandle, id: &str, data: Bytes, status: Option<u16>) {
    let sender = link.pending().stream_sender(id);
    match sender {
        Some((tx, fail)) => {
            let event = StreamEvent::Chunk { data, status };
            deliver(link, id, &tx, &fail, event).await;
        }
        None if link.pending().is_whole(id) => {
            tracing::warn!(request_id = %id, "stream chunk for a non-streaming request ignored");
        }
        None => {
            tracing::trace!(request_id = %id, "chunk for a finished request ignored");
        }
    }
}

/// A binary stream-data message (extension): the payload is handed on
/// without a copy. A malformed one is logged and ignored, like a
/// malformed text frame.
async fn binary(link: &LinkHandle, msg: Bytes) {
    let (id, offset) = match mooring_protocol::binary::decode(&msg) {
        Ok(d) => (d.request_id.to_owned(), d.data_offset),
        Err(err) => {
            tracing::warn!(%err, "malformed binary message from agent ignored");
            return;
        }
    };
    stream_data(link, &id, msg.slice(offset..), None).await;
}

/// Hands one event to a stream consumer under the backpressure policy.
async fn deliver(
    link: &LinkHandle,
    id: &str,
    tx: &tokio::sync::mpsc::Sender<StreamEvent>,
    fail: &super::pending::FailSlot,
    event: StreamEvent,
) {
    let stall = link.limits().stream_stall;
    match tokio::time::timeout(stall, tx.send(event)).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => link.cancel_request(id),
        Err(_) => {
            tracing::warn!(request_id = %id, ?stall, "stream consumer too slow: stream failed, link kept");
            let _ = fail.set(EnvError::Busy(format!(
                "stream consumer too slow: it took no data for {}s, so the stream was \
                 cancelled to keep the agent link flowing",
                stall.as_secs()
            )));
            link.cancel_request(id);
        }
    }
}

/// Leaves a no-op waker, not the writer's, registered with the agent's
/// socket once a frame is written.
///
/// tokio-tungstenite keeps the waker of the last sink poll and wakes it on
/// *every* readiness event of the socket, reads included (one proxy wakes
/// both halves). Without this, each frame the agent sends (every answer,
/// every pong) wakes the idle writer as well as the reader: two tasks per
/// frame, which the multi-threaded runtime spreads over two workers (a
/// futex wake and a context switch). The writer waits on its queues, not
/// on the socket, between sends, and its next send registers again; the
/// empty flush writes nothing (the send that just completed flushed).
fn forget_write_waker(sink: &mut SplitSink<WebSocket, Message>) {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let _ = futures_util::Sink::poll_flush(std::pin::Pin::new(sink), &mut cx);
}

fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}
