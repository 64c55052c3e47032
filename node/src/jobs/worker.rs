//! Carrying out the worker machine's effects (see the parent module): bids, executions,
//! commitments, and serving reveals and outputs.

use super::spawn_traced;
use std::path::{Path, PathBuf};

use distributeai_jobflow::bid_budget::{Admission, BidBudget, HeldBid};
use distributeai_jobflow::worker::{self as work, Effect, Executed, WorkItem};
use distributeai_jobflow::{Answer, Directory};
use distributeai_protocol::limits::MAX_OUTPUT_CHUNK_BYTES;
use distributeai_protocol::time::now_ms;
use distributeai_protocol::{
    Assignment, JobAnnouncement, JobEnd, JobId, OutputChunk, OutputManifest, PublicKey, Request,
    Response, Verified,
};
use libp2p::PeerId;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::output::{self, STDOUT_FILE};
use super::{Fault, JobManager, JobMsg, NodeDirectory, log};
use crate::executor::{ExecutionOutcome, ExecutionRequest, ExecutionStatus, ExecutorError};
use crate::network::VerifiedResponse;
use crate::store::Table;

/// Most bids a worker holds at once (issue 20: every admitted job, from anyone, became a bid
/// held in memory with its announcement and decoded spec, up to about 512 KiB each). A worker
/// runs a few jobs at a time and a bid not taken lapses with its job, so 1,024 bids is ample
/// (ordinary specs are a few hundred bytes each). Past it, or past [`MAX_BID_BYTES`], no bid,
/// counted as `messages_dropped{kind="job",reason="bids_full"}`; shared fairly among
/// submitters, so a flood from a few keys cannot keep out anyone else's bid.
pub const MAX_BIDS_HELD: usize = 1_024;
/// Most bytes of signed announcements held as bids (32 MiB; the decoded specs beside them
/// take about as much again), so that maximal specs cannot fill memory under the count.
pub const MAX_BID_BYTES: usize = 32 << 20;
/// [`MAX_BIDS_HELD`] and [`MAX_BID_BYTES`], shared fairly among submitters.
const BID_BUDGET: BidBudget = BidBudget {
    max_bids: MAX_BIDS_HELD,
    max_bytes: MAX_BID_BYTES,
};

/// How many times over a worker sends a job's output to its submitter (issue 20: a submitter
/// could ask for it again and again until a verdict that never comes, using the worker's
/// uplink). Four: a fetch resumed after a lost circuit or a restarted submitter re-reads
/// parts, and an honest submitter needs one copy. Counted in bytes, plus
/// [`OUTPUT_SERVE_SLACK_BYTES`].
pub const MAX_OUTPUT_SERVES: u64 = 4;
/// Bytes served on top of [`MAX_OUTPUT_SERVES`] copies (64 KiB), so that a tiny output's
/// fetch can still be retried a few times whole.
pub const OUTPUT_SERVE_SLACK_BYTES: u64 = 64 * 1024;

/// Reads served to peers off the job manager's task at once, on blocking threads (issue 20):
/// output chunks for fetches (up to [`MAX_OUTPUT_CHUNK_BYTES`], 512 KiB, each) and ledger-sync
/// pages (up to 32 entries). Bounded so that peers asking in parallel hold a few MiB of
/// answers, not one per request, and keep the disk from thrashing; further reads wait.
pub const SERVES_AT_ONCE: usize = 8;

/// One read of a job's output for a fetch, planned by [`JobManager::on_fetch_request`].
pub(super) struct OutputRead {
    dir: PathBuf,
    manifest: OutputManifest,
    offset: u64,
    max: usize,
}

impl OutputRead {
    /// Reads the chunk (blocking); the response to send, or why it cannot be read.
    pub(super) fn read(self) -> Result<Response, String> {
        output::read_bundle(&self.dir, &self.manifest, self.offset, self.max)
            .map(|data| {
                Response::Output(OutputChunk {
                    offset: self.offset,
                    total: self.manifest.bundle_len(),
                    data,
                })
            })
            .map_err(|e| format!("cannot read the output: {e}"))
    }
}

/// Attempts to deliver one bid, the first retry after [`BID_RETRY_FIRST`], then doubling.
const BID_ATTEMPTS: u32 = 6;
const BID_RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(500);

impl JobManager {
    /// Executions this node could start now.
    fn free_slots(&self) -> usize {
        // A cancelled or decided item leaves `Executing` before its container is gone.
        let busy = self.work.values().filter(|w| w.occupies_slot()).count();
        self.config
            .max_concurrent
            .saturating_sub(busy.max(self.running.len()))
    }

    /// Executions of our work on `job` this node could start now: the free slots, or none when
    /// the jobs running already hold so much of the CPUs or memory this node offers that it would
    /// not fit beside them (issue 20: two jobs each asking all of the offer would otherwise
    /// take twice the machine).
    fn free_slots_for(&self, job: &JobId) -> usize {
        let Some(spec) = self.work.get(job).map(|item| &item.spec) else {
            return 0;
        };
        let (cpus, memory) =
            self.work
                .values()
                .filter(|w| w.occupies_slot())
                .fold((0u64, 0u64), |(c, m), w| {
                    (
                        c + u64::from(w.spec.resources.cpus.millis()),
                        m.saturating_add(w.spec.resources.memory_mb),
                    )
                });
        let fits = cpus + u64::from(spec.resources.cpus.millis())
            <= u64::from(self.config.offered_cpus_millis)
            && memory.saturating_add(spec.resources.memory_mb) <= self.config.offered_memory_mb;
        if fits { self.free_slots() } else { 0 }
    }

    /// Whether one more bid, for `job`, stays within [`MAX_BIDS_HELD`] and [`MAX_BID_BYTES`],
    /// shared fairly among submitters ([`distributeai_jobflow::bid_budget`]): when they are
    /// full, bids of the submitter holding the most are dropped to make room, counted as
    /// `messages_dropped{kind="job",reason="bid_displaced"}`. A refusal is counted as
    /// `bids_full`.
    fn room_for_bid(&mut self, job: &Verified<JobAnnouncement>) -> bool {
        let held: Vec<HeldBid<JobId>> = self
            .work
            .values()
            .filter(|w| w.is_bid())
            .map(|w| HeldBid {
                key: w.job_id,
                submitter: w.submitter,
                bytes: w.announcement.body().len(),
                expires_at: w.expires_at,
                displaceable: true,
            })
            .chain(self.deciding.values().cloned())
            .collect();
        match BID_BUDGET.admit(&held, &job.signer, job.envelope.body().len()) {
            Admission::Fits => true,
            Admission::Displace(displaced) => {
                for id in displaced {
                    debug!(job_id = %id.short(), for_job = %job.envelope.job_id().short(), "bid displaced by a smaller holder's");
                    self.work.remove(&id);
                    self.metrics.dropped("job", "bid_displaced");
                }
                true
            }
            Admission::Full => {
                self.metrics.dropped("job", "bids_full");
                debug!(job_id = %job.envelope.job_id().short(), bids = held.len(), "not bidding: as many bids held as allowed");
                false
            }
        }
    }

    /// A job announced on the mesh: bid if we can run it.
    pub(super) fn consider_job(&mut self, _author: PeerId, job: Verified<JobAnnouncement>) {
        let id = job.envelope.job_id();
        let Some(executor) = self.executor.clone() else {
            return;
        };
        if !self.config.worker || self.work.contains_key(&id) || self.deciding.contains_key(&id) {
            return;
        }
        if let Err(reason) = executor.admits(&job.message.spec) {
            debug!(job_id = %id.short(), %reason, "not bidding");
            return;
        }
        // Checked here to spare the image lookup, and again when the bid is made: decisions
        // in flight are not bids yet.
        if !self.room_for_bid(&job) {
            return;
        }
        let directory = NodeDirectory {
            peers: &self.peers,
            ledger: &self.ledger,
            first_hand: &self.first_hand,
        };
        let spendable = directory.spendable(&job.signer);
        let promised = self.promises.promise(
            job.signer,
            id,
            &job.message.spec,
            job.message.expires_at,
            spendable,
            now_ms(),
        );
        if let Err(reason) = promised {
            self.metrics.dropped("job", "uncovered_reward");
            debug!(job_id = %id.short(), %reason, "not bidding");
            return;
        }
        let tx = self.tx.clone();
        let metrics = self.metrics.clone();
        self.deciding.insert(
            id,
            HeldBid {
                key: id,
                submitter: job.signer,
                bytes: job.envelope.body().len(),
                expires_at: job.message.expires_at,
                displaceable: false,
            },
        );
        spawn_traced(async move {
            let mut image = Some(executor.image_id(&job.message.spec).await);
            if image == Some(None)
                && let Err(reason) = executor.may_pull(&job.message.spec)
            {
                metrics.dropped("job", "image_not_pullable");
                debug!(job_id = %id.short(), %reason, "not bidding: no such image here");
                image = None;
            }
            let _ = tx.send(JobMsg::BidDecided { job, image }).await;
        });
    }

    /// A submitter re-opened bidding and invites us: consider the job as if it had just been
    /// gossiped. The network checked that the requester signed the announcement.
    pub(super) fn on_invite(&mut self, author: PeerId, job: Verified<JobAnnouncement>) -> Response {
        if !self.config.worker || self.executor.is_none() {
            return Response::Refused("this node runs no jobs".into());
        }
        let id = job.envelope.job_id();
        match self.work.get(&id) {
            Some(item) if item.is_bid() => {
                // Our bid may never have reached the submitter (that is why it invites):
                // it goes again, over the connection the invitation came on.
                self.step_work(id, work::Input::Invited);
                return Response::Ack;
            }
            Some(_) => return Response::Refused("already working on this job".into()),
            None => {}
        }
        self.consider_job(author, job);
        Response::Ack
    }

    /// Creates the work item with our bid, and sends it.
    pub(super) fn bid(&mut self, job: Verified<JobAnnouncement>, image: Option<String>) {
        let id = job.envelope.job_id();
        if self.work.contains_key(&id) || !self.room_for_bid(&job) {
            return;
        }
        let running = self.running.len() as u32;
        let made = self.with_ctx(|_, _, ctx| WorkItem::bid(&job, image, running, ctx));
        match made {
            Ok((item, effects)) => {
                self.work.insert(id, item);
                self.carry_out_work(id, effects);
            }
            Err(e) => warn!(job_id = %id.short(), error = %e, "cannot sign a bid"),
        }
    }

    pub(super) fn on_assignment(&mut self, assignment: Verified<Assignment>) -> Response {
        if !self.config.worker || self.executor.is_none() {
            return Response::Refused("this node runs no jobs".into());
        }
        let job = assignment.message.job_id;
        if !self.work.contains_key(&job) {
            // Accepting a job we never bid on would skip every check a bid makes.
            return Response::Refused("this node did not bid on this job".into());
        }
        let free_slots = self.free_slots_for(&job);
        let was_bid = self.work.get(&job).is_some_and(|w| w.is_bid());
        let response = self
            .step_work(
                job,
                work::Input::Assigned {
                    assignment: assignment.clone(),
                    free_slots,
                },
            )
            .unwrap_or_else(|| Response::Refused("unknown job".into()));
        match response {
            Response::Busy => self.deferred.busy(now_ms(), assignment),
            // Started now: it waited for a slot only if it was answered busy before.
            Response::Accepted(_) if was_bid => {
                let waited = self.deferred.take(&job, now_ms()).unwrap_or(0);
                self.metrics.queue_wait(waited);
            }
            _ => {}
        }
        response
    }

    /// Starts assignments answered busy, oldest first, while slots are free. One whose job
    /// is no longer waiting for us (decided, cancelled, replaced) is dropped.
    pub(super) fn start_deferred(&mut self) {
        while self.free_slots() > 0 {
            let items = &self.work;
            let Some((assignment, waited_ms)) = self
                .deferred
                .next(now_ms(), |job| items.get(job).is_some_and(|w| w.is_bid()))
            else {
                return;
            };
            let job = assignment.message.job_id;
            let free_slots = self.free_slots_for(&job);
            let response = self.step_work(
                job,
                work::Input::Assigned {
                    assignment,
                    free_slots,
                },
            );
            if matches!(response, Some(Response::Accepted(_))) {
                self.metrics.queue_wait(waited_ms);
            }
            debug!(job_id = %job.short(), ?response, "started an assignment that waited for a slot");
        }
    }

    /// The submitter of our work on `job_id`, if `peer` is it.
    pub(super) fn submitter_of(&self, peer: &PeerId, job_id: &JobId) -> Option<PublicKey> {
        let item = self.work.get(job_id)?;
        item.submitter
            .peer_id()
            .is_ok_and(|p| p == *peer)
            .then_some(item.submitter)
    }

    /// A submitter asks for part of a job's output: checks it may have it and that the job's
    /// serve budget ([`MAX_OUTPUT_SERVES`]) allows, charging the budget now, so that requests
    /// in flight together cannot overdraw it. The read itself is left to the caller, off the
    /// manager's task ([`JobManager::serve_off_task`]); `Err` is the reason to refuse instead.
    pub(super) fn on_fetch_request(
        &mut self,
        peer: PeerId,
        job_id: JobId,
        offset: u64,
        max_bytes: u32,
    ) -> Result<OutputRead, String> {
        let Some(submitter) = self.submitter_of(&peer, &job_id) else {
            return Err("no such job from you".into());
        };
        let Some((dir, manifest)) = self
            .work
            .get(&job_id)
            .and_then(|item| item.output_for(&submitter))
        else {
            return Err("no output".into());
        };
        let total = manifest.bundle_len();
        if offset > total {
            return Err("offset past the end".into());
        }
        let served = self.served.get(&job_id).copied().unwrap_or(0);
        let budget = total
            .saturating_mul(MAX_OUTPUT_SERVES)
            .saturating_add(OUTPUT_SERVE_SLACK_BYTES);
        if served >= budget {
            self.metrics.dropped("request", "output_served_enough");
            return Err(format!(
                "this output was already sent {MAX_OUTPUT_SERVES} times over ({served} bytes)"
            ));
        }
        let max = usize::try_from(max_bytes)
            .unwrap_or(usize::MAX)
            .clamp(1, MAX_OUTPUT_CHUNK_BYTES);
        let len = (total - offset).min(max as u64);
        *self.served.entry(job_id).or_insert(0) += len;
        Ok(OutputRead {
            dir: PathBuf::from(dir),
            manifest: manifest.clone(),
            offset,
            max,
        })
    }

    /// Carries out a work item's effects in order; see [`JobManager::step_job`].
    pub(super) fn carry_out_work(&mut self, id: JobId, effects: Vec<Effect>) -> Option<Response> {
        let mut reply = None;
        for effect in effects {
            match effect {
                Effect::Persist => self.save_work(id),
                Effect::Forget => {
                    self.served.remove(&id);
                    if self.work.remove(&id).is_some_and(|item| !item.is_bid()) {
                        self.unsaved.remove(&(Table::Work, id));
                        if let Err(e) = self.store.remove(Table::Work, id.as_bytes()) {
                            warn!(job_id = %id.short(), error = %e, "cannot delete a finished work record");
                        }
                    }
                }
                Effect::SendBid(signed) => {
                    self.metrics.bid_sent();
                    let Some(item) = self.work.get(&id) else {
                        continue;
                    };
                    let Ok(author) = item.submitter.peer_id() else {
                        continue;
                    };
                    let expires_at = item.expires_at;
                    let network = self.network.clone();
                    let tx = self.tx.clone();
                    spawn_traced(async move {
                        // The job reached us by gossip, which can outrun the submitter's
                        // announcement of its addresses; a bid that cannot be delivered yet is
                        // tried again, since late bids still serve the submitter as reserves.
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
                                    let reason = match other {
                                        VerifiedResponse::Refused(reason) => reason,
                                        other => format!("unexpected answer {other:?}"),
                                    };
                                    let input = work::Input::BidAnswer(Answer::Refused(reason));
                                    let _ = tx.send(JobMsg::Work { job: id, input }).await;
                                    return;
                                }
                                Err(e) => {
                                    debug!(job_id = %id.short(), attempt, error = %e, "bid not delivered");
                                    last_error = Some(e);
                                }
                            }
                            if attempt == BID_ATTEMPTS
                                || now_ms() + delay.as_millis() as u64 >= expires_at
                            {
                                break;
                            }
                            tokio::time::sleep(delay).await;
                            delay *= 2;
                        }
                        if let Some(e) = last_error {
                            // Said at the default level: otherwise a node behind NAT only ever
                            // sees that it ran nothing, and the submitter that "0 workers bid".
                            warn!(job_id = %id.short(), submitter = %author, error = %e, "could not deliver our bid to the job's submitter");
                            let input = work::Input::BidAnswer(Answer::Unreachable(e.to_string()));
                            let _ = tx.send(JobMsg::Work { job: id, input }).await;
                        }
                    });
                }
                Effect::Start { spec, attempt } => self.start_execution(id, spec, attempt),
                Effect::Stop => {
                    if let Some(token) = self.running.get(&id) {
                        token.cancel();
                    }
                }
                Effect::SendCommit(commitment) => {
                    let Some(item) = self.work.get(&id) else {
                        continue;
                    };
                    let Ok(peer) = item.submitter.peer_id() else {
                        continue;
                    };
                    let network = self.network.clone();
                    let tx = self.tx.clone();
                    spawn_traced(async move {
                        let result = network.request(peer, Request::Commit(commitment)).await;
                        // Only an explicit answer ends the retries; a garbled one is retried.
                        let answer = match result {
                            Ok(VerifiedResponse::Ack) => Answer::Ack,
                            Ok(VerifiedResponse::Refused(reason)) => Answer::Refused(reason),
                            Ok(other) => {
                                Answer::Unreachable(format!("unexpected answer {other:?}"))
                            }
                            Err(e) => Answer::Unreachable(e.to_string()),
                        };
                        let input = work::Input::CommitAnswer(answer);
                        let _ = tx.send(JobMsg::Work { job: id, input }).await;
                    });
                }
                Effect::RemoveOutput(dir) => {
                    // Off the job manager's task: a job's output may be thousands of files,
                    // and every message of the node waits on this task (issue 20).
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = std::fs::remove_dir_all(&dir)
                            && e.kind() != std::io::ErrorKind::NotFound
                        {
                            warn!(job_id = %id.short(), error = %e, dir, "cannot remove a job's output");
                        }
                    });
                }
                Effect::Reply(response) => reply = Some(response),
                Effect::Log(level, text) => log(&id, level, &text),
            }
        }
        reply
    }

    fn start_execution(&mut self, id: JobId, spec: distributeai_protocol::JobSpec, attempt: u32) {
        if self.config.fault == Some(Fault::Silent) {
            warn!(job_id = %id.short(), "simulated fault: staying silent on this assignment");
            return;
        }
        let Some(executor) = self.executor.clone() else {
            return;
        };
        let token = CancellationToken::new();
        if let Some(previous) = self.running.insert(id, token.clone()) {
            previous.cancel();
        }
        let tx = self.tx.clone();
        let request = ExecutionRequest {
            job_id: id,
            attempt,
            spec,
        };
        let wrong_result = self.config.fault == Some(Fault::WrongResult);
        let metrics = self.metrics.clone();
        spawn_traced(async move {
            let outcome = executor.run(request, token).await;
            match &outcome {
                Ok(o) => metrics.execution(outcome_word(&o.status), Some(o.duration)),
                Err(_) => metrics.execution("worker_fault", None),
            }
            let executed = tokio::task::spawn_blocking(move || executed(outcome, wrong_result))
                .await
                .unwrap_or_else(|e| Executed::WorkerFault(format!("keeping the output: {e}")));
            let input = work::Input::Executed(executed);
            let _ = tx.send(JobMsg::Work { job: id, input }).await;
            let _ = tx.send(JobMsg::ExecutionEnded { job: id }).await;
        });
        if self.config.fault == Some(Fault::CrashMidJob) {
            warn!("simulated fault: crashing in the middle of a job");
            spawn_traced(async {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                std::process::exit(70);
            });
        }
    }
}

/// The `outcome` label of an execution's end.
fn outcome_word(status: &ExecutionStatus) -> &'static str {
    match status {
        ExecutionStatus::Cancelled => "cancelled",
        ExecutionStatus::Ended(end) => match end {
            JobEnd::Exited { .. } => "exited",
            JobEnd::TimedOut => "timed_out",
            JobEnd::OutOfMemory => "out_of_memory",
            JobEnd::OutputTooLarge => "output_too_large",
            JobEnd::CannotStart => "cannot_start",
            JobEnd::ImageUnavailable => "image_unavailable",
        },
    }
}

/// What an execution's outcome means to the worker machine; keeps the output on disk.
fn executed(outcome: Result<ExecutionOutcome, ExecutorError>, wrong_result: bool) -> Executed {
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => return Executed::WorkerFault(e.to_string()),
    };
    let diagnostics = outcome.diagnostics();
    match outcome.status {
        ExecutionStatus::Cancelled => Executed::Cancelled,
        ExecutionStatus::Ended(JobEnd::Exited { code }) => {
            match keep_output(code, &outcome, wrong_result) {
                Ok((dir, manifest)) => Executed::Completed {
                    manifest,
                    diagnostics,
                    dir: Some(dir.to_string_lossy().into_owned()),
                },
                Err(e) => Executed::WorkerFault(format!("keeping the output: {e}")),
            }
        }
        // The job's own failure: a result with no output to keep.
        ExecutionStatus::Ended(end) => Executed::Completed {
            manifest: OutputManifest::without_output(end, outcome.image.clone()),
            diagnostics,
            dir: None,
        },
    }
}

/// Writes stdout beside `/out` so the whole bundle can be served from disk; under the
/// wrong-result fault, alters it consistently, as a lying worker would.
fn keep_output(
    exit_code: i64,
    outcome: &ExecutionOutcome,
    wrong_result: bool,
) -> std::io::Result<(PathBuf, distributeai_protocol::OutputManifest)> {
    let out_dir = outcome
        .output_dir
        .clone()
        .ok_or_else(|| std::io::Error::other("the executor kept no output folder"))?;
    let dir = out_dir.parent().map(Path::to_path_buf).unwrap_or(out_dir);
    let mut stdout = outcome.stdout.clone();
    if wrong_result {
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
        crate::executor::outputs::manifest(exit_code, &outcome.image, &stdout, files),
    ))
}
