//! Liveness and readiness probes for a load balancer, a supervisor or an orchestrator: `GET /healthz`
//! (the process is alive: its tick advanced within [`STALLED_AFTER`]) and `GET /readyz` (it should be
//! sent players: alive, and nothing it depends on is down: the database, with `--bus` Redis, and it is
//! not shutting down). Both answer `200 {"status":"ok"}` or `503 {"status":"unavailable","reason":…}`,
//! on the metrics listener and, in token mode, on the HTTPS one.
//!
//! [`Health`] is what they read: the tick marks itself each tick, and `crate::health` (which probes the
//! database off the tick) writes what is down.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bevy::prelude::Resource;
use serde::Serialize;

use crate::time::now_ms;

/// A tick not seen for this long means the server is stuck.
pub const STALLED_AFTER: Duration = Duration::from_secs(5);

/// What the probes answer from (cheap to clone: the clones share it).
#[derive(Resource, Clone, Default, Debug)]
pub struct Health(Arc<State>);

#[derive(Default, Debug)]
struct State {
    /// When the last tick ended (Unix ms); 0 before the first.
    ticked_at_ms: AtomicU64,
    /// Why the server should not be sent players now (empty: it should).
    problems: Mutex<Vec<String>>,
}

impl Health {
    /// The tick ran (once a tick).
    pub fn ticked(&self) {
        self.0.ticked_at_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// What keeps the server from being ready (empty: nothing).
    pub fn set_problems(&self, problems: Vec<String>) {
        *self
            .0
            .problems
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = problems;
    }

    /// Whether the tick advances, at `now_ms`.
    pub fn alive(&self, now_ms: u64) -> Result<(), String> {
        let ticked = self.0.ticked_at_ms.load(Ordering::Relaxed);
        if ticked == 0 {
            return Err("starting: no tick yet".into());
        }
        let quiet = Duration::from_millis(now_ms.saturating_sub(ticked));
        if quiet > STALLED_AFTER {
            return Err(format!(
                "the tick has not advanced for {} s",
                quiet.as_secs()
            ));
        }
        Ok(())
    }

    /// Whether players should be sent here, at `now_ms`.
    pub fn ready(&self, now_ms: u64) -> Result<(), String> {
        self.alive(now_ms)?;
        let problems = self
            .0
            .problems
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match problems.is_empty() {
            true => Ok(()),
            false => Err(problems.join("; ")),
        }
    }
}

/// A probe's answer body.
#[derive(Serialize, Debug)]
struct Answer {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

fn answer(verdict: Result<(), String>) -> Response {
    match verdict {
        Ok(()) => Json(Answer {
            status: "ok",
            reason: None,
        })
        .into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Answer {
                status: "unavailable",
                reason: Some(reason),
            }),
        )
            .into_response(),
    }
}

/// `/healthz` and `/readyz`, to merge into a listener's router.
pub fn routes<S: Clone + Send + Sync + 'static>(health: Health) -> Router<S> {
    let ready = health.clone();
    Router::new()
        .route(
            "/healthz",
            get(move || {
                let health = health.clone();
                async move { answer(health.alive(now_ms())) }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let health = ready.clone();
                async move { answer(health.ready(now_ms())) }
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alive_while_the_tick_advances_and_ready_while_nothing_is_down() {
        let health = Health::default();
        assert_eq!(health.alive(1_000), Err("starting: no tick yet".into()));
        health.ticked();
        let now = now_ms();
        assert_eq!(health.ready(now), Ok(()));
        assert_eq!(
            health.alive(now + 7_500),
            Err("the tick has not advanced for 7 s".into())
        );
        health.set_problems(vec![
            "the database is unreachable".into(),
            "shutting down".into(),
        ]);
        assert_eq!(health.alive(now), Ok(()));
        assert_eq!(
            health.ready(now),
            Err("the database is unreachable; shutting down".into())
        );
    }
}
