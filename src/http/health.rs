//! Liveness and readiness.
//!
//! `/healthz` answers while the process runs (restart me only if this fails). `/readyz`
//! answers 200 only when the store answers a ping within its timeout and the instance is not
//! shutting down (send me traffic only if this succeeds).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::AppState;
use crate::error::Error;

/// `GET /healthz`.
#[utoipa::path(get, path = "/healthz", tag = "probes", operation_id = "healthz",
    summary = "Liveness",
    description = "200 while the process runs (restart it only if this fails). Never rate-limited.",
    responses((status = 200, description = "The process runs", body = Object, example = json!({"status": "ok"}))))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`.
#[utoipa::path(get, path = "/readyz", tag = "probes", operation_id = "readyz",
    summary = "Readiness",
    description = "200 when the store answers a ping in time and the instance is not shutting down (send it traffic only then). Never rate-limited.",
    responses(
        (status = 200, description = "The store answers and the instance is not shutting down", body = Object, example = json!({"status": "ready"})),
        (status = 503, description = "Not ready", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Result<Json<Value>, Error> {
    if !state.ready.load(Ordering::Acquire) {
        return Err(Error::NotReady("shutting down"));
    }
    state.sessions.ping().await.map_err(|_| Error::NotReady("the session store does not answer"))?;
    Ok(Json(json!({ "status": "ready" })))
}
