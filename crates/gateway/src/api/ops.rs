//! `GET /health` and `GET /metrics` (Prometheus text).

use axum::extract::State;

use super::Shared;

pub(super) async fn health() -> &'static str {
    "ok"
}

pub(super) async fn metrics(State(s): State<Shared>) -> String {
    s.metrics.render()
}
