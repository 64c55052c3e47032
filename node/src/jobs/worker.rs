//! The worker's side of the job flow (see the parent module).

use std::path::{Path, PathBuf};

use distributeai_protocol::limits::MAX_OUTPUT_CHUNK_BYTES;
use distributeai_protocol::result_hash::commitment;
use distributeai_protocol::time::{TimestampMs, now_ms};
use distributeai_protocol::validate::short_text;
use distributeai_protocol::{
    Assignment, Bid, CommittedOutcome, Digest, ExecutionFailure, JobAnnouncement, JobCancel, JobId,
    OutputChunk, Request, Response, ResultCommitment, ResultReveal, Signed, Verdict, Verified,
};
use libp2p::PeerId;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::model::{WorkItem, WorkState};
use super::output::{self, STDOUT_FILE};
use super::{Fault, JobManager, JobMsg};
use crate::executor::{ExecutionOutcome, ExecutionRequest, ExecutionStatus, ExecutorError};
use crate::network::{NetworkError, VerifiedResponse};

/// Times a crashed job is restarted before the worker reports it failed.
const MAX_STARTS: u32 = 3;
/// Delay between attempts to deliver a commitment.
const COMMIT_RETRY_MS: u64 = 2000;
/// Attempts to deliver one bid, the first retry after [`BID_RETRY_FIRST`], then doubling.
const BID_ATTEMPTS: u32 = 6;
const BID_RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(500);

impl JobManager {
    /// A job announced on the mesh: bid if we can run it.
    pub(super) fn consider_job(&mut self, author: PeerId, job: Verified<JobAnnouncement>) {
        let id = job.envelope.job_id();
        self.announced.insert(id, job.clone());
        let Some(executor) = self.executor.clone() else {
            return;
        };
        if !self.config.worker {
            return;
        }
        if let Err(reason) = executor.admits(&job.message.spec) {
            debug!(job_id = %id.short(), %reason, "not bidding");
            return;
        }
        if self.running.len() >= self.config.max_concurrent {
            debug!(job_id = %id.short(), "not bidding: busy");
            return;
        }
        // A submitter that cannot pay every worker gets no bids.
        let spec = &job.message.spec;
        let owed =
            i64::try_from(spec.reward.saturating_mul(spec.redundancy.into())).unwrap_or(i64::MAX);
        let credits = self
            .ledger
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .standing(&job.signer)
            .credits;
        if owed > 0 && credits < owed {
            debug!(job_id = %id.short(), credits, owed, "not bidding: the submitter cannot cover the reward");
            return;
        }
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let image_present = executor.has_image(&job.message.spec).await;
            let _ = tx
                .send(JobMsg::BidDecided {
                    job,
                    author,
                    image_present,
                })
                .await;
        });
    }

    /// A submitter re-opened bidding and invites us: consider the job as if it had just been
    /// gossiped. The network checked that the requester signed the announcement.
    pub(super) fn on_invite(&mut self, author: PeerId, job: Verified<JobAnnouncement>) -> Response {
        if !self.config.worker || self.executor.is_none() {
            return Response::Refused("this node runs no jobs".into());
        }
        let id = job.envelope.job_id();
        if self.work.keys().any(|(job_id, _)| *job_id == id) {
            return Response::Refused("already working on this job".into());
        }
        self.consider_job(author, job);
        Response::Ack
    }

    pub(super) fn send_bid(
        &mut self,
        job: Verified<JobAnnouncement>,
        author: PeerId,
        image_present: bool,
    ) {
        let id = job.envelope.job_id();
        let bid = Bid {
            job_id: id,
            image_present,
            running_jobs: self.running.len() as u32,
            issued_at: now_ms(),
        };
        let Ok(signed) = Signed::sign(&self.identity, &bid) else {
            return;
        };
        let network = self.network.clone();
        let expires_at = job.message.expires_at;
        tokio::spawn(async move {
            // The job reached us by gossip, which can outrun the submitter's announcement of
            // its addresses; a bid that cannot be delivered yet is tried again, since late
            // bids still serve the submitter as reserves.
            let mut delay = BID_RETRY_FIRST;
            let mut last_error = None;
            for attempt in 1..=BID_ATTEMPTS {
                match network.request(author, Request::Bid(signed.clone())).await {
                    Ok(VerifiedResponse::Ack) => {
                        debug!(job_id = %id.short(), "bid accepted");
                        return;
                    }
                    Ok(other) => {
                        debug!(job_id = %id.short(), ?other, "bid not accepted");
                        return;
                    }
                    Err(e) => {
                        debug!(job_id = %id.short(), attempt, error = %e, "bid not delivered");
                        last_error = Some(e);
                    }
                }
                if attempt == BID_ATTEMPTS || now_ms() + delay.as_millis() as u64 >= expires_at {
                    break;
                }
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            if let Some(e) = last_error {
                // Said at the default level: otherwise a node behind NAT only ever sees that
                // it ran nothing, and the submitter that "0 workers bid".
                warn!(job_id = %id.short(), submitter = %author, error = %e, "could not deliver our bid to the job's submitter");
            }
        });
    }

    pub(super) fn on_assignment(&mut self, assignment: Verified<Assignment>) -> Response {
        let a = &assignment.message;
        if !self.config.worker || self.executor.is_none() {
            return Response::Refused("this node runs no jobs".into());
        }
        if a.worker != self.identity.public_key() {
            return Response::Refused("assignment is for another worker".into());
        }
        let Some(job) = self.announced.get(&a.job_id).cloned() else {
            return Response::Refused("unknown job".into());
        };
        if job.signer != assignment.signer {
            return Response::Refused("only the job's submitter can assign it".into());
        }
        let key = (a.job_id, a.attempt);
        if self.work.contains_key(&key) {
            return Response::Ack;
        }
        if self.running.len() >= self.config.max_concurrent {
            return Response::Refused("busy".into());
        }
        let item = WorkItem {
            job_id: a.job_id,
            attempt: a.attempt,
            submitter: assignment.signer,
            announcement: job.envelope.clone(),
            assignment: assignment.envelope.clone(),
            state: WorkState::Accepted,
            accepted_at: now_ms(),
            result_hash: None,
            salt: None,
            manifest: None,
            dir: None,
            commitment: None,
            commit_acked: false,
            starts: 0,
        };
        self.work.insert(key, item);
        // Stored before the acknowledgement: once we say yes, a crash cannot make us forget.
        self.persist_work(&key);
        info!(job_id = %a.job_id.short(), "assignment accepted");
        if self.config.fault == Some(Fault::Silent) {
            warn!("simulated fault: staying silent on this assignment");
            return Response::Ack;
        }
        self.start_execution(key);
        Response::Ack
    }

    /// After a restart: re-run what was interrupted, re-send what was not delivered.
    pub(super) fn resume_work(&mut self) {
        let keys: Vec<(JobId, u32)> = self.work.keys().copied().collect();
        for key in keys {
            let Some(item) = self.work.get(&key) else {
                continue;
            };
            let expired = item
                .announcement
                .decode_unchecked()
                .map(|a| a.expires_at < now_ms())
                .unwrap_or(true);
            match item.state {
                WorkState::Accepted | WorkState::Running if !expired => {
                    if let Ok(job) = item
                        .announcement
                        .open(&distributeai_protocol::ValidationContext::live().archived())
                    {
                        self.announced.insert(key.0, job);
                    }
                    info!(job_id = %key.0.short(), "resuming an assignment interrupted by a restart");
                    if self.config.fault != Some(Fault::Silent) {
                        self.start_execution(key);
                    }
                }
                _ => {}
            }
        }
    }

    fn start_execution(&mut self, key: (JobId, u32)) {
        let Some(executor) = self.executor.clone() else {
            return;
        };
        let Some(item) = self.work.get_mut(&key) else {
            return;
        };
        item.starts += 1;
        if item.starts > MAX_STARTS {
            let failure = ExecutionFailure::Error("the job stopped its worker repeatedly".into());
            self.commit_outcome(key, CommittedOutcome::Failed(failure));
            return;
        }
        item.state = WorkState::Running;
        let spec = match item.announcement.decode_unchecked() {
            Ok(a) => a.spec,
            Err(_) => return,
        };
        self.persist_work(&key);
        let token = CancellationToken::new();
        self.running.insert(key, token.clone());
        let tx = self.tx.clone();
        let request = ExecutionRequest {
            job_id: key.0,
            attempt: key.1,
            spec,
        };
        tokio::spawn(async move {
            let outcome = executor.run(request, token).await;
            let _ = tx.send(JobMsg::Executed { key, outcome }).await;
        });
        if self.config.fault == Some(Fault::CrashMidJob) {
            warn!("simulated fault: crashing in the middle of a job");
            tokio::spawn(async {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                std::process::exit(70);
            });
        }
    }

    pub(super) fn on_executed(
        &mut self,
        key: (JobId, u32),
        outcome: Result<ExecutionOutcome, ExecutorError>,
    ) {
        self.running.remove(&key);
        let Some(item) = self.work.get(&key) else {
            return;
        };
        if item.state == WorkState::Cancelled {
            return;
        }
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(e) => {
                let failure = ExecutionFailure::Error(short_text(&e.to_string()));
                self.commit_outcome(key, CommittedOutcome::Failed(failure));
                return;
            }
        };
        match outcome.status {
            ExecutionStatus::Cancelled => {
                if let Some(item) = self.work.get_mut(&key) {
                    item.state = WorkState::Cancelled;
                }
                self.persist_work(&key);
            }
            ExecutionStatus::Failed(failure) => {
                self.commit_outcome(key, CommittedOutcome::Failed(failure))
            }
            ExecutionStatus::Completed { exit_code } => match self.keep_output(exit_code, &outcome)
            {
                Ok((dir, manifest)) => {
                    let Ok(hash) = manifest.result_hash() else {
                        return;
                    };
                    let mut salt = [0u8; 32];
                    rand::fill(&mut salt);
                    let salt = Digest(salt);
                    let digest =
                        commitment(&self.identity.public_key(), &key.0, key.1, &hash, &salt);
                    if let Some(item) = self.work.get_mut(&key) {
                        item.result_hash = Some(hash);
                        item.salt = Some(salt);
                        item.manifest = Some(manifest);
                        item.dir = Some(dir.to_string_lossy().into_owned());
                    }
                    info!(job_id = %key.0.short(), result = %hash.short(), "executed; committing");
                    self.commit_outcome(key, CommittedOutcome::Committed(digest));
                }
                Err(e) => {
                    let failure =
                        ExecutionFailure::Error(short_text(&format!("keeping the output: {e}")));
                    self.commit_outcome(key, CommittedOutcome::Failed(failure));
                }
            },
        }
    }

    /// Writes stdout beside `/out` so the whole bundle can be served from disk; under the
    /// wrong-result fault, alters it consistently, as a lying worker would.
    fn keep_output(
        &self,
        exit_code: i64,
        outcome: &ExecutionOutcome,
    ) -> std::io::Result<(PathBuf, distributeai_protocol::OutputManifest)> {
        let out_dir = outcome
            .output_dir
            .clone()
            .ok_or_else(|| std::io::Error::other("the executor kept no output folder"))?;
        let dir = out_dir.parent().map(Path::to_path_buf).unwrap_or(out_dir);
        let mut stdout = outcome.stdout.clone();
        if self.config.fault == Some(Fault::WrongResult) {
            warn!("simulated fault: returning a wrong result");
            stdout.extend_from_slice(b"(a lying worker was here)\n");
        }
        std::fs::write(dir.join(STDOUT_FILE), &stdout)?;
        let files = outcome
            .manifest
            .as_ref()
            .map(|m| m.files.clone())
            .unwrap_or_default();
        Ok((
            dir,
            crate::executor::outputs::manifest(exit_code, &stdout, files),
        ))
    }

    fn commit_outcome(&mut self, key: (JobId, u32), outcome: CommittedOutcome) {
        let Some(item) = self.work.get_mut(&key) else {
            return;
        };
        let commit = ResultCommitment {
            job_id: key.0,
            attempt: key.1,
            outcome,
            issued_at: now_ms(),
        };
        match Signed::sign(&self.identity, &commit) {
            Ok(signed) => item.commitment = Some(signed),
            Err(e) => {
                warn!(error = %e, "cannot sign commitment");
                return;
            }
        }
        item.state = WorkState::Committed;
        item.commit_acked = false;
        self.persist_work(&key);
        self.send_commit(key);
    }

    fn send_commit(&mut self, key: (JobId, u32)) {
        let Some(item) = self.work.get(&key) else {
            return;
        };
        let Some(commitment) = item.commitment.clone() else {
            return;
        };
        let Ok(peer) = item.submitter.peer_id() else {
            return;
        };
        self.retry_at.insert(key, now_ms() + COMMIT_RETRY_MS);
        // A commitment re-sent after a delay must still be fresh: sign it again.
        let commitment = match commitment.decode_unchecked() {
            Ok(mut c) => {
                c.issued_at = now_ms();
                Signed::sign(&self.identity, &c).unwrap_or(commitment)
            }
            Err(_) => commitment,
        };
        let network = self.network.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let result = network.request(peer, Request::Commit(commitment)).await;
            let _ = tx.send(JobMsg::CommitAnswer { key, result }).await;
        });
    }

    pub(super) fn on_commit_answer(
        &mut self,
        key: (JobId, u32),
        result: Result<VerifiedResponse, NetworkError>,
    ) {
        let Some(item) = self.work.get_mut(&key) else {
            return;
        };
        match result {
            Ok(VerifiedResponse::Ack) => {
                item.commit_acked = true;
                self.persist_work(&key);
            }
            Ok(VerifiedResponse::Refused(reason)) => {
                debug!(job_id = %key.0.short(), %reason, "submitter refused our commitment");
                item.commit_acked = true;
                self.persist_work(&key);
            }
            Ok(_) | Err(_) => {
                debug!(job_id = %key.0.short(), "commitment not delivered; will retry")
            }
        }
    }

    /// Retries undelivered commitments and drops old outputs.
    pub(super) fn drive_work(&mut self, now: TimestampMs) {
        let due: Vec<(JobId, u32)> = self
            .work
            .iter()
            .filter(|(key, item)| {
                item.state == WorkState::Committed
                    && !item.commit_acked
                    && self.retry_at.get(key).is_none_or(|at| *at <= now)
                    && item
                        .assignment
                        .decode_unchecked()
                        .is_ok_and(|a| a.deadline.saturating_add(600_000) > now)
            })
            .map(|(key, _)| *key)
            .collect();
        for key in due {
            self.send_commit(key);
        }
    }

    fn work_of(
        &self,
        submitter: &PeerId,
        job_id: &JobId,
        attempt: Option<u32>,
    ) -> Option<&WorkItem> {
        self.work.values().find(|w| {
            w.job_id == *job_id
                && attempt.is_none_or(|a| a == w.attempt)
                && w.submitter.peer_id().is_ok_and(|p| p == *submitter)
        })
    }

    pub(super) fn on_reveal_request(
        &mut self,
        peer: PeerId,
        job_id: JobId,
        attempt: u32,
    ) -> Response {
        let Some(item) = self.work_of(&peer, &job_id, Some(attempt)) else {
            return Response::Refused("no such assignment from you".into());
        };
        let (Some(result_hash), Some(salt), Some(manifest)) =
            (item.result_hash, item.salt, item.manifest.clone())
        else {
            return Response::Refused("no result to reveal".into());
        };
        let reveal = ResultReveal {
            job_id,
            attempt,
            result_hash,
            salt,
            manifest,
            issued_at: now_ms(),
        };
        match Signed::sign(&self.identity, &reveal) {
            Ok(signed) => Response::Reveal(signed),
            Err(e) => Response::Refused(short_text(&format!("cannot sign the reveal: {e}"))),
        }
    }

    pub(super) fn on_fetch_request(
        &mut self,
        peer: PeerId,
        job_id: JobId,
        offset: u64,
        max_bytes: u32,
    ) -> Response {
        let Some(item) = self.work_of(&peer, &job_id, None) else {
            return Response::Refused("no such job from you".into());
        };
        let (Some(dir), Some(manifest)) = (item.dir.as_ref(), item.manifest.as_ref()) else {
            return Response::Refused("no output".into());
        };
        let total = output::bundle_len(manifest);
        if offset > total {
            return Response::Refused("offset past the end".into());
        }
        let max = usize::try_from(max_bytes)
            .unwrap_or(usize::MAX)
            .clamp(1, MAX_OUTPUT_CHUNK_BYTES);
        match output::read_bundle(Path::new(dir), manifest, offset, max) {
            Ok(data) => Response::Output(OutputChunk {
                offset,
                total,
                data,
            }),
            Err(e) => Response::Refused(short_text(&format!("cannot read the output: {e}"))),
        }
    }

    pub(super) fn on_cancel_gossip(&mut self, cancel: Verified<JobCancel>) {
        let job_id = cancel.message.job_id;
        let keys: Vec<(JobId, u32)> = self
            .work
            .iter()
            .filter(|(_, w)| w.job_id == job_id && w.submitter == cancel.signer)
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            if let Some(token) = self.running.get(&key) {
                info!(job_id = %job_id.short(), "the submitter cancelled the job; stopping it");
                token.cancel();
            }
            if let Some(item) = self.work.get_mut(&key) {
                item.state = WorkState::Cancelled;
            }
            self.persist_work(&key);
        }
    }

    /// A verdict ends a job for its workers: the submitter has what it needs, so the output
    /// kept for it can go.
    pub(super) fn on_verdict_gossip(&mut self, verdict: Verified<Verdict>) {
        self.record_verdict(&verdict);
        let job_id = verdict.message.job.job_id();
        for item in self
            .work
            .values_mut()
            .filter(|w| w.job_id == job_id && w.submitter == verdict.signer)
        {
            if let Some(dir) = item.dir.take() {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        let keys: Vec<(JobId, u32)> = self
            .work
            .keys()
            .filter(|k| k.0 == job_id)
            .copied()
            .collect();
        for key in keys {
            self.persist_work(&key);
        }
    }
}

impl JobManager {
    /// Adds a verdict (already verified at the edge) to the ledger.
    pub(super) fn record_verdict(&mut self, verdict: &Verified<Verdict>) {
        let result = self
            .ledger
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(verdict);
        match result {
            Ok(_) => {}
            Err(crate::ledger::LedgerError::DoubleVerdict(job)) => {
                self.metrics.dropped("verdict", "double_verdict");
                debug!(job_id = %job.short(), "refused a second verdict for a job");
            }
            Err(e) => warn!(error = %e, "cannot store a ledger entry"),
        }
    }
}
