//! Following a job's event stream to its end, as a browser `EventSource`
//! would: `GET /api/jobs/{id}` with `Accept: text/event-stream`, and on a
//! dropped connection a reconnect with `Last-Event-ID`, so every event is
//! seen once. A `204` answer means the job had already ended and nothing
//! is left after our cursor; the job's JSON then gives its result.

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::Value;

use super::http::{ClientError, HubClient};
use super::sse::SseParser;

/// Longest SSE line accepted (one progress event).
const MAX_SSE_LINE: usize = 1024 * 1024;

/// One event of a job, as streamed.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamedEvent {
    /// The SSE event id (monotonic per job).
    pub id: u64,
    /// The progress object (the `data` member of the event's JSON).
    pub data: Value,
}

impl StreamedEvent {
    /// Whether this is the job's last event (`complete` or `error`).
    pub fn is_terminal(&self) -> bool {
        matches!(self.data["status"].as_str(), Some("complete" | "error"))
    }
}

/// How a followed job ended.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowEnd {
    /// The terminal event object.
    pub result: Value,
    /// How many times the stream was reopened.
    pub reconnects: u32,
}

/// Follows job `job_id` from after event `after` to its terminal event,
/// calling `on_event` for each event once, reconnecting at most
/// `max_reconnects` times.
pub async fn follow_job(
    client: &HubClient,
    job_id: &str,
    mut after: Option<u64>,
    max_reconnects: u32,
    mut on_event: impl FnMut(&StreamedEvent),
) -> Result<FollowEnd, ClientError> {
    let path = format!("/api/jobs/{}", crate::push::encode_component(job_id));
    let mut reconnects = 0;
    loop {
        let cursor = after.map(|a| a.to_string());
        let mut headers = vec![("accept", "text/event-stream")];
        if let Some(c) = &cursor {
            headers.push(("last-event-id", c.as_str()));
        }
        let attempt = match client.send(Method::GET, &path, &headers, None).await {
            Ok(resp) => read_stream(resp, &mut after, &mut on_event).await,
            Err(e) => Err(e),
        };
        match attempt {
            Ok(Some(result)) => return Ok(FollowEnd { result, reconnects }),
            Ok(None) => {
                // 204: the job ended before anything after our cursor.
                let (status, job) = client.json(Method::GET, &path, None).await?;
                if status != StatusCode::OK {
                    return Err(api_error(status, &job));
                }
                return Ok(FollowEnd {
                    result: job["result"].clone(),
                    reconnects,
                });
            }
            Err(e @ ClientError::BadAnswer(_)) | Err(e @ ClientError::BadUrl(_)) => return Err(e),
            Err(e) if reconnects >= max_reconnects => return Err(e),
            Err(e) => {
                reconnects += 1;
                tracing::debug!(error = %e, reconnects, "job stream lost; reconnecting");
                let backoff = Duration::from_millis(250 * u64::from(reconnects.min(8)));
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

/// Reads one SSE response. `Ok(Some(terminal))` when the terminal event
/// came, `Ok(None)` for a 204, `Err(Http)` when the stream broke early.
async fn read_stream(
    mut resp: super::http::Response,
    after: &mut Option<u64>,
    on_event: &mut impl FnMut(&StreamedEvent),
) -> Result<Option<Value>, ClientError> {
    match resp.status() {
        StatusCode::OK => {}
        StatusCode::NO_CONTENT => return Ok(None),
        status => {
            let body = resp.bytes(64 * 1024).await.unwrap_or_default();
            let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            return Err(ClientError::BadAnswer(
                api_error(status, &value).to_string(),
            ));
        }
    }
    let mut parser = SseParser::new(MAX_SSE_LINE);
    let mut events = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        parser
            .feed(&chunk, &mut events)
            .map_err(|e| ClientError::BadAnswer(e.to_string()))?;
        for ev in events.drain(..) {
            if ev.event != "data" {
                continue;
            }
            let id = ev
                .id
                .as_deref()
                .and_then(|i| i.parse::<u64>().ok())
                .ok_or_else(|| {
                    ClientError::BadAnswer(format!("event without a numeric id: {ev:?}"))
                })?;
            let wrapped: Value = serde_json::from_str(&ev.data).map_err(|_| {
                ClientError::BadAnswer(format!("event data is not JSON: {}", ev.data))
            })?;
            let event = StreamedEvent {
                id,
                data: wrapped["data"].clone(),
            };
            *after = Some(id);
            on_event(&event);
            if event.is_terminal() {
                return Ok(Some(event.data));
            }
        }
    }
    Err(ClientError::Http(
        "the job stream ended before the job did".into(),
    ))
}

/// A `BadAnswer` carrying the hub's `{"error": …}` text.
pub fn api_error(status: StatusCode, body: &Value) -> ClientError {
    let text = body["error"].as_str().unwrap_or("(no error text)");
    ClientError::BadAnswer(format!("HTTP {status}: {text}"))
}
