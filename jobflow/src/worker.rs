//! The worker's side of one job, as a pure state machine.
//!
//! ```text
//! Bid ──assignment from the job's submitter──▶ Executing ──executed──▶ Committed ──verdict──▶ Done
//!  │                                              │ (restart: run again,      │
//!  └── lapses (expiry, cancel, verdict)           │  at most MAX_STARTS)      └── reveal and output
//!                                     cancel ─────┴──────────▶ Cancelled          served on request
//! ```
//!
//! A work item exists from the moment the worker bids: an assignment is accepted only for a
//! job this worker bid on, from the node that signed the job's announcement. A bid is kept in
//! memory only; from the accepted assignment on, every change is persisted before the effects
//! that depend on it (the acknowledgement, the commitment). A restarted worker re-runs only
//! what it had not finished, and never signs a second, different commitment.

use distributeai_protocol::result_hash::commitment;
use distributeai_protocol::time::TimestampMs;
use distributeai_protocol::validate::short_text;
use distributeai_protocol::{
    Assignment, AssignmentAck, Bid, CommittedOutcome, Diagnostics, Digest, JobAnnouncement, JobId,
    JobSpec, OutputManifest, PublicKey, Response, ResultCommitment, ResultHash, ResultReveal,
    RevealedResult, Signed, Verified, WorkerFault,
};
use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::{Answer, Ctx, Level};

/// Times an execution interrupted by a crash is started before the worker reports the job as
/// failed, so that a job that crashes its worker every time ends.
pub const MAX_STARTS: u32 = 3;
/// Pause between attempts to deliver a commitment (ms).
pub const COMMIT_RETRY_MS: u64 = 2_000;
/// How long after its deadline a worker keeps trying to deliver a commitment (ms).
pub const COMMIT_RETRY_WINDOW_MS: u64 = 600_000;
/// Least time a run's output is kept past the commitment deadline for a verdict that has not
/// come (ms): 30 minutes, ample for an honest submitter to reveal and fetch (it does so as
/// soon as k results agree); see [`WorkItem::output_kept_until`].
pub const OUTPUT_KEEP_MIN_MS: u64 = 30 * 60 * 1000;
/// How long past a job's expiry its work record is kept (ms): one hour, beyond the protocol's
/// clock skew allowance (`MAX_CLOCK_SKEW_MS`), after which no message about the job validates
/// and the record is deleted, so finished work does not pile up in memory and on disk.
pub const FORGET_AFTER_EXPIRY_MS: u64 = 60 * 60 * 1000;

/// Where a work item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkPhase {
    /// Bid sent; waiting to be assigned. Kept in memory only.
    Bid,
    /// Assigned and running (or to run again after a restart).
    Executing,
    /// Executed; commitment made (sent, or being sent until acknowledged).
    Committed {
        /// Whether the submitter acknowledged (or refused) it: nothing more to send.
        delivered: bool,
    },
    /// The submitter withdrew the job.
    Cancelled,
    /// The submitter's verdict came: the job is over for us.
    Done,
}

/// What the worker kept of a completed execution, to reveal and serve.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeptResult {
    /// The canonical result hash of the manifest.
    pub hash: ResultHash,
    /// The commitment's salt.
    pub salt: Digest,
    /// The output manifest.
    pub manifest: OutputManifest,
    /// How the end looked here (tails of the output, the engine's message), revealed with the
    /// result.
    #[serde(default)]
    pub diagnostics: Diagnostics,
    /// The folder holding `stdout` and `out/`, until the verdict comes; none for a job that
    /// did not exit, which has no output to serve.
    pub dir: Option<String>,
}

/// This node's part in one job as a worker: the stored record and its machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkItem {
    /// The job.
    pub job_id: JobId,
    /// The submitter (signer of the announcement).
    pub submitter: PublicKey,
    /// The job's announcement.
    pub announcement: Signed<JobAnnouncement>,
    /// The spec.
    pub spec: JobSpec,
    /// When the job expires (ms).
    pub expires_at: TimestampMs,
    /// Where it is.
    pub phase: WorkPhase,
    /// When we bid (ms).
    pub bid_at: TimestampMs,
    /// The image id we told the submitter we hold for the job (`None`: we would pull it).
    #[serde(default)]
    pub image: Option<String>,
    /// The assignment, once accepted.
    pub assignment: Option<Signed<Assignment>>,
    /// The assignment's attempt number.
    pub attempt: u32,
    /// The assignment's commitment deadline, on this node's clock (ms): the assignment's
    /// duration counted from its receipt.
    pub deadline: TimestampMs,
    /// When the assignment was accepted (ms).
    pub accepted_at: Option<TimestampMs>,
    /// Our signed acceptance of the assignment, sent again as is when the submitter repeats
    /// the assignment (its answer was lost).
    #[serde(default)]
    pub acceptance: Option<Signed<AssignmentAck>>,
    /// The result, once executed successfully.
    pub result: Option<KeptResult>,
    /// The signed commitment (or failure report).
    pub commitment: Option<Signed<ResultCommitment>>,
    /// How many times the execution was started.
    pub starts: u32,
    /// Earliest time to send the commitment again (ms). Not stored.
    #[serde(skip)]
    retry_at: TimestampMs,
}

/// How an execution ended, as the executor reports it.
#[derive(Debug, Clone)]
pub enum Executed {
    /// The job ended in a way of its own (see [`distributeai_protocol::JobEnd`]: an exit
    /// code, a timeout, running out of memory...): a result to commit to.
    Completed {
        /// The output manifest; its `end` says how the job ended.
        manifest: OutputManifest,
        /// What was seen of the end, beyond the manifest.
        diagnostics: Diagnostics,
        /// The folder holding `stdout` and `out/`, for a job that exited.
        dir: Option<String>,
    },
    /// The node could not run it (Docker down, keeping the output failed).
    WorkerFault(String),
    /// The cancel signal stopped it.
    Cancelled,
}

/// Everything that can happen to a work item.
#[derive(Debug, Clone)]
pub enum Input {
    /// An assignment arrived (validated at the edge). Answer with the [`Effect::Reply`].
    Assigned {
        /// The signed assignment.
        assignment: Verified<Assignment>,
        /// Executions this node could start now.
        free_slots: usize,
    },
    /// The execution ended.
    Executed(Executed),
    /// The submitter answered our bid (a refusal: it does not need us; unreachable: the
    /// bid could not be delivered).
    BidAnswer(Answer),
    /// The submitter answered our commitment.
    CommitAnswer(Answer),
    /// A peer asks us to reveal. Answer with the [`Effect::Reply`].
    RevealRequested {
        /// Who asks.
        from: PublicKey,
        /// The attempt asked about.
        attempt: u32,
    },
    /// The job's submitter invites us to bid (it re-opened bidding): if we are still only
    /// bidding, our bid may never have reached it, so it goes again.
    Invited,
    /// A cancel of this job arrived, signed by `by`.
    Cancelled {
        /// The signer.
        by: PublicKey,
    },
    /// A verdict on this job arrived, signed by `by`.
    Verdict {
        /// The signer.
        by: PublicKey,
    },
    /// Time passed.
    Tick,
    /// The node restarted and loaded this record.
    Restarted,
}

/// What the node must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Store the record before carrying out what follows.
    Persist,
    /// Delete the record, from memory and the store: the bid lapsed, or the job's life is
    /// long over.
    Forget,
    /// Send our bid to the submitter (retried by the driver while the job lives).
    SendBid(Signed<Bid>),
    /// Start the execution; report with [`Input::Executed`].
    Start {
        /// The spec.
        spec: JobSpec,
        /// The attempt.
        attempt: u32,
    },
    /// Stop the running execution.
    Stop,
    /// Send the commitment; report with [`Input::CommitAnswer`].
    SendCommit(Signed<ResultCommitment>),
    /// The output folder is no longer needed.
    RemoveOutput(String),
    /// Answer the request this input carried.
    Reply(Response),
    /// Something worth a log line.
    Log(Level, String),
}

type Effects = Vec<Effect>;

/// Assignments a worker answered [`Response::Busy`], oldest first, to start the moment a slot
/// frees rather than when the submitter next asks (issue 12). One the submitter stopped
/// re-sending for [`DeferredAssignments::FRESH_MS`] is dropped: it has decided, or given the
/// slot to another worker, and running it would be wasted. Kept by the driver, in memory only
/// (the submitter re-sends after a restart); times are the driver's clock, in ms.
#[derive(Debug, Clone, Default)]
pub struct DeferredAssignments {
    /// (first answered busy, last asked, the assignment).
    entries: std::collections::VecDeque<(TimestampMs, TimestampMs, Verified<Assignment>)>,
}

impl DeferredAssignments {
    /// How long an assignment answered busy stays wanted without a re-send (ms): three of
    /// the submitter's re-send intervals (1 to 1.5 s).
    pub const FRESH_MS: u64 = 5_000;
    /// Most assignments kept.
    pub const MAX: usize = 4096;

    /// An assignment answered busy at `now`: kept, or its time refreshed if the submitter is
    /// asking again.
    pub fn busy(&mut self, now: TimestampMs, assignment: Verified<Assignment>) {
        let job = assignment.message.job_id;
        let room = self.entries.len() < Self::MAX;
        match self
            .entries
            .iter_mut()
            .find(|(_, _, a)| a.message.job_id == job)
        {
            Some(entry) => entry.1 = now,
            None if room => self.entries.push_back((now, now, assignment)),
            None => {}
        }
    }

    /// The oldest assignment still wanted at `now` whose job `waits` says is still a bid,
    /// dropping the stale ones before it, with how long it waited for a slot (ms since it
    /// was first answered busy).
    pub fn next(
        &mut self,
        now: TimestampMs,
        waits: impl Fn(&JobId) -> bool,
    ) -> Option<(Verified<Assignment>, u64)> {
        while let Some((first, asked, assignment)) = self.entries.pop_front() {
            if now <= asked.saturating_add(Self::FRESH_MS) && waits(&assignment.message.job_id) {
                return Some((assignment, now.saturating_sub(first)));
            }
        }
        None
    }

    /// Takes `job`'s assignment out, if it waits here: the submitter's re-send found a free
    /// slot first. Returns how long it waited (ms since it was first answered busy).
    pub fn take(&mut self, job: &JobId, now: TimestampMs) -> Option<u64> {
        let at = self
            .entries
            .iter()
            .position(|(_, _, a)| a.message.job_id == *job)?;
        let (first, _, _) = self.entries.remove(at)?;
        Some(now.saturating_sub(first))
    }

    /// The jobs whose assignments wait for a slot.
    pub fn jobs(&self) -> impl Iterator<Item = &JobId> {
        self.entries.iter().map(|(_, _, a)| &a.message.job_id)
    }

    /// How many assignments wait for a slot.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets everything (the node stopped).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

impl WorkItem {
    /// Bids on an announced job: the item starts in [`WorkPhase::Bid`] and the effect sends
    /// the signed bid. `running` is how many executions the node runs now (told to the
    /// submitter in the bid).
    pub fn bid(
        job: &Verified<JobAnnouncement>,
        image: Option<String>,
        running: u32,
        ctx: &mut Ctx<'_>,
    ) -> Result<(Self, Effects), distributeai_protocol::EncodeError> {
        let job_id = job.envelope.job_id();
        let bid = Bid {
            job_id,
            image: image.clone(),
            running_jobs: running,
            issued_at: ctx.now,
        };
        let signed = Signed::sign(ctx.identity, &bid)?;
        let item = Self {
            job_id,
            submitter: job.signer,
            announcement: job.envelope.clone(),
            spec: job.message.spec.clone(),
            expires_at: job.message.expires_at,
            phase: WorkPhase::Bid,
            bid_at: ctx.now,
            image,
            assignment: None,
            attempt: 0,
            deadline: 0,
            accepted_at: None,
            acceptance: None,
            result: None,
            commitment: None,
            starts: 0,
            retry_at: 0,
        };
        Ok((item, vec![Effect::SendBid(signed)]))
    }

    /// Whether an execution of this item runs (or should run) now.
    pub fn occupies_slot(&self) -> bool {
        self.phase == WorkPhase::Executing
    }

    /// Whether the item is only a bid, not stored.
    pub fn is_bid(&self) -> bool {
        self.phase == WorkPhase::Bid
    }

    /// The output folder and manifest to serve to `from`, if it is the submitter and the
    /// output is kept.
    pub fn output_for(&self, from: &PublicKey) -> Option<(&str, &OutputManifest)> {
        if *from != self.submitter {
            return None;
        }
        let result = self.result.as_ref()?;
        Some((result.dir.as_deref()?, &result.manifest))
    }

    /// The one entry point: what happens, and what the node must do about it.
    pub fn handle(&mut self, input: Input, ctx: &mut Ctx<'_>) -> Effects {
        let mut fx = Vec::new();
        match input {
            Input::Assigned {
                assignment,
                free_slots,
            } => {
                let reply = self.on_assigned(assignment, free_slots, ctx, &mut fx);
                if reply == Response::Busy {
                    fx.push(Effect::Log(
                        Level::Debug,
                        "assignment deferred: every slot is busy".into(),
                    ));
                } else if let Response::Refused(reason) = &reply {
                    // Said here too: otherwise only the submitter learns why we ran nothing.
                    fx.push(Effect::Log(
                        Level::Info,
                        format!("refused an assignment: {reason}"),
                    ));
                }
                fx.push(Effect::Reply(reply));
            }
            Input::Executed(executed) => self.on_executed(executed, ctx, &mut fx),
            Input::BidAnswer(answer) => {
                if let (Answer::Refused(reason) | Answer::Unreachable(reason), WorkPhase::Bid) =
                    (answer, self.phase)
                {
                    // Not taken: forget it, so the item is not kept for nothing.
                    fx.push(Effect::Log(
                        Level::Debug,
                        format!("bid not taken: {reason}"),
                    ));
                    fx.push(Effect::Forget);
                }
            }
            Input::CommitAnswer(answer) => match (answer, self.phase) {
                (Answer::Ack, WorkPhase::Committed { delivered: false }) => {
                    self.phase = WorkPhase::Committed { delivered: true };
                    fx.push(Effect::Persist);
                }
                (Answer::Refused(reason), WorkPhase::Committed { delivered: false }) => {
                    fx.push(Effect::Log(
                        Level::Debug,
                        format!("the submitter refused our commitment: {reason}"),
                    ));
                    self.phase = WorkPhase::Committed { delivered: true };
                    fx.push(Effect::Persist);
                }
                (Answer::Unreachable(reason), WorkPhase::Committed { delivered: false }) => {
                    fx.push(Effect::Log(
                        Level::Debug,
                        format!("commitment not delivered: {reason}; will retry"),
                    ));
                }
                _ => {}
            },
            Input::RevealRequested { from, attempt } => {
                let reply = self.reveal(from, attempt, ctx);
                fx.push(Effect::Reply(reply));
            }
            Input::Invited => {
                if self.phase == WorkPhase::Bid {
                    let bid = Bid {
                        job_id: self.job_id,
                        image: self.image.clone(),
                        running_jobs: 0,
                        issued_at: ctx.now,
                    };
                    match Signed::sign(ctx.identity, &bid) {
                        Ok(signed) => fx.push(Effect::SendBid(signed)),
                        Err(e) => {
                            fx.push(Effect::Log(Level::Warn, format!("cannot sign a bid: {e}")))
                        }
                    }
                }
            }
            Input::Cancelled { by } => {
                if by != self.submitter {
                    return fx;
                }
                match self.phase {
                    WorkPhase::Bid => fx.push(Effect::Forget),
                    WorkPhase::Executing => {
                        fx.push(Effect::Log(
                            Level::Info,
                            "the submitter cancelled the job; stopping it".into(),
                        ));
                        self.phase = WorkPhase::Cancelled;
                        fx.push(Effect::Persist);
                        fx.push(Effect::Stop);
                    }
                    WorkPhase::Committed { .. } => {
                        self.phase = WorkPhase::Cancelled;
                        // Nobody will fetch the output of a withdrawn job.
                        let dir = self.result.as_mut().and_then(|r| r.dir.take());
                        fx.push(Effect::Persist);
                        if let Some(dir) = dir {
                            fx.push(Effect::RemoveOutput(dir));
                        }
                    }
                    WorkPhase::Cancelled | WorkPhase::Done => {}
                }
            }
            Input::Verdict { by } => {
                if by != self.submitter {
                    return fx;
                }
                if self.phase == WorkPhase::Bid {
                    fx.push(Effect::Forget);
                    return fx;
                }
                if self.phase == WorkPhase::Executing {
                    // Decided without us (we were replaced): our run is not needed.
                    fx.push(Effect::Stop);
                }
                self.phase = WorkPhase::Done;
                // The submitter has what it needs: the output kept for it can go.
                let dir = self.result.as_mut().and_then(|r| r.dir.take());
                fx.push(Effect::Persist);
                if let Some(dir) = dir {
                    fx.push(Effect::RemoveOutput(dir));
                }
            }
            Input::Tick => self.on_tick(ctx, &mut fx),
            Input::Restarted => {
                self.retry_at = 0;
                if self.phase == WorkPhase::Executing {
                    if ctx.now > self.expires_at {
                        fx.push(Effect::Log(
                            Level::Info,
                            "an assignment interrupted by a restart has expired".into(),
                        ));
                        self.phase = WorkPhase::Done;
                        fx.push(Effect::Persist);
                    } else {
                        fx.push(Effect::Log(
                            Level::Info,
                            "resuming an assignment interrupted by a restart".into(),
                        ));
                        self.start(ctx, &mut fx);
                    }
                }
            }
        }
        fx
    }

    fn on_assigned(
        &mut self,
        assignment: Verified<Assignment>,
        free_slots: usize,
        ctx: &mut Ctx<'_>,
        fx: &mut Effects,
    ) -> Response {
        let a = &assignment.message;
        if a.worker != ctx.identity.public_key() {
            return Response::Refused("the assignment is for another worker".into());
        }
        if a.job_id != self.job_id {
            return Response::Refused("the assignment is for another job".into());
        }
        if assignment.signer != self.submitter {
            return Response::Refused("only the job's submitter can assign it".into());
        }
        if self.phase != WorkPhase::Bid {
            // Our acknowledgement was lost and the submitter asks again: same answer.
            return match (&self.acceptance, self.attempt == a.attempt) {
                (Some(acceptance), true) => Response::Accepted(acceptance.clone()),
                _ => Response::Refused("already assigned this job".into()),
            };
        }
        if ctx.now > self.expires_at {
            return Response::Refused("the job has expired".into());
        }
        if free_slots == 0 {
            // Not a refusal: the submitter sends the assignment again when a slot may have
            // freed (issue 12). Our bid stays, and so does our place in the job.
            return Response::Busy;
        }
        let deadline_ms = a.deadline.saturating_sub(a.issued_at);
        // Signed before anything is kept: what we accept is what we can be held to.
        let ack = AssignmentAck {
            job_id: self.job_id,
            attempt: a.attempt,
            deadline_ms,
            issued_at: ctx.now,
        };
        let acceptance = match Signed::sign(ctx.identity, &ack) {
            Ok(signed) => signed,
            Err(e) => return Response::Refused(short_text(&format!("cannot sign: {e}"))),
        };
        self.assignment = Some(assignment.envelope.clone());
        self.acceptance = Some(acceptance.clone());
        self.attempt = a.attempt;
        // The submitter's deadline is a duration from when it signed; counted here from
        // receipt on our own clock, so a skewed clock neither refuses nor shortens it.
        self.deadline = ctx
            .now
            .saturating_add(a.deadline.saturating_sub(a.issued_at));
        self.accepted_at = Some(ctx.now);
        fx.push(Effect::Log(Level::Info, "assignment accepted".into()));
        // Stored (by `start`) before the acknowledgement: once we say yes, a crash cannot
        // make us forget.
        self.start(ctx, fx);
        Response::Accepted(acceptance)
    }

    fn start(&mut self, ctx: &mut Ctx<'_>, fx: &mut Effects) {
        self.starts += 1;
        if self.starts > MAX_STARTS {
            let failure = WorkerFault::new("the job stopped its worker repeatedly");
            self.commit(CommittedOutcome::Failed(failure), ctx, fx);
            return;
        }
        self.phase = WorkPhase::Executing;
        fx.push(Effect::Persist);
        fx.push(Effect::Start {
            spec: self.spec.clone(),
            attempt: self.attempt,
        });
    }

    fn on_executed(&mut self, executed: Executed, ctx: &mut Ctx<'_>, fx: &mut Effects) {
        if self.phase != WorkPhase::Executing {
            // Cancelled, or decided without us, meanwhile: nobody will ask for the output.
            if let Executed::Completed { dir: Some(dir), .. } = executed {
                fx.push(Effect::RemoveOutput(dir));
            }
            return;
        }
        match executed {
            Executed::Cancelled => {
                self.phase = WorkPhase::Cancelled;
                fx.push(Effect::Persist);
            }
            Executed::WorkerFault(reason) => {
                self.commit(CommittedOutcome::Failed(WorkerFault::new(reason)), ctx, fx);
            }
            Executed::Completed {
                manifest,
                diagnostics,
                dir,
            } => {
                let hash = match manifest.result_hash() {
                    Ok(hash) => hash,
                    Err(e) => {
                        // Reported as a failure, not left to look like silence.
                        let failure = WorkerFault::new(format!("cannot hash the result: {e}"));
                        self.commit(CommittedOutcome::Failed(failure), ctx, fx);
                        return;
                    }
                };
                let salt = Digest(ctx.rng.random());
                let digest = commitment(
                    &ctx.identity.public_key(),
                    &self.job_id,
                    self.attempt,
                    &hash,
                    &salt,
                );
                fx.push(Effect::Log(
                    Level::Info,
                    format!(
                        "executed ({}); committing to {}",
                        manifest.end.describe(),
                        hash.short()
                    ),
                ));
                self.result = Some(KeptResult {
                    hash,
                    salt,
                    manifest,
                    diagnostics,
                    dir,
                });
                self.commit(CommittedOutcome::Committed(digest), ctx, fx);
            }
        }
    }

    fn commit(&mut self, outcome: CommittedOutcome, ctx: &mut Ctx<'_>, fx: &mut Effects) {
        let commit = ResultCommitment {
            job_id: self.job_id,
            attempt: self.attempt,
            outcome,
            issued_at: ctx.now,
        };
        match Signed::sign(ctx.identity, &commit) {
            Ok(signed) => {
                self.commitment = Some(signed.clone());
                self.phase = WorkPhase::Committed { delivered: false };
                self.retry_at = ctx.now + COMMIT_RETRY_MS;
                fx.push(Effect::Persist);
                fx.push(Effect::SendCommit(signed));
            }
            Err(e) => fx.push(Effect::Log(
                Level::Warn,
                format!("cannot sign the commitment: {e}"),
            )),
        }
    }

    /// Until when the output of this run is kept for a verdict that has not come (ms): the
    /// job's expiry, but no later than `keep_ms` ([`crate::FlowConfig::output_keep_ms`],
    /// default [`OUTPUT_KEEP_MIN_MS`]) or twice the job's timeout, whichever is longer, past
    /// the commitment deadline. Reason: a submitter fetches the
    /// output once k results agree, which takes at most the replacement runs of reserves
    /// (each one timeout); an expiry far beyond that, which a hostile submitter may set (the
    /// protocol allows two days), must not hold the worker's disk.
    pub fn output_kept_until(&self, keep_ms: u64) -> TimestampMs {
        let timeout_ms = u64::from(self.spec.timeout_s) * 1000;
        let bound = self
            .deadline
            .saturating_add(keep_ms.max(timeout_ms.saturating_mul(2)));
        self.expires_at.min(bound)
    }

    fn on_tick(&mut self, ctx: &mut Ctx<'_>, fx: &mut Effects) {
        let now = ctx.now;
        if now > self.output_kept_until(ctx.config.output_keep_ms)
            && let Some(dir) = self.result.as_mut().and_then(|r| r.dir.take())
        {
            fx.push(Effect::Log(
                Level::Info,
                "no verdict came while the output was kept for one: removing the output".into(),
            ));
            fx.push(Effect::Persist);
            fx.push(Effect::RemoveOutput(dir));
        }
        // Past the job's life (and the clock skew allowed), no assignment, reveal request or
        // verdict for it validates any more: the record has nothing left to do.
        if self.phase != WorkPhase::Executing
            && now > self.expires_at.saturating_add(FORGET_AFTER_EXPIRY_MS)
            && self.result.as_ref().is_none_or(|r| r.dir.is_none())
        {
            fx.push(Effect::Forget);
            return;
        }
        match self.phase {
            WorkPhase::Bid if now > self.expires_at => fx.push(Effect::Forget),
            WorkPhase::Committed { delivered: false }
                if now >= self.retry_at
                    && self.deadline.saturating_add(COMMIT_RETRY_WINDOW_MS) > now =>
            {
                // The same commitment, signed again so that it is fresh; its outcome (and so
                // its digest) never changes.
                let Some(previous) = &self.commitment else {
                    return;
                };
                let resent = previous.decode_unchecked().ok().and_then(|mut c| {
                    c.issued_at = now;
                    Signed::sign(ctx.identity, &c).ok()
                });
                self.retry_at = now + COMMIT_RETRY_MS;
                fx.push(Effect::SendCommit(
                    resent.unwrap_or_else(|| previous.clone()),
                ));
            }
            _ => {}
        }
    }

    fn reveal(&self, from: PublicKey, attempt: u32, ctx: &mut Ctx<'_>) -> Response {
        if from != self.submitter || attempt != self.attempt || self.assignment.is_none() {
            return Response::Refused("no such assignment from you".into());
        }
        let Some(result) = &self.result else {
            return Response::Refused("no result to reveal".into());
        };
        let reveal = ResultReveal {
            job_id: self.job_id,
            attempt,
            result_hash: result.hash,
            salt: result.salt,
            end: result.manifest.end,
            image: result.manifest.image.clone(),
            issued_at: ctx.now,
        };
        match Signed::sign(ctx.identity, &reveal) {
            Ok(signed) => Response::Reveal(RevealedResult {
                reveal: signed,
                manifest: result.manifest.clone(),
                diagnostics: result.diagnostics.clone(),
            }),
            Err(e) => Response::Refused(short_text(&format!("cannot sign the reveal: {e}"))),
        }
    }
}
