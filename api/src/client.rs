//! [`ApiClient`]: the typed client of a node's local HTTP API, used by the CLI and the TUI. Every call returns the API's own types, or a [`ClientError`] that says whether
//! the node could not be reached, refused the request (with its message), or answered
//! something this client cannot read.

use std::time::Duration;

use distributeai_protocol::JobSpec;
use serde::de::DeserializeOwned;

use crate::types::{
    ApiEvent, ErrorBody, JobView, LedgerView, LogLine, NodeInfo, PeerView, Stats, VerdictCheck,
    VerdictCheckRequest,
};

/// Why a call to the node's API failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer: the node is not running there, or the connection broke.
    #[error("cannot reach the node's API at {base}; is `distributeai node` running?")]
    Unreachable {
        /// The API's base URL.
        base: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The node answered with an error status; `message` is its `error` text.
    #[error("{message} ({})", status_text(*status))]
    Refused {
        /// The HTTP status code.
        status: u16,
        /// The node's message, naming the field or limit when the request was at fault.
        message: String,
    },
    /// The answer's body could not be read.
    #[error("reading the node's answer to {path}")]
    Body {
        /// The request path.
        path: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The answer is not what this client expects (a node of another version?).
    #[error("the node's answer to {path} is not what this client expects")]
    Decode {
        /// The request path.
        path: String,
        /// Where the JSON did not fit.
        #[source]
        source: serde_json::Error,
    },
}

/// `400 Bad Request`, as HTTP spells a status.
fn status_text(status: u16) -> String {
    reqwest::StatusCode::from_u16(status)
        .map(|s| s.to_string())
        .unwrap_or_else(|_| status.to_string())
}

impl ClientError {
    /// The HTTP status when the node refused the request.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A client of one node's API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    http: reqwest::Client,
    timeout: Option<Duration>,
    token: Option<String>,
}

impl ApiClient {
    /// A client of the API at `address`: `host:port` or a URL (`http://host:port`).
    pub fn new(address: &str) -> Self {
        let address = address.trim_end_matches('/');
        let base = if address.starts_with("http://") || address.starts_with("https://") {
            address.to_string()
        } else {
            format!("http://{address}")
        };
        Self {
            base,
            http: reqwest::Client::new(),
            timeout: None,
            token: None,
        }
    }

    /// The same client, sending `token` as `Authorization: Bearer <token>` on every request
    /// (a node whose operator created an API token requires it; `None` sends none).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// The same client, giving up on each request (but not on [`ApiClient::events`]) after
    /// `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The API's base URL, such as `http://127.0.0.1:7070`.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        timeout: bool,
    ) -> Result<reqwest::Response, ClientError> {
        let request = match self.timeout {
            Some(t) if timeout => request.timeout(t),
            _ => request,
        };
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                base: self.base.clone(),
                source,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&body)
            .map(|e| e.error)
            .unwrap_or(body);
        Err(ClientError::Refused {
            status: status.as_u16(),
            message,
        })
    }

    async fn bytes_of(
        &self,
        request: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<Vec<u8>, ClientError> {
        let response = self.send(request, true).await?;
        let bytes = response.bytes().await.map_err(|source| ClientError::Body {
            path: path.to_string(),
            source,
        })?;
        Ok(bytes.to_vec())
    }

    async fn json_of<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<T, ClientError> {
        let bytes = self.bytes_of(request, path).await?;
        serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode {
            path: path.to_string(),
            source,
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.json_of(self.http.get(self.url(path)), path).await
    }

    /// `GET /api/v1/node`: this node.
    pub async fn node(&self) -> Result<NodeInfo, ClientError> {
        self.get("/api/v1/node").await
    }

    /// `GET /api/v1/peers`: known peers with their standing and connections.
    pub async fn peers(&self) -> Result<Vec<PeerView>, ClientError> {
        self.get("/api/v1/peers").await
    }

    /// `GET /api/v1/jobs`: the jobs this node submitted.
    pub async fn jobs(&self) -> Result<Vec<JobView>, ClientError> {
        self.get("/api/v1/jobs").await
    }

    /// `GET /api/v1/jobs/{id}`: one job; [`ClientError::Refused`] with 404 when unknown.
    pub async fn job(&self, id: &str) -> Result<JobView, ClientError> {
        self.get(&format!("/api/v1/jobs/{id}")).await
    }

    /// `GET /api/v1/jobs/{id}/logs`: the job's timeline.
    pub async fn logs(&self, id: &str) -> Result<Vec<LogLine>, ClientError> {
        self.get(&format!("/api/v1/jobs/{id}/logs")).await
    }

    /// `GET /api/v1/jobs/{id}/result`: the verified stdout; refused (409) until the job
    /// completed.
    pub async fn result_stdout(&self, id: &str) -> Result<Vec<u8>, ClientError> {
        let path = format!("/api/v1/jobs/{id}/result");
        self.bytes_of(self.http.get(self.url(&path)), &path).await
    }

    /// `GET /api/v1/jobs/{id}/result?format=tar`: the verified `/out` files as a tar.
    pub async fn result_tar(&self, id: &str) -> Result<Vec<u8>, ClientError> {
        let path = format!("/api/v1/jobs/{id}/result?format=tar");
        self.bytes_of(self.http.get(self.url(&path)), &path).await
    }

    /// `POST /api/v1/jobs`: submits `spec`; refused (400) naming the field when invalid.
    pub async fn submit(&self, spec: &JobSpec) -> Result<JobView, ClientError> {
        let path = "/api/v1/jobs";
        self.json_of(self.http.post(self.url(path)).json(spec), path)
            .await
    }

    /// `DELETE /api/v1/jobs/{id}`: cancels; refused (409) when the job is already over.
    pub async fn cancel(&self, id: &str) -> Result<JobView, ClientError> {
        let path = format!("/api/v1/jobs/{id}");
        self.json_of(self.http.delete(self.url(&path)), &path).await
    }

    /// `GET /api/v1/stats`: counts.
    pub async fn stats(&self) -> Result<Stats, ClientError> {
        self.get("/api/v1/stats").await
    }

    /// `GET /api/v1/ledger`: every identity's standing and the summary hash.
    pub async fn ledger(&self) -> Result<LedgerView, ClientError> {
        self.get("/api/v1/ledger").await
    }

    /// `GET /api/v1/ledger/{job_id}/check`: the ledger's entry for a job, re-checked from its
    /// evidence, with each worker's line explained. Refused (404) when the ledger holds no
    /// entry for the job.
    pub async fn check_entry(&self, job_id: &str) -> Result<VerdictCheck, ClientError> {
        self.get(&format!("/api/v1/ledger/{job_id}/check")).await
    }

    /// `POST /api/v1/verdicts/check`: re-checks any signed verdict (CBOR bytes), held or not,
    /// as every node would on receiving it. Refused (400) when the bytes are not a verdict.
    pub async fn check_verdict(&self, cbor: &[u8]) -> Result<VerdictCheck, ClientError> {
        let path = "/api/v1/verdicts/check";
        let body = VerdictCheckRequest {
            verdict: hex::encode(cbor),
        };
        self.json_of(self.http.post(self.url(path)).json(&body), path)
            .await
    }

    /// `GET /metrics`: the Prometheus exposition, as text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let bytes = self
            .bytes_of(self.http.get(self.url("/metrics")), "/metrics")
            .await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// `GET /api/v1/events`: the node's change events, until the connection ends.
    pub async fn events(&self) -> Result<Events, ClientError> {
        let response = self
            .send(self.http.get(self.url("/api/v1/events")), false)
            .await?;
        Ok(Events {
            response,
            parser: EventParser::default(),
        })
    }
}

/// The stream of a node's server-sent events; see [`ApiClient::events`].
#[derive(Debug)]
pub struct Events {
    response: reqwest::Response,
    parser: EventParser,
}

impl Events {
    /// The next event; `Ok(None)` when the node closed the stream. An event this client cannot
    /// read is returned as [`ApiEvent::Resync`], so the caller fetches everything again.
    pub async fn next(&mut self) -> Result<Option<ApiEvent>, ClientError> {
        loop {
            if let Some(event) = self.parser.take() {
                return Ok(Some(event));
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.parser.push(&chunk),
                Ok(None) => return Ok(None),
                Err(source) => {
                    return Err(ClientError::Body {
                        path: "/api/v1/events".into(),
                        source,
                    });
                }
            }
        }
    }
}

/// Splits a server-sent event stream (the WHATWG `text/event-stream` format, as axum writes
/// it) into [`ApiEvent`]s.
#[derive(Debug, Default)]
struct EventParser {
    buffer: Vec<u8>,
    /// An event grew past [`MAX_EVENT_BYTES`]: it was dropped, and the caller must resync.
    overflowed: bool,
}

/// The most one event may hold before it is dropped as garbled (bytes).
const MAX_EVENT_BYTES: usize = 64 * 1024;

impl EventParser {
    fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The first whole event (lines up to a blank line) in the buffer. Comments (keep-alives)
    /// and events without data are skipped; data that is not an [`ApiEvent`] reads as
    /// [`ApiEvent::Resync`].
    fn take(&mut self) -> Option<ApiEvent> {
        loop {
            let Some((end, gap)) = blank_line(&self.buffer) else {
                if self.buffer.len() > MAX_EVENT_BYTES {
                    self.buffer.clear();
                    self.overflowed = true;
                }
                return std::mem::take(&mut self.overflowed).then_some(ApiEvent::Resync);
            };
            let block: Vec<u8> = self.buffer.drain(..end + gap).take(end).collect();
            let block = String::from_utf8_lossy(&block);
            let data: Vec<&str> = block
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if data.is_empty() {
                continue;
            }
            return Some(serde_json::from_str(&data.join("\n")).unwrap_or(ApiEvent::Resync));
        }
    }
}

/// Where the first blank line (`\n\n` or `\r\n\r\n`) starts, and its length.
fn blank_line(bytes: &[u8]) -> Option<(usize, usize)> {
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::JobStatus;

    #[test]
    fn events_split_at_blank_lines_across_chunks_and_skip_keep_alives() {
        let mut parser = EventParser::default();
        parser.push(b":\n\ndata: {\"type\":\"pe");
        assert_eq!(parser.take(), None, "a keep-alive and half an event");
        parser.push(
            b"ers\"}\n\ndata: {\"type\":\"job\",\"id\":\"ab\",\"status\":\"running\"}\r\n\r\n",
        );
        assert_eq!(parser.take(), Some(ApiEvent::Peers));
        assert_eq!(
            parser.take(),
            Some(ApiEvent::Job {
                id: "ab".into(),
                status: JobStatus::Running
            })
        );
        assert_eq!(parser.take(), None);
    }

    #[test]
    fn an_unreadable_or_oversized_event_asks_for_a_resync() {
        let mut parser = EventParser::default();
        parser.push(b"data: {\"type\":\"from a newer node\"}\n\n");
        assert_eq!(parser.take(), Some(ApiEvent::Resync));
        parser.push(&vec![b'x'; MAX_EVENT_BYTES + 1]);
        assert_eq!(parser.take(), Some(ApiEvent::Resync));
        assert_eq!(parser.take(), None, "the garbled event is gone");
        parser.push(b"data: {\"type\":\"peers\"}\n\n");
        assert_eq!(parser.take(), Some(ApiEvent::Peers));
    }

    #[test]
    fn addresses_and_urls_make_the_same_base() {
        assert_eq!(
            ApiClient::new("127.0.0.1:7070").base(),
            "http://127.0.0.1:7070"
        );
        assert_eq!(
            ApiClient::new("http://127.0.0.1:7070/").base(),
            "http://127.0.0.1:7070"
        );
    }

    #[test]
    fn a_refusal_reads_like_http() {
        let e = ClientError::Refused {
            status: 400,
            message: "resources.cpus: at least 0.01".into(),
        };
        assert_eq!(
            e.to_string(),
            "resources.cpus: at least 0.01 (400 Bad Request)"
        );
    }
}
