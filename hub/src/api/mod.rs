//! The HTTP API: axum routers built by functions, JSON in and out, every
//! error as `{"error": "…"}` through [`ApiError`].
//!
//! [`routes`] is the one merge point: each module contributes a
//! `routes() -> Router<AppState>`; [`router`] applies the state. Tests call
//! [`router`] without a socket; `run` serves it.
//!
//! # Layout
//! - [`error`]: the `ApiError` type.
//! - [`extract`]: JSON and path extractors whose rejections are `ApiError`s.
//! - [`health`]: `GET /api/health`, no auth.
//! - [`environments`]: environments CRUD with live status.
//! - [`tokens`]: agent tokens.
//! - [`registries`]: container registries (passwords never returned).
//! - [`apikeys`]: API keys.
//! - [`docker`]: the Docker Engine API passthrough.
//! - `crate::jobs::api` (`GET`/`DELETE /api/jobs/{id}`) and
//!   `crate::push::api` (`POST /api/images/push`) are merged in [`routes`].
//! - [`events`]: `GET /api/events`, live events as SSE or JSON.
//! - [`telemetry`]: `GET /api/environments/{id}/metrics`, metrics history.
//! - [`agent_binary`]: `GET /api/agent/binary` and `.sha256`, the agent
//!   binaries the installer downloads (no auth, bounded).
//!
//! Outside `api`, [`crate::ui`] adds the dashboard and `/api/session`, and
//! [`crate::metrics`] adds `GET /metrics`.

pub mod agent_binary;
pub mod apikeys;
pub mod docker;
pub mod environments;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod registries;
pub mod telemetry;
pub mod tokens;

use axum::Router;

pub use error::ApiError;
pub use extract::{IdPath, JsonBody};

use crate::state::AppState;

/// Every route of the hub (API and agent endpoint), state not yet applied.
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(health::routes())
        .merge(environments::routes())
        .merge(tokens::routes())
        .merge(registries::routes())
        .merge(apikeys::routes())
        .merge(docker::routes())
        .merge(events::routes())
        .merge(telemetry::routes())
        .merge(agent_binary::routes())
        .merge(crate::metrics::routes())
        .merge(crate::ui::routes())
        .merge(crate::link::router())
        .merge(crate::jobs::api::routes())
        .merge(crate::push::api::routes())
        .fallback(|| async { ApiError::not_found("No such route") })
}

/// The hub's whole router, with its state.
pub fn router(state: AppState) -> Router {
    routes().with_state(state)
}

/// Unix seconds as RFC 3339 UTC (`2025-01-31T12:00:00Z`).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats_known_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_735_689_599), "2024-12-31T23:59:59Z");
    }
}
