//! What the API shows of jobs: the JSON views of the jobs this node submitted. The records
//! themselves, as stored in sled, are the job-flow machines' own ([`Job`] and [`WorkItem`],
//! from `distributeai-jobflow`).

use distributeai_protocol::time::TimestampMs;
use distributeai_protocol::{JobEnd, JobSpec, PublicKey, VerdictOutcome};
use serde::{Deserialize, Serialize};

pub use distributeai_jobflow::submitter::{
    BidEntry, Execution, ExecutionState, JobStatus, Outcome, Phase, PhaseTimes, SubmittedJob as Job,
};
pub use distributeai_jobflow::worker::{WorkItem, WorkPhase};

/// JSON view of a bid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BidView {
    /// Bidder's PeerId.
    pub peer_id: String,
    /// When it arrived.
    pub received_at: TimestampMs,
    /// The image id the bidder holds and would run (`None`: it would pull the image).
    pub image: Option<String>,
}

/// JSON view of one worker's execution.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecutionView {
    /// Worker's PeerId.
    pub peer_id: String,
    /// Assignment attempt.
    pub attempt: u32,
    /// `assigned`, `committed`, `revealed`, `failed`, `silent`, `refused`, `invalid`.
    pub status: ExecutionState,
    /// Whether it holds a slot.
    pub active: bool,
    /// Revealed result hash.
    pub result_hash: Option<String>,
    /// How the job ended on this worker, from its revealed manifest: `exit code 0`,
    /// `timed out`, `ran out of memory`...
    pub end: Option<String>,
    /// Exit code from the revealed manifest, when the job exited.
    pub exit_code: Option<i64>,
    /// The image id it ran, from its revealed manifest.
    pub image: Option<String>,
    /// What it saw of the end: the engine's message, whole.
    pub detail: Option<String>,
    /// The last bytes of the job's stdout on this worker (lossy UTF-8), at most 4 KiB.
    pub stdout_tail: Option<String>,
    /// The last bytes of the job's stderr on this worker (lossy UTF-8), at most 4 KiB.
    pub stderr_tail: Option<String>,
    /// Failure, refusal or invalidity reason.
    pub failure: Option<String>,
    /// Commitment digest (hex) once committed.
    pub commitment: Option<String>,
    /// When assigned.
    pub assigned_at: TimestampMs,
    /// When committed.
    pub committed_at: Option<TimestampMs>,
    /// When revealed.
    pub revealed_at: Option<TimestampMs>,
    /// Assignment to commitment, in ms.
    pub duration_ms: Option<u64>,
}

/// JSON view of a verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerdictView {
    /// `accepted` or `failed`.
    pub outcome: String,
    /// The agreed hash when accepted.
    pub result_hash: Option<String>,
    /// How the job ended, as agreed (`exit code 0`, `timed out`...), when accepted.
    pub end: Option<String>,
    /// The image id that ran, as agreed, when accepted.
    pub image: Option<String>,
    /// Why it failed.
    pub reason: Option<String>,
    /// Workers whose hash agreed.
    pub agreeing: Vec<String>,
    /// Workers whose hash differed.
    pub disagreeing: Vec<String>,
    /// Workers that reported failure.
    pub failed: Vec<String>,
    /// Workers that never answered.
    pub silent: Vec<String>,
    /// Content id of the signed verdict (the ledger entry).
    pub entry_id: String,
}

/// Phase durations in ms.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    /// Announcement to first assignment.
    pub bidding_ms: Option<u64>,
    /// First assignment to the last commitment.
    pub execution_ms: Option<u64>,
    /// Last commitment to the decision (reveals and comparison).
    pub verification_ms: Option<u64>,
    /// Decision to verified output.
    pub fetch_ms: Option<u64>,
    /// Submission to final status.
    pub total_ms: Option<u64>,
}

/// JSON view of a job, as `GET /api/v1/jobs/{id}` returns it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobView {
    /// Job id (hex).
    pub id: String,
    /// Status.
    pub status: JobStatus,
    /// The spec.
    pub spec: JobSpec,
    /// When submitted.
    pub submitted_at: TimestampMs,
    /// Bids.
    pub bids: Vec<BidView>,
    /// Per-worker executions.
    pub executions: Vec<ExecutionView>,
    /// The verdict, once decided.
    pub verdict: Option<VerdictView>,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// Why it waits, while `status` is `queued`: every worker that can run it is busy.
    pub queued_reason: Option<String>,
    /// Phase durations.
    pub timings: Timings,
}

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
