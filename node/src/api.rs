//! The node's local HTTP API (axum), bound to loopback by default. JSON, snake_case.
//!
//! - `GET /healthz`: `ok` while the node runs.
//! - `GET /api/v1/node`: this node (PeerId, listen addresses, version, uptime, role).
//! - `GET /api/v1/peers`: known peers with addresses, capabilities, last seen, connected.
//! - `GET /metrics`: Prometheus metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::network::Role;
use crate::peers::PeerRecord;
use crate::service::{SharedState, with_peer_id};

/// The answer of `GET /api/v1/node`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct NodeInfo {
    /// Our PeerId.
    pub peer_id: String,
    /// Listen addresses, each ending in `/p2p/<PeerId>`.
    pub listen_addrs: Vec<String>,
    /// Software version.
    pub version: String,
    /// Seconds since start.
    pub uptime_s: u64,
    /// `node` or `bootstrap`.
    pub role: String,
    /// Whether this node bids for jobs.
    pub worker: bool,
    /// What it offers.
    pub capabilities: distributeai_protocol::Capabilities,
    /// Peers with an open connection.
    pub connected_peers: usize,
}

/// An error answer: `{"error": "..."}` with a status code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

/// The API's routes over the node's shared state.
pub fn router(state: Arc<SharedState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/v1/node", get(node_info))
        .route("/api/v1/peers", get(peers))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, state: Arc<SharedState>, shutdown: CancellationToken) {
    let app = router(state);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        warn!(error = %e, "API server stopped");
    }
}

async fn node_info(State(state): State<Arc<SharedState>>) -> Result<Json<NodeInfo>, ApiError> {
    let info = state
        .network
        .info()
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Json(NodeInfo {
        peer_id: state.peer_id.to_string(),
        listen_addrs: info
            .listen_addrs
            .iter()
            .map(|a| with_peer_id(a, state.peer_id).to_string())
            .collect(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_s: state.started.elapsed().as_secs(),
        role: match state.role {
            Role::Node => "node",
            Role::Bootstrap => "bootstrap",
        }
        .to_string(),
        worker: state.worker,
        capabilities: state.capabilities.clone(),
        connected_peers: info.connected.len(),
    }))
}

async fn peers(State(state): State<Arc<SharedState>>) -> Json<Vec<PeerRecord>> {
    let table = state
        .peers
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Json(table.list())
}

async fn metrics(State(state): State<Arc<SharedState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}
