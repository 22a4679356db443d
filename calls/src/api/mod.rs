//! HTTP: the apps management API and the Cloudflare-Realtime-compatible sessions API.

pub mod apps;
pub mod demo;
pub mod errors;
pub mod sessions;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::{
    extract::FromRef,
    routing::{get, post, put},
    Router,
};
use platform::Platform;

use crate::sfu::engine::Engine;

/// Limits the API enforces (the media core enforces tracks per session).
#[derive(Debug, Clone)]
pub struct ApiLimits {
    pub max_sdp_bytes: usize,
    pub calls_per_second: u32,
}

#[derive(Clone)]
pub struct ApiState {
    pub platform: Platform,
    pub engine: Engine,
    pub limits: ApiLimits,
    pub rate: Arc<RateLimiter>,
}

impl FromRef<ApiState> for Platform {
    fn from_ref(state: &ApiState) -> Platform {
        state.platform.clone()
    }
}

/// Fixed one-second windows of API calls per session.
#[derive(Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    /// True if one more call of `key` at `now` stays within `per_second`.
    pub fn allow(&self, key: &str, per_second: u32, now: Instant) -> bool {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() > 10_000 {
            windows.retain(|_, (start, _)| now.saturating_duration_since(*start).as_secs() < 1);
        }
        let entry = windows.entry(key.to_owned()).or_insert((now, 0));
        if now.saturating_duration_since(entry.0).as_secs() >= 1 {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= per_second
    }
}

pub fn router(state: ApiState) -> Router {
    let account_routes = Router::new()
        .route(
            "/client/v4/accounts/{account_id}/calls/apps",
            get(apps::list).post(apps::create),
        )
        .route(
            "/client/v4/accounts/{account_id}/calls/apps/{app_id}",
            get(apps::get).put(apps::update).delete(apps::delete),
        );
    let session_routes = Router::new()
        .route(
            "/v1/apps/{app_id}/sessions/new",
            post(sessions::new_session),
        )
        .route(
            "/v1/apps/{app_id}/sessions/{session_id}",
            get(sessions::get_session),
        )
        .route(
            "/v1/apps/{app_id}/sessions/{session_id}/tracks/new",
            post(sessions::new_tracks),
        )
        .route(
            "/v1/apps/{app_id}/sessions/{session_id}/renegotiate",
            put(sessions::renegotiate),
        )
        .route(
            "/v1/apps/{app_id}/sessions/{session_id}/tracks/close",
            put(sessions::close_tracks),
        )
        .route(
            "/v1/apps/{app_id}/sessions/{session_id}/tracks/update",
            put(sessions::update_tracks),
        )
        .route(
            "/v1/apps/{app_id}/sessions/{session_id}/datachannels/new",
            post(sessions::new_datachannels),
        )
        .route(
            "/v1/apps/{app_id}/sessions/{session_id}/stats",
            get(sessions::session_stats),
        )
        .route("/calls/demo", get(demo::page));
    account_routes.merge(session_routes).with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rate_limiter_resets_each_second() {
        let r = RateLimiter::default();
        let t = Instant::now();
        assert!(r.allow("s", 2, t));
        assert!(r.allow("s", 2, t));
        assert!(!r.allow("s", 2, t));
        assert!(r.allow("other", 2, t));
        assert!(r.allow("s", 2, t + Duration::from_millis(1001)));
    }
}
