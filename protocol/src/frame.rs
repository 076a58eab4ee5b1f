//! Every Hawser 1.0 frame as a Rust type.
//!
//! Field names are the wire names (camelCase). Optional fields that the
//! reference Go agent omits when empty are omitted here too, so a decoded
//! frame re-encodes to the same JSON value. Fields Mooring adds (marked
//! "extension") are optional and ignored by reference peers.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Capability names announced in `hello` (and, for extensions, `welcome`).
pub mod caps {
    /// Interactive exec sessions.
    pub const EXEC: &str = "exec";
    /// Periodic host metrics frames.
    pub const METRICS: &str = "metrics";
    /// Container events from Docker's event stream.
    pub const EVENTS: &str = "events";
    /// The `/_hawser/compose` pseudo-request.
    pub const COMPOSE: &str = "compose";
    /// Extension: `stream` and `stream_end` carry Docker's HTTP `statusCode`.
    pub const STREAM_STATUS: &str = "mooring.stream-status";
    /// Extension: stream data may travel as binary WebSocket messages
    /// ([`crate::binary`]). The agent announces it in `hello`; the hub
    /// answers it in `welcome` only when the agent announced it; the agent
    /// sends binary data only after that answer. Peers without it never
    /// see a binary message.
    pub const BINARY_STREAM: &str = "mooring.binary-stream";
}

/// Headers as the wire carries them: the first value of each name.
pub type Headers = BTreeMap<String, String>;

/// One protocol message. Decode with [`Frame::decode`], encode with
/// [`Frame::encode`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Frame {
    /// Agent → hub: first frame, carries the token.
    Hello(Hello),
    /// Hub → agent: the token was accepted.
    Welcome(Welcome),
    /// Hub → agent: one Docker Engine API call to make.
    Request(Request),
    /// Agent → hub: the whole answer to a non-streaming request.
    Response(Response),
    /// Agent → hub: one chunk of a streaming answer.
    Stream(StreamChunk),
    /// Either way: end of a stream (agent: done; hub: cancel).
    StreamEnd(StreamEnd),
    /// Either way: a failure, of a request or of the handshake.
    Error(ErrorFrame),
    /// Either way: liveness probe.
    Ping(Ping),
    /// Either way: answer to a ping.
    Pong(Pong),
    /// Agent → hub: host telemetry.
    Metrics(MetricsFrame),
    /// Agent → hub: one Docker container event.
    ContainerEvent(ContainerEventFrame),
    /// Hub → agent: open an interactive exec session.
    ExecStart(ExecStart),
    /// Agent → hub: the exec session is attached.
    ExecReady(ExecReady),
    /// Hub → agent: keystrokes for an exec session.
    ExecInput(ExecData),
    /// Agent → hub: terminal output of an exec session.
    ExecOutput(ExecData),
    /// Hub → agent: terminal size changed.
    ExecResize(ExecResize),
    /// Either way: the exec session is over.
    ExecEnd(ExecEnd),
    /// A frame whose `type` this version does not know; kept verbatim so it
    /// can be logged and ignored (never fatal).
    #[serde(skip)]
    Unknown {
        /// The frame's `type` string.
        kind: String,
        /// The whole frame as received.
        raw: Value,
    },
}

impl Frame {
    /// The wire name of this frame's type.
    pub fn kind(&self) -> &str {
        match self {
            Frame::Hello(_) => "hello",
            Frame::Welcome(_) => "welcome",
            Frame::Request(_) => "request",
            Frame::Response(_) => "response",
            Frame::Stream(_) => "stream",
            Frame::StreamEnd(_) => "stream_end",
            Frame::Error(_) => "error",
            Frame::Ping(_) => "ping",
            Frame::Pong(_) => "pong",
            Frame::Metrics(_) => "metrics",
            Frame::ContainerEvent(_) => "container_event",
            Frame::ExecStart(_) => "exec_start",
            Frame::ExecReady(_) => "exec_ready",
            Frame::ExecInput(_) => "exec_input",
            Frame::ExecOutput(_) => "exec_output",
            Frame::ExecResize(_) => "exec_resize",
            Frame::ExecEnd(_) => "exec_end",
            Frame::Unknown { kind, .. } => kind,
        }
    }

    /// The request this frame belongs to, if any.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Frame::Request(r) => Some(&r.request_id),
            Frame::Response(r) => Some(&r.request_id),
            Frame::Stream(s) => Some(&s.request_id),
            Frame::StreamEnd(s) => Some(&s.request_id),
            Frame::Error(e) => e.request_id.as_deref(),
            _ => None,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `hello`: the agent introduces itself. `Debug` hides the token.
#[derive(Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Hello {
    /// Agent software version.
    pub version: String,
    /// Protocol version, `"1.0"`.
    pub protocol: String,
    /// Stable agent id (a UUID).
    pub agent_id: String,
    /// Human name of the agent (defaults to the hostname).
    pub agent_name: String,
    /// The enrollment token. Secret: never log it.
    pub token: String,
    /// Docker Engine version of the host.
    #[serde(default)]
    pub docker_version: String,
    /// Host name.
    #[serde(default)]
    pub hostname: String,
    /// Capabilities the agent really supports.
    #[serde(default)]
    pub capabilities: Vec<String>,
}

impl fmt::Debug for Hello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hello")
            .field("version", &self.version)
            .field("protocol", &self.protocol)
            .field("agent_id", &self.agent_id)
            .field("agent_name", &self.agent_name)
            .field("token", &"<redacted>")
            .field("docker_version", &self.docker_version)
            .field("hostname", &self.hostname)
            .field("capabilities", &self.capabilities)
            .finish()
    }
}

/// `welcome`: the hub accepted the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Welcome {
    /// Environment the token belongs to (the reference agent wants an integer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<i64>,
    /// Hub identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<String>,
    /// Hub protocol version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Free text for the agent's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Extension: capabilities the hub supports (e.g. [`caps::STREAM_STATUS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
}

/// `request`: one Docker Engine API call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// Correlates the answer frames.
    pub request_id: String,
    /// HTTP method.
    pub method: String,
    /// Docker API path with query, with or without a `/v1.NN` prefix.
    pub path: String,
    /// Request headers (e.g. `X-Registry-Auth`).
    #[serde(default)]
    pub headers: Headers,
    /// JSON body sent as-is, or with `is_binary` a base64 string of bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// The body is base64 of raw bytes.
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_binary: bool,
    /// Answer with `stream` frames instead of one `response`.
    #[serde(default)]
    pub streaming: bool,
}

/// `response`: the whole answer to a non-streaming request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    /// Correlates with the request.
    pub request_id: String,
    /// Docker's HTTP status.
    pub status_code: u16,
    /// Docker's response headers, first value of each.
    #[serde(default)]
    pub headers: Headers,
    /// Body: UTF-8 text, or base64 when `is_binary`. Omitted when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
    /// The body is base64 of raw bytes.
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_binary: bool,
}

/// `stream`: one chunk of a streaming answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct StreamChunk {
    /// Correlates with the request.
    pub request_id: String,
    /// Raw bytes of the chunk (base64 on the wire).
    #[serde(with = "crate::b64::serde_bytes")]
    pub data: Vec<u8>,
    /// `stdout` / `stderr` for demultiplexed output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Extension: Docker's HTTP status, on the first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
}

/// Reasons seen in `stream_end`.
pub mod end_reason {
    /// The Docker response ended normally.
    pub const COMPLETED: &str = "completed";
    /// The hub cancelled the request.
    pub const CANCELLED: &str = "cancelled";
    /// The stream broke (Docker or the link failed).
    pub const ERROR: &str = "error";
}

/// `stream_end`: end of a stream; hub → agent it means "cancel".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct StreamEnd {
    /// Correlates with the request.
    pub request_id: String,
    /// Why it ended (see [`end_reason`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Extension: Docker's HTTP status of the streamed response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Extension: what broke, when `reason` is `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Error codes seen in `error` frames.
pub mod error_code {
    /// Docker could not be reached or answered badly.
    pub const DOCKER_ERROR: &str = "DOCKER_ERROR";
    /// Reading Docker's answer failed midway.
    pub const READ_ERROR: &str = "READ_ERROR";
    /// The request could not be parsed or was refused.
    pub const PARSE_ERROR: &str = "PARSE_ERROR";
    /// Extension: the agent is at its concurrent-request limit.
    pub const BUSY: &str = "BUSY";
}

/// `error`: a failed request, or a refused handshake.
///
/// The reference hub writes the text to `message`, the reference agent reads
/// `error`: senders fill both, readers take either ([`ErrorFrame::text`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ErrorFrame {
    /// The failed request, absent for handshake errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Error text (reference agent's field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Error text (reference hub's field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Machine-readable code (see [`error_code`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Seconds to wait before reconnecting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl ErrorFrame {
    /// An error with the same text in `error` and `message`.
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        ErrorFrame {
            error: Some(text.clone()),
            message: Some(text),
            ..Default::default()
        }
    }

    /// A request error with a code.
    pub fn for_request(request_id: impl Into<String>, code: &str, text: impl Into<String>) -> Self {
        ErrorFrame {
            request_id: Some(request_id.into()),
            code: Some(code.to_owned()),
            ..ErrorFrame::new(text)
        }
    }

    /// The error text, from whichever field carries it.
    pub fn text(&self) -> &str {
        self.error
            .as_deref()
            .or(self.message.as_deref())
            .unwrap_or("unspecified error")
    }
}

/// `ping`: liveness probe. The timestamp is opaque (seconds or ms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Ping {
    /// Sender's clock, opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<serde_json::Number>,
}

/// `pong`: answer to a ping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Pong {
    /// Sender's clock, opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<serde_json::Number>,
}

/// `metrics`: host telemetry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MetricsFrame {
    /// Unix seconds.
    pub timestamp: i64,
    /// The readings.
    pub metrics: HostMetrics,
}

/// Host readings in a `metrics` frame (bytes, seconds, CPU in %).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct HostMetrics {
    /// CPU busy % over the last interval.
    #[serde(serialize_with = "go_float")]
    pub cpu_usage: f64,
    /// Logical cores.
    pub cpu_cores: u32,
    /// Memory in bytes.
    pub memory_total: u64,
    /// Memory used in bytes.
    pub memory_used: u64,
    /// Memory free (available) in bytes.
    pub memory_free: u64,
    /// Disk of Docker's data root, bytes.
    pub disk_total: u64,
    /// Disk used, bytes.
    pub disk_used: u64,
    /// Disk free, bytes.
    pub disk_free: u64,
    /// Network bytes received since boot.
    pub network_rx_bytes: u64,
    /// Network bytes sent since boot.
    pub network_tx_bytes: u64,
    /// Host uptime, seconds.
    pub uptime: u64,
}

/// Writes whole floats as integers, as Go's encoder does (`0`, not `0.0`).
fn go_float<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

/// `container_event`: one Docker container event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ContainerEventFrame {
    /// The event.
    pub event: ContainerEvent,
}

/// The payload of a `container_event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContainerEvent {
    /// Container id.
    pub container_id: String,
    /// Container name.
    #[serde(default)]
    pub container_name: String,
    /// Image of the container.
    #[serde(default)]
    pub image: String,
    /// Action (`start`, `die`, …).
    pub action: String,
    /// Docker's actor attributes.
    #[serde(default)]
    pub actor_attributes: BTreeMap<String, String>,
    /// RFC 3339 with nanoseconds, UTC.
    pub timestamp: String,
}

/// `exec_start`: open an interactive exec session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExecStart {
    /// Session id.
    pub exec_id: String,
    /// Target container.
    pub container_id: String,
    /// Command line (shell string).
    #[serde(default)]
    pub cmd: String,
    /// User to run as.
    #[serde(default)]
    pub user: String,
    /// Terminal width.
    #[serde(default)]
    pub cols: u16,
    /// Terminal height.
    #[serde(default)]
    pub rows: u16,
}

/// `exec_ready`: the exec session is attached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExecReady {
    /// Session id.
    pub exec_id: String,
}

/// `exec_input` / `exec_output`: terminal bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExecData {
    /// Session id.
    pub exec_id: String,
    /// Raw bytes (base64 on the wire).
    #[serde(with = "crate::b64::serde_bytes")]
    pub data: Vec<u8>,
}

/// `exec_resize`: new terminal size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExecResize {
    /// Session id.
    pub exec_id: String,
    /// Terminal width.
    pub cols: u16,
    /// Terminal height.
    pub rows: u16,
}

/// `exec_end`: the exec session is over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExecEnd {
    /// Session id.
    pub exec_id: String,
    /// `user_closed`, `container_exit` or `error`.
    #[serde(default)]
    pub reason: String,
}
