//! The contract of a node's local HTTP API, in one place: the JSON types the node serves
//! ([`types`]) and the typed client that the CLI, the TUI and the tests use ([`ApiClient`]).
//! The web dashboard reads the same JSON.
//!
//! Routes (JSON, snake_case; errors are `{"error": "..."}` with a 4xx or 5xx status):
//!
//! - `GET /healthz`: `ok` while the node runs.
//! - `GET /api/v1/node` → [`NodeInfo`]
//! - `GET /api/v1/peers` → `[`[`PeerView`]`]`
//! - `POST /api/v1/jobs` (a [`JobSpec`](distributeai_protocol::JobSpec)) → 201 [`JobView`];
//!   400 naming the field when invalid.
//! - `GET /api/v1/jobs` → `[`[`JobView`]`]`; `GET /api/v1/jobs/{id}` → [`JobView`]
//! - `DELETE /api/v1/jobs/{id}` → [`JobView`]; 409 when the job is already over.
//! - `GET /api/v1/jobs/{id}/logs` → `[`[`LogLine`]`]`
//! - `GET /api/v1/jobs/{id}/result` → the verified stdout (bytes); `?format=tar` → the `/out`
//!   files as a tar; 409 until the job completed.
//! - `GET /api/v1/stats` → [`Stats`]; `GET /api/v1/ledger` → [`LedgerView`]
//! - `GET /api/v1/events` → server-sent events, each an [`ApiEvent`] as JSON.
//! - `GET /metrics` → Prometheus metrics: OpenMetrics text when the `Accept` header asks for
//!   it (Prometheus does), else the Prometheus text format 0.0.4.
//! - `GET /` → the web dashboard.

mod client;
mod types;

pub use client::{ApiClient, ClientError, Events};
pub use types::*;
