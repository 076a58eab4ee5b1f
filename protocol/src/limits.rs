//! Protocol-level limits and defaults shared by the agent and the hub.
//!
//! Each binary may expose a flag to change them; these are the defaults.

/// Largest WebSocket message either side accepts, in bytes (64 MiB).
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// How long an agent waits for `welcome` after sending `hello`.
pub const HANDSHAKE_TIMEOUT_SECS: u64 = 10;

/// Raw bytes per `stream` frame the Mooring agent sends by default.
///
/// The reference agent sends 4 KiB; any size below the peer's frame limit is
/// compatible, and larger chunks cut the per-frame JSON + base64 cost.
pub const DEFAULT_STREAM_CHUNK_BYTES: usize = 64 * 1024;

/// Longest single line the JSON-lines decoder buffers before giving up.
pub const MAX_PROGRESS_LINE_BYTES: usize = 1024 * 1024;

/// The protocol version string sent in `hello` and `welcome`.
pub const PROTOCOL_VERSION: &str = "1.0";

/// Path of the agent endpoint on the hub.
pub const CONNECT_PATH: &str = "/api/hawser/connect";
