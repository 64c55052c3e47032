//! What the API shows of jobs: the JSON views of the jobs this node submitted. The records
//! themselves, as stored in sled, are the job-flow machines' own ([`Job`] and [`WorkItem`],
//! from `distributeai-jobflow`).

use distributeai_protocol::time::TimestampMs;
use distributeai_protocol::{JobEnd, PublicKey, VerdictOutcome};

pub use distributeai_jobflow::submitter::{
    BidEntry, Execution, ExecutionState, JobStatus, Outcome, Phase, PhaseTimes, SubmittedJob as Job,
};
pub use distributeai_jobflow::worker::{WorkItem, WorkPhase};

pub use distributeai_api::{BidView, ExecutionView, JobView, Timings, VerdictView};

fn peer(key: &PublicKey) -> String {
    key.peer_id()
        .map(|p| p.to_string())
        .unwrap_or_else(|_| key.to_hex())
}

fn tail(bytes: Option<&[u8]>) -> Option<String> {
    bytes
        .filter(|b| !b.is_empty())
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

fn span(from: Option<TimestampMs>, to: Option<TimestampMs>) -> Option<u64> {
    Some(to?.saturating_sub(from?))
}

/// The API view of a job record.
pub trait ViewJob {
    /// The view `GET /api/v1/jobs/{id}` returns.
    fn view(&self) -> JobView;
}

impl ViewJob for Job {
    fn view(&self) -> JobView {
        let verdict = self.verdict.as_ref().and_then(|signed| {
            let v = signed.decode_unchecked().ok()?;
            let by = |f: &dyn Fn(&distributeai_protocol::WorkerResult) -> bool| -> Vec<String> {
                v.workers
                    .iter()
                    .filter(|w| f(&w.result))
                    .map(|w| peer(&w.bid.signer()))
                    .collect()
            };
            use distributeai_protocol::WorkerResult as R;
            Some(VerdictView {
                outcome: match v.outcome {
                    VerdictOutcome::Accepted(_) => "accepted".into(),
                    VerdictOutcome::Failed(_) => "failed".into(),
                },
                result_hash: match &v.outcome {
                    VerdictOutcome::Accepted(agreed) => Some(agreed.hash.to_hex()),
                    VerdictOutcome::Failed(_) => None,
                },
                end: match &v.outcome {
                    VerdictOutcome::Accepted(agreed) => Some(agreed.end.describe()),
                    VerdictOutcome::Failed(_) => None,
                },
                image: match &v.outcome {
                    VerdictOutcome::Accepted(agreed) => {
                        Some(agreed.image.clone()).filter(|i| !i.is_empty())
                    }
                    VerdictOutcome::Failed(_) => None,
                },
                reason: match &v.outcome {
                    VerdictOutcome::Failed(r) => Some(r.clone()),
                    VerdictOutcome::Accepted(_) => None,
                },
                agreeing: by(&|r| matches!(r, R::Agreed)),
                disagreeing: by(&|r| matches!(r, R::Disagreed(_))),
                failed: by(&|r| matches!(r, R::Failed(_))),
                silent: by(&|r| matches!(r, R::Silent)),
                entry_id: signed.content_id().to_hex(),
            })
        });
        let t = &self.times;
        JobView {
            id: self.id.to_hex(),
            status: self.status(),
            spec: self.spec.clone(),
            submitted_at: self.submitted_at,
            bids: self
                .bids
                .iter()
                .map(|b| BidView {
                    peer_id: peer(&b.worker),
                    received_at: b.received_at,
                    image: b.bid.decode_unchecked().ok().and_then(|b| b.image),
                })
                .collect(),
            executions: self
                .executions
                .iter()
                .map(|e| ExecutionView {
                    peer_id: peer(&e.worker),
                    attempt: e.attempt,
                    status: e.state,
                    active: e.active,
                    result_hash: e.result_hash.map(|h| h.to_hex()),
                    end: e.manifest.as_ref().map(|m| m.end.describe()),
                    exit_code: e.manifest.as_ref().and_then(|m| match m.end {
                        JobEnd::Exited { code } => Some(code),
                        _ => None,
                    }),
                    image: e
                        .manifest
                        .as_ref()
                        .map(|m| m.image.clone())
                        .filter(|i| !i.is_empty()),
                    detail: e
                        .diagnostics
                        .as_ref()
                        .map(|d| d.detail.clone())
                        .filter(|d| !d.is_empty()),
                    stdout_tail: tail(e.diagnostics.as_ref().map(|d| &d.stdout_tail[..])),
                    stderr_tail: tail(e.diagnostics.as_ref().map(|d| &d.stderr_tail[..])),
                    failure: e.failure.clone(),
                    commitment: e.commitment.map(|c| c.to_hex()),
                    assigned_at: e.assigned_at,
                    committed_at: e.committed_at,
                    revealed_at: e.revealed_at,
                    duration_ms: span(Some(e.assigned_at), e.committed_at),
                })
                .collect(),
            verdict,
            failure_reason: self.failure_reason.clone(),
            queued_reason: self.queued_because(),
            timings: Timings {
                bidding_ms: span(Some(self.submitted_at), t.assigned_at),
                execution_ms: span(t.assigned_at, t.committed_at),
                verification_ms: span(t.committed_at, t.decided_at),
                fetch_ms: span(t.decided_at, t.fetched_at),
                total_ms: span(Some(self.submitted_at), t.finished_at),
            },
        }
    }
}
