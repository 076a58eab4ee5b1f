//! # mooring-hub
//!
//! The central relay: accepts Hawser agents on `/api/hawser/connect`, keeps
//! the store of environments, tokens, registries and API keys, and serves
//! the HTTP API (push jobs, passthrough, status) and the dashboard.

pub mod client;
pub mod envs;
pub mod jobs;
pub mod push;
