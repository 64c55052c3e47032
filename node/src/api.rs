//! The node's local HTTP API (axum), bound to loopback by default. JSON, snake_case.
//!
//! - `GET /healthz`: `ok` while the node runs.
//! - `GET /api/v1/node`: this node (PeerId, listen and announced addresses, version, uptime,
//!   role, reachability and the relays it reserved on).
//! - `GET /api/v1/peers`: known peers with addresses, capabilities, last seen, and for
//!   connected ones each connection: direct or relayed, transport, address.
//! - `POST /api/v1/jobs`: submit a job spec (400 naming the field when invalid).
//! - `GET /api/v1/jobs`, `GET /api/v1/jobs/{id}`: jobs with bids, executions, verdict.
//! - `GET /api/v1/jobs/{id}/logs`: the job's timeline.
//! - `GET /api/v1/jobs/{id}/result`: the verified stdout, or `?format=tar` for the `/out` files.
//! - `DELETE /api/v1/jobs/{id}`: cancel.
//! - `GET /api/v1/stats`: counts.
//! - `GET /api/v1/events`: server-sent events, one per change to a job or to the peers.
//! - `GET /api/v1/ledger`: every identity's reputation and credits, the summary hash and count.
//! - `GET /metrics`: Prometheus metrics.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::jobs::SubmitError;
use crate::jobs::model::{JobStatus, JobView};
use crate::network::relays::Reachability;
use crate::network::{ConnectionView, Role, Route};
use crate::peers::PeerRecord;
use crate::service::{SharedState, with_peer_id};
use distributeai_protocol::{JobId, JobSpec};

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
    /// Whether this node is publicly reachable (AutoNAT): `public`, `private` (behind NAT,
    /// reachable through relays) or `unknown`.
    pub reachability: Reachability,
    /// Addresses confirmed reachable from outside (AutoNAT, relay circuits).
    #[serde(default)]
    pub external_addrs: Vec<String>,
    /// The addresses this node tells peers in its announcements.
    #[serde(default)]
    pub announced_addrs: Vec<String>,
    /// Relays this node holds (or is asking for) a reservation on.
    #[serde(default)]
    pub relays: Vec<RelayStatus>,
}

/// A relay reservation, as `GET /api/v1/node` shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RelayStatus {
    /// The relay's PeerId.
    pub peer_id: String,
    /// The circuit address others reach this node at through the relay.
    pub address: String,
    /// Whether the relay accepted the reservation.
    pub reserved: bool,
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
        .route("/api/v1/jobs", get(list_jobs).post(submit_job))
        .route("/api/v1/jobs/{id}", get(get_job).delete(cancel_job))
        .route("/api/v1/jobs/{id}/logs", get(job_logs))
        .route("/api/v1/jobs/{id}/result", get(job_result))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/ledger", get(ledger))
        .route("/api/v1/events", get(events))
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
        reachability: info.reachability,
        external_addrs: info.external_addrs.iter().map(|a| a.to_string()).collect(),
        announced_addrs: info.announced_addrs.iter().map(|a| a.to_string()).collect(),
        relays: info
            .relays
            .iter()
            .map(|r| RelayStatus {
                peer_id: r.peer_id.to_string(),
                address: r.address.to_string(),
                reserved: r.reserved,
            })
            .collect(),
    }))
}

/// A peer as `GET /api/v1/peers` shows it: the peer table's record plus its ledger standing.
#[derive(Debug, Clone, Serialize)]
pub struct PeerView {
    /// What the peer table knows.
    #[serde(flatten)]
    pub record: PeerRecord,
    /// Reputation from the ledger.
    pub reputation: f64,
    /// Credits from the ledger.
    pub credits: i64,
    /// For a connected peer: `direct` when any connection is direct, else `relayed`.
    pub route: Option<Route>,
    /// Its open connections: direct or relayed, transport, address, hole-punched.
    pub connections: Vec<ConnectionView>,
}

async fn peers(State(state): State<Arc<SharedState>>) -> Json<Vec<PeerView>> {
    // Before the tables' locks: the network answers from its own task.
    let mut connected: std::collections::HashMap<_, _> = state
        .network
        .info()
        .await
        .map(|info| {
            info.connected
                .into_iter()
                .map(|c| (c.peer_id, (c.route, c.connections)))
                .collect()
        })
        .unwrap_or_default();
    let records = state
        .peers
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .list(distributeai_protocol::time::now_ms());
    let ledger = state
        .ledger
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Json(
        records
            .into_iter()
            .map(|record| {
                let standing = record
                    .public_key
                    .map(|k| ledger.standing(&k))
                    .unwrap_or_default();
                let (route, connections) = connected
                    .remove(&record.peer_id)
                    .map(|(route, connections)| (Some(route), connections))
                    .unwrap_or_default();
                PeerView {
                    record,
                    reputation: (standing.reputation * 100.0).round() / 100.0,
                    credits: standing.credits,
                    route,
                    connections,
                }
            })
            .collect(),
    )
}

async fn ledger(State(state): State<Arc<SharedState>>) -> Json<crate::ledger::LedgerView> {
    Json(
        state
            .ledger
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .view(),
    )
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

fn parse_id(id: &str) -> Result<JobId, ApiError> {
    id.parse()
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "a job id is 64 hex digits"))
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such job")
}

async fn submit_job(
    State(state): State<Arc<SharedState>>,
    body: Bytes,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let spec: JobSpec = crate::jobs::spec_from_json(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid job spec: {e}")))?;
    match state.jobs.submit(spec).await {
        Ok(view) => Ok((StatusCode::CREATED, Json(view))),
        Err(SubmitError::Invalid(e)) => Err(ApiError::new(StatusCode::BAD_REQUEST, e.to_string())),
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            e.to_string(),
        )),
    }
}

async fn list_jobs(State(state): State<Arc<SharedState>>) -> Json<Vec<JobView>> {
    Json(state.jobs.list().await)
}

async fn get_job(
    State(state): State<Arc<SharedState>>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let id = parse_id(&id)?;
    state.jobs.get(id).await.map(Json).ok_or_else(not_found)
}

async fn cancel_job(
    State(state): State<Arc<SharedState>>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let id = parse_id(&id)?;
    match state.jobs.cancel(id).await {
        Ok(job) => Ok(Json(job)),
        Err(crate::jobs::CancelError::Unknown) => Err(not_found()),
        Err(e @ crate::jobs::CancelError::Finished(_)) => {
            Err(ApiError::new(StatusCode::CONFLICT, e.to_string()))
        }
        Err(e @ crate::jobs::CancelError::Stopped) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            e.to_string(),
        )),
    }
}

/// One line of a job's timeline.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct LogLine {
    /// When (ms since the epoch).
    pub at: u64,
    /// What happened.
    pub message: String,
}

async fn job_logs(
    State(state): State<Arc<SharedState>>,
    Path(id): Path<String>,
) -> Result<Json<Vec<LogLine>>, ApiError> {
    let id = parse_id(&id)?;
    let job = state.jobs.job(id).await.ok_or_else(not_found)?;
    Ok(Json(
        job.events
            .into_iter()
            .map(|(at, message)| LogLine { at, message })
            .collect(),
    ))
}

/// `?format=tar` selects the `/out` files instead of stdout.
#[derive(Debug, serde::Deserialize)]
struct ResultQuery {
    format: Option<String>,
}

async fn job_result(
    State(state): State<Arc<SharedState>>,
    Path(id): Path<String>,
    Query(query): Query<ResultQuery>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let job = state.jobs.job(id).await.ok_or_else(not_found)?;
    if job.status() != JobStatus::Completed {
        let message = match &job.failure_reason {
            Some(reason) => format!("the job has no verified result: {reason}"),
            None => format!("the job is {:?}; no verified result yet", job.status()).to_lowercase(),
        };
        return Err(ApiError::new(StatusCode::CONFLICT, message));
    }
    let dir = state.jobs.output_dir(&id);
    let internal =
        |e: std::io::Error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    match query.format.as_deref() {
        None | Some("stdout") => {
            let bytes = tokio::fs::read(dir.join(crate::jobs::output::STDOUT_FILE))
                .await
                .map_err(internal)?;
            Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
        }
        Some("tar") => {
            let tar =
                tokio::task::spawn_blocking(move || crate::jobs::output::tar_of_outputs(&dir))
                    .await
                    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
                    .map_err(internal)?;
            Ok(([(header::CONTENT_TYPE, "application/x-tar")], tar).into_response())
        }
        Some(other) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("unknown format {other:?}: use stdout or tar"),
        )),
    }
}

async fn stats(State(state): State<Arc<SharedState>>) -> Json<crate::jobs::Stats> {
    Json(state.jobs.stats().await)
}

/// A change worth redrawing for, sent on `GET /api/v1/events`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ApiEvent {
    /// A job changed.
    Job {
        /// Job id.
        id: String,
        /// Its status now.
        status: JobStatus,
    },
    /// The peer table changed.
    Peers,
}

async fn events(
    State(state): State<Arc<SharedState>>,
) -> axum::response::Sse<
    impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
> {
    use tokio::sync::broadcast::error::RecvError;
    let stream = futures::stream::unfold(state.events.subscribe(), |mut rx| async move {
        let data = match rx.recv().await {
            Ok(event) => serde_json::to_string(&event).unwrap_or_default(),
            // A client that fell behind is told to fetch everything again.
            Err(RecvError::Lagged(_)) => r#"{"type":"resync"}"#.to_string(),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(axum::response::sse::Event::default().data(data)), rx))
    });
    axum::response::Sse::new(stream).keep_alive(axum::response::sse::KeepAlive::default())
}
