//! Carrying out the submitter machine's effects (see the parent module), and fetching outputs.

use super::spawn_traced;
use distributeai_jobflow::Answer;
use distributeai_jobflow::submitter::{self as flow, Effect, FetchResult, RevealAnswer};
use distributeai_protocol::{JobId, JobSpec, Request, Response};
use libp2p::PeerId;
use tracing::{debug, info, warn};

use super::model::{JobView, ViewJob};
use super::{JobManager, JobMsg, SubmitError, log, output};
use crate::network::{NetworkError, VerifiedResponse};

/// How a request's answer reads to a machine: a network failure is `Unreachable`, which says
/// nothing about the peer's work; an answer that fails validation is the peer's own doing.
pub(super) fn answer_of(result: Result<VerifiedResponse, NetworkError>) -> Answer {
    match result {
        Ok(VerifiedResponse::Ack) => Answer::Ack,
        Ok(VerifiedResponse::Accepted(ack)) => Answer::Accepted(ack),
        Ok(VerifiedResponse::Refused(reason)) => Answer::Refused(reason),
        Ok(VerifiedResponse::Busy) => Answer::Busy,
        Ok(other) => Answer::Refused(format!("unexpected answer {other:?}")),
        Err(e @ NetworkError::InvalidResponse { .. }) => Answer::Refused(e.to_string()),
        Err(e) => Answer::Unreachable(e.to_string()),
    }
}

impl JobManager {
    pub(super) fn submit(&mut self, spec: JobSpec) -> Result<JobView, SubmitError> {
        // What workers check before they bid, checked here first so the user hears why:
        // our spendable credits cover this job on top of our jobs in flight (issue 19).
        let owed = distributeai_jobflow::promises::owed(&spec);
        if owed > 0 {
            let spendable = {
                let ledger = self.ledger.read().unwrap_or_else(|p| p.into_inner());
                ledger.standing(&self.identity.public_key()).spendable()
            };
            let promised = self
                .jobs
                .values()
                .filter(|j| !j.status().is_final())
                .fold(0u64, |sum, j| {
                    sum.saturating_add(distributeai_jobflow::promises::owed(&j.spec))
                });
            if i128::from(promised) + i128::from(owed) > i128::from(spendable) {
                return Err(SubmitError::Uncovered {
                    owed,
                    spendable,
                    promised,
                });
            }
        }
        let submitted = self.with_ctx(|_, _, ctx| flow::SubmittedJob::submit(spec, ctx));
        let (job, effects) = submitted.map_err(|e| match e {
            flow::SubmitError::Invalid(e) => SubmitError::Invalid(e),
            flow::SubmitError::Sign(e) => {
                SubmitError::Invalid(distributeai_protocol::ValidationError::Invalid {
                    field: "spec",
                    reason: e.to_string(),
                })
            }
        })?;
        let id = job.id;
        let view = job.view();
        self.jobs.insert(id, job);
        // The first effect stores the job: if that fails, the submission fails with it.
        if let Err(e) = self.persist_job(&id) {
            self.jobs.remove(&id);
            return Err(SubmitError::Store(e));
        }
        info!(job_id = %id.short(), "job submitted");
        self.metrics.job_submitted();
        let rest: Vec<Effect> = effects
            .into_iter()
            .skip_while(|e| matches!(e, Effect::Persist))
            .collect();
        self.carry_out_job(id, rest);
        Ok(view)
    }

    /// Carries out a submitted job's effects in order; see [`JobManager::step_job`].
    pub(super) fn carry_out_job(&mut self, id: JobId, effects: Vec<Effect>) -> Option<Response> {
        let mut reply = None;
        for effect in effects {
            match effect {
                Effect::Persist => self.save_job(id),
                Effect::Publish { what, message } => {
                    let network = self.network.clone();
                    let tx = self.tx.clone();
                    spawn_traced(async move {
                        let result = network.publish(message).await.map_err(|e| e.to_string());
                        let input = flow::Input::Published { what, result };
                        let _ = tx.send(JobMsg::Job { job: id, input }).await;
                    });
                }
                Effect::Assign { worker, assignment } => {
                    let Ok(peer) = worker.peer_id() else { continue };
                    let network = self.network.clone();
                    let tx = self.tx.clone();
                    spawn_traced(async move {
                        let result = network.request(peer, Request::Assign(assignment)).await;
                        let input = flow::Input::AssignAnswer {
                            worker,
                            answer: answer_of(result),
                        };
                        let _ = tx.send(JobMsg::Job { job: id, input }).await;
                    });
                }
                Effect::RequestReveal { worker, attempt } => {
                    let Ok(peer) = worker.peer_id() else { continue };
                    let network = self.network.clone();
                    let tx = self.tx.clone();
                    spawn_traced(async move {
                        let request = Request::Reveal {
                            job_id: id,
                            attempt,
                        };
                        let answer = match network.request(peer, request).await {
                            Ok(VerifiedResponse::Reveal(reveal)) => RevealAnswer::Reveal(reveal),
                            other => match answer_of(other) {
                                Answer::Unreachable(e) => RevealAnswer::Unreachable(e),
                                Answer::Refused(e) => RevealAnswer::Refused(e),
                                Answer::Ack | Answer::Accepted(_) | Answer::Busy => {
                                    RevealAnswer::Refused("an ack, not a reveal".into())
                                }
                            },
                        };
                        let input = flow::Input::RevealAnswer { worker, answer };
                        let _ = tx.send(JobMsg::Job { job: id, input }).await;
                    });
                }
                Effect::Invite { peer, announcement } => {
                    let Ok(peer) = peer.peer_id() else { continue };
                    let network = self.network.clone();
                    spawn_traced(async move {
                        match network.request(peer, Request::Invite(announcement)).await {
                            Ok(response) => {
                                debug!(job_id = %id.short(), %peer, ?response, "invited")
                            }
                            Err(e) => {
                                debug!(job_id = %id.short(), %peer, error = %e, "invitation not delivered")
                            }
                        }
                    });
                }
                Effect::Fetch {
                    worker,
                    manifest,
                    agreed,
                } => {
                    let Ok(peer) = worker.peer_id() else { continue };
                    let network = self.network.clone();
                    let tx = self.tx.clone();
                    let fetch = OutputFetch {
                        peer,
                        job_id: id,
                        total: manifest.bundle_len(),
                        manifest,
                        agreed,
                        dest: self.outputs_dir.join(id.to_hex()),
                    };
                    spawn_traced(async move {
                        let result = match fetch.run(&network).await {
                            Ok(()) => FetchResult::Verified,
                            Err(FetchError::Transport(e)) => FetchResult::Transport(e),
                            Err(FetchError::Invalid(e)) => FetchResult::Invalid(e),
                        };
                        let input = flow::Input::Fetched { worker, result };
                        let _ = tx.send(JobMsg::Job { job: id, input }).await;
                    });
                }
                Effect::Reply(response) => reply = Some(response),
                Effect::RecordVerdict(signed) => {
                    let context = distributeai_protocol::ValidationContext::live().archived();
                    match signed.open(&context) {
                        Ok(verified) => {
                            self.first_hand.observe(&verified.message);
                            self.record_verdict(&verified);
                        }
                        Err(e) => {
                            warn!(job_id = %id.short(), error = %e, "our own verdict does not validate")
                        }
                    }
                }
                Effect::Log(level, text) => log(&id, level, &text),
            }
        }
        reply
    }
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
