//! # mooring-hub
//!
//! The central relay: accepts Hawser agents on `/api/hawser/connect`, keeps
//! the store of environments, tokens, registries and API keys, and serves
//! the HTTP API (environments, tokens, registries, API keys, Docker
//! passthrough, push jobs).
//!
//! # Layout
//! - [`config`]: clap command line (serve flags and admin subcommands).
//! - [`setup`]: first start (store, `local` environment, admin key).
//! - [`admin`]: the admin subcommands over the store.
//! - [`store`]: SQLite through sqlx, the only place with SQL.
//! - [`crypto`]: tokens, API keys, argon2id, the at-rest cipher.
//! - [`auth`]: API-key authentication and permissions.
//! - [`link`]: the agent endpoint, live links, pending requests, limits.
//! - [`envs`]: [`envs::EnvClient`], one interface to local and edge Docker.
//! - [`api`]: axum routers and [`api::ApiError`].
//! - [`jobs`]: background jobs, their bounded event logs, SSE.
//! - [`push`]: image push: tag rules, registry auth, progress, the route.
//! - [`client`]: HTTP client of a running hub (the `push` subcommand).
//! - [`status`]: connectivity status of environments, metrics history.
//! - [`events`]: the live event bus behind `GET /api/events`.
//! - [`metrics`]: Prometheus metrics (`GET /metrics`).
//! - [`ui`]: the web dashboard's assets, `/install.sh`, dashboard login.
//! - [`sessions`]: dashboard sessions (cookie → API key).
//! - [`install`]: the hub's public URL and agent enrollment commands.
//! - [`state`]: [`state::AppState`], shared by handlers and tasks.
//! - [`server`]: the accept loop ([`run`]), TLS, graceful shutdown.
//!
//! Follow one call: `api::docker` → `AppState::env_client` →
//! `EnvClient::stream` → `LinkHandle::open_stream` (a `request` frame on
//! the link's writer queue) → agent → `stream` frames → `link::session`
//! reader → the pending table → `DockerStream::next_chunk` → HTTP body.

pub mod admin;
pub mod api;
pub mod auth;
pub mod client;
pub mod config;
pub mod crypto;
pub mod envs;
pub mod events;
pub mod install;
pub mod jobs;
pub mod link;
pub mod metrics;
pub mod push;
pub mod server;
pub mod sessions;
pub mod setup;
pub mod state;
pub mod status;
pub mod store;
pub mod ui;

pub use server::{run, run_tls};
pub use state::{AppState, Settings};
