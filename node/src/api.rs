//! The node's local HTTP API (axum), bound to loopback by default: the routes and JSON of
//! the `distributeai-api` crate (which lists them, with the typed client), the Prometheus
//! metrics at `GET /metrics`, and the web dashboard at `GET /` (see [`crate::dashboard`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::jobs::SubmitError;
use crate::jobs::model::{JobStatus, JobView};
use crate::network::Role;
use crate::service::{SharedState, with_peer_id};
pub use distributeai_api::{
    ApiEvent, ErrorBody, LinkView, LogLine, NodeInfo, PeerView, RelayStatus,
};
use distributeai_protocol::{JobId, JobSpec};

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
            Json(ErrorBody {
                error: self.message,
            }),
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
        .route("/api/v1/ledger/{id}/check", get(check_entry))
        .route("/api/v1/verdicts/check", post(check_verdict))
        .route("/api/v1/events", get(events))
        .route("/metrics", get(metrics))
        .merge(crate::dashboard::routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Turns away what a web page elsewhere could make a browser send, since a browser on this
/// machine reaches the API (the dashboard is served from it): requests naming another host
/// (DNS rebinding), and cross-site writes (CSRF) that would submit or cancel jobs with the
/// owner's credits. The CLI and the TUI send neither `Origin` nor `Sec-Fetch-Site`, and name the
/// address they dial. Every answer also says `nosniff`, since job output is served as is.
async fn guard(
    State(state): State<Arc<SharedState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Err(why) = check_request(request.method(), request.uri().path(), request.headers()) {
        return ApiError::new(StatusCode::FORBIDDEN, why).into_response();
    }
    if let Some(token) = &state.api_token
        && let Err(why) = check_token(token, request.uri().path(), request.headers())
    {
        return ApiError::new(StatusCode::UNAUTHORIZED, why).into_response();
    }
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    response
}

/// Why a request must be refused, if it must; see [`guard`]. `/metrics` and `/healthz` may be
/// addressed by any name, as Prometheus scrapes nodes by theirs: what they tell is not worth a
/// rebinding attack.
fn check_request(
    method: &axum::http::Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<(), String> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let host = text(header::HOST).unwrap_or("");
    let name = host_name(host);
    let scrape = matches!(path, "/metrics" | "/healthz");
    if !scrape
        && !host.is_empty()
        && name != "localhost"
        && name.parse::<std::net::IpAddr>().is_err()
    {
        return Err(format!(
            "Host {host:?} is refused: the API answers requests addressed to an IP address or \
             localhost"
        ));
    }
    if matches!(*method, axum::http::Method::GET | axum::http::Method::HEAD) {
        return Ok(());
    }
    if let Some(site) = text(axum::http::HeaderName::from_static("sec-fetch-site"))
        && site != "same-origin"
        && site != "none"
    {
        return Err(format!("a {site} request may not change anything here"));
    }
    if let Some(origin) = text(header::ORIGIN)
        && origin != format!("http://{host}")
    {
        return Err(format!(
            "a request from {origin} may not change anything here"
        ));
    }
    if *method == axum::http::Method::POST
        && !text(header::CONTENT_TYPE).is_some_and(|t| t.starts_with("application/json"))
    {
        return Err("send the job spec as Content-Type: application/json".into());
    }
    Ok(())
}

/// Why a request lacks the API token, if it does (see [`crate::api_token`]): every route but
/// `/healthz`, `/metrics` and the page's own files (which hold nothing of the node's) needs it,
/// as a bearer token or as the page's cookie.
fn check_token(token: &str, path: &str, headers: &HeaderMap) -> Result<(), String> {
    if matches!(
        path,
        "/healthz" | "/metrics" | "/" | "/app.js" | "/style.css"
    ) {
        return Ok(());
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == crate::api_token::TOKEN_COOKIE)
        .map(|(_, value)| value);
    match bearer.or(cookie) {
        Some(given) if crate::api_token::matches(token, given.trim()) => Ok(()),
        Some(_) => Err("the API token does not match this node's".into()),
        None => Err(
            "this node's API needs its token: send `Authorization: Bearer <token>` (`distributeai \
             api-token` on the node prints it; the CLI and TUI take --api-token or \
             DISTRIBUTEAI_API_TOKEN), or open the page as http://<address>/#token=<token>"
                .into(),
        ),
    }
}

/// The host part of a `Host` header: `127.0.0.1` of `127.0.0.1:7070`, `::1` of `[::1]:7070`.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
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
        budgets: state.budgets.clone(),
    }))
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
                    peer_id: record.peer_id.to_string(),
                    public_key: record.public_key,
                    addresses: record.addresses.iter().map(|a| a.to_string()).collect(),
                    capabilities: record.capabilities,
                    accepts_jobs: record.accepts_jobs,
                    last_seen: record.last_seen,
                    connected: record.connected,
                    source: record.source,
                    started_at: record.started_at,
                    links: record
                        .links
                        .iter()
                        .map(|(peer, route)| LinkView {
                            peer_id: peer.to_string(),
                            route: *route,
                        })
                        .collect(),
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

/// The ledger's entry for a job, re-checked from its evidence (issue 19).
async fn check_entry(
    State(state): State<Arc<SharedState>>,
    Path(id): Path<String>,
) -> Result<Json<crate::ledger::VerdictCheck>, ApiError> {
    let job = parse_id(&id)?;
    let ledger = state
        .ledger
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match ledger.check(&job) {
        Ok(Some(check)) => Ok(Json(check)),
        Ok(None) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "the ledger holds no verdict for this job",
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            e.to_string(),
        )),
    }
}

/// Any signed verdict, held or not, re-checked as a receiving node would (issue 19).
async fn check_verdict(
    Json(request): Json<distributeai_api::VerdictCheckRequest>,
) -> Result<Json<crate::ledger::VerdictCheck>, ApiError> {
    let bytes = hex::decode(request.verdict.trim())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("verdict is not hex: {e}")))?;
    if bytes.len() > distributeai_protocol::limits::MAX_MESSAGE_BYTES {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "verdict is {} bytes, over the limit of {} bytes",
                bytes.len(),
                distributeai_protocol::limits::MAX_MESSAGE_BYTES
            ),
        ));
    }
    let signed: distributeai_protocol::Signed<distributeai_protocol::Verdict> =
        distributeai_protocol::codec::decode(&bytes).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("verdict is not a signed verdict: {e}"),
            )
        })?;
    Ok(Json(crate::ledger::check_verdict(&signed, None)))
}

/// Sets the gauges read from state on every scrape: jobs by status, the ledger, our
/// standing. Reading them when asked keeps them exact without hooking every change.
async fn refresh_gauges(state: &SharedState) {
    let stats = state.jobs.stats().await;
    // Every status and phase is set, so one that emptied reads 0.
    let statuses = JobStatus::ALL.map(JobStatus::as_str);
    state.metrics.set_jobs("submitted", &statuses, &stats.jobs);
    state
        .metrics
        .set_jobs("executed", &crate::jobs::WORK_PHASES, &stats.work);
    let ledger = state
        .ledger
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let own = ledger.standing(&state.public_key);
    state
        .metrics
        .set_ledger(ledger.len(), own.reputation, own.credits);
}

async fn metrics(State(state): State<Arc<SharedState>>, headers: HeaderMap) -> Response {
    refresh_gauges(&state).await;
    metrics_response(&state.metrics, &headers)
}

/// `metrics` as `GET /metrics` answers it: OpenMetrics to a scraper that asks for it (as
/// Prometheus does), else the Prometheus text format (version 0.0.4), which every tool reads.
pub fn metrics_response(metrics: &crate::metrics::Metrics, headers: &HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            metrics.encode(),
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            metrics.encode_prometheus_text(),
        )
            .into_response()
    }
}

/// `GET /metrics` and `GET /healthz` alone, for the bootstrap peer (`--metrics`).
pub fn metrics_router(metrics: crate::metrics::Metrics) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move |headers: HeaderMap| {
                let metrics = metrics.clone();
                async move { metrics_response(&metrics, &headers) }
            }),
        )
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
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
        Err(e @ SubmitError::Uncovered { .. }) => {
            Err(ApiError::new(StatusCode::PAYMENT_REQUIRED, e.to_string()))
        }
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
            Err(RecvError::Lagged(_)) => {
                serde_json::to_string(&ApiEvent::Resync).unwrap_or_default()
            }
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(axum::response::sse::Event::default().data(data)), rx))
    });
    axum::response::Sse::new(stream).keep_alive(axum::response::sse::KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderValue, Method};

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    axum::http::HeaderName::from_static(k),
                    HeaderValue::from_str(v).expect("header"),
                )
            })
            .collect()
    }

    #[test]
    fn with_a_token_every_route_but_health_metrics_and_the_page_needs_it() {
        let token = "ab".repeat(32);
        let bearer = format!("Bearer {token}");
        let cookie = format!("theme=dark; {}={token}", crate::api_token::TOKEN_COOKIE);
        for path in ["/healthz", "/metrics", "/", "/app.js", "/style.css"] {
            assert!(check_token(&token, path, &headers(&[])).is_ok(), "{path}");
        }
        let why = check_token(&token, "/api/v1/jobs", &headers(&[])).expect_err("no token");
        assert!(why.contains("Authorization: Bearer"), "{why}");
        assert!(
            check_token(
                &token,
                "/api/v1/jobs",
                &headers(&[("authorization", &bearer)])
            )
            .is_ok()
        );
        assert!(check_token(&token, "/api/v1/events", &headers(&[("cookie", &cookie)])).is_ok());
        let wrong = format!("Bearer {}", "cd".repeat(32));
        let why = check_token(
            &token,
            "/api/v1/jobs",
            &headers(&[("authorization", &wrong)]),
        )
        .expect_err("wrong token");
        assert!(why.contains("does not match"), "{why}");
        assert!(
            check_token(
                &token,
                "/api/v1/node",
                &headers(&[("authorization", "Basic x")])
            )
            .is_err()
        );
    }

    #[test]
    fn the_cli_the_tui_and_the_page_itself_pass() {
        let json = ("content-type", "application/json");
        let host = ("host", "127.0.0.1:7070");
        assert!(check_request(&Method::POST, "/api/v1/jobs", &headers(&[host, json])).is_ok());
        assert!(
            check_request(
                &Method::GET,
                "/api/v1/node",
                &headers(&[("host", "localhost:7070")])
            )
            .is_ok()
        );
        assert!(
            check_request(
                &Method::GET,
                "/api/v1/node",
                &headers(&[("host", "[::1]:7070")])
            )
            .is_ok()
        );
        let page = [
            host,
            json,
            ("origin", "http://127.0.0.1:7070"),
            ("sec-fetch-site", "same-origin"),
        ];
        assert!(check_request(&Method::POST, "/api/v1/jobs", &headers(&page)).is_ok());
        assert!(check_request(&Method::DELETE, "/api/v1/jobs/ab", &headers(&page[..3])).is_ok());
    }

    #[test]
    fn other_sites_and_other_names_are_refused() {
        let host = ("host", "127.0.0.1:7070");
        let json = ("content-type", "application/json");
        // A page elsewhere posting a job (as text/plain, which needs no preflight).
        let csrf = [
            host,
            ("content-type", "text/plain"),
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ];
        assert!(check_request(&Method::POST, "/api/v1/jobs", &headers(&csrf)).is_err());
        let from_elsewhere = [host, json, ("origin", "https://evil.example")];
        assert!(
            check_request(
                &Method::DELETE,
                "/api/v1/jobs/ab",
                &headers(&from_elsewhere)
            )
            .is_err()
        );
        assert!(check_request(&Method::POST, "/api/v1/jobs", &headers(&[host])).is_err());
        // DNS rebinding: a name that resolves to us, read from the attacker's page.
        let rebound = headers(&[("host", "evil.example:7070")]);
        let refused = check_request(&Method::GET, "/api/v1/jobs", &rebound).expect_err("refused");
        assert!(refused.contains("evil.example"), "{refused}");
        // Prometheus may scrape a node by its name.
        let scrape = headers(&[("host", "node1.lan:7070")]);
        assert!(check_request(&Method::GET, "/metrics", &scrape).is_ok());
    }
}
