//! What the node remembers about jobs: the jobs it submitted ([`Job`]) and the assignments it
//! accepted as a worker ([`WorkItem`]), as stored in sled, and the JSON views the API serves.

use distributeai_protocol::time::TimestampMs;
use distributeai_protocol::{
    Assignment, Bid, Digest, ExecutionFailure, JobAnnouncement, JobId, JobSpec, OutputManifest,
    PublicKey, ResultCommitment, ResultHash, Signed, Verdict, VerdictOutcome,
};
use serde::{Deserialize, Serialize};

/// Where a submitted job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Accepted, not announced yet.
    Pending,
    /// Announced; collecting bids.
    Bidding,
    /// Assigned; workers are executing.
    Running,
    /// Results are being revealed, compared and the output fetched.
    Verifying,
    /// k workers agreed and the output matched: done.
    Completed,
    /// No agreed result within the retry bound.
    Failed,
    /// Withdrawn by the submitter.
    Cancelled,
}

impl JobStatus {
    /// Whether nothing more will happen to the job.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// Where one assigned worker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionState {
    /// Assignment sent; waiting for its commitment.
    Assigned,
    /// It refused or could not be reached.
    Refused,
    /// It committed to a result, still hidden.
    Committed,
    /// It reported a failure.
    Failed,
    /// It missed its deadline.
    Silent,
    /// It revealed a result that opens its commitment.
    Revealed,
    /// Its commitment was copied, or its reveal did not open it.
    Invalid,
}

/// One worker's execution of a submitted job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Execution {
    /// The worker.
    pub worker: PublicKey,
    /// Its signed bid.
    pub bid: Signed<Bid>,
    /// Attempt number of its assignment.
    pub attempt: u32,
    /// Where it is.
    pub state: ExecutionState,
    /// Whether it holds one of the job's n slots.
    pub active: bool,
    /// When it was assigned.
    pub assigned_at: TimestampMs,
    /// Its commitment deadline.
    pub deadline: TimestampMs,
    /// Its hiding commitment.
    pub commitment: Option<Digest>,
    /// Its signed commitment (or failure report), carried into the verdict as proof.
    #[serde(default)]
    pub commitment_envelope: Option<Signed<ResultCommitment>>,
    /// When the commitment (or failure) arrived.
    pub committed_at: Option<TimestampMs>,
    /// Its revealed result hash.
    pub result_hash: Option<ResultHash>,
    /// The manifest it revealed.
    pub manifest: Option<OutputManifest>,
    /// When the reveal arrived.
    pub revealed_at: Option<TimestampMs>,
    /// Why it failed, was refused or is invalid.
    pub failure: Option<String>,
    /// The failure it reported, for the verdict.
    pub reported_failure: Option<ExecutionFailure>,
    /// Whether a reveal request is in flight.
    pub reveal_pending: bool,
    /// Whether the worker acknowledged its assignment.
    #[serde(default)]
    pub assign_acked: bool,
    /// Whether an assignment request is in flight.
    #[serde(default)]
    pub assign_pending: bool,
}

/// A bid received for a submitted job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BidEntry {
    /// The bidder.
    pub worker: PublicKey,
    /// Its signed bid.
    pub bid: Signed<Bid>,
    /// When it arrived.
    pub received_at: TimestampMs,
}

/// When each phase of a job ended, for the timings the API reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PhaseTimes {
    /// First assignments sent (bidding over).
    pub assigned_at: Option<TimestampMs>,
    /// Every active worker had committed or failed.
    pub committed_at: Option<TimestampMs>,
    /// The k-of-n decision was made.
    pub decided_at: Option<TimestampMs>,
    /// The output was fetched and verified.
    pub fetched_at: Option<TimestampMs>,
    /// The job reached a final status.
    pub finished_at: Option<TimestampMs>,
}

/// A job this node submitted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// The signed announcement.
    pub announcement: Signed<JobAnnouncement>,
    /// The spec.
    pub spec: JobSpec,
    /// Where it is.
    pub status: JobStatus,
    /// When it was submitted.
    pub submitted_at: TimestampMs,
    /// When the announcement expires.
    pub expires_at: TimestampMs,
    /// When the bidding window closes at the latest.
    pub bidding_closes_at: TimestampMs,
    /// Whether the announcement has been published.
    pub announced: bool,
    /// Bids, in arrival order.
    pub bids: Vec<BidEntry>,
    /// Assigned workers, in assignment order.
    pub executions: Vec<Execution>,
    /// Bidders not assigned yet, best first.
    pub reserves: Vec<PublicKey>,
    /// How many workers were assigned to replace others.
    pub reassignments: u32,
    /// The agreed hash.
    pub agreed_hash: Option<ResultHash>,
    /// Whether an output fetch is in flight.
    pub fetch_pending: bool,
    /// Workers whose output failed verification.
    pub bad_outputs: Vec<PublicKey>,
    /// The signed verdict.
    pub verdict: Option<Signed<Verdict>>,
    /// Whether the verdict has been published.
    pub verdict_published: bool,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// Phase timestamps.
    pub times: PhaseTimes,
    /// Human-readable timeline.
    pub events: Vec<(TimestampMs, String)>,
    /// When bidding was re-opened (peers invited) because no reserve was left.
    #[serde(default)]
    pub reopened_at: Option<TimestampMs>,
}

/// Most timeline events kept per job.
const MAX_EVENTS: usize = 200;

impl Job {
    /// Appends a timeline event.
    pub fn event(&mut self, at: TimestampMs, text: impl Into<String>) {
        if self.events.len() < MAX_EVENTS {
            self.events.push((at, text.into()));
        }
    }

    /// The execution of `worker`, if assigned.
    pub fn execution_mut(&mut self, worker: &PublicKey) -> Option<&mut Execution> {
        self.executions.iter_mut().find(|e| e.worker == *worker)
    }
}

/// Where an accepted assignment is on the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkState {
    /// Accepted; not started (or interrupted by a crash).
    Accepted,
    /// Executing.
    Running,
    /// Executed; commitment made (sent or being sent).
    Committed,
    /// The submitter withdrew the job.
    Cancelled,
}

/// An assignment this node accepted as a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkItem {
    /// The job.
    pub job_id: JobId,
    /// The attempt.
    pub attempt: u32,
    /// The submitter.
    pub submitter: PublicKey,
    /// The job's announcement.
    pub announcement: Signed<JobAnnouncement>,
    /// The assignment.
    pub assignment: Signed<Assignment>,
    /// Where it is.
    pub state: WorkState,
    /// When it was accepted.
    pub accepted_at: TimestampMs,
    /// The result hash, once executed.
    pub result_hash: Option<ResultHash>,
    /// The salt of the commitment.
    pub salt: Option<Digest>,
    /// The output manifest.
    pub manifest: Option<OutputManifest>,
    /// The folder holding `stdout` and `out/`.
    pub dir: Option<String>,
    /// The signed commitment (or failure report).
    pub commitment: Option<Signed<ResultCommitment>>,
    /// Whether the submitter acknowledged it.
    pub commit_acked: bool,
    /// How many times it was (re)started, to stop a job that crashes its worker every time.
    pub starts: u32,
}

impl WorkItem {
    /// The store key: job id then attempt.
    pub fn key(job_id: &JobId, attempt: u32) -> Vec<u8> {
        let mut key = job_id.as_bytes().to_vec();
        key.extend_from_slice(&attempt.to_be_bytes());
        key
    }
}

/// JSON view of a bid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BidView {
    /// Bidder's PeerId.
    pub peer_id: String,
    /// When it arrived.
    pub received_at: TimestampMs,
    /// Whether the bidder has the image.
    pub image_present: bool,
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
    /// Exit code from the revealed manifest.
    pub exit_code: Option<i64>,
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
    /// Phase durations.
    pub timings: Timings,
}

fn peer(key: &PublicKey) -> String {
    key.peer_id()
        .map(|p| p.to_string())
        .unwrap_or_else(|_| key.to_hex())
}

fn span(from: Option<TimestampMs>, to: Option<TimestampMs>) -> Option<u64> {
    Some(to?.saturating_sub(from?))
}

impl Job {
    /// The API view.
    pub fn view(&self) -> JobView {
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
                    VerdictOutcome::Accepted(h) => Some(h.to_hex()),
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
            status: self.status,
            spec: self.spec.clone(),
            submitted_at: self.submitted_at,
            bids: self
                .bids
                .iter()
                .map(|b| BidView {
                    peer_id: peer(&b.worker),
                    received_at: b.received_at,
                    image_present: b
                        .bid
                        .decode_unchecked()
                        .map(|b| b.image_present)
                        .unwrap_or(false),
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
                    exit_code: e.manifest.as_ref().map(|m| m.exit_code),
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
