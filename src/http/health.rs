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
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Result<Json<Value>, Error> {
    if !state.ready.load(Ordering::Acquire) {
        return Err(Error::NotReady("shutting down"));
    }
    state.sessions.ping().await.map_err(|_| Error::NotReady("the session store does not answer"))?;
    Ok(Json(json!({ "status": "ready" })))
}
