//! The submitter's side of the job flow (see the parent module).

use std::collections::HashSet;

use distributeai_protocol::limits::MAX_JOB_LIFETIME_MS;
use distributeai_protocol::result_hash::commitment;
use distributeai_protocol::time::{TimestampMs, now_ms};
use distributeai_protocol::validate::short_text;
use distributeai_protocol::{
    Assignment, Bid, CommittedOutcome, ExecutionFailure, GossipMessage, JobAnnouncement, JobCancel,
    JobId, JobSpec, PublicKey, Request, Response, ResultCommitment, Signed, Verdict,
    VerdictOutcome, Verified, WorkerRecord, WorkerResult,
};
use distributeai_verifier::{Candidate, Decision, Report, Tally, select};
use libp2p::PeerId;
use rand::seq::SliceRandom;
use tracing::{debug, info, warn};

use super::model::{BidEntry, Execution, ExecutionState, Job, JobStatus, JobView};
use super::output;
use super::{JobManager, JobMsg, Published, SubmitError};
use crate::network::{NetworkError, VerifiedResponse};

fn peer_of(key: &PublicKey) -> Option<PeerId> {
    key.peer_id().ok()
}

fn short(key: &PublicKey) -> String {
    peer_of(key)
        .map(|p| {
            let s = p.to_string();
            s[s.len().saturating_sub(8)..].to_string()
        })
        .unwrap_or_else(|| key.short())
}

/// Most peers invited at once when bidding re-opens.
const MAX_INVITES: usize = 8;

impl JobManager {
    pub(super) fn submit(&mut self, spec: JobSpec) -> Result<JobView, SubmitError> {
        spec.check()?;
        let now = now_ms();
        let timeout_ms = u64::from(spec.timeout_s) * 1000;
        let grace = self.config.deadline_grace.as_millis() as u64;
        // Long enough to bid, run, replace a few workers and verify; never past the protocol bound.
        let lifetime = (self.config.bid_wait_max.as_millis() as u64)
            .saturating_add(
                (timeout_ms + grace).saturating_mul(u64::from(self.config.max_reassignments) + 2),
            )
            .min(MAX_JOB_LIFETIME_MS);
        let announcement = JobAnnouncement {
            spec: spec.clone(),
            nonce: rand::random(),
            issued_at: now,
            expires_at: now + lifetime,
        };
        let signed = Signed::sign(&self.identity, &announcement).map_err(|e| {
            SubmitError::Invalid(distributeai_protocol::ValidationError::Invalid {
                field: "spec",
                reason: e.to_string(),
            })
        })?;
        let id = signed.job_id();
        let mut job = Job {
            id,
            announcement: signed,
            spec,
            status: JobStatus::Bidding,
            submitted_at: now,
            expires_at: announcement.expires_at,
            bidding_closes_at: now + self.config.bid_window.as_millis() as u64,
            announced: false,
            bids: Vec::new(),
            executions: Vec::new(),
            reserves: Vec::new(),
            reassignments: 0,
            agreed_hash: None,
            fetch_pending: false,
            bad_outputs: Vec::new(),
            verdict: None,
            verdict_published: false,
            failure_reason: None,
            times: Default::default(),
            events: Vec::new(),
            reopened_at: None,
        };
        job.event(
            now,
            format!(
                "submitted: {} (n={}, k={})",
                job.spec.image, job.spec.redundancy, job.spec.consensus
            ),
        );
        self.store
            .put(crate::store::Table::Jobs, id.as_bytes(), &job)?;
        let view = job.view();
        self.jobs.insert(id, job);
        info!(job_id = %id.short(), "job submitted");
        self.publish_announcement(id);
        Ok(view)
    }

    fn publish_announcement(&mut self, id: JobId) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let message = GossipMessage::Job(job.announcement.clone());
        let network = self.network.clone();
        let tx = self.tx.clone();
        self.retry_at.insert((id, u32::MAX), now_ms() + 1000);
        tokio::spawn(async move {
            let result = network.publish(message).await;
            let _ = tx
                .send(JobMsg::Published {
                    job: id,
                    what: Published::Announcement,
                    result,
                })
                .await;
        });
    }

    pub(super) fn on_published(
        &mut self,
        id: JobId,
        what: Published,
        result: Result<(), NetworkError>,
    ) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        match (what, result) {
            (Published::Announcement, Ok(())) => {
                job.announced = true;
                // The bidding window starts when workers can actually see the job.
                job.bidding_closes_at = now_ms() + self.config.bid_window.as_millis() as u64;
                job.event(now_ms(), "announced to the mesh");
                self.persist_job(&id);
            }
            (Published::Verdict, Ok(())) => {
                job.verdict_published = true;
                job.event(now_ms(), "verdict gossiped");
                self.persist_job(&id);
            }
            (what, Err(e)) => {
                debug!(job_id = %id.short(), ?what, error = %e, "publish failed; retrying")
            }
        }
    }

    pub(super) fn cancel(&mut self, id: JobId) -> Option<JobView> {
        let job = self.jobs.get_mut(&id)?;
        if !job.status.is_final() {
            let now = now_ms();
            job.status = JobStatus::Cancelled;
            job.times.finished_at = Some(now);
            job.event(now, "cancelled by the submitter");
            let cancel = JobCancel {
                job_id: id,
                reason: "cancelled by the submitter".into(),
                issued_at: now,
            };
            match Signed::sign(&self.identity, &cancel) {
                Ok(signed) => {
                    let network = self.network.clone();
                    tokio::spawn(async move {
                        if let Err(e) = network.publish(GossipMessage::Cancel(signed)).await {
                            debug!(error = %e, "cancel not published");
                        }
                    });
                }
                Err(e) => warn!(error = %e, "cannot sign cancel"),
            }
            self.persist_job(&id);
        }
        self.jobs.get(&id).map(Job::view)
    }

    pub(super) fn on_bid(&mut self, peer: PeerId, bid: Verified<Bid>) -> Response {
        let now = now_ms();
        let Some(job) = self.jobs.get_mut(&bid.message.job_id) else {
            return Response::Refused("unknown job".into());
        };
        if job.status != JobStatus::Bidding
            && job.status != JobStatus::Running
            && job.status != JobStatus::Verifying
        {
            return Response::Refused("bidding is closed".into());
        }
        if job.bids.iter().any(|b| b.worker == bid.signer) {
            return Response::Ack;
        }
        if job.bids.len() >= distributeai_protocol::limits::MAX_VERDICT_WORKERS {
            return Response::Refused("enough bids".into());
        }
        job.bids.push(BidEntry {
            worker: bid.signer,
            bid: bid.envelope.clone(),
            received_at: now,
        });
        if job.status != JobStatus::Bidding {
            // A late bid becomes a reserve.
            job.reserves.push(bid.signer);
        }
        job.event(now, format!("bid from …{}", short(&bid.signer)));
        debug!(job_id = %job.id.short(), %peer, "bid received");
        let id = job.id;
        self.persist_job(&id);
        Response::Ack
    }

    /// Advances one job against the clock.
    pub(super) fn drive_job(&mut self, id: JobId, now: TimestampMs) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        if job.status.is_final() {
            if job.verdict.is_some() && !job.verdict_published && self.retry_due(id, now) {
                self.publish_verdict(id);
            }
            return;
        }
        if now > job.expires_at {
            self.fail(id, "the job expired before a result was agreed".into());
            return;
        }
        match job.status {
            JobStatus::Pending | JobStatus::Bidding => {
                if !job.announced {
                    if self.retry_due(id, now) {
                        self.publish_announcement(id);
                    }
                    return;
                }
                let n = usize::from(job.spec.redundancy);
                let k = usize::from(job.spec.consensus);
                let enough = job.bids.len() >= n + self.config.reserve_bids;
                // With n bids in hand, a quiet spell means no more are coming soon.
                let quiet = job.bids.last().is_some_and(|b| {
                    now >= b.received_at + self.config.bid_quiet.as_millis() as u64
                });
                let window_over = (now >= job.bidding_closes_at || quiet) && job.bids.len() >= n;
                let waited_out =
                    now >= job.submitted_at + self.config.bid_wait_max.as_millis() as u64;
                if enough || window_over {
                    self.close_bidding(id, n);
                } else if waited_out {
                    if job.bids.len() >= k {
                        let have = job.bids.len();
                        self.close_bidding(id, have);
                    } else {
                        let reason = format!(
                            "only {} of the network's workers bid; consensus needs at least {k} ({})",
                            job.bids.len(),
                            self.worker_reach()
                        );
                        self.fail(id, reason);
                    }
                }
            }
            JobStatus::Running | JobStatus::Verifying => {
                // Assignments whose request was lost in a restart: the worker may never
                // have heard of its assignment.
                let unsent: Vec<PublicKey> = job
                    .executions
                    .iter()
                    .filter(|e| {
                        e.active
                            && e.state == ExecutionState::Assigned
                            && !e.assign_acked
                            && !e.assign_pending
                            && now <= e.deadline
                    })
                    .map(|e| e.worker)
                    .collect();
                for worker in unsent {
                    self.send_assignment(id, worker);
                }
                let Some(job) = self.jobs.get(&id) else {
                    return;
                };
                let overdue: Vec<PublicKey> = job
                    .executions
                    .iter()
                    .filter(|e| e.active && e.state == ExecutionState::Assigned && now > e.deadline)
                    .map(|e| e.worker)
                    .collect();
                if !overdue.is_empty() {
                    if let Some(job) = self.jobs.get_mut(&id) {
                        for worker in &overdue {
                            if let Some(e) = job.execution_mut(worker) {
                                e.state = ExecutionState::Silent;
                                e.failure = Some("missed its deadline".into());
                            }
                            job.event(now, format!("worker …{} went silent", short(worker)));
                        }
                    }
                    self.persist_job(&id);
                }
                self.evaluate(id);
            }
            _ => {}
        }
    }

    fn retry_due(&mut self, id: JobId, now: TimestampMs) -> bool {
        let key = (id, u32::MAX);
        if self.retry_at.get(&key).is_some_and(|at| *at > now) {
            return false;
        }
        self.retry_at.insert(key, now + 1000);
        true
    }

    fn close_bidding(&mut self, id: JobId, n: usize) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let ledger = self.ledger.read().unwrap_or_else(|p| p.into_inner());
        let candidates: Vec<Candidate<PublicKey, String>> = job
            .bids
            .iter()
            .map(|b| Candidate {
                worker: b.worker,
                weight: distributeai_verifier::reputation::selection_weight(
                    &ledger.standing(&b.worker),
                ),
                group: operator_group(&self.peers, &b.worker),
            })
            .collect();
        drop(ledger);
        let selection = select(&candidates, n, &mut rand::rng());
        job.reserves = selection.reserves;
        job.status = JobStatus::Running;
        let now = now_ms();
        job.times.assigned_at = Some(now);
        job.event(
            now,
            format!(
                "bidding closed with {} bids; assigning {}",
                job.bids.len(),
                selection.chosen.len()
            ),
        );
        for worker in selection.chosen {
            self.assign(id, worker);
        }
    }

    /// Assigns the job to `worker` in a new slot: stored first, then sent.
    fn assign(&mut self, id: JobId, worker: PublicKey) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let Some(bid) = job
            .bids
            .iter()
            .find(|b| b.worker == worker)
            .map(|b| b.bid.clone())
        else {
            return;
        };
        let now = now_ms();
        let attempt = job.executions.len() as u32;
        let deadline = (now
            + u64::from(job.spec.timeout_s) * 1000
            + self.config.deadline_grace.as_millis() as u64)
            .min(job.expires_at);
        job.executions.push(Execution {
            worker,
            bid,
            attempt,
            state: ExecutionState::Assigned,
            active: true,
            assigned_at: now,
            deadline,
            commitment: None,
            commitment_envelope: None,
            committed_at: None,
            result_hash: None,
            manifest: None,
            revealed_at: None,
            failure: None,
            reported_failure: None,
            reveal_pending: false,
            assign_acked: false,
            assign_pending: false,
        });
        job.event(now, format!("assigned to …{}", short(&worker)));
        // Stored before it is sent, so a restarted submitter knows to send it again.
        self.persist_job(&id);
        self.send_assignment(id, worker);
    }

    /// Sends (or, after a restart, sends again) a worker's assignment, signed afresh so that
    /// it is within the clock-skew window; attempt and deadline stay as stored.
    fn send_assignment(&mut self, id: JobId, worker: PublicKey) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let Some(execution) = job.execution_mut(&worker) else {
            return;
        };
        let assignment = Assignment {
            job_id: id,
            worker,
            attempt: execution.attempt,
            deadline: execution.deadline,
            issued_at: now_ms(),
        };
        let signed = match Signed::sign(&self.identity, &assignment) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot sign assignment");
                return;
            }
        };
        let Some(peer) = peer_of(&worker) else { return };
        execution.assign_pending = true;
        let network = self.network.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let result = network.request(peer, Request::Assign(signed)).await;
            let _ = tx
                .send(JobMsg::AssignAnswer {
                    job: id,
                    worker,
                    result,
                })
                .await;
        });
    }

    pub(super) fn on_assign_answer(
        &mut self,
        id: JobId,
        worker: PublicKey,
        result: Result<VerifiedResponse, NetworkError>,
    ) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let Some(execution) = job.execution_mut(&worker) else {
            return;
        };
        execution.assign_pending = false;
        let refusal = match result {
            Ok(VerifiedResponse::Ack) => {
                if !execution.assign_acked {
                    execution.assign_acked = true;
                    self.persist_job(&id);
                }
                return;
            }
            Ok(VerifiedResponse::Refused(reason)) => reason,
            Ok(other) => format!("unexpected answer {other:?}"),
            Err(e) => e.to_string(),
        };
        if execution.state == ExecutionState::Assigned {
            execution.state = ExecutionState::Refused;
            execution.failure = Some(refusal.clone());
            job.event(
                now_ms(),
                format!("…{} refused the assignment: {refusal}", short(&worker)),
            );
            self.persist_job(&id);
            self.evaluate(id);
        }
    }

    pub(super) fn on_commit(&mut self, commit: Verified<ResultCommitment>) -> Response {
        let now = now_ms();
        let message = &commit.message;
        let Some(job) = self.jobs.get_mut(&message.job_id) else {
            return Response::Refused("unknown job".into());
        };
        let copied_from = match &message.outcome {
            CommittedOutcome::Committed(digest) => job
                .executions
                .iter()
                .find(|e| e.worker != commit.signer && e.commitment == Some(*digest))
                .map(|e| e.worker),
            CommittedOutcome::Failed(_) => None,
        };
        let Some(execution) = job.execution_mut(&commit.signer) else {
            return Response::Refused("you are not assigned to this job".into());
        };
        if execution.attempt != message.attempt {
            return Response::Refused("wrong attempt".into());
        }
        if execution.state != ExecutionState::Assigned {
            // A repeated commit after we already recorded it (our ack was lost): fine.
            return if execution.committed_at.is_some() {
                Response::Ack
            } else {
                Response::Refused("too late: you were replaced".into())
            };
        }
        execution.committed_at = Some(now);
        execution.commitment_envelope = Some(commit.envelope.clone());
        let text = match (&message.outcome, copied_from) {
            (CommittedOutcome::Committed(_), Some(original)) => {
                execution.state = ExecutionState::Invalid;
                execution.failure = Some(format!("copied the commitment of …{}", short(&original)));
                format!(
                    "…{} sent a copy of …{}'s commitment: not counted",
                    short(&commit.signer),
                    short(&original)
                )
            }
            (CommittedOutcome::Committed(digest), None) => {
                execution.state = ExecutionState::Committed;
                execution.commitment = Some(*digest);
                format!("…{} committed", short(&commit.signer))
            }
            (CommittedOutcome::Failed(failure), _) => {
                execution.state = ExecutionState::Failed;
                execution.failure = Some(failure_text(failure));
                execution.reported_failure = Some(failure.clone());
                format!(
                    "…{} failed: {}",
                    short(&commit.signer),
                    failure_text(failure)
                )
            }
        };
        job.event(now, text);
        let id = job.id;
        self.persist_job(&id);
        self.evaluate(id);
        Response::Ack
    }

    pub(super) fn on_reveal_answer(
        &mut self,
        id: JobId,
        worker: PublicKey,
        result: Result<VerifiedResponse, NetworkError>,
    ) {
        let now = now_ms();
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let Some(execution) = job.execution_mut(&worker) else {
            return;
        };
        execution.reveal_pending = false;
        if execution.state != ExecutionState::Committed {
            return;
        }
        let text = match result {
            Ok(VerifiedResponse::Reveal(reveal)) => {
                let r = &reveal.message;
                let opens = execution.commitment.is_some_and(|c| {
                    c == commitment(&worker, &id, execution.attempt, &r.result_hash, &r.salt)
                });
                if r.job_id == id && r.attempt == execution.attempt && opens {
                    execution.state = ExecutionState::Revealed;
                    execution.result_hash = Some(r.result_hash);
                    execution.manifest = Some(r.manifest.clone());
                    execution.revealed_at = Some(now);
                    format!("…{} voted {}", short(&worker), r.result_hash.short())
                } else {
                    execution.state = ExecutionState::Invalid;
                    execution.failure = Some("its reveal does not open its commitment".into());
                    format!(
                        "…{}'s reveal does not open its commitment: not counted",
                        short(&worker)
                    )
                }
            }
            Ok(other) => {
                execution.state = ExecutionState::Failed;
                execution.failure = Some(format!("no reveal: {other:?}"));
                format!("…{} did not reveal", short(&worker))
            }
            Err(e) => {
                execution.state = ExecutionState::Failed;
                execution.failure = Some(format!("no reveal: {e}"));
                format!("…{} did not reveal: {e}", short(&worker))
            }
        };
        job.event(now, text);
        self.persist_job(&id);
        self.evaluate(id);
    }

    /// Moves a running job on when every active worker has answered: asks for reveals, then
    /// decides k-of-n, then replaces failed workers or fetches the output.
    pub(super) fn evaluate(&mut self, id: JobId) {
        let now = now_ms();
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if !matches!(job.status, JobStatus::Running | JobStatus::Verifying) || job.fetch_pending {
            return;
        }
        let active = || job.executions.iter().filter(|e| e.active);
        if active().any(|e| e.state == ExecutionState::Assigned) {
            return;
        }
        if job.times.committed_at.is_none() || job.status == JobStatus::Running {
            job.times.committed_at = Some(now);
        }
        // Commitments are all in: now, and only now, ask for the results.
        let to_reveal: Vec<(PublicKey, u32)> = job
            .executions
            .iter()
            .filter(|e| e.active && e.state == ExecutionState::Committed && !e.reveal_pending)
            .map(|e| (e.worker, e.attempt))
            .collect();
        if job.executions.iter().any(|e| e.active && e.reveal_pending) {
            return;
        }
        if !to_reveal.is_empty() {
            if job.status == JobStatus::Running {
                job.status = JobStatus::Verifying;
                job.event(now, "all workers answered; asking for reveals");
            }
            for (worker, attempt) in to_reveal {
                if let Some(e) = job.execution_mut(&worker) {
                    e.reveal_pending = true;
                }
                let Some(peer) = peer_of(&worker) else {
                    continue;
                };
                let network = self.network.clone();
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let result = network
                        .request(
                            peer,
                            Request::Reveal {
                                job_id: id,
                                attempt,
                            },
                        )
                        .await;
                    let _ = tx
                        .send(JobMsg::RevealAnswer {
                            job: id,
                            worker,
                            result,
                        })
                        .await;
                });
            }
            self.persist_job(&id);
            return;
        }

        // Every active slot is settled: decide.
        let mut slots: Vec<&Execution> = job.executions.iter().filter(|e| e.active).collect();
        slots.sort_by_key(|e| e.revealed_at.or(e.committed_at).unwrap_or(u64::MAX));
        let k = usize::from(job.spec.consensus);
        let decision = if slots.len() >= k {
            match Tally::new(k, slots.iter().map(|e| e.worker)) {
                Ok(mut tally) => {
                    for e in &slots {
                        let report = match (e.state, e.result_hash) {
                            (ExecutionState::Revealed, Some(hash)) => Some(Report::Result(hash)),
                            (ExecutionState::Silent, _) => None,
                            _ => Some(Report::Failed),
                        };
                        if let Some(report) = report {
                            let _ = tally.record(&e.worker, report);
                        }
                    }
                    tally.decision()
                }
                Err(_) => Decision::Impossible,
            }
        } else {
            Decision::Impossible
        };
        job.times.decided_at = Some(now);
        match decision {
            Decision::Accepted { hash, agreeing, .. } => {
                job.agreed_hash = Some(hash);
                job.event(
                    now,
                    format!(
                        "accepted {}: {} of {} agree",
                        hash.short(),
                        agreeing.len(),
                        slots.len()
                    ),
                );
                self.persist_job(&id);
                self.fetch_output(id);
            }
            // No more reports can come for this set of workers: replace the ones that
            // failed or went silent, or give up.
            Decision::Pending | Decision::Impossible => self.replace_or_fail(id),
        }
    }

    fn replace_or_fail(&mut self, id: JobId) {
        let now = now_ms();
        let max = self.config.max_reassignments;
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let replaceable: Vec<PublicKey> = job
            .executions
            .iter()
            .filter(|e| {
                e.active
                    && matches!(
                        e.state,
                        ExecutionState::Failed
                            | ExecutionState::Silent
                            | ExecutionState::Refused
                            | ExecutionState::Invalid
                    )
            })
            .map(|e| e.worker)
            .collect();
        let assigned: HashSet<PublicKey> = job.executions.iter().map(|e| e.worker).collect();
        job.reserves.retain(|r| !assigned.contains(r));
        let mut replacements = Vec::new();
        for old in &replaceable {
            if job.reassignments >= max || job.reserves.is_empty() {
                break;
            }
            let new = job.reserves.remove(0);
            if let Some(e) = job.execution_mut(old) {
                e.active = false;
            }
            job.reassignments += 1;
            job.event(
                now,
                format!("replacing …{} with reserve …{}", short(old), short(&new)),
            );
            replacements.push(new);
        }
        if replacements.is_empty() {
            if !replaceable.is_empty() && job.reassignments < max {
                let reopened_at = job.reopened_at;
                match reopened_at {
                    None if self.reopen_bidding(id, replaceable.len()) => return,
                    // Invited peers' bids arrive as reserves; wait for them a while.
                    Some(at) if now < at + self.config.bid_wait_max.as_millis() as u64 => return,
                    _ => {}
                }
            }
            let Some(job) = self.jobs.get_mut(&id) else {
                return;
            };
            let revealed: Vec<_> = job
                .executions
                .iter()
                .filter_map(|e| e.result_hash)
                .collect();
            let best = revealed
                .iter()
                .map(|h| revealed.iter().filter(|x| *x == h).count())
                .max()
                .unwrap_or(0);
            let reason = format!(
                "no {} matching results: at most {best} of {} workers agreed, and no reserve worker is left{}",
                job.spec.consensus,
                job.executions.len(),
                if job.reopened_at.is_some() {
                    " (no other worker bid when bidding re-opened)"
                } else {
                    ""
                }
            );
            self.fail(id, reason);
            return;
        }
        job.status = JobStatus::Running;
        for worker in replacements {
            self.assign(id, worker);
        }
    }

    /// Invites peers that can run the job and have not bid to bid now, for `needed` places;
    /// false if there is nobody to invite. They get the signed announcement directly, since
    /// they may have joined after it was gossiped. Their bids arrive as reserves.
    fn reopen_bidding(&mut self, id: JobId, needed: usize) -> bool {
        let Some(job) = self.jobs.get_mut(&id) else {
            return false;
        };
        let now = now_ms();
        let bidders: HashSet<PublicKey> = job.bids.iter().map(|b| b.worker).collect();
        let resources = job.spec.resources;
        let mut invitees: Vec<PeerId> = self
            .peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .records()
            .filter(|p| {
                p.accepts_jobs
                    && p.public_key.is_some_and(|k| !bidders.contains(&k))
                    && p.capabilities.as_ref().is_some_and(|c| {
                        c.cpus >= resources.cpus
                            && c.memory_mb >= resources.memory_mb
                            && c.gpus.len() >= resources.gpus as usize
                    })
            })
            .map(|p| p.peer_id)
            .collect();
        if invitees.is_empty() {
            return false;
        }
        invitees.shuffle(&mut rand::rng());
        invitees.truncate((2 * needed).clamp(1, MAX_INVITES));
        job.reopened_at = Some(now);
        job.event(
            now,
            format!(
                "no reserve left: bidding re-opened, {} peers invited",
                invitees.len()
            ),
        );
        let announcement = job.announcement.clone();
        self.persist_job(&id);
        for peer in invitees {
            let network = self.network.clone();
            let request = Request::Invite(announcement.clone());
            tokio::spawn(async move {
                match network.request(peer, request).await {
                    Ok(response) => debug!(job_id = %id.short(), %peer, ?response, "invited"),
                    Err(e) => {
                        debug!(job_id = %id.short(), %peer, error = %e, "invitation not delivered")
                    }
                }
            });
        }
        true
    }

    fn fetch_output(&mut self, id: JobId) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let Some(agreed) = job.agreed_hash else {
            return;
        };
        let unreachable = self.fetch_unreachable.entry(id).or_default();
        let agreeing = |e: &&crate::jobs::model::Execution| {
            e.state == ExecutionState::Revealed
                && e.result_hash == Some(agreed)
                && !job.bad_outputs.contains(&e.worker)
        };
        let mut source = job
            .executions
            .iter()
            .filter(agreeing)
            .find(|e| !unreachable.contains(&e.worker));
        if source.is_none() && !unreachable.is_empty() && now_ms() < job.expires_at {
            // Every agreeing worker was out of reach for a while: go round them again, until
            // the job expires. Transport trouble says nothing about their results.
            unreachable.clear();
            source = job.executions.iter().find(agreeing);
        }
        let Some(source) = source else {
            self.fail(
                id,
                "no agreeing worker served output matching the agreed hash".into(),
            );
            return;
        };
        let (worker, Some(manifest)) = (source.worker, source.manifest.clone()) else {
            return;
        };
        job.fetch_pending = true;
        let total = output::bundle_len(&manifest);
        if total > self.config.max_output_bytes {
            let reason = format!("the output is {total} bytes, over this node's limit");
            self.fail(id, reason);
            return;
        }
        let Some(peer) = peer_of(&worker) else { return };
        let network = self.network.clone();
        let tx = self.tx.clone();
        let dest = self.outputs_dir.join(id.to_hex());
        let fetch = OutputFetch {
            peer,
            job_id: id,
            manifest,
            agreed,
            total,
            dest,
        };
        tokio::spawn(async move {
            let result = fetch.run(&network).await;
            let _ = tx
                .send(JobMsg::FetchDone {
                    job: id,
                    worker,
                    result,
                })
                .await;
        });
    }

    pub(super) fn on_fetch_done(
        &mut self,
        id: JobId,
        worker: PublicKey,
        result: Result<(), FetchError>,
    ) {
        let now = now_ms();
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.fetch_pending = false;
        if !matches!(job.status, JobStatus::Running | JobStatus::Verifying) {
            // Decided meanwhile (expired or cancelled): the verdict is already signed.
            return;
        }
        match result {
            Ok(()) => {
                job.times.fetched_at = Some(now);
                job.event(
                    now,
                    format!("output fetched from …{} and verified", short(&worker)),
                );
                self.finish(id, JobStatus::Completed, None);
            }
            Err(FetchError::Invalid(e)) => {
                job.bad_outputs.push(worker);
                job.event(now, format!("output from …{} refused: {e}", short(&worker)));
                self.persist_job(&id);
                self.fetch_output(id);
            }
            Err(FetchError::Transport(e)) => {
                warn!(job_id = %id.short(), worker = %short(&worker), error = %e, "cannot fetch the output; trying again");
                job.event(
                    now,
                    format!(
                        "output from …{} not fetched: {e}; trying again (a transport failure never counts against a worker)",
                        short(&worker)
                    ),
                );
                self.fetch_unreachable.entry(id).or_default().push(worker);
                self.fetch_output(id);
            }
        }
    }

    fn fail(&mut self, id: JobId, reason: String) {
        warn!(job_id = %id.short(), %reason, "job failed");
        self.finish(id, JobStatus::Failed, Some(reason));
    }

    /// Ends a job: final status, signed verdict, stored, then gossiped.
    fn finish(&mut self, id: JobId, status: JobStatus, reason: Option<String>) {
        let now = now_ms();
        self.fetch_unreachable.remove(&id);
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.status = status;
        job.times.finished_at = Some(now);
        if let Some(reason) = &reason {
            job.failure_reason = Some(reason.clone());
            job.event(now, format!("failed: {reason}"));
        } else {
            job.event(now, "completed");
        }
        let outcome = match (status, job.agreed_hash) {
            (JobStatus::Completed, Some(hash)) => VerdictOutcome::Accepted(hash),
            _ => VerdictOutcome::Failed(short_text(reason.as_deref().unwrap_or("failed"))),
        };
        let accepted = match &outcome {
            VerdictOutcome::Accepted(h) => Some(*h),
            VerdictOutcome::Failed(_) => None,
        };
        // A worker that refused never took the job: it is neither blamed nor credited. Nor is
        // one whose result agreed with k others but whose output could not be fetched before
        // the job ended (the network failed, not the worker; issue 10).
        let agreed_unfetched = |e: &crate::jobs::model::Execution| {
            accepted.is_none()
                && e.state == ExecutionState::Revealed
                && e.result_hash.is_some()
                && e.result_hash == job.agreed_hash
                && !job.bad_outputs.contains(&e.worker)
        };
        let workers = job
            .executions
            .iter()
            .filter(|e| e.state != ExecutionState::Refused && !agreed_unfetched(e))
            .map(|e| {
                let result = match (e.state, e.result_hash) {
                    (ExecutionState::Revealed, Some(h)) if Some(h) == accepted => {
                        WorkerResult::Agreed
                    }
                    (ExecutionState::Revealed, Some(h)) => WorkerResult::Disagreed(h),
                    (ExecutionState::Silent | ExecutionState::Assigned, _) => WorkerResult::Silent,
                    (ExecutionState::Failed, _) if e.reported_failure.is_some() => {
                        WorkerResult::Failed(
                            e.reported_failure
                                .clone()
                                .unwrap_or(ExecutionFailure::Timeout),
                        )
                    }
                    _ => WorkerResult::Failed(ExecutionFailure::Error(short_text(
                        e.failure.as_deref().unwrap_or("no result"),
                    ))),
                };
                let paid = if matches!(result, WorkerResult::Agreed) {
                    job.spec.reward
                } else {
                    0
                };
                WorkerRecord {
                    bid: e.bid.clone(),
                    commitment: if matches!(result, WorkerResult::Silent) {
                        None
                    } else {
                        e.commitment_envelope.clone()
                    },
                    result,
                    paid,
                }
            })
            .collect();
        let verdict = Verdict {
            job: job.announcement.clone(),
            outcome,
            workers,
            issued_at: now,
        };
        match Signed::sign(&self.identity, &verdict) {
            Ok(signed) => job.verdict = Some(signed),
            Err(e) => warn!(error = %e, "cannot sign the verdict"),
        }
        let own = job
            .verdict
            .as_ref()
            .map(|v| v.open(&distributeai_protocol::ValidationContext::live().archived()));
        self.persist_job(&id);
        // Our own gossip never comes back to us: enter the verdict in our ledger directly.
        match own {
            Some(Ok(verified)) => self.record_verdict(&verified),
            Some(Err(e)) => warn!(error = %e, "our own verdict does not validate"),
            None => {}
        }
        if status == JobStatus::Completed {
            info!(job_id = %id.short(), "job completed");
        }
        self.publish_verdict(id);
    }

    fn publish_verdict(&mut self, id: JobId) {
        let Some(signed) = self.jobs.get(&id).and_then(|j| j.verdict.clone()) else {
            return;
        };
        let network = self.network.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let result = network.publish(GossipMessage::Verdict(signed)).await;
            let _ = tx
                .send(JobMsg::Published {
                    job: id,
                    what: Published::Verdict,
                    result,
                })
                .await;
        });
    }
}

impl JobManager {
    /// What we know of the workers out there, to say why too few bid: how many announced
    /// they run jobs, and how many of those we are connected to. A worker that cannot reach
    /// us cannot deliver its bid.
    fn worker_reach(&self) -> String {
        let table = self.peers.read().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        let workers: Vec<_> = table
            .list(now)
            .into_iter()
            .filter(|p| p.accepts_jobs)
            .collect();
        let connected = workers.iter().filter(|p| p.connected).count();
        format!(
            "{} known peers run jobs, {connected} of them connected to this node; \
             see `distributeai peers` for how each is reached",
            workers.len()
        )
    }
}

/// A readable failure.
pub(super) fn failure_text(failure: &ExecutionFailure) -> String {
    match failure {
        ExecutionFailure::Timeout => "timeout".into(),
        ExecutionFailure::OutOfMemory => "oom".into(),
        ExecutionFailure::OutputTooLarge => "output_too_large".into(),
        ExecutionFailure::ImageUnavailable(s) => format!("image unavailable: {s}"),
        ExecutionFailure::Error(s) => format!("error: {s}"),
    }
}

/// The operator a worker belongs to, as far as we can tell: the IP address it announced.
fn operator_group(
    peers: &std::sync::RwLock<crate::peers::PeerTable>,
    worker: &PublicKey,
) -> String {
    let Some(peer) = peer_of(worker) else {
        return worker.to_hex();
    };
    let table = peers.read().unwrap_or_else(|p| p.into_inner());
    table
        .get(&peer)
        .and_then(|r| {
            r.addresses.iter().find_map(|a| {
                a.iter().find_map(|p| match p {
                    libp2p::multiaddr::Protocol::Ip4(ip) => Some(ip.to_string()),
                    libp2p::multiaddr::Protocol::Ip6(ip) => Some(ip.to_string()),
                    _ => None,
                })
            })
        })
        .unwrap_or_else(|| peer.to_string())
}

/// Why fetching a worker's output failed.
#[derive(Debug)]
pub(crate) enum FetchError {
    /// The worker could not be reached, or the connection broke, long enough to give up on it
    /// for now. Says nothing about its result: it is not blamed.
    Transport(String),
    /// The worker answered with something that is not the agreed output.
    Invalid(String),
}

/// Transport failures in a row after which a fetch moves to another agreeing worker.
const FETCH_TRANSPORT_RETRIES: u32 = 5;
/// First pause after a transport failure; doubles up to [`FETCH_RETRY_MAX`].
const FETCH_RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(500);
const FETCH_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(8);

/// Fetching one worker's output bundle, in pieces, resuming where a broken connection left
/// off: over a relayed connection the pieces are small ([`RELAYED_CHUNK_BYTES`]), since a
/// circuit carries a limited number of bytes and a new circuit (or a direct connection once
/// hole punching succeeds) takes over from the same offset.
struct OutputFetch {
    peer: PeerId,
    job_id: JobId,
    manifest: distributeai_protocol::OutputManifest,
    agreed: distributeai_protocol::ResultHash,
    total: u64,
    dest: std::path::PathBuf,
}

impl OutputFetch {
    async fn run(self, network: &crate::network::Client) -> Result<(), FetchError> {
        use crate::network::{NetworkError, RELAYED_CHUNK_BYTES, Route};
        use distributeai_protocol::limits::MAX_OUTPUT_CHUNK_BYTES;
        let total = self.total;
        let mut bundle =
            Vec::with_capacity(usize::try_from(total.min(64 * 1024 * 1024)).unwrap_or(0));
        let mut failures = 0;
        let mut delay = FETCH_RETRY_FIRST;
        while (bundle.len() as u64) < total {
            let offset = bundle.len() as u64;
            let max_bytes = match network.route(self.peer).await {
                Ok(Some(Route::Direct)) => {
                    u32::try_from(MAX_OUTPUT_CHUNK_BYTES).unwrap_or(u32::MAX)
                }
                _ => RELAYED_CHUNK_BYTES,
            };
            let request = Request::FetchOutput {
                job_id: self.job_id,
                offset,
                max_bytes,
            };
            match network.request(self.peer, request).await {
                Ok(VerifiedResponse::Output(chunk)) => {
                    if chunk.offset != offset || chunk.total != total || chunk.data.is_empty() {
                        return Err(FetchError::Invalid(
                            "the worker sent a chunk that does not fit the manifest".into(),
                        ));
                    }
                    bundle.extend_from_slice(&chunk.data);
                    failures = 0;
                    delay = FETCH_RETRY_FIRST;
                }
                Ok(VerifiedResponse::Refused(reason)) => {
                    return Err(FetchError::Invalid(format!("the worker refused: {reason}")));
                }
                Ok(other) => {
                    return Err(FetchError::Invalid(format!("unexpected answer {other:?}")));
                }
                Err(e @ NetworkError::InvalidResponse { .. }) => {
                    return Err(FetchError::Invalid(e.to_string()));
                }
                Err(e) => {
                    failures += 1;
                    debug!(job_id = %self.job_id.short(), peer = %self.peer, offset, error = %e, "output piece not fetched");
                    if failures > FETCH_TRANSPORT_RETRIES {
                        return Err(FetchError::Transport(format!(
                            "{e} (at byte {offset} of {total})"
                        )));
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(FETCH_RETRY_MAX);
                }
            }
        }
        let OutputFetch {
            manifest,
            agreed,
            dest,
            ..
        } = self;
        tokio::task::spawn_blocking(move || {
            output::store_verified(&bundle, &manifest, &agreed, &dest)
        })
        .await
        .map_err(|e| FetchError::Transport(format!("storing the output: {e}")))?
        .map_err(|e| match e {
            output::BundleError::Io(e) => FetchError::Transport(format!("storing the output: {e}")),
            other => FetchError::Invalid(other.to_string()),
        })
    }
}
