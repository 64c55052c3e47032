//! The submitter's side of one job, as a pure state machine.
//!
//! ```text
//! Announcing ──published──▶ Bidding ──window closes──▶ Executing ──all committed──▶ Revealing
//!                                                         ▲                            │
//!                                                         └──── replace a worker ◀─────┤
//!                                                                                      │ k agree
//!                                Decided { outcome, published } ◀── verified ── Fetching
//! ```
//!
//! Any phase can end in `Decided` (expiry, cancel, no agreement possible). `Decided` is
//! terminal: the verdict is signed once, on entering it, and nothing that arrives later (a
//! commitment, a reveal, a fetch result, another cancel) changes the record again. The k-of-n
//! rules are those of one [`Tally`] per job, kept in the record; replacement of failed, silent
//! or refused workers goes through [`Tally::replace`].

use std::collections::HashSet;

use distributeai_protocol::limits::{MAX_JOB_LIFETIME_MS, MAX_VERDICT_WORKERS};
use distributeai_protocol::time::TimestampMs;
use distributeai_protocol::validate::{reason_text, short_text};
use distributeai_protocol::{
    AgreedResult, Assignment, AssignmentAck, Bid, CommittedOutcome, Diagnostics, Digest, Draw,
    Evidence, GossipMessage, JobAnnouncement, JobCancel, JobEnd, JobId, JobSpec, OutputManifest,
    PublicKey, Response, ResultCommitment, ResultHash, ResultReveal, Signed, ValidationError,
    Verdict, VerdictOutcome, Verified, WorkerFault, WorkerRecord, WorkerResult,
};
use distributeai_verifier::{Candidate, Decision, Report, Tally, select_with_uniforms};
use rand::RngExt;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::{Answer, CANDIDATES_PER_SLOT, Ctx, Level, count, short};

/// Most peers invited at once when bidding re-opens.
const MAX_INVITES: usize = 8;
/// Pause before publishing an announcement or verdict again, or re-sending a request that did
/// not arrive (ms).
const RETRY_MS: u64 = 1_000;
/// Pause before sending an assignment again to a worker that answered busy (ms), plus up
/// to half as much again at random.
const BUSY_RETRY_MS: u64 = 1_000;
/// Assignment deliveries that fail in transit before the worker counts as unreachable and its
/// slot goes to a reserve.
const ASSIGN_ATTEMPTS: u32 = 3;
/// Transport failures in a row fetching from one worker before trying another agreeing one.
/// (Each [`Input::Fetched`] failure already stands for several retried pieces.)
const FETCH_ROUNDS_PER_WORKER: usize = 1;
/// Most timeline events kept per job.
const MAX_EVENTS: usize = 200;

/// Where a submitted job is, as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Accepted, not announced yet.
    Pending,
    /// Announced; collecting bids.
    Bidding,
    /// Waiting for workers to free a slot: the ones that can run it are busy
    /// (`queued_reason` says so).
    Queued,
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
    /// Every status, in the order a job goes through them.
    pub const ALL: [JobStatus; 8] = [
        JobStatus::Pending,
        JobStatus::Bidding,
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Verifying,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    /// The status as the API, the metrics and the CLI spell it: `completed`, `queued`...
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Bidding => "bidding",
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Verifying => "verifying",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Whether nothing more will happen to the job.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// How a decided job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// k workers agreed and the output was fetched and verified.
    Completed,
    /// No verified result; the record's `failure_reason` says why.
    Failed,
    /// Withdrawn by the submitter: no verdict, nobody blamed or paid.
    Cancelled,
}

/// The phase of a submitted job. Exactly one at a time; see the module diagram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Signed and stored; the announcement is not published yet.
    Announcing,
    /// Published; collecting bids until `closes_at` (or earlier, see [`crate::FlowConfig`]).
    Bidding {
        /// When the window closes at the latest (ms).
        closes_at: TimestampMs,
    },
    /// Assigned; waiting for every active worker's commitment or failure.
    Executing,
    /// Every active worker answered; asking the committed ones to reveal.
    Revealing {
        /// When the reveals were first asked for (ms): a reveal still missing
        /// `deadline_grace_ms` later counts as failed.
        since: TimestampMs,
    },
    /// k results agree; fetching the output from an agreeing worker.
    Fetching {
        /// The worker being fetched from.
        from: PublicKey,
    },
    /// Terminal. The verdict (none when cancelled) was signed on entering it.
    Decided {
        /// How it ended.
        outcome: Outcome,
        /// Whether the verdict (or the cancel) has been published.
        published: bool,
    },
}

/// Where one assigned worker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionState {
    /// Assignment sent; waiting for its commitment.
    Assigned,
    /// It refused the assignment.
    Refused,
    /// It could not be reached, with its assignment or for its reveal: a network failure,
    /// which says nothing about its work, so it is neither blamed nor paid.
    Unreachable,
    /// It committed to a result, still hidden.
    Committed,
    /// It reported a failure, or did not reveal.
    Failed,
    /// It missed its deadline.
    Silent,
    /// It revealed a result that opens its commitment.
    Revealed,
    /// Its commitment was copied, or its reveal did not open it.
    Invalid,
    /// The submitter cancelled the job while this worker held it.
    Cancelled,
}

impl ExecutionState {
    /// The state as the API spells it: `revealed`, `silent`...
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionState::Assigned => "assigned",
            ExecutionState::Refused => "refused",
            ExecutionState::Unreachable => "unreachable",
            ExecutionState::Committed => "committed",
            ExecutionState::Failed => "failed",
            ExecutionState::Silent => "silent",
            ExecutionState::Revealed => "revealed",
            ExecutionState::Invalid => "invalid",
            ExecutionState::Cancelled => "cancelled",
        }
    }
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
    /// When it was assigned (ms).
    pub assigned_at: TimestampMs,
    /// Its commitment deadline (ms).
    pub deadline: TimestampMs,
    /// Whether the deadline was cut short by the job's expiry: a worker given less than the
    /// job's timeout plus grace is not blamed for missing it.
    #[serde(default)]
    pub deadline_clipped: bool,
    /// Its hiding commitment.
    pub commitment: Option<Digest>,
    /// Its signed commitment (or failure report), carried into the verdict as proof.
    pub commitment_envelope: Option<Signed<ResultCommitment>>,
    /// Its signed acceptance of the assignment: the proof a verdict needs to call it silent.
    #[serde(default)]
    pub acceptance: Option<Signed<AssignmentAck>>,
    /// Its signed reveal, carried into the verdict as the proof of what it returned.
    #[serde(default)]
    pub reveal_envelope: Option<Signed<ResultReveal>>,
    /// When the commitment (or failure) arrived (ms).
    pub committed_at: Option<TimestampMs>,
    /// Its revealed result hash.
    pub result_hash: Option<ResultHash>,
    /// The manifest it revealed.
    pub manifest: Option<OutputManifest>,
    /// When the reveal arrived (ms).
    pub revealed_at: Option<TimestampMs>,
    /// Why it failed, was refused or is invalid.
    pub failure: Option<String>,
    /// The fault it reported, for the verdict.
    pub reported_failure: Option<WorkerFault>,
    /// What it saw of the job's end (tails of the output, the engine's message), from its
    /// reveal: shown for a job that failed, so its last output is not lost (issue 12).
    #[serde(default)]
    pub diagnostics: Option<Diagnostics>,
    /// Whether the worker acknowledged its assignment.
    pub assign_acked: bool,
    /// Since when it has answered its assignment `busy` (every slot running a job), while it
    /// does: the job waits in the queue for it (issue 12).
    #[serde(default)]
    pub busy_since: Option<TimestampMs>,
    /// Requests to it (assignment, then reveal) that failed in transit, in a row.
    #[serde(default)]
    pub transport_failures: u32,
    /// A request to it is in flight. Not stored: after a restart nothing is.
    #[serde(skip)]
    pub in_flight: bool,
    /// Earliest time to send a request to it again (ms). Not stored.
    #[serde(skip)]
    pub retry_at: TimestampMs,
}

/// A bid received for a submitted job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BidEntry {
    /// The bidder.
    pub worker: PublicKey,
    /// Its signed bid.
    pub bid: Signed<Bid>,
    /// When it arrived (ms).
    pub received_at: TimestampMs,
}

/// When each phase of a job ended (ms), for the timings the API reports.
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

/// A job this node submitted: the stored record and the machine that moves it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmittedJob {
    /// Its id.
    pub id: JobId,
    /// The signed announcement.
    pub announcement: Signed<JobAnnouncement>,
    /// The spec.
    pub spec: JobSpec,
    /// Where it is.
    pub phase: Phase,
    /// When it was submitted (ms).
    pub submitted_at: TimestampMs,
    /// When the announcement expires (ms): the job is decided by then.
    pub expires_at: TimestampMs,
    /// Bids, in arrival order.
    pub bids: Vec<BidEntry>,
    /// Assigned workers, in assignment order.
    pub executions: Vec<Execution>,
    /// Bidders not assigned yet, best first.
    pub reserves: Vec<PublicKey>,
    /// How many workers were assigned to replace others.
    pub reassignments: u32,
    /// The k-of-n tally over the active slots, from the close of bidding.
    pub tally: Option<Tally<PublicKey, ResultHash>>,
    /// How the first workers were drawn, for the verdict.
    #[serde(default)]
    pub draw: Option<Draw>,
    /// The agreed hash.
    pub agreed_hash: Option<ResultHash>,
    /// Workers whose output failed verification.
    pub bad_outputs: Vec<PublicKey>,
    /// Agreeing workers whose output could not be fetched for transport reasons: skipped
    /// while another agreeing worker is left, then tried again (issue 10).
    #[serde(default)]
    pub fetch_unreachable: Vec<PublicKey>,
    /// The signed verdict.
    pub verdict: Option<Signed<Verdict>>,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// Phase timestamps.
    pub times: PhaseTimes,
    /// Human-readable timeline.
    pub events: Vec<(TimestampMs, String)>,
    /// When bidding was re-opened (peers invited) because no reserve was left (ms).
    pub reopened_at: Option<TimestampMs>,
    /// Why the job waits for workers, while it waits in the queue: the network's workers that
    /// can run it are busy (issue 12).
    #[serde(default)]
    pub queued_reason: Option<String>,
    /// Earliest time to publish again (ms). Not stored.
    #[serde(skip)]
    publish_retry_at: TimestampMs,
}

/// Which gossip an [`Input::Published`] reports on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gossip {
    /// The job's announcement.
    Announcement,
    /// The verdict, or the cancel of a cancelled job.
    Decision,
}

/// How a worker answered a reveal request.
#[derive(Debug, Clone)]
pub enum RevealAnswer {
    /// A signed reveal with the manifest it names, checked at the edge
    /// ([`distributeai_protocol::RevealedResult::open`]; boxed: it carries the whole manifest).
    Reveal(Box<OpenedReveal>),
    /// The worker refused, or answered with something else.
    Refused(String),
    /// It never arrived or no answer came back.
    Unreachable(String),
}

/// A worker's reveal answer as the edge checked it: the signed reveal, and the manifest and
/// diagnostics that came with it (the manifest's hash, end and image are the signed ones).
#[derive(Debug, Clone)]
pub struct OpenedReveal {
    /// The signed reveal.
    pub reveal: Verified<ResultReveal>,
    /// The manifest it names.
    pub manifest: OutputManifest,
    /// What the worker saw of the job's end.
    pub diagnostics: Diagnostics,
}

/// How fetching one worker's output ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchResult {
    /// Fetched, matched the manifest and the agreed hash, and stored.
    Verified,
    /// The worker could not be reached for long enough: says nothing about its result.
    Transport(String),
    /// The worker served something that is not the agreed output.
    Invalid(String),
}

/// Everything that can happen to a submitted job.
#[derive(Debug, Clone)]
pub enum Input {
    /// A publish finished.
    Published {
        /// What was published.
        what: Gossip,
        /// `Err` with the reason when it could not be.
        result: Result<(), String>,
    },
    /// A bid arrived (validated at the edge). Answer with the [`Effect::Reply`].
    Bid(Verified<Bid>),
    /// A worker answered its assignment.
    AssignAnswer {
        /// The worker.
        worker: PublicKey,
        /// Its answer.
        answer: Answer,
    },
    /// A commitment or failure report arrived. Answer with the [`Effect::Reply`].
    Commit(Verified<ResultCommitment>),
    /// A worker answered a reveal request.
    RevealAnswer {
        /// The worker.
        worker: PublicKey,
        /// Its answer.
        answer: RevealAnswer,
    },
    /// An output fetch ended.
    Fetched {
        /// The worker fetched from.
        worker: PublicKey,
        /// How it ended.
        result: FetchResult,
    },
    /// The worker's connection dropped and it could not be reached again within the
    /// liveness bound (issue 12): a worker still running the job is given up on now, not at
    /// its deadline. Not blamed: a home connection can drop.
    WorkerLost {
        /// The worker.
        worker: PublicKey,
    },
    /// The submitter withdraws the job.
    Cancel,
    /// Time passed: deadlines, retries.
    Tick,
    /// The node restarted and loaded this record: nothing is in flight any more.
    Restarted,
}

/// What the node must do, in order.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Store the record (and tell API clients it changed) before carrying out what follows.
    Persist,
    /// Publish on the mesh; report back with [`Input::Published`].
    Publish {
        /// What it is.
        what: Gossip,
        /// The message.
        message: GossipMessage,
    },
    /// Send an assignment; report the answer with [`Input::AssignAnswer`].
    Assign {
        /// The worker.
        worker: PublicKey,
        /// The signed assignment.
        assignment: Signed<Assignment>,
    },
    /// Ask a worker to reveal; report the answer with [`Input::RevealAnswer`].
    RequestReveal {
        /// The worker.
        worker: PublicKey,
        /// The attempt its commitment answered.
        attempt: u32,
    },
    /// Invite a peer to bid (fire and forget: its bid arrives as a reserve).
    Invite {
        /// The peer.
        peer: PublicKey,
        /// The job's signed announcement.
        announcement: Signed<JobAnnouncement>,
    },
    /// Fetch and verify a worker's output; report with [`Input::Fetched`].
    Fetch {
        /// The worker.
        worker: PublicKey,
        /// The manifest it revealed.
        manifest: OutputManifest,
        /// The agreed hash the output must match.
        agreed: ResultHash,
    },
    /// Answer the request this input carried.
    Reply(Response),
    /// Enter our own verdict in our ledger (our own gossip never comes back to us).
    RecordVerdict(Signed<Verdict>),
    /// Something worth a log line.
    Log(Level, String),
}

/// Why a job could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The spec is invalid; the message names the field.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The announcement could not be encoded for signing.
    #[error("cannot sign the announcement: {0}")]
    Sign(#[from] distributeai_protocol::EncodeError),
}

type Effects = Vec<Effect>;

impl SubmittedJob {
    /// Signs and records a new job; the effects store and announce it.
    ///
    /// Its lifetime is long enough to bid, run, replace a few workers and verify, never past
    /// the protocol's `MAX_JOB_LIFETIME_MS`. Errors: the spec is invalid (the error names the
    /// field), or cannot be encoded.
    pub fn submit(spec: JobSpec, ctx: &mut Ctx<'_>) -> Result<(Self, Effects), SubmitError> {
        spec.check()?;
        let now = ctx.now;
        let config = ctx.config;
        let timeout_ms = u64::from(spec.timeout_s) * 1000;
        let lifetime = config
            .bid_wait_max_ms
            .saturating_add(
                (timeout_ms + config.deadline_grace_ms)
                    .saturating_mul(u64::from(config.max_reassignments) + 2),
            )
            .min(MAX_JOB_LIFETIME_MS);
        let announcement = JobAnnouncement {
            spec: spec.clone(),
            nonce: ctx.rng.random(),
            issued_at: now,
            expires_at: now + lifetime,
        };
        let signed = Signed::sign(ctx.identity, &announcement)?;
        let mut job = Self {
            id: signed.job_id(),
            announcement: signed,
            spec,
            phase: Phase::Announcing,
            submitted_at: now,
            expires_at: announcement.expires_at,
            bids: Vec::new(),
            executions: Vec::new(),
            reserves: Vec::new(),
            reassignments: 0,
            tally: None,
            draw: None,
            agreed_hash: None,
            bad_outputs: Vec::new(),
            fetch_unreachable: Vec::new(),
            verdict: None,
            failure_reason: None,
            times: PhaseTimes::default(),
            events: Vec::new(),
            reopened_at: None,
            queued_reason: None,
            publish_retry_at: 0,
        };
        job.event(
            now,
            format!(
                "submitted: {} (n={}, k={})",
                job.spec.image, job.spec.redundancy, job.spec.consensus
            ),
        );
        let mut fx = vec![Effect::Persist];
        job.publish_announcement(now, &mut fx);
        Ok((job, fx))
    }

    /// The status the API reports.
    pub fn status(&self) -> JobStatus {
        match self.phase {
            Phase::Announcing => JobStatus::Pending,
            Phase::Bidding { .. } if self.queued_reason.is_some() => JobStatus::Queued,
            Phase::Bidding { .. } => JobStatus::Bidding,
            Phase::Executing if self.waiting_for_slots() > 0 => JobStatus::Queued,
            Phase::Executing => JobStatus::Running,
            Phase::Revealing { .. } | Phase::Fetching { .. } => JobStatus::Verifying,
            Phase::Decided { outcome, .. } => match outcome {
                Outcome::Completed => JobStatus::Completed,
                Outcome::Failed => JobStatus::Failed,
                Outcome::Cancelled => JobStatus::Cancelled,
            },
        }
    }

    /// Every worker whose bid was recorded, in arrival order (bids refused as not needed
    /// are not).
    fn bidders(&self) -> Vec<PublicKey> {
        self.bids.iter().map(|b| b.worker).collect()
    }

    /// Active workers whose assignment waits for one of their slots to free.
    pub fn waiting_for_slots(&self) -> usize {
        self.executions
            .iter()
            .filter(|e| e.active && e.state == ExecutionState::Assigned && e.busy_since.is_some())
            .count()
    }

    /// Why the job waits, while it is queued.
    pub fn queued_because(&self) -> Option<String> {
        match self.status() {
            JobStatus::Queued if self.phase == Phase::Executing => Some(format!(
                "waiting for a free slot on {}",
                count(self.waiting_for_slots(), "worker", "workers")
            )),
            JobStatus::Queued => self.queued_reason.clone(),
            _ => None,
        }
    }

    /// Whether the machine still has something to do on a [`Input::Tick`]: not decided, or
    /// its decision not yet published.
    pub fn needs_ticks(&self) -> bool {
        !matches!(
            self.phase,
            Phase::Decided {
                published: true,
                ..
            }
        )
    }

    /// Appends a timeline event (at most [`MAX_EVENTS`]).
    pub fn event(&mut self, at: TimestampMs, text: impl Into<String>) {
        if self.events.len() < MAX_EVENTS {
            self.events.push((at, text.into()));
        }
    }

    /// The execution of `worker`, if assigned.
    pub fn execution(&self, worker: &PublicKey) -> Option<&Execution> {
        self.executions.iter().find(|e| e.worker == *worker)
    }

    fn execution_mut(&mut self, worker: &PublicKey) -> Option<&mut Execution> {
        self.executions.iter_mut().find(|e| e.worker == *worker)
    }

    fn decided(&self) -> bool {
        matches!(self.phase, Phase::Decided { .. })
    }

    /// The one entry point: what happens, and what the node must do about it.
    pub fn handle(&mut self, input: Input, ctx: &mut Ctx<'_>) -> Effects {
        let mut fx = Vec::new();
        match input {
            Input::Published { what, result } => self.on_published(what, result, ctx, &mut fx),
            Input::Bid(bid) => {
                let reply = self.on_bid(bid, ctx.now, ctx.config.reserve_bids, &mut fx);
                // Assignments go out as soon as enough good bids are in, not at the next
                // tick or the end of a window (issue 12).
                if let Phase::Bidding { closes_at } = self.phase {
                    self.drive_bidding(closes_at, ctx, &mut fx);
                }
                fx.push(Effect::Reply(reply));
            }
            Input::AssignAnswer { worker, answer } => {
                self.on_assign_answer(worker, answer, ctx, &mut fx)
            }
            Input::Commit(commit) => {
                let reply = self.on_commit(commit, ctx, &mut fx);
                fx.push(Effect::Reply(reply));
            }
            Input::RevealAnswer { worker, answer } => {
                self.on_reveal_answer(worker, answer, ctx, &mut fx)
            }
            Input::Fetched { worker, result } => self.on_fetched(worker, result, ctx, &mut fx),
            Input::Cancel => self.cancel(ctx, &mut fx),
            Input::WorkerLost { worker } => self.on_worker_lost(worker, ctx, &mut fx),
            Input::Tick => self.on_tick(ctx, &mut fx),
            Input::Restarted => {
                // Time the submitter was down says nothing about its workers: they keep
                // re-sending their commitments, so a worker still assigned gets at least a
                // whole grace period from now (the time delivery may take), and the reveals
                // a fresh one.
                self.publish_retry_at = 0;
                let now = ctx.now;
                if let Phase::Revealing { since } = &mut self.phase {
                    *since = now;
                }
                let full = now + ctx.config.deadline_grace_ms;
                let after_restart = full.min(self.expires_at);
                let mut extended = false;
                for e in &mut self.executions {
                    e.in_flight = false;
                    e.retry_at = 0;
                    e.transport_failures = 0;
                    if e.active && e.state == ExecutionState::Assigned && e.deadline < full {
                        // Near the job's expiry it cannot have that long: then it is not
                        // blamed for missing it (see `verdict_of`).
                        e.deadline = e.deadline.max(after_restart);
                        e.deadline_clipped |= after_restart < full;
                        extended = true;
                    }
                }
                if extended {
                    fx.push(Effect::Persist);
                }
                if matches!(self.phase, Phase::Fetching { .. }) {
                    // The fetch died with the process: start it again.
                    self.fetch_output(ctx, &mut fx);
                }
                self.on_tick(ctx, &mut fx);
            }
        }
        fx
    }

    fn publish_announcement(&mut self, now: TimestampMs, fx: &mut Effects) {
        self.publish_retry_at = now + RETRY_MS;
        fx.push(Effect::Publish {
            what: Gossip::Announcement,
            message: GossipMessage::Job(self.announcement.clone()),
        });
    }

    fn on_published(
        &mut self,
        what: Gossip,
        result: Result<(), String>,
        ctx: &mut Ctx<'_>,
        fx: &mut Effects,
    ) {
        let now = ctx.now;
        match (what, result, &mut self.phase) {
            (Gossip::Announcement, Ok(()), Phase::Announcing) => {
                // The window starts when workers can actually see the job.
                self.phase = Phase::Bidding {
                    closes_at: now + ctx.config.bid_window_ms,
                };
                self.event(now, "announced to the mesh");
                fx.push(Effect::Persist);
            }
            (Gossip::Decision, Ok(()), Phase::Decided { published, .. }) if !*published => {
                *published = true;
                let what = if self.verdict.is_some() {
                    "verdict gossiped"
                } else {
                    "cancel gossiped"
                };
                self.event(now, what);
                fx.push(Effect::Persist);
            }
            (what, Err(e), _) => fx.push(Effect::Log(
                Level::Debug,
                format!("publishing the {what:?} failed: {e}; trying again"),
            )),
            _ => {}
        }
    }

    fn cancel(&mut self, ctx: &mut Ctx<'_>, fx: &mut Effects) {
        if self.decided() {
            return;
        }
        let now = ctx.now;
        self.phase = Phase::Decided {
            outcome: Outcome::Cancelled,
            published: false,
        };
        self.times.finished_at = Some(now);
        // Whoever still held the job is told by the signed cancel and stops: their
        // executions end here, not left "assigned" for ever.
        for e in &mut self.executions {
            if e.active
                && matches!(
                    e.state,
                    ExecutionState::Assigned | ExecutionState::Committed
                )
            {
                e.state = ExecutionState::Cancelled;
                e.in_flight = false;
            }
        }
        self.event(now, "cancelled by the submitter");
        fx.push(Effect::Persist);
        self.publish_decision(ctx, fx);
    }

    /// Publishes the verdict, or the cancel of a cancelled job (signed afresh each time, so a
    /// retried cancel is within the clock-skew window; a verdict is signed only once).
    fn publish_decision(&mut self, ctx: &mut Ctx<'_>, fx: &mut Effects) {
        self.publish_retry_at = ctx.now + RETRY_MS;
        let message = match (&self.phase, &self.verdict) {
            (_, Some(verdict)) => GossipMessage::Verdict(verdict.clone()),
            (
                Phase::Decided {
                    outcome: outcome @ (Outcome::Cancelled | Outcome::Failed),
                    ..
                },
                None,
            ) => {
                // A failed job that no worker took has no verdict (it would be a ledger entry
                // about nothing, issue 19): its bidders are told to forget it instead.
                let reason = match outcome {
                    Outcome::Failed => short_text(&format!(
                        "failed: {}",
                        self.failure_reason
                            .as_deref()
                            .unwrap_or("no worker took it")
                    )),
                    _ => "cancelled by the submitter".into(),
                };
                let cancel = JobCancel {
                    job_id: self.id,
                    reason,
                    issued_at: ctx.now,
                };
                match Signed::sign(ctx.identity, &cancel) {
                    Ok(signed) => GossipMessage::Cancel(signed),
                    Err(e) => {
                        fx.push(Effect::Log(Level::Warn, format!("cannot sign cancel: {e}")));
                        return;
                    }
                }
            }
            _ => return,
        };
        fx.push(Effect::Publish {
            what: Gossip::Decision,
            message,
        });
    }

    fn on_bid(
        &mut self,
        bid: Verified<Bid>,
        now: TimestampMs,
        reserve_bids: usize,
        fx: &mut Effects,
    ) -> Response {
        if bid.message.job_id != self.id {
            return Response::Refused("the bid is for another job".into());
        }
        if self.decided() {
            return Response::Refused("bidding is closed".into());
        }
        if self.bids.iter().any(|b| b.worker == bid.signer) {
            return Response::Ack;
        }
        if self.bids.len() >= MAX_VERDICT_WORKERS {
            return Response::Refused("enough bids".into());
        }
        let bidding = matches!(self.phase, Phase::Announcing | Phase::Bidding { .. });
        // A bid that is not needed is refused, so its worker forgets it (issue 12). Late bids
        // are taken as reserves only up to the configured number, or while a replacement is
        // wanted.
        if !bidding && self.reserves.len() >= reserve_bids && self.reopened_at.is_none() {
            return Response::Refused("not needed: the job has its workers".into());
        }
        self.bids.push(BidEntry {
            worker: bid.signer,
            bid: bid.envelope.clone(),
            received_at: now,
        });
        if !bidding {
            self.reserves.push(bid.signer);
        }
        self.event(now, format!("bid from {}", short(&bid.signer)));
        fx.push(Effect::Persist);
        Response::Ack
    }

    fn on_tick(&mut self, ctx: &mut Ctx<'_>, fx: &mut Effects) {
        let now = ctx.now;
        if let Phase::Decided { published, .. } = self.phase {
            if !published && now >= self.publish_retry_at {
                self.publish_decision(ctx, fx);
            }
            return;
        }
        if now > self.expires_at {
            self.fail("the job expired before a result was agreed".into(), ctx, fx);
            return;
        }
        match self.phase {
            Phase::Announcing => {
                if now >= self.publish_retry_at {
                    self.publish_announcement(now, fx);
                }
            }
            Phase::Bidding { closes_at } => self.drive_bidding(closes_at, ctx, fx),
            Phase::Executing | Phase::Revealing { .. } => {
                let mut silent = Vec::new();
                for e in &mut self.executions {
                    if e.active && e.state == ExecutionState::Assigned && now > e.deadline {
                        e.state = ExecutionState::Silent;
                        e.in_flight = false;
                        e.failure = Some("missed its deadline".into());
                        silent.push(e.worker);
                    }
                }
                let changed = !silent.is_empty() | self.give_up_on_busy(ctx);
                for worker in silent {
                    self.event(now, format!("worker {} went silent", short(&worker)));
                }
                if changed {
                    fx.push(Effect::Persist);
                }
                self.evaluate(ctx, fx);
            }
            Phase::Fetching { .. } | Phase::Decided { .. } => {}
        }
    }

    /// Closes bidding as soon as n good bids are in: at once when they are spread over as
    /// many operators as could bid, else after a short quiet spell for a better spread
    /// (issue 12: no idle window). With fewer than n bids, a job that workers could run waits
    /// in the queue (`queued`, with the reason) while they are busy, rather than failing;
    /// busy workers remember the job and bid when a slot frees.
    /// A worker busy for as long as this job may run (its timeout plus grace) is given up
    /// on, without blame, when another worker could take its place (a reserve, or a peer to
    /// invite): its slots may be held by a job that never ends. With nobody else, the job
    /// keeps waiting for it, until expiry. Returns whether any was given up on.
    fn give_up_on_busy(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let now = ctx.now;
        let patience = u64::from(self.spec.timeout_s) * 1000 + ctx.config.deadline_grace_ms;
        let stuck: Vec<PublicKey> = self
            .executions
            .iter()
            .filter(|e| {
                e.active
                    && e.state == ExecutionState::Assigned
                    && e.busy_since.is_some_and(|since| now > since + patience)
            })
            .map(|e| e.worker)
            .collect();
        if stuck.is_empty() || self.reassignments >= ctx.config.max_reassignments {
            return false;
        }
        let bidders = self.bidders();
        if self.reserves.is_empty() && ctx.directory.invitees(&self.spec, &bidders).is_empty() {
            return false;
        }
        for worker in stuck {
            if let Some(e) = self.execution_mut(&worker) {
                e.state = ExecutionState::Refused;
                e.failure = Some(format!("busy for over {} s", patience / 1000));
            }
            self.event(
                now,
                format!(
                    "{} stayed busy for over {} s; asking another worker",
                    short(&worker),
                    patience / 1000
                ),
            );
        }
        true
    }

    fn drive_bidding(&mut self, closes_at: TimestampMs, ctx: &mut Ctx<'_>, fx: &mut Effects) {
        let now = ctx.now;
        let config = ctx.config;
        let n = usize::from(self.spec.redundancy);
        let k = usize::from(self.spec.consensus);
        let bidders = self.bidders();
        let others = ctx.directory.invitees(&self.spec, &bidders);
        if self.bids.len() >= n {
            // The selection window (issue 19): the draw, not the speed of an answer, decides
            // who runs the job. It closes early once enough candidates are in or nobody else
            // could bid, so a small network loses no time to it.
            let enough = (CANDIDATES_PER_SLOT * n).min(MAX_VERDICT_WORKERS);
            let nth_bid_at = self.bids[n - 1].received_at;
            if self.bids.len() >= enough
                || others.is_empty()
                || now >= nth_bid_at + config.bid_quiet_ms
            {
                self.queued_reason = None;
                self.close_bidding(n, ctx, fx);
            }
            return;
        }
        let waited_out = now >= self.submitted_at + config.bid_wait_max_ms;
        if now >= closes_at && !others.is_empty() && !waited_out {
            // Workers that could run it exist but have not bid (busy workers do bid): they
            // may have missed the gossip, hence one invitation. Wait in the queue for them
            // until `bid_wait_max_ms`, then run with what there is or fail.
            let reason = format!(
                "waiting for bids: {} of {n} in; {} that could run it not heard from yet",
                count(self.bids.len(), "bid", "bids"),
                count(others.len(), "other worker", "other workers"),
            );
            if self.queued_reason.is_none() {
                self.event(now, format!("queued: {reason}"));
                let mut invitees = others;
                invitees.shuffle(ctx.rng);
                invitees.truncate(MAX_INVITES);
                for peer in invitees {
                    fx.push(Effect::Invite {
                        peer,
                        announcement: self.announcement.clone(),
                    });
                }
                self.queued_reason = Some(reason);
                fx.push(Effect::Persist);
            } else if self.queued_reason.as_deref() != Some(reason.as_str()) {
                self.queued_reason = Some(reason);
            }
            return;
        }
        if waited_out {
            if self.bids.len() >= k {
                let have = self.bids.len();
                self.close_bidding(have, ctx, fx);
            } else {
                let reason = format!(
                    "only {} bid; consensus needs at least {k} ({})",
                    count(self.bids.len(), "worker", "workers"),
                    ctx.directory.worker_reach()
                );
                self.fail(reason, ctx, fx);
            }
        }
    }

    /// Draws the first n workers among every bid in (issue 19), weighted and spread over
    /// operators, with uniforms from a hash of the job and the bids, and keeps the draw for
    /// the verdict so that any node can replay it.
    fn close_bidding(&mut self, n: usize, ctx: &mut Ctx<'_>, fx: &mut Effects) {
        let now = ctx.now;
        let mut group_names: Vec<String> = Vec::new();
        let mut draw = Draw {
            candidates: Vec::with_capacity(self.bids.len()),
            weights: Vec::with_capacity(self.bids.len()),
            groups: Vec::with_capacity(self.bids.len()),
        };
        for b in &self.bids {
            let weight = ctx.directory.weight(&b.worker);
            // In millionths, so every node replays the draw from the same integers.
            let millionths = if weight.is_finite() && weight > 0.0 {
                (weight * 1_000_000.0).round().min(u64::MAX as f64) as u64
            } else {
                0
            };
            let group = ctx.directory.group(&b.worker);
            let index = match group_names.iter().position(|g| *g == group) {
                Some(i) => i,
                None => {
                    group_names.push(group);
                    group_names.len() - 1
                }
            };
            draw.candidates.push(b.bid.clone());
            draw.weights.push(millionths);
            draw.groups.push(u16::try_from(index).unwrap_or(u16::MAX));
        }
        let candidates: Vec<Candidate<PublicKey, u16>> = draw
            .candidates
            .iter()
            .zip(&draw.weights)
            .zip(&draw.groups)
            .map(|((bid, weight), group)| Candidate {
                worker: bid.signer(),
                weight: *weight as f64 / 1_000_000.0,
                group: *group,
            })
            .collect();
        let selection = select_with_uniforms(&candidates, n, &draw.uniforms(&self.id));
        self.draw = Some(draw);
        let k = usize::from(self.spec.consensus);
        let tally = match Tally::new(k, selection.chosen.iter().copied()) {
            Ok(tally) => tally,
            Err(e) => {
                self.fail(format!("cannot start the tally: {e}"), ctx, fx);
                return;
            }
        };
        self.tally = Some(tally);
        self.reserves = selection.reserves;
        self.phase = Phase::Executing;
        self.times.assigned_at = Some(now);
        self.event(
            now,
            format!(
                "bidding closed with {}; assigning {}",
                count(self.bids.len(), "bid", "bids"),
                selection.chosen.len()
            ),
        );
        for worker in &selection.chosen {
            self.add_execution(*worker, ctx);
        }
        // Stored before they are sent, so a restarted submitter knows to send them again.
        fx.push(Effect::Persist);
        for worker in selection.chosen {
            self.send_assignment(worker, ctx, fx);
        }
    }

    /// How long a worker has from its assignment to its commitment (ms): the job's timeout,
    /// the grace, and the pull allowance when its bid said it would have to pull the image.
    fn time_to_commit(&self, bid: &Signed<Bid>, config: &crate::FlowConfig) -> u64 {
        let pulls = bid
            .decode_unchecked()
            .map(|b| b.image.is_none())
            .unwrap_or(false);
        u64::from(self.spec.timeout_s) * 1000
            + config.deadline_grace_ms
            + if pulls { config.pull_allowance_ms } else { 0 }
    }

    fn add_execution(&mut self, worker: PublicKey, ctx: &mut Ctx<'_>) {
        let Some(bid) = self
            .bids
            .iter()
            .find(|b| b.worker == worker)
            .map(|b| b.bid.clone())
        else {
            return;
        };
        let now = ctx.now;
        let full = now + self.time_to_commit(&bid, ctx.config);
        let deadline = full.min(self.expires_at);
        self.executions.push(Execution {
            worker,
            bid,
            attempt: self.executions.len() as u32,
            state: ExecutionState::Assigned,
            active: true,
            assigned_at: now,
            deadline,
            deadline_clipped: deadline < full,
            commitment: None,
            commitment_envelope: None,
            acceptance: None,
            reveal_envelope: None,
            committed_at: None,
            result_hash: None,
            manifest: None,
            revealed_at: None,
            failure: None,
            reported_failure: None,
            diagnostics: None,
            busy_since: None,
            assign_acked: false,
            transport_failures: 0,
            in_flight: false,
            retry_at: 0,
        });
        self.event(now, format!("assigned to {}", short(&worker)));
    }

    /// Sends (or sends again) a worker's assignment, signed afresh so that it is within the
    /// clock-skew window; attempt and deadline stay as stored.
    fn send_assignment(&mut self, worker: PublicKey, ctx: &mut Ctx<'_>, fx: &mut Effects) {
        let id = self.id;
        let now = ctx.now;
        let Some(e) = self.execution_mut(&worker) else {
            return;
        };
        let assignment = Assignment {
            job_id: id,
            worker,
            attempt: e.attempt,
            deadline: e.deadline,
            issued_at: now,
        };
        match Signed::sign(ctx.identity, &assignment) {
            Ok(assignment) => {
                e.in_flight = true;
                fx.push(Effect::Assign { worker, assignment });
            }
            Err(err) => fx.push(Effect::Log(
                Level::Warn,
                format!("cannot sign assignment: {err}"),
            )),
        }
    }

    fn on_assign_answer(
        &mut self,
        worker: PublicKey,
        answer: Answer,
        ctx: &mut Ctx<'_>,
        fx: &mut Effects,
    ) {
        if self.decided() {
            return;
        }
        let now = ctx.now;
        let id = self.id;
        let Some(e) = self.execution_mut(&worker) else {
            return;
        };
        e.in_flight = false;
        if e.state != ExecutionState::Assigned {
            return;
        }
        let text = match answer {
            Answer::Accepted(_) | Answer::Ack => {
                // Its signed acceptance, kept as the proof a verdict may need; a bare ack
                // (from a worker that signs none) is taken too, but proves nothing later.
                let mut changed = false;
                if let Answer::Accepted(ack) = &answer {
                    let a = &ack.message;
                    let fits = ack.signer == worker && a.job_id == id && a.attempt == e.attempt;
                    if fits && e.acceptance.is_none() {
                        e.acceptance = Some(ack.envelope.clone());
                        changed = true;
                    }
                }
                e.transport_failures = 0;
                e.busy_since = None;
                if !e.assign_acked {
                    e.assign_acked = true;
                    changed = true;
                }
                if changed {
                    fx.push(Effect::Persist);
                }
                return;
            }
            Answer::Unreachable(reason) => {
                e.transport_failures += 1;
                if e.transport_failures < ASSIGN_ATTEMPTS {
                    e.retry_at = now + RETRY_MS;
                    return;
                }
                e.state = ExecutionState::Unreachable;
                e.failure = Some(format!("could not be reached: {reason}"));
                format!(
                    "{} could not be reached with its assignment: {reason}",
                    short(&worker)
                )
            }
            Answer::Busy => {
                // Its slots are all running jobs: not a refusal. The assignment stands and
                // goes again shortly, its deadline counted from the delivery that finds a
                // slot (issue 12). Spread the retries so a batch does not ask in lockstep.
                e.transport_failures = 0;
                e.retry_at = now + BUSY_RETRY_MS + ctx.rng.random_range(0..BUSY_RETRY_MS / 2);
                if e.busy_since.is_none() {
                    e.busy_since = Some(now);
                    self.event(
                        now,
                        format!(
                            "{} is busy; the assignment waits for a free slot",
                            short(&worker)
                        ),
                    );
                    fx.push(Effect::Persist);
                }
                return;
            }
            Answer::Refused(reason) => {
                e.state = ExecutionState::Refused;
                e.failure = Some(reason.clone());
                format!("{} refused the assignment: {reason}", short(&worker))
            }
        };
        self.event(now, text);
        fx.push(Effect::Persist);
        self.evaluate(ctx, fx);
    }

    fn on_worker_lost(&mut self, worker: PublicKey, ctx: &mut Ctx<'_>, fx: &mut Effects) {
        if !matches!(self.phase, Phase::Executing | Phase::Revealing { .. }) {
            return;
        }
        let now = ctx.now;
        let Some(e) = self.execution_mut(&worker) else {
            return;
        };
        if !(e.active && e.state == ExecutionState::Assigned) {
            return;
        }
        e.state = ExecutionState::Unreachable;
        e.in_flight = false;
        e.failure = Some("lost its connection and could not be reached again".into());
        self.event(
            now,
            format!(
                "{} lost its connection and could not be reached again; replacing it",
                short(&worker)
            ),
        );
        fx.push(Effect::Persist);
        self.evaluate(ctx, fx);
    }

    fn on_commit(
        &mut self,
        commit: Verified<ResultCommitment>,
        ctx: &mut Ctx<'_>,
        fx: &mut Effects,
    ) -> Response {
        let now = ctx.now;
        let message = &commit.message;
        if message.job_id != self.id {
            return Response::Refused("the commitment is for another job".into());
        }
        let Some(e) = self.execution(&commit.signer) else {
            return Response::Refused("you are not assigned to this job".into());
        };
        if e.attempt != message.attempt {
            return Response::Refused("wrong attempt".into());
        }
        if e.committed_at.is_some() {
            // A repeated commit after we recorded it (our ack was lost): fine.
            return Response::Ack;
        }
        if self.decided() {
            return Response::Refused("the job is already decided".into());
        }
        // A worker we could not reach with its assignment evidently got it: while it still
        // holds its slot, its commitment counts.
        let reached = e.state == ExecutionState::Unreachable && e.active;
        if e.state != ExecutionState::Assigned && !reached {
            return Response::Refused(format!("too late: your assignment is {:?}", e.state));
        }
        let copied_from = match &message.outcome {
            CommittedOutcome::Committed(digest) => self
                .executions
                .iter()
                .find(|o| o.worker != commit.signer && o.commitment == Some(*digest))
                .map(|o| o.worker),
            CommittedOutcome::Failed(_) => None,
        };
        let signer = commit.signer;
        let Some(e) = self.execution_mut(&signer) else {
            return Response::Refused("you are not assigned to this job".into());
        };
        e.committed_at = Some(now);
        e.in_flight = false;
        e.transport_failures = 0;
        // A retry pause left from its assignment (busy, say) does not delay its reveal.
        e.retry_at = 0;
        e.commitment_envelope = Some(commit.envelope.clone());
        let (text, report) = match (&message.outcome, copied_from) {
            (CommittedOutcome::Committed(_), Some(original)) => {
                e.state = ExecutionState::Invalid;
                e.failure = Some(format!("copied the commitment of {}", short(&original)));
                (
                    format!(
                        "{} sent a copy of {}'s commitment: not counted",
                        short(&signer),
                        short(&original)
                    ),
                    Some(Report::Failed),
                )
            }
            (CommittedOutcome::Committed(digest), None) => {
                e.state = ExecutionState::Committed;
                e.commitment = Some(*digest);
                (format!("{} committed", short(&signer)), None)
            }
            (CommittedOutcome::Failed(failure), _) => {
                e.state = ExecutionState::Failed;
                e.failure = Some(failure_text(failure));
                e.reported_failure = Some(failure.clone());
                (
                    format!("{} failed: {}", short(&signer), failure_text(failure)),
                    Some(Report::Failed),
                )
            }
        };
        if let Some(report) = report {
            self.record(&signer, report, fx);
        }
        self.event(now, text);
        fx.push(Effect::Persist);
        self.evaluate(ctx, fx);
        Response::Ack
    }

    fn record(&mut self, worker: &PublicKey, report: Report<ResultHash>, fx: &mut Effects) {
        if let Some(tally) = &mut self.tally
            && let Err(e) = tally.record(worker, report)
        {
            fx.push(Effect::Log(
                Level::Warn,
                format!("tally refused a report of {}: {e}", short(worker)),
            ));
        }
    }

    fn on_reveal_answer(
        &mut self,
        worker: PublicKey,
        answer: RevealAnswer,
        ctx: &mut Ctx<'_>,
        fx: &mut Effects,
    ) {
        if self.decided() {
            return;
        }
        let now = ctx.now;
        let id = self.id;
        let Some(e) = self.execution_mut(&worker) else {
            return;
        };
        e.in_flight = false;
        if e.state != ExecutionState::Committed {
            return;
        }
        let (text, report) = match answer {
            RevealAnswer::Reveal(opened) => {
                let OpenedReveal {
                    reveal,
                    manifest,
                    diagnostics,
                } = *opened;
                let r = &reveal.message;
                let opens = e.commitment.is_some_and(|c| r.opens(&worker, &c));
                if reveal.signer == worker && r.job_id == id && r.attempt == e.attempt && opens {
                    e.state = ExecutionState::Revealed;
                    e.result_hash = Some(r.result_hash);
                    e.manifest = Some(manifest);
                    e.diagnostics = Some(diagnostics);
                    e.reveal_envelope = Some(reveal.envelope.clone());
                    e.revealed_at = Some(now);
                    (
                        format!("{} voted {}", short(&worker), r.result_hash.short()),
                        Report::Result(r.result_hash),
                    )
                } else {
                    e.state = ExecutionState::Invalid;
                    e.failure = Some("its reveal does not open its commitment".into());
                    (
                        format!(
                            "{}'s reveal does not open its commitment: not counted",
                            short(&worker)
                        ),
                        Report::Failed,
                    )
                }
            }
            RevealAnswer::Refused(reason) => {
                e.state = ExecutionState::Failed;
                e.failure = Some(format!("no reveal: {reason}"));
                (
                    format!("{} did not reveal: {reason}", short(&worker)),
                    Report::Failed,
                )
            }
            RevealAnswer::Unreachable(reason) => {
                // A lost request says nothing about the worker: ask again, until the grace
                // period of the reveal phase runs out (see `on_tick`).
                e.transport_failures += 1;
                e.retry_at = now + RETRY_MS;
                fx.push(Effect::Log(
                    Level::Debug,
                    format!("reveal of {} not delivered: {reason}", short(&worker)),
                ));
                self.evaluate(ctx, fx);
                return;
            }
        };
        self.record(&worker, report, fx);
        self.event(now, text);
        fx.push(Effect::Persist);
        self.evaluate(ctx, fx);
    }

    /// Moves a running job on when every active worker has answered: asks for reveals, then
    /// decides k-of-n, then replaces failed workers or fetches the output.
    fn evaluate(&mut self, ctx: &mut Ctx<'_>, fx: &mut Effects) {
        if !matches!(self.phase, Phase::Executing | Phase::Revealing { .. }) {
            return;
        }
        let now = ctx.now;
        // Assignments whose request was lost (or not sent before a restart) go out again.
        let resend: Vec<PublicKey> = self
            .executions
            .iter()
            .filter(|e| {
                e.active
                    && e.state == ExecutionState::Assigned
                    && !e.assign_acked
                    && !e.in_flight
                    && now >= e.retry_at
                    && now <= e.deadline
            })
            .map(|e| e.worker)
            .collect();
        // A worker that never acknowledged its assignment may never have had it: its time
        // runs from this delivery, so the submitter's downtime or a lossy network does not
        // eat the time it needs to run the job.
        let expires_at = self.expires_at;
        let mut extended = false;
        for worker in &resend {
            let Some(full) = self
                .executions
                .iter()
                .find(|e| e.worker == *worker)
                .map(|e| now + self.time_to_commit(&e.bid, ctx.config))
            else {
                continue;
            };
            if let Some(e) = self.execution_mut(worker)
                && full.min(expires_at) > e.deadline
            {
                e.deadline = full.min(expires_at);
                e.deadline_clipped = e.deadline < full;
                extended = true;
            }
        }
        if extended {
            fx.push(Effect::Persist);
        }
        for worker in resend {
            self.send_assignment(worker, ctx, fx);
        }
        let assigned = |busy: bool| {
            self.executions.iter().any(|e| {
                e.active && e.state == ExecutionState::Assigned && e.busy_since.is_some() == busy
            })
        };
        if assigned(false) {
            return;
        }
        // Workers still waiting for a free slot have not started: the results in hand may
        // already decide the job, so they do not hold it up (they are waited for only if
        // the decision needs them).
        let waiting_for_slots = assigned(true);
        if self.phase == Phase::Executing {
            if !waiting_for_slots {
                self.times.committed_at = Some(now);
            }
            let committed = self
                .executions
                .iter()
                .any(|e| e.active && e.state == ExecutionState::Committed);
            if committed {
                self.phase = Phase::Revealing { since: now };
                self.event(now, "all workers answered; asking for reveals");
                fx.push(Effect::Persist);
            }
        }
        // Commitments are all in: now, and only now, ask for the results.
        if let Phase::Revealing { since } = self.phase {
            let give_up = now > since + ctx.config.deadline_grace_ms;
            let mut waiting = false;
            let mut gave_up = Vec::new();
            let mut ask = Vec::new();
            for e in &self.executions {
                if !(e.active && e.state == ExecutionState::Committed) {
                    continue;
                }
                if e.in_flight {
                    waiting = true;
                } else if give_up && e.transport_failures > 0 {
                    gave_up.push(e.worker);
                } else {
                    waiting = true;
                    if now >= e.retry_at {
                        ask.push((e.worker, e.attempt));
                    }
                }
            }
            for worker in gave_up {
                if let Some(e) = self.execution_mut(&worker) {
                    e.state = ExecutionState::Unreachable;
                    e.failure = Some("its reveal could not be fetched".into());
                }
                self.event(
                    now,
                    format!(
                        "{}'s reveal could not be fetched; the network failed, not the worker",
                        short(&worker)
                    ),
                );
                fx.push(Effect::Persist);
            }
            for (worker, attempt) in ask {
                if let Some(e) = self.execution_mut(&worker) {
                    e.in_flight = true;
                }
                fx.push(Effect::RequestReveal { worker, attempt });
            }
            if waiting {
                return;
            }
        }
        // Every active slot is settled: decide.
        self.times.decided_at = Some(now);
        let decision = match &self.tally {
            Some(tally) => tally.decision(),
            None => Decision::Impossible,
        };
        match decision {
            Decision::Accepted { hash, agreeing, .. } => {
                self.agreed_hash = Some(hash);
                let n = self.tally.as_ref().map_or(0, |t| t.n());
                self.event(
                    now,
                    format!(
                        "accepted {}: {} of {} agree",
                        hash.short(),
                        agreeing.len(),
                        n
                    ),
                );
                fx.push(Effect::Persist);
                match self.agreed_manifest().map(|m| m.end) {
                    // k workers agree the job itself failed: that is the decision, with no
                    // output to fetch, nobody blamed and no re-run (issue 12).
                    Some(end) if !end.is_exit() => {
                        let reason = format!(
                            "{}; {} of {} {}",
                            self.end_text(end),
                            agreeing.len(),
                            count(n, "worker", "workers"),
                            if agreeing.len() == 1 {
                                "agrees"
                            } else {
                                "agree"
                            }
                        );
                        fx.push(Effect::Log(Level::Info, format!("job failed: {reason}")));
                        self.finish(Outcome::Failed, Some(reason), ctx, fx);
                    }
                    _ => self.fetch_output(ctx, fx),
                }
            }
            // The workers waiting for a slot may still make up the quorum: wait for them.
            Decision::Pending if waiting_for_slots => {}
            // No more reports can come for this set of workers: replace the ones that
            // failed or went silent, or give up.
            Decision::Pending | Decision::Impossible => self.replace_or_fail(ctx, fx),
        }
    }

    fn replace_or_fail(&mut self, ctx: &mut Ctx<'_>, fx: &mut Effects) {
        let now = ctx.now;
        let max = ctx.config.max_reassignments;
        let unrevealed = self.ask_again_for_reveals(now, fx);
        let replaceable: Vec<PublicKey> = self
            .executions
            .iter()
            .filter(|e| {
                e.active
                    && matches!(
                        e.state,
                        ExecutionState::Failed
                            | ExecutionState::Silent
                            | ExecutionState::Refused
                            | ExecutionState::Unreachable
                            | ExecutionState::Invalid
                    )
            })
            .map(|e| e.worker)
            .collect();
        let assigned: HashSet<PublicKey> = self.executions.iter().map(|e| e.worker).collect();
        self.reserves.retain(|r| !assigned.contains(r));
        let mut replacements = Vec::new();
        for old in &replaceable {
            if self.reassignments >= max {
                break;
            }
            // The first reserve that can take the slot (one already in the tally cannot).
            let mut taken = None;
            while let Some(new) = self.reserves.first().copied() {
                let result = match &mut self.tally {
                    Some(tally) => tally.replace(old, new),
                    None => Ok(()),
                };
                match result {
                    Ok(()) => {
                        self.reserves.remove(0);
                        taken = Some(new);
                        break;
                    }
                    Err(distributeai_verifier::TallyError::DuplicateWorker) => {
                        self.reserves.remove(0);
                    }
                    Err(e) => {
                        fx.push(Effect::Log(
                            Level::Warn,
                            format!("cannot replace {}: {e}", short(old)),
                        ));
                        break;
                    }
                }
            }
            let Some(new) = taken else {
                continue;
            };
            if let Some(e) = self.execution_mut(old) {
                e.active = false;
            }
            self.reassignments += 1;
            self.event(
                now,
                format!("replacing {} with reserve {}", short(old), short(&new)),
            );
            replacements.push(new);
        }
        if replacements.is_empty() {
            if unrevealed {
                self.phase = Phase::Revealing { since: now };
                return;
            }
            if !replaceable.is_empty() && self.reassignments < max {
                let reopened_at = self.reopened_at;
                match reopened_at {
                    None if self.reopen_bidding(replaceable.len(), ctx, fx) => return,
                    // Invited peers' bids arrive as reserves; wait for them a while.
                    Some(at) if now < at + ctx.config.bid_wait_max_ms => return,
                    _ => {}
                }
            }
            let reason = self.no_agreement_reason();
            self.fail(reason, ctx, fx);
            return;
        }
        self.phase = Phase::Executing;
        for worker in &replacements {
            self.add_execution(*worker, ctx);
        }
        fx.push(Effect::Persist);
        for worker in replacements {
            self.send_assignment(worker, ctx, fx);
        }
    }

    /// Committed workers whose reveal did not get through hold a result the job may need, as
    /// their signed commitment shows: they are asked again, a grace period at a time, until
    /// the job expires, rather than replaced by a full re-run or the job failed. Returns
    /// whether there were any (their state is back to `Committed`; the caller sets the phase).
    fn ask_again_for_reveals(&mut self, now: TimestampMs, fx: &mut Effects) -> bool {
        // Committed after the reveals went out (it waited for a free slot): ask it too.
        let committed_late = self
            .executions
            .iter()
            .any(|e| e.active && e.state == ExecutionState::Committed);
        let unrevealed: Vec<PublicKey> = self
            .executions
            .iter()
            .filter(|e| {
                e.active && e.state == ExecutionState::Unreachable && e.commitment.is_some()
            })
            .map(|e| e.worker)
            .collect();
        for worker in &unrevealed {
            if let Some(e) = self.execution_mut(worker) {
                e.state = ExecutionState::Committed;
                e.failure = None;
                e.transport_failures = 0;
                e.retry_at = now;
            }
        }
        if unrevealed.is_empty() {
            return committed_late;
        }
        self.event(
            now,
            format!(
                "asking {} worker(s) for their reveal again",
                unrevealed.len()
            ),
        );
        fx.push(Effect::Persist);
        true
    }

    /// Why the job ends without k matching results. With results revealed but none reaching
    /// k, it is "no agreement", with the distinct results and how many reported each
    /// (issue 12): there is no majority anyone disagreed with.
    fn no_agreement_reason(&self) -> String {
        let mut distinct: Vec<(ResultHash, usize)> = Vec::new();
        for hash in self.executions.iter().filter_map(|e| e.result_hash) {
            match distinct.iter_mut().find(|(h, _)| *h == hash) {
                Some((_, n)) => *n += 1,
                None => distinct.push((hash, 1)),
            }
        }
        let left = if self.reopened_at.is_some() {
            "no reserve worker is left (none bid when bidding re-opened)"
        } else {
            "no reserve worker is left"
        };
        let k = self.spec.consensus;
        let workers = count(self.executions.len(), "worker", "workers");
        match distinct.as_slice() {
            [] => format!("no results to agree on: none of {workers} returned one, and {left}"),
            [(hash, n)] => format!(
                "not enough matching results: {n} of {k} needed ({}), among {workers}; {left}",
                hash.short()
            ),
            _ => {
                distinct.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
                // At most three named, so that the reason fits the verdict's short text whole.
                let mut list: Vec<String> = distinct
                    .iter()
                    .take(3)
                    .map(|(h, n)| format!("{} x{n}", h.short()))
                    .collect();
                if distinct.len() > 3 {
                    list.push(format!("+{} more", distinct.len() - 3));
                }
                format!(
                    "no agreement: {} among {workers} ({}), {k} needed; {left}",
                    count(distinct.len(), "distinct result", "distinct results"),
                    list.join(", ")
                )
            }
        }
    }

    /// Invites peers that can run the job and have not bid to bid now, for `needed` places;
    /// false if there is nobody to invite. They get the signed announcement directly, since
    /// they may have joined after it was gossiped. Their bids arrive as reserves.
    fn reopen_bidding(&mut self, needed: usize, ctx: &mut Ctx<'_>, fx: &mut Effects) -> bool {
        let now = ctx.now;
        // Bidders turned away as not needed were never recorded: they may be invited now.
        let bidders = self.bidders();
        let mut invitees = ctx.directory.invitees(&self.spec, &bidders);
        if invitees.is_empty() {
            return false;
        }
        invitees.shuffle(ctx.rng);
        invitees.truncate((2 * needed).clamp(1, MAX_INVITES));
        self.reopened_at = Some(now);
        self.event(
            now,
            format!(
                "no reserve left: bidding re-opened, {} invited",
                count(invitees.len(), "peer", "peers")
            ),
        );
        fx.push(Effect::Persist);
        for peer in invitees {
            fx.push(Effect::Invite {
                peer,
                announcement: self.announcement.clone(),
            });
        }
        true
    }

    /// The manifest of the agreed result, from the first worker that revealed it.
    pub fn agreed_manifest(&self) -> Option<&OutputManifest> {
        let agreed = self.agreed_hash?;
        self.executions
            .iter()
            .filter(|e| e.result_hash == Some(agreed))
            .find_map(|e| e.manifest.as_ref())
    }

    /// The agreed result as the verdict carries it.
    pub fn agreed_result(&self) -> Option<AgreedResult> {
        let manifest = self.agreed_manifest()?;
        Some(AgreedResult {
            hash: self.agreed_hash?,
            end: manifest.end,
            image: manifest.image.clone(),
        })
    }

    /// How the job ended, in words, e.g. `timed out after 5 s`.
    pub fn end_text(&self, end: JobEnd) -> String {
        match end {
            JobEnd::TimedOut => format!("timed out after {} s", self.spec.timeout_s),
            JobEnd::OutOfMemory => format!(
                "ran out of memory (limit {} MiB)",
                self.spec.resources.memory_mb
            ),
            JobEnd::ImageUnavailable => format!("image {} unavailable", self.spec.image),
            end => end.describe(),
        }
    }

    /// The agreeing workers whose output has not been refused, in assignment order.
    fn agreeing_sources(&self) -> Vec<(PublicKey, OutputManifest)> {
        let Some(agreed) = self.agreed_hash else {
            return Vec::new();
        };
        self.executions
            .iter()
            .filter(|e| {
                e.state == ExecutionState::Revealed
                    && e.result_hash == Some(agreed)
                    && !self.bad_outputs.contains(&e.worker)
            })
            .filter_map(|e| e.manifest.clone().map(|m| (e.worker, m)))
            .collect()
    }

    fn fetch_output(&mut self, ctx: &mut Ctx<'_>, fx: &mut Effects) {
        let Some(agreed) = self.agreed_hash else {
            return;
        };
        let sources = self.agreeing_sources();
        let mut source = sources.iter().find(|(w, _)| {
            self.fetch_unreachable.iter().filter(|u| *u == w).count() < FETCH_ROUNDS_PER_WORKER
        });
        if source.is_none() && !self.fetch_unreachable.is_empty() && ctx.now < self.expires_at {
            // Every agreeing worker was out of reach for a while: go round them again, until
            // the job expires. Transport trouble says nothing about their results.
            self.fetch_unreachable.clear();
            source = sources.first();
        }
        let Some((worker, manifest)) = source.cloned() else {
            if self.ask_again_for_reveals(ctx.now, fx) {
                // Another agreeing output may be behind a reveal that has not come yet.
                self.phase = Phase::Revealing { since: ctx.now };
                return;
            }
            self.fail(
                "no agreeing worker served output matching the agreed hash".into(),
                ctx,
                fx,
            );
            return;
        };
        let total = manifest.bundle_len();
        if total > ctx.config.max_output_bytes {
            self.fail(
                format!(
                    "the output is {total} bytes, over this node's limit of {} bytes",
                    ctx.config.max_output_bytes
                ),
                ctx,
                fx,
            );
            return;
        }
        self.phase = Phase::Fetching { from: worker };
        fx.push(Effect::Persist);
        fx.push(Effect::Fetch {
            worker,
            manifest,
            agreed,
        });
    }

    fn on_fetched(
        &mut self,
        worker: PublicKey,
        result: FetchResult,
        ctx: &mut Ctx<'_>,
        fx: &mut Effects,
    ) {
        // Only the fetch the phase is waiting for counts: after a decision (expiry, cancel)
        // or a restart that started another, a late report changes nothing.
        if self.phase != (Phase::Fetching { from: worker }) {
            return;
        }
        let now = ctx.now;
        match result {
            FetchResult::Verified => {
                self.times.fetched_at = Some(now);
                self.event(
                    now,
                    format!("output fetched from {} and verified", short(&worker)),
                );
                self.finish(Outcome::Completed, None, ctx, fx);
            }
            FetchResult::Invalid(e) => {
                self.bad_outputs.push(worker);
                self.event(now, format!("output from {} refused: {e}", short(&worker)));
                self.fetch_output(ctx, fx);
            }
            FetchResult::Transport(e) => {
                fx.push(Effect::Log(
                    Level::Warn,
                    format!(
                        "cannot fetch the output from {}: {e}; trying again",
                        short(&worker)
                    ),
                ));
                self.event(
                    now,
                    format!(
                        "output from {} not fetched: {e}; trying again (a transport failure never counts against a worker)",
                        short(&worker)
                    ),
                );
                self.fetch_unreachable.push(worker);
                self.fetch_output(ctx, fx);
            }
        }
    }

    fn fail(&mut self, reason: String, ctx: &mut Ctx<'_>, fx: &mut Effects) {
        fx.push(Effect::Log(Level::Warn, format!("job failed: {reason}")));
        self.finish(Outcome::Failed, Some(reason), ctx, fx);
    }

    /// Ends the job: the terminal phase, the one signed verdict, stored, entered in our
    /// ledger, then gossiped. Does nothing if the job is already decided.
    fn finish(
        &mut self,
        outcome: Outcome,
        reason: Option<String>,
        ctx: &mut Ctx<'_>,
        fx: &mut Effects,
    ) {
        if self.decided() {
            return;
        }
        let now = ctx.now;
        self.phase = Phase::Decided {
            outcome,
            published: false,
        };
        self.times.finished_at = Some(now);
        match &reason {
            Some(reason) => {
                self.failure_reason = Some(reason.clone());
                self.event(now, format!("failed: {reason}"));
            }
            None => self.event(now, "completed"),
        }
        let verdict = self.verdict_of(outcome, reason.as_deref(), now);
        if verdict.workers.is_empty() {
            // Nobody took the job: no entry for the ledger, only the decision to publish.
            fx.push(Effect::Persist);
            self.publish_decision(ctx, fx);
            return;
        }
        match Signed::sign(ctx.identity, &verdict) {
            Ok(signed) => {
                self.verdict = Some(signed.clone());
                fx.push(Effect::Persist);
                fx.push(Effect::RecordVerdict(signed));
            }
            Err(e) => {
                fx.push(Effect::Persist);
                fx.push(Effect::Log(
                    Level::Warn,
                    format!("cannot sign the verdict: {e}"),
                ));
                return;
            }
        }
        if outcome == Outcome::Completed {
            fx.push(Effect::Log(Level::Info, "job completed".into()));
        }
        self.publish_decision(ctx, fx);
    }

    /// The verdict: every worker that took the job, with how it did and the worker's own
    /// signed evidence of it (issue 19), so that every node can re-check it.
    ///
    /// Left out, neither blamed nor paid: workers that refused or could not be reached (with
    /// their assignment or for their reveal); on a job that ended without an agreed result,
    /// every revealed result (with no agreement there is no evidence of who was wrong, and on
    /// a job whose output could not be fetched the network failed, not them; issue 10); and
    /// any charge the worker's signatures cannot carry: silence without its signed acceptance,
    /// or before the deadline it accepted has passed. Revealed results are listed in the order
    /// the tally counted them, so that the k-of-n rule replayed over the verdict decides the
    /// same hash.
    pub fn verdict_of(&self, outcome: Outcome, reason: Option<&str>, now: TimestampMs) -> Verdict {
        // An agreed result stands: the job's output (once fetched and verified), or the job's
        // own failure, which has no output to fetch.
        let verdict_outcome = match self.agreed_result() {
            Some(agreed) if outcome == Outcome::Completed || !agreed.end.is_exit() => {
                VerdictOutcome::Accepted(agreed)
            }
            _ => VerdictOutcome::Failed(reason_text(reason.unwrap_or("failed"))),
        };
        let accepted = match &verdict_outcome {
            VerdictOutcome::Accepted(agreed) => Some(agreed.hash),
            VerdictOutcome::Failed(_) => None,
        };
        let counted: Vec<PublicKey> = self
            .tally
            .as_ref()
            .map(|t| t.arrival_order().into_iter().copied().collect())
            .unwrap_or_default();
        let position = |worker: &PublicKey| {
            counted
                .iter()
                .position(|w| w == worker)
                .unwrap_or(usize::MAX)
        };
        let mut executions: Vec<&Execution> = self.executions.iter().collect();
        executions.sort_by_key(|e| position(&e.worker));
        let workers = executions
            .into_iter()
            .filter_map(|e| self.record_of(e, accepted, now))
            .collect();
        Verdict {
            job: self.announcement.clone(),
            outcome: verdict_outcome,
            workers,
            draw: self.draw.clone().unwrap_or(Draw {
                candidates: Vec::new(),
                weights: Vec::new(),
                groups: Vec::new(),
            }),
            issued_at: now,
        }
    }

    /// One worker's line in the verdict, when its signatures prove one (see
    /// [`SubmittedJob::verdict_of`]).
    fn record_of(
        &self,
        e: &Execution,
        accepted: Option<ResultHash>,
        now: TimestampMs,
    ) -> Option<WorkerRecord> {
        let revealed = match (
            e.state,
            e.result_hash,
            &e.commitment_envelope,
            &e.reveal_envelope,
        ) {
            (ExecutionState::Revealed, Some(hash), Some(commitment), Some(reveal)) => {
                Some((hash, commitment, reveal))
            }
            _ => None,
        };
        let (result, evidence) = match (revealed, accepted) {
            (Some((hash, commitment, reveal)), Some(agreed)) => {
                let result = if hash != agreed {
                    WorkerResult::Disagreed(hash)
                } else if self.bad_outputs.contains(&e.worker) {
                    WorkerResult::OutputRejected
                } else {
                    WorkerResult::Agreed
                };
                let evidence = Evidence::Revealed {
                    commitment: commitment.clone(),
                    reveal: reveal.clone(),
                };
                (result, evidence)
            }
            (Some(_), None) => return None,
            (None, _) => match (e.state, &e.reported_failure, &e.commitment_envelope) {
                (ExecutionState::Failed, Some(fault), Some(commitment)) => (
                    WorkerResult::Failed(fault.clone()),
                    Evidence::Failed {
                        commitment: commitment.clone(),
                    },
                ),
                (
                    ExecutionState::Refused
                    | ExecutionState::Unreachable
                    | ExecutionState::Cancelled
                    | ExecutionState::Revealed
                    // Its reveal was never fetched: the network may have failed, not it.
                    | ExecutionState::Committed,
                    _,
                    _,
                ) => return None,
                // Silent, still assigned when the job ended, or with no valid reveal: silent
                // only if it signed its acceptance and the deadline it accepted has passed.
                // A worker still assigned is blamed only if its full deadline passed while we
                // were there to hear from it (not one cut short by the job's expiry).
                (state, _, _) => {
                    let acceptance = e.acceptance.as_ref()?;
                    let ack = acceptance.decode_unchecked().ok()?;
                    let accepted_passed = ack.issued_at.saturating_add(ack.deadline_ms) <= now;
                    let still_assigned = matches!(
                        state,
                        ExecutionState::Assigned | ExecutionState::Silent
                    );
                    let ours_passed = !e.deadline_clipped && now > e.deadline;
                    if !accepted_passed || (still_assigned && !ours_passed) {
                        return None;
                    }
                    (
                        WorkerResult::Silent,
                        Evidence::Accepted {
                            acceptance: acceptance.clone(),
                        },
                    )
                }
            },
        };
        let paid = if matches!(result, WorkerResult::Agreed) {
            self.spec.reward
        } else {
            0
        };
        Some(WorkerRecord {
            bid: e.bid.clone(),
            evidence,
            result,
            paid,
        })
    }
}

/// A readable worker fault.
pub fn failure_text(failure: &WorkerFault) -> String {
    format!("could not run it: {}", failure.reason)
}
