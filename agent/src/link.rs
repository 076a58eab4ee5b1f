//! The link to the hub: the one owner of the WebSocket.
//!
//! One loop dials, says `hello`, waits (bounded) for `welcome`, then reads
//! frames while a heartbeat pings the hub and an idle timer watches for
//! silence; all of them are arms of one `select!`. Each connection gets a
//! child [`CancellationToken`]: when the link is lost it is cancelled, and
//! with it every relay task of that connection. Between connections the
//! loop waits per [`Backoff`], honouring a hub's `retryAfter`.
//!
//! Frames go out only through the connection's [`writer`](crate::writer);
//! requests go to the [`Relay`]. This module never calls Docker for a
//! request and never blocks its reader on a slow consumer.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use mooring_docker::error_chain;
use mooring_protocol::{caps, error_code, limits, ExecEnd, Frame, Ping, Pong};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::relay::{refuse, Relay, RelaySettings};
use crate::writer::{self, Outbox, WriterEnd};
use crate::Shared;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long the close handshake may take at shutdown.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How one connection ended.
enum Outcome {
    /// The agent is shutting down.
    Shutdown,
    /// A welcomed link ended.
    Lost(String),
    /// The hub refused the agent with an `error` frame.
    Refused {
        text: String,
        retry_after: Option<u64>,
    },
    /// Dialing or the handshake failed.
    Failed(String),
}

/// Runs the reconnect loop until `shutdown`.
pub(crate) async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    let cfg = &shared.config;
    let mut backoff = Backoff::new(cfg.reconnect_delay, cfg.max_reconnect_delay);
    loop {
        let span = tracing::info_span!("link", agent_id = %cfg.agent_id, url = %cfg.server_url);
        let outcome = session(&shared, &shutdown).instrument(span).await;
        shared.stats.connected.store(false, Ordering::Relaxed);
        let delay = match outcome {
            Outcome::Shutdown => return,
            Outcome::Lost(why) => {
                backoff.reset();
                let d = backoff.next_delay();
                tracing::warn!(reason = %why, "link to the hub lost; reconnecting in {:.1}s", d.as_secs_f64());
                d
            }
            Outcome::Refused { text, retry_after } => {
                let mut d = backoff.next_delay();
                if let Some(secs) = retry_after {
                    d = d.max(Duration::from_secs(secs));
                }
                tracing::error!(error = %text, retry_after, "the hub refused this agent; retrying in {:.1}s", d.as_secs_f64());
                d
            }
            Outcome::Failed(why) => {
                let d = backoff.next_delay();
                tracing::warn!(error = %why, attempt = backoff.failures(), "cannot connect to the hub; retrying in {:.1}s", d.as_secs_f64());
                d
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn dial(shared: &Shared) -> Result<Ws, String> {
    let cfg = &shared.config;
    // tungstenite's own limit is a hard cap (it drops the link); frames up
    // to it but over ours are refused one by one in `handle_text`.
    let hard = cfg.max_frame_bytes.saturating_add(1024 * 1024);
    // tungstenite zero-fills its read buffer (128 KiB by default) before
    // every socket read; what the hub sends is small.
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .max_message_size(Some(hard))
        .max_frame_size(Some(hard))
        .max_write_buffer_size(hard.saturating_mul(2));
    let connector = match &shared.tls {
        Some(tls) if cfg.server_url.starts_with("wss") => Connector::Rustls(tls.clone()),
        _ => Connector::Plain,
    };
    let (ws, _resp) = tokio_tungstenite::connect_async_tls_with_config(
        cfg.server_url.as_str(),
        Some(ws_config),
        true,
        Some(connector),
    )
    .await
    .map_err(|e| with_tls_hint(error_chain(&e)))?;
    Ok(ws)
}

/// Adds what to do when the hub's certificate is not trusted.
fn with_tls_hint(text: String) -> String {
    let lower = text.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("unknownissuer") {
        format!(
            "{text} (the hub's TLS certificate is not trusted: set CA_CERT to the file of the CA \
             that signed it, or fix the hub's certificate)"
        )
    } else {
        text
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn session(shared: &Arc<Shared>, shutdown: &CancellationToken) -> Outcome {
    let cfg = &shared.config;
    shared.stats.dial_attempts.fetch_add(1, Ordering::Relaxed);
    shared.refresh_docker_version().await;
    let handshake = Duration::from_secs(limits::HANDSHAKE_TIMEOUT_SECS);
    let ws = tokio::select! {
        _ = shutdown.cancelled() => return Outcome::Shutdown,
        r = tokio::time::timeout(handshake, dial(shared)) => match r {
            Err(_) => return Outcome::Failed(format!("no WebSocket upgrade within {handshake:?}")),
            Ok(Err(e)) => return Outcome::Failed(e),
            Ok(Ok(ws)) => ws,
        },
    };
    let (mut sink, mut stream) = ws.split();
    let hello = Frame::Hello(shared.hello());
    if let Err(e) = sink.send(Message::text(hello.encode())).await {
        return Outcome::Failed(format!("sending hello failed: {e}"));
    }
    tracing::debug!("hello sent; waiting for welcome");
    // Wait for welcome, answering pings meanwhile.
    let deadline = Instant::now() + handshake;
    let welcome = loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = sink.close().await;
                return Outcome::Shutdown;
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Outcome::Failed(format!("no welcome from the hub within {handshake:?}"));
            }
            m = stream.next() => m,
        };
        let text = match msg {
            None => return Outcome::Failed("the hub closed the connection before welcome".into()),
            Some(Err(e)) => return Outcome::Failed(format!("handshake failed: {e}")),
            Some(Ok(Message::Close(frame))) => {
                let why = frame
                    .map(|f| format!("{} {}", u16::from(f.code), f.reason))
                    .unwrap_or_default();
                return Outcome::Failed(format!(
                    "the hub closed the connection before welcome ({why})"
                ));
            }
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(_)) => continue,
        };
        match Frame::decode_limited(&text, cfg.max_frame_bytes) {
            Ok(Frame::Welcome(w)) => break w,
            Ok(Frame::Error(e)) => {
                return Outcome::Refused {
                    text: e.text().to_owned(),
                    retry_after: e.retry_after,
                }
            }
            Ok(Frame::Ping(p)) => {
                let pong = Frame::Pong(Pong {
                    timestamp: p.timestamp,
                });
                let _ = sink.send(Message::text(pong.encode())).await;
            }
            Ok(other) => tracing::warn!(kind = other.kind(), "frame before welcome ignored"),
            Err(e) => tracing::warn!(error = %e, "malformed frame before welcome ignored"),
        }
    };
    tracing::info!(
        environment_id = welcome.environment_id,
        server_id = welcome.server_id.as_deref().unwrap_or(""),
        message = welcome.message.as_deref().unwrap_or(""),
        "connected to the hub"
    );
    shared.stats.links_welcomed.fetch_add(1, Ordering::Relaxed);
    shared.stats.connected.store(true, Ordering::Relaxed);

    let conn = shutdown.child_token();
    let writer_stop = CancellationToken::new();
    let (outbox, inbox) = writer::queues(cfg.send_queue_bytes, conn.clone());
    let writer = shared.tracker.spawn(
        writer::run_writer(
            sink,
            inbox,
            writer_stop.clone(),
            conn.clone(),
            cfg.idle_timeout,
        )
        .in_current_span(),
    );
    // Binary stream data only when both sides announced it.
    let binary_stream = cfg.binary_streams
        && welcome
            .capabilities
            .iter()
            .flatten()
            .any(|c| c == caps::BINARY_STREAM);
    let relay = Relay::new(
        shared.docker.clone(),
        outbox.clone(),
        conn.clone(),
        shared.tracker.clone(),
        RelaySettings {
            binary_stream,
            ..relay_settings(shared)
        },
        shared.stats.clone(),
    );
    shared
        .tracker
        .spawn(forward_telemetry(shared.clone(), outbox.clone(), conn.clone()).in_current_span());
    let reason = read_loop(shared, &mut stream, &outbox, &relay, &conn, shutdown).await;
    if shutdown.is_cancelled() {
        // Relays are already cancelled (child tokens); say goodbye first.
        outbox.close("agent shutting down");
        match tokio::time::timeout(CLOSE_GRACE, writer).await {
            Ok(Ok(WriterEnd::Closed)) => tracing::info!("close frame sent to the hub"),
            other => tracing::warn!(?other, "could not send the close frame"),
        }
        writer_stop.cancel();
        return Outcome::Shutdown;
    }
    conn.cancel();
    writer_stop.cancel();
    if let Ok(WriterEnd::Failed(why)) = writer.await {
        return Outcome::Lost(why);
    }
    Outcome::Lost(reason)
}

/// Moves telemetry frames to this connection's outbox until it ends; the
/// queue outlives the connection, so frames wait (bounded) for the next.
async fn forward_telemetry(shared: Arc<Shared>, outbox: Outbox, conn: CancellationToken) {
    let mut rx = tokio::select! {
        rx = shared.telemetry_rx.lock() => rx,
        _ = conn.cancelled() => return,
    };
    loop {
        let frame = tokio::select! {
            f = rx.recv() => match f {
                Some(f) => f,
                None => return,
            },
            _ = conn.cancelled() => return,
        };
        if outbox.send(&frame).await.is_err() {
            return;
        }
    }
}

fn relay_settings(shared: &Shared) -> RelaySettings {
    let cfg = &shared.config;
    let headroom = 64 * 1024;
    RelaySettings {
        max_concurrent: cfg.max_concurrent_requests,
        chunk_bytes: cfg.stream_chunk_bytes,
        request_timeout: cfg.request_timeout,
        // base64 grows a binary body by 4/3; keep the frame under the limit.
        max_response_bytes: cfg.max_frame_bytes.saturating_sub(headroom) / 4 * 3,
        max_frame_bytes: cfg.max_frame_bytes,
        binary_stream: false,
    }
}

/// Reads frames until the link ends; returns why.
async fn read_loop(
    shared: &Shared,
    stream: &mut futures_util::stream::SplitStream<Ws>,
    outbox: &Outbox,
    relay: &Relay,
    conn: &CancellationToken,
    shutdown: &CancellationToken,
) -> String {
    let cfg = &shared.config;
    let start = Instant::now() + cfg.heartbeat_interval;
    let mut heartbeat = tokio::time::interval_at(start, cfg.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_rx = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return "agent shutting down".into(),
            _ = conn.cancelled() => return "writing to the hub failed".into(),
            _ = heartbeat.tick() => {
                let ping = Ping { timestamp: Some(now_millis().into()) };
                outbox.send_control(&Frame::Ping(ping));
            }
            _ = tokio::time::sleep_until(last_rx + cfg.idle_timeout) => {
                return format!("nothing received from the hub for {:?}", cfg.idle_timeout);
            }
            msg = stream.next() => {
                last_rx = Instant::now();
                match msg {
                    None => return "the hub closed the connection".into(),
                    Some(Err(e)) => return format!("reading from the hub failed: {e}"),
                    Some(Ok(Message::Text(text))) => handle_text(shared, &text, outbox, relay),
                    Some(Ok(Message::Binary(_))) => tracing::warn!("binary message from the hub ignored"),
                    Some(Ok(Message::Close(frame))) => {
                        let why = frame.map(|f| format!("{} {}", u16::from(f.code), f.reason)).unwrap_or_default();
                        return format!("the hub closed the link ({why})");
                    }
                    Some(Ok(_)) => {}
                }
            }
        }
    }
}

fn handle_text(shared: &Shared, text: &str, outbox: &Outbox, relay: &Relay) {
    match Frame::decode_limited(text, shared.config.max_frame_bytes) {
        Ok(Frame::Request(req)) => relay.start(req),
        Ok(Frame::StreamEnd(end)) => {
            if !relay.cancel(&end.request_id) {
                tracing::debug!(request_id = %end.request_id, "stream_end for a request not in flight");
            }
        }
        Ok(Frame::Ping(p)) => outbox.send_control(&Frame::Pong(Pong {
            timestamp: p.timestamp,
        })),
        Ok(Frame::Pong(_)) => {}
        Ok(Frame::Error(e)) => {
            tracing::warn!(request_id = e.request_id.as_deref().unwrap_or(""), error = %e.text(), "the hub reported an error")
        }
        Ok(Frame::ExecStart(x)) => {
            tracing::warn!(exec_id = %x.exec_id, "exec is not supported by this agent");
            outbox.send_control(&Frame::ExecEnd(ExecEnd {
                exec_id: x.exec_id,
                reason: "error".into(),
            }));
        }
        Ok(other) => tracing::debug!(kind = other.kind(), "frame ignored"),
        Err(err) => {
            tracing::warn!(error = %err, "malformed frame from the hub ignored");
            if let Some((id, streaming)) = request_id_of(text) {
                refuse(
                    outbox,
                    &id,
                    streaming,
                    error_code::PARSE_ERROR,
                    &format!("malformed request: {err}"),
                );
            }
        }
    }
}

/// The `requestId` (and `streaming` flag) of a frame that failed to decode.
fn request_id_of(text: &str) -> Option<(String, bool)> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let id = v.get("requestId")?.as_str()?.to_owned();
    let streaming = v
        .get("streaming")
        .and_then(|s| s.as_bool())
        .unwrap_or(false);
    Some((id, streaming))
}
