//! Talking to a running hub over HTTP: what `mooring-hub push` and the
//! end-to-end tests use.
//!
//! This module is a client only: it never touches the store or the hub's
//! state, and never prints the API key.
//!
//! # Layout
//! - [`http`]: one-request-per-connection HTTP/1.1 client (http and https).
//! - [`sse`]: the `text/event-stream` parser.
//! - [`follow`]: following a job's events to the end, with resume.
//! - [`push`]: the `push` subcommand and its progress bars.

pub mod follow;
pub mod http;
pub mod push;
pub mod sse;

pub use follow::{follow_job, FollowEnd, StreamedEvent};
pub use http::{ClientError, HubClient};
pub use push::{run_push, PushArgs};
