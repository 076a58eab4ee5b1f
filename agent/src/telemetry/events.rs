//! Follows Docker's container event stream and forwards `container_event`
//! frames, for as long as the agent runs.
//!
//! It owns the one `GET /v{negotiated}/events` request at a time, the resume
//! cursor and the reconnect backoff. When the stream ends or Docker is down
//! it reconnects (capped exponential backoff with jitter, reset after a
//! stream stayed up for [`TelemetryOptions::stable_after`]) and resumes with
//! `since=` the last event, dropping Docker's inclusive replay by key, so a
//! Docker restart loses nothing and repeats nothing. A stream silent for
//! [`TelemetryOptions::idle_recycle`] is reopened the same way, so a
//! half-open connection cannot hide events for ever.
//!
//! It never asks Docker for an API version the daemon did not negotiate,
//! never blocks reading on a slow link (see [`super::outbox`]), and never
//! forwards anything but the Hawser container actions.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use mooring_docker::{docker_message, read_body, DockerClient, DockerError, DockerRequest};
use mooring_protocol::lines::LineDecoder;
use mooring_protocol::{ContainerEventFrame, Frame};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::event_map::{parse_line, Cursor};
use super::outbox::{Drive, Outbox};
use super::{TelemetryError, TelemetryOptions, TelemetryStatus};
use crate::backoff::Backoff;

/// Longest wait for Docker to answer the events request with its headers.
pub(crate) const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest event line accepted (labels can be long; a line is one event).
const MAX_EVENT_LINE: usize = 1024 * 1024;

/// The filter asking Docker for container events only.
const CONTAINER_FILTER: &str = r#"{"type":["container"]}"#;

/// How one stream ended, when it did not fail.
enum Ended {
    /// Shutdown or the link's channel closed: stop for good.
    Stop,
    /// Docker closed the stream (daemon stopping, for instance).
    Closed,
    /// Nothing arrived for `idle_recycle`: reopen at once.
    Idle,
}

/// `/v{negotiated}/events?filters=…[&since=…]`.
pub(crate) fn events_path(docker: &DockerClient, since: Option<&str>) -> String {
    let mut path = format!(
        "{}?filters={}",
        docker.versioned("/events"),
        utf8_percent_encode(CONTAINER_FILTER, NON_ALPHANUMERIC)
    );
    if let Some(since) = since {
        path.push_str("&since=");
        path.push_str(since);
    }
    path
}

/// Negotiates the API version and opens the event stream; a non-2xx
/// answer is an error carrying Docker's message.
pub(crate) async fn open(
    docker: &DockerClient,
    since: Option<&str>,
) -> Result<Incoming, TelemetryError> {
    let opening = async {
        docker.negotiate().await?;
        let resp = docker
            .send(DockerRequest::get(events_path(docker, since)))
            .await?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let body = read_body(resp.into_body(), 64 * 1024).await?;
            return Err(DockerError::Status {
                status,
                message: docker_message(&body),
            }
            .into());
        }
        Ok(resp.into_body())
    };
    match tokio::time::timeout(OPEN_TIMEOUT, opening).await {
        Ok(result) => result,
        Err(_) => Err(DockerError::Timeout(OPEN_TIMEOUT).into()),
    }
}

/// Runs the event loop until `shutdown` or until the link's channel closes.
pub(crate) async fn run(
    docker: DockerClient,
    mut outbox: Outbox,
    options: TelemetryOptions,
    status: watch::Sender<TelemetryStatus>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(options.reconnect_min, options.reconnect_max);
    let mut cursor = Cursor::default();
    let mut last_error = String::new();
    loop {
        let mut opened_at = None;
        let outcome = follow(
            &docker,
            &mut outbox,
            &mut cursor,
            &options,
            &status,
            &shutdown,
            &mut opened_at,
        )
        .await;
        status.send_modify(|s| s.events_connected = false);
        if opened_at.is_some_and(|t: Instant| t.elapsed() >= options.stable_after) {
            backoff.reset();
        }
        match outcome {
            Ok(Ended::Stop) => return,
            Ok(Ended::Idle) => {
                debug!("event stream idle: reopening it from the cursor");
                continue;
            }
            Ok(Ended::Closed) => info!("Docker closed the event stream; reconnecting"),
            Err(err) => {
                let text = err.to_string();
                if text != last_error {
                    warn!(%err, "container event stream unavailable; retrying with backoff");
                } else {
                    debug!(%err, "container event stream still unavailable");
                }
                status.send_modify(|s| s.events_last_error = Some(text.clone()));
                last_error = text;
            }
        }
        if opened_at.is_some() {
            last_error.clear();
        }
        let delay = backoff.next_delay();
        status.send_modify(|s| s.events_reconnects += 1);
        match outbox.drive(tokio::time::sleep(delay), &shutdown).await {
            Drive::Done(()) => {}
            Drive::Shutdown | Drive::Closed => return,
        }
    }
}

/// Opens one stream and forwards its events until it ends.
async fn follow(
    docker: &DockerClient,
    outbox: &mut Outbox,
    cursor: &mut Cursor,
    options: &TelemetryOptions,
    status: &watch::Sender<TelemetryStatus>,
    shutdown: &CancellationToken,
    opened_at: &mut Option<Instant>,
) -> Result<Ended, TelemetryError> {
    let since = cursor.since();
    let mut body = match outbox.drive(open(docker, since.as_deref()), shutdown).await {
        Drive::Done(body) => body?,
        Drive::Shutdown | Drive::Closed => return Ok(Ended::Stop),
    };
    *opened_at = Some(Instant::now());
    cursor.open_at(unix_nanos());
    status.send_modify(|s| {
        s.events_connected = true;
        s.events_last_error = None;
    });
    debug!(?since, api = ?docker.api_version(), "container event stream open");
    let mut decoder = LineDecoder::new(MAX_EVENT_LINE);
    loop {
        let next = tokio::time::timeout(options.idle_recycle, body.frame());
        let chunk = match outbox.drive(next, shutdown).await {
            Drive::Done(Ok(chunk)) => chunk,
            Drive::Done(Err(_idle)) => return Ok(Ended::Idle),
            Drive::Shutdown | Drive::Closed => return Ok(Ended::Stop),
        };
        let Some(chunk) = chunk else {
            if let Some(last) = decoder.finish() {
                forward(&last, cursor, outbox);
            }
            return Ok(Ended::Closed);
        };
        let chunk = chunk.map_err(|e| TelemetryError::EventStream(e.to_string()))?;
        let Ok(data) = chunk.into_data() else {
            continue;
        };
        decoder
            .push(&data, |line| forward(line, cursor, outbox))
            .map_err(|e| TelemetryError::EventStream(e.to_string()))?;
    }
}

/// Maps one line and queues it if it is a new, forwarded container event.
fn forward(line: &[u8], cursor: &mut Cursor, outbox: &mut Outbox) {
    match parse_line(line) {
        Ok(Some(parsed)) => {
            if cursor.admit(&parsed) {
                outbox.push(Frame::ContainerEvent(ContainerEventFrame {
                    event: parsed.event,
                }));
            } else {
                debug!(key = %parsed.key, "replayed event already forwarded");
            }
        }
        Ok(None) => {}
        Err(reason) => warn!(%reason, "skipping an unreadable Docker event"),
    }
}

/// Now in unix nanoseconds (local clock; Docker's, on the same host).
fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mooring_docker::Endpoint;

    #[test]
    fn path_is_versioned_filtered_and_resumable() {
        let docker = DockerClient::new(Endpoint::Unix("/nonexistent.sock".into()));
        assert_eq!(
            events_path(&docker, None),
            "/events?filters=%7B%22type%22%3A%5B%22container%22%5D%7D"
        );
        assert!(events_path(&docker, Some("12.000000003")).ends_with("&since=12.000000003"));
    }
}
