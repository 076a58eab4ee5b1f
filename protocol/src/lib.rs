//! # mooring-protocol
//!
//! The Hawser edge protocol 1.0 as Mooring speaks it: every frame type, its
//! JSON encoding, the limits both sides enforce, and the small pure helpers
//! the wire contract defines (base64 payloads, binary detection, Docker path
//! checks, the JSON-lines decoder for Docker progress streams).
//!
//! This crate owns the wire format and nothing else. It must never do I/O,
//! spawn tasks or depend on an async runtime: the agent, the hub and the
//! tests all build on it, and nothing outside it defines a frame.
//!
//! # Layout
//! - [`frame`]: the [`Frame`] enum and one struct per message type.
//! - [`codec`]: [`Frame::decode`] / [`Frame::encode`] with the size limit.
//! - [`b64`]: base64 with padding, as the reference Go agent writes it.
//! - [`binary`]: the opt-in binary stream-data message (extension).
//! - [`lines`]: reassembles newline-delimited JSON across chunk boundaries.
//! - [`docker`]: binary-body detection and request-path validation.
//! - [`limits`]: defaults shared by both binaries.

pub mod b64;
pub mod binary;
pub mod codec;
pub mod docker;
pub mod frame;
pub mod limits;
pub mod lines;

pub use codec::DecodeError;
pub use frame::*;
