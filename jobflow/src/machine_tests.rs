//! Unit tests of the two machines together: one submitter and its workers, stepped by hand.
//! Each test named after a fault pins a fault found by reading the node's former job actor
//! (issue 11), which the actor's flags allowed and the machines' phases rule out.

use distributeai_protocol::{
    ContentEntry, Diagnostics, Digest, GossipMessage, JobEnd, JobSpec, NodeIdentity, OutputFile,
    OutputManifest, PublicKey, Response, Signed, ValidationContext, VerdictOutcome, Verified,
    WorkerResult,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::submitter::{
    self as flow, ExecutionState, FetchResult, Gossip, JobStatus, OpenedReveal, Outcome, Phase,
    RevealAnswer, SubmittedJob,
};
use crate::worker::{self as work, Executed, WorkItem, WorkPhase};
use crate::{Answer, Ctx, Directory, FlowConfig};

const T0: u64 = 1_800_000_000_000;

struct Everyone;

impl Directory for Everyone {
    fn weight(&self, _: &PublicKey) -> f64 {
        1.0
    }
    fn group(&self, worker: &PublicKey) -> String {
        worker.to_hex()
    }
    fn invitees(&self, _: &JobSpec, _: &[PublicKey]) -> Vec<PublicKey> {
        Vec::new()
    }
    fn worker_reach(&self) -> String {
        "test".into()
    }
    fn spendable(&self, _: &PublicKey) -> i64 {
        1_000
    }
}

const IMAGE: &str = "sha256:7777777777777777777777777777777777777777777777777777777777777777";

fn manifest(stdout: &str) -> OutputManifest {
    OutputManifest::from_outputs(0, IMAGE, stdout.as_bytes(), &[]).expect("valid manifest")
}

/// One submitter, its job, and a worker item per worker.
struct World {
    submitter: NodeIdentity,
    workers: Vec<NodeIdentity>,
    items: Vec<Option<WorkItem>>,
    job: SubmittedJob,
    now: u64,
    rng: StdRng,
    config: FlowConfig,
}

fn open<T: distributeai_protocol::SignedMessage>(signed: &Signed<T>, now: u64) -> Verified<T> {
    signed
        .open(&ValidationContext::live_at(now))
        .expect("a message the machines signed validates")
}

impl World {
    fn new(n: u8, k: u8, workers: usize) -> Self {
        let submitter = NodeIdentity::from_secret([1; 32]);
        let workers = (0..workers)
            .map(|i| NodeIdentity::from_secret([10 + i as u8; 32]))
            .collect();
        let mut rng = StdRng::seed_from_u64(7);
        // Reserves taken as they come, so replacements need no re-opened bidding.
        let config = FlowConfig {
            reserve_bids: 2,
            ..FlowConfig::default()
        };
        let mut ctx = Ctx {
            now: T0,
            identity: &submitter,
            rng: &mut rng,
            directory: &Everyone,
            config: &config,
        };
        let (job, fx) = SubmittedJob::submit(crate::test_spec(n, k), &mut ctx).expect("valid spec");
        assert!(
            matches!(fx[0], flow::Effect::Persist),
            "stored before announced"
        );
        let items = vec![None; 3.max(n as usize + 2)];
        Self {
            submitter,
            workers,
            items,
            job,
            now: T0,
            rng,
            config,
        }
    }

    fn step(&mut self, input: flow::Input) -> Vec<flow::Effect> {
        let mut ctx = Ctx {
            now: self.now,
            identity: &self.submitter,
            rng: &mut self.rng,
            directory: &Everyone,
            config: &self.config,
        };
        self.job.handle(input, &mut ctx)
    }

    fn step_worker(&mut self, w: usize, input: work::Input) -> Vec<work::Effect> {
        let mut ctx = Ctx {
            now: self.now,
            identity: &self.workers[w],
            rng: &mut self.rng,
            directory: &Everyone,
            config: &self.config,
        };
        self.items[w]
            .as_mut()
            .expect("the worker bid")
            .handle(input, &mut ctx)
    }

    fn worker_index(&self, key: &PublicKey) -> usize {
        self.workers
            .iter()
            .position(|w| w.public_key() == *key)
            .expect("a known worker")
    }

    /// Publishes, takes a bid from every worker and closes bidding; returns the assignments.
    fn assign(&mut self) -> Vec<(usize, Signed<distributeai_protocol::Assignment>)> {
        self.step(flow::Input::Published {
            what: Gossip::Announcement,
            result: Ok(()),
        });
        let announcement = open(&self.job.announcement, self.now);
        let mut sent = Vec::new();
        for w in 0..self.workers.len() {
            let mut ctx = Ctx {
                now: self.now,
                identity: &self.workers[w],
                rng: &mut self.rng,
                directory: &Everyone,
                config: &self.config,
            };
            let (item, fx) =
                WorkItem::bid(&announcement, Some(IMAGE.into()), 0, &mut ctx).expect("bid");
            self.items[w] = Some(item);
            let work::Effect::SendBid(bid) = &fx[0] else {
                panic!("a bid is sent: {fx:?}")
            };
            let fx = self.step(flow::Input::Bid(open(bid, self.now)));
            assert!(matches!(
                fx.last(),
                Some(flow::Effect::Reply(Response::Ack))
            ));
            // Assignments go out as soon as n bids are in.
            sent.extend(assigns(&fx));
        }
        self.now += self.config.bid_window_ms + 1;
        let fx = self.step(flow::Input::Tick);
        sent.extend(assigns(&fx));
        sent.into_iter()
            .map(|(worker, a)| (self.worker_index(&worker), a))
            .collect()
    }

    /// Delivers an assignment, runs it to `executed`, and hands the commitment over; returns
    /// the submitter's effects of taking the commitment.
    fn run(
        &mut self,
        w: usize,
        assignment: &Signed<distributeai_protocol::Assignment>,
        executed: Executed,
    ) -> Vec<flow::Effect> {
        let assignment = open(assignment, self.now);
        let fx = self.step_worker(
            w,
            work::Input::Assigned {
                assignment,
                free_slots: 1,
            },
        );
        let Some(work::Effect::Reply(Response::Accepted(acceptance))) = fx.last() else {
            panic!("a signed acceptance: {fx:?}")
        };
        let acceptance = Box::new(open(acceptance, self.now));
        let worker = self.workers[w].public_key();
        self.step(flow::Input::AssignAnswer {
            worker,
            answer: Answer::Accepted(acceptance),
        });
        let fx = self.step_worker(w, work::Input::Executed(executed));
        let commit = sent_commit(&fx);
        let reply = self.step(flow::Input::Commit(open(&commit, self.now)));
        assert!(
            matches!(reply.last(), Some(flow::Effect::Reply(Response::Ack))),
            "{reply:?}"
        );
        self.step_worker(w, work::Input::CommitAnswer(Answer::Ack));
        reply
    }

    /// Answers every reveal request among `fx`; returns the effects of the last answer.
    fn reveal_all(&mut self, fx: Vec<flow::Effect>) -> Vec<flow::Effect> {
        let mut last = fx.clone();
        for effect in fx {
            if let flow::Effect::RequestReveal { worker, attempt } = effect {
                let w = self.worker_index(&worker);
                let from = self.submitter.public_key();
                let reply = self.step_worker(w, work::Input::RevealRequested { from, attempt });
                let Some(work::Effect::Reply(Response::Reveal(revealed))) = reply.last() else {
                    panic!("a reveal: {reply:?}")
                };
                let reveal = revealed
                    .open(&ValidationContext::live_at(self.now))
                    .expect("a reveal the worker signed opens");
                let answer = RevealAnswer::Reveal(Box::new(OpenedReveal {
                    reveal,
                    manifest: revealed.manifest.clone(),
                    diagnostics: revealed.diagnostics.clone(),
                }));
                last = self.step(flow::Input::RevealAnswer { worker, answer });
            }
        }
        last
    }

    /// Runs a 2-of-2 job to the point where it fetches the output; returns the fetch's worker.
    fn run_until_fetch(&mut self) -> PublicKey {
        let assignments = self.assign();
        assert_eq!(assignments.len(), 2);
        let mut fx = Vec::new();
        for (w, a) in &assignments {
            fx = self.run(*w, a, completed("ok"));
        }
        let fx = self.reveal_all(fx);
        match fetch_of(&fx) {
            Some(worker) => worker,
            None => panic!("the output is fetched: {fx:?}"),
        }
    }

    /// Where a worker's execution is.
    fn state(&self, worker: &PublicKey) -> Option<ExecutionState> {
        self.job.execution(worker).map(|e| e.state)
    }

    /// The job's signed verdict, decoded.
    fn verdict(&self) -> distributeai_protocol::Verdict {
        self.job
            .verdict
            .as_ref()
            .expect("a verdict was signed")
            .decode_unchecked()
            .expect("decodes")
    }

    fn verdicts(fx: &[flow::Effect]) -> usize {
        fx.iter()
            .filter(|e| matches!(e, flow::Effect::RecordVerdict(_)))
            .count()
    }
}

/// The commitment a worker's step sent.
fn sent_commit(fx: &[work::Effect]) -> Signed<distributeai_protocol::ResultCommitment> {
    fx.iter()
        .find_map(|e| match e {
            work::Effect::SendCommit(c) => Some(c.clone()),
            _ => None,
        })
        .expect("a commitment is sent")
}

/// The worker a submitter's step fetches the output from.
fn fetch_of(fx: &[flow::Effect]) -> Option<PublicKey> {
    fx.iter().find_map(|e| match e {
        flow::Effect::Fetch { worker, .. } => Some(*worker),
        _ => None,
    })
}

fn completed(stdout: &str) -> Executed {
    Executed::Completed {
        manifest: manifest(stdout),
        diagnostics: Diagnostics::default(),
        dir: Some("/tmp/out".into()),
    }
}

/// A run that ended as `end` (not an exit), having printed `said` first.
fn ended(end: JobEnd, said: &str) -> Executed {
    Executed::Completed {
        manifest: OutputManifest::without_output(end, IMAGE),
        diagnostics: Diagnostics {
            detail: String::new(),
            stdout_tail: said.as_bytes().to_vec(),
            stderr_tail: Vec::new(),
        },
        dir: None,
    }
}

fn assigns(fx: &[flow::Effect]) -> Vec<(PublicKey, Signed<distributeai_protocol::Assignment>)> {
    fx.iter()
        .filter_map(|e| match e {
            flow::Effect::Assign { worker, assignment } => Some((*worker, assignment.clone())),
            _ => None,
        })
        .collect()
}

fn stored(job: &SubmittedJob) -> Vec<u8> {
    distributeai_protocol::codec::encode(job).expect("encodes")
}

#[test]
fn a_job_runs_to_one_accepted_verdict_that_pays_the_agreeing_workers() {
    let mut w = World::new(2, 2, 2);
    let worker = w.run_until_fetch();
    let fx = w.step(flow::Input::Fetched {
        worker,
        result: FetchResult::Verified,
    });
    assert_eq!(World::verdicts(&fx), 1);
    assert_eq!(
        w.job.phase,
        Phase::Decided {
            outcome: Outcome::Completed,
            published: false
        }
    );
    let verdict = w.verdict();
    assert!(matches!(verdict.outcome, VerdictOutcome::Accepted(_)));
    assert!(
        verdict
            .workers
            .iter()
            .all(|r| r.result == WorkerResult::Agreed && r.paid == 3)
    );
    // Published once: then nothing is left to do.
    let fx = w.step(flow::Input::Tick);
    assert!(fx.is_empty(), "the verdict publish is not due yet: {fx:?}");
    w.step(flow::Input::Published {
        what: Gossip::Decision,
        result: Ok(()),
    });
    assert!(!w.job.needs_ticks());
}

#[test]
fn expiry_during_the_output_fetch_blames_and_pays_nobody_and_a_late_fetch_changes_nothing() {
    let mut w = World::new(2, 2, 2);
    let worker = w.run_until_fetch();
    w.now = w.job.expires_at + 1;
    let fx = w.step(flow::Input::Tick);
    assert_eq!(w.job.status(), crate::JobStatus::Failed);
    // The agreeing workers whose output never came are neither blamed nor paid: with nobody
    // else to record, there is no ledger entry (issue 19), only the published end.
    assert_eq!(World::verdicts(&fx), 0);
    assert!(w.job.verdict.is_none());
    let before = stored(&w.job);
    let fx = w.step(flow::Input::Fetched {
        worker,
        result: FetchResult::Verified,
    });
    assert_eq!(World::verdicts(&fx), 0, "a second verdict: {fx:?}");
    assert_eq!(stored(&w.job), before, "the decided record changed");
}

#[test]
fn cancel_during_the_output_fetch_signs_no_verdict_and_a_late_fetch_changes_nothing() {
    let mut w = World::new(2, 2, 2);
    let worker = w.run_until_fetch();
    let fx = w.step(flow::Input::Cancel);
    assert_eq!(World::verdicts(&fx), 0);
    assert!(fx.iter().any(|e| matches!(
        e,
        flow::Effect::Publish {
            message: GossipMessage::Cancel(_),
            ..
        }
    )));
    let before = stored(&w.job);
    let fx = w.step(flow::Input::Fetched {
        worker,
        result: FetchResult::Verified,
    });
    assert_eq!(World::verdicts(&fx), 0);
    assert_eq!(stored(&w.job), before);
    // Cancelling again, or a completed job, changes nothing either.
    assert!(w.step(flow::Input::Cancel).is_empty());
}

#[test]
fn a_transient_fetch_error_retries_and_never_fails_the_job() {
    let mut w = World::new(2, 2, 2);
    let worker = w.run_until_fetch();
    let fx = w.step(flow::Input::Fetched {
        worker,
        result: FetchResult::Transport("connection reset".into()),
    });
    assert_eq!(
        World::verdicts(&fx),
        0,
        "failed on one transport error: {fx:?}"
    );
    let next = fx
        .iter()
        .find_map(|e| match e {
            flow::Effect::Fetch { worker, .. } => Some(*worker),
            _ => None,
        })
        .expect("fetched again");
    assert_ne!(next, worker, "another agreeing worker is tried first");
    let fx = w.step(flow::Input::Fetched {
        worker: next,
        result: FetchResult::Verified,
    });
    assert_eq!(World::verdicts(&fx), 1);
    assert_eq!(w.job.status(), crate::JobStatus::Completed);
}

#[test]
fn output_that_does_not_match_is_not_paid() {
    let mut w = World::new(2, 2, 2);
    let bad = w.run_until_fetch();
    let fx = w.step(flow::Input::Fetched {
        worker: bad,
        result: FetchResult::Invalid("hash mismatch".into()),
    });
    let good = fx
        .iter()
        .find_map(|e| match e {
            flow::Effect::Fetch { worker, .. } => Some(*worker),
            _ => None,
        })
        .expect("the other agreeing worker is asked");
    w.step(flow::Input::Fetched {
        worker: good,
        result: FetchResult::Verified,
    });
    let verdict = w.verdict();
    for record in &verdict.workers {
        let paid = record.bid.signer() == good;
        assert_eq!(record.paid > 0, paid, "{record:?}");
    }
}

#[test]
fn an_output_over_the_limit_fails_at_once_instead_of_waiting_for_expiry() {
    let mut w = World::new(1, 1, 1);
    w.config.max_output_bytes = 4;
    let assignments = w.assign();
    let (i, a) = &assignments[0];
    let fx = w.run(*i, a, completed("more than four bytes"));
    let fx = w.reveal_all(fx);
    // Its one worker did what was asked: nobody to blame, and no output to pay for.
    assert_eq!(World::verdicts(&fx), 0, "{fx:?}");
    assert_eq!(w.job.status(), crate::JobStatus::Failed);
    assert!(
        w.job
            .failure_reason
            .as_deref()
            .is_some_and(|r| r.contains("over this node's limit")),
        "{:?}",
        w.job.failure_reason
    );
}

#[test]
fn a_commitment_after_the_decision_does_not_change_the_record() {
    let mut w = World::new(1, 1, 3);
    let assignments = w.assign();
    let (i, a) = assignments[0].clone();
    let assignment = open(&a, w.now);
    w.now = w.job.expires_at + 1;
    w.step(flow::Input::Tick);
    let before = stored(&w.job);
    // The worker runs the job anyway and commits late.
    w.now = w.job.expires_at - 1;
    w.step_worker(
        i,
        work::Input::Assigned {
            assignment,
            free_slots: 1,
        },
    );
    let fx = w.step_worker(i, work::Input::Executed(completed("late")));
    let commit = sent_commit(&fx);
    let reply = w.step(flow::Input::Commit(open(&commit, w.now)));
    assert!(
        matches!(
            reply.last(),
            Some(flow::Effect::Reply(Response::Refused(_)))
        ),
        "{reply:?}"
    );
    assert_eq!(stored(&w.job), before);
}

#[test]
fn a_worker_whose_result_cannot_be_hashed_reports_a_failure_instead_of_going_silent() {
    let mut w = World::new(1, 1, 1);
    let assignments = w.assign();
    let (i, a) = &assignments[0];
    let mut bad = manifest("x");
    bad.files.push(OutputFile {
        path: "../escape".into(),
        content: ContentEntry {
            size: 0,
            hash: Digest([0; 32]),
        },
    });
    w.run(
        *i,
        a,
        Executed::Completed {
            manifest: bad,
            diagnostics: Diagnostics::default(),
            dir: Some("/tmp/out".into()),
        },
    );
    let worker = w.workers[*i].public_key();
    let e = w.job.execution(&worker).expect("assigned");
    assert_eq!(e.state, ExecutionState::Failed, "{e:?}");
    assert!(
        e.failure
            .as_deref()
            .is_some_and(|f| f.contains("cannot hash"))
    );
}

#[test]
fn an_assignment_from_anyone_but_the_jobs_submitter_is_refused() {
    let mut w = World::new(1, 1, 1);
    let assignments = w.assign();
    let (i, a) = &assignments[0];
    let forged = distributeai_protocol::Assignment {
        issued_at: w.now,
        ..a.decode_unchecked().expect("decodes")
    };
    let intruder = NodeIdentity::from_secret([99; 32]);
    let forged = Signed::sign(&intruder, &forged).expect("signs");
    let fx = w.step_worker(
        *i,
        work::Input::Assigned {
            assignment: open(&forged, w.now),
            free_slots: 1,
        },
    );
    assert!(
        matches!(fx.last(), Some(work::Effect::Reply(Response::Refused(_)))),
        "{fx:?}"
    );
    assert!(!fx.iter().any(|e| matches!(e, work::Effect::Start { .. })));
    assert_eq!(w.items[*i].as_ref().map(|i| i.phase), Some(WorkPhase::Bid));
}

#[test]
fn a_restarted_worker_reruns_what_it_had_not_finished_and_never_what_it_had() {
    let mut w = World::new(2, 2, 2);
    let assignments = w.assign();
    let (first, a) = &assignments[0];
    let (second, b) = &assignments[1];
    w.run(*first, a, completed("ok"));
    let fx = w.step_worker(
        *second,
        work::Input::Assigned {
            assignment: open(b, w.now),
            free_slots: 1,
        },
    );
    assert!(fx.iter().any(|e| matches!(e, work::Effect::Start { .. })));
    // Both restart from what they stored.
    let fx = w.step_worker(*first, work::Input::Restarted);
    assert!(
        !fx.iter().any(|e| matches!(e, work::Effect::Start { .. })),
        "{fx:?}"
    );
    let fx = w.step_worker(*second, work::Input::Restarted);
    assert!(
        fx.iter().any(|e| matches!(e, work::Effect::Start { .. })),
        "{fx:?}"
    );
    // A job that keeps crashing its worker ends as a failure report, not forever.
    for _ in 0..work::MAX_STARTS {
        w.step_worker(*second, work::Input::Restarted);
    }
    assert!(matches!(
        w.items[*second].as_ref().map(|i| i.phase),
        Some(WorkPhase::Committed { .. })
    ));
}

#[test]
fn a_restarted_submitter_gives_workers_time_before_calling_them_silent() {
    let mut w = World::new(1, 1, 1);
    let assignments = w.assign();
    let worker = w.workers[assignments[0].0].public_key();
    w.step(flow::Input::AssignAnswer {
        worker,
        answer: Answer::Ack,
    });
    // Down past the worker's deadline; the worker keeps re-sending its commitment.
    w.now = w.job.execution(&worker).expect("assigned").deadline + 1;
    w.step(flow::Input::Restarted);
    assert_eq!(w.state(&worker), Some(ExecutionState::Assigned));
    w.now += w.config.deadline_grace_ms - 1;
    w.step(flow::Input::Tick);
    assert_eq!(w.state(&worker), Some(ExecutionState::Assigned));
    // A whole grace period from the restart, then silent.
    w.now += 2;
    w.step(flow::Input::Tick);
    assert_eq!(w.state(&worker), Some(ExecutionState::Silent));
}

#[test]
fn a_lost_assignment_is_sent_again_and_an_unreachable_worker_is_not_blamed() {
    let mut w = World::new(1, 1, 1);
    let assignments = w.assign();
    let worker = w.workers[assignments[0].0].public_key();
    for _ in 0..3 {
        w.step(flow::Input::AssignAnswer {
            worker,
            answer: Answer::Unreachable("timeout".into()),
        });
        w.now += 1_001;
        w.step(flow::Input::Tick);
    }
    assert_eq!(w.job.status(), crate::JobStatus::Failed);
    // Nobody ran it: no ledger entry (issue 19).
    assert!(w.job.verdict.is_none());
}

#[test]
fn the_tally_in_the_record_survives_a_restart() {
    let mut w = World::new(2, 2, 2);
    w.assign();
    let bytes = stored(&w.job);
    let loaded: SubmittedJob = distributeai_protocol::codec::decode(&bytes).expect("decodes");
    assert_eq!(
        loaded.tally.as_ref().map(|t| t.n()),
        w.job.tally.as_ref().map(|t| t.n())
    );
}

#[test]
fn an_invited_worker_whose_bid_is_still_waiting_sends_it_again() {
    let mut w = World::new(1, 1, 1);
    let announcement = open(&w.job.announcement, w.now);
    let mut ctx = Ctx {
        now: w.now,
        identity: &w.workers[0],
        rng: &mut w.rng,
        directory: &Everyone,
        config: &w.config,
    };
    let (item, _) = WorkItem::bid(&announcement, Some(IMAGE.into()), 0, &mut ctx).expect("bid");
    w.items[0] = Some(item);
    let fx = w.step_worker(0, work::Input::Invited);
    assert!(
        matches!(fx.as_slice(), [work::Effect::SendBid(_)]),
        "{fx:?}"
    );
}

#[test]
fn a_reveal_that_does_not_get_through_is_asked_again_not_blamed() {
    let mut w = World::new(1, 1, 1);
    let assignments = w.assign();
    let (i, a) = &assignments[0];
    let fx = w.run(*i, a, completed("ok"));
    let worker = w.workers[*i].public_key();
    assert!(
        fx.iter()
            .any(|e| matches!(e, flow::Effect::RequestReveal { .. }))
    );
    // Every request for the reveal is lost, for longer than the grace period.
    let end = w.now + w.config.deadline_grace_ms + 5_000;
    let mut fx = fx;
    while w.now < end {
        for effect in fx {
            if let flow::Effect::RequestReveal { worker, .. } = effect {
                w.step(flow::Input::RevealAnswer {
                    worker,
                    answer: RevealAnswer::Unreachable("timeout".into()),
                });
            }
        }
        w.now += 1_000;
        fx = w.step(flow::Input::Tick);
    }
    let fx = fx
        .into_iter()
        .filter(|e| matches!(e, flow::Effect::RequestReveal { .. }))
        .collect::<Vec<_>>();
    assert!(!w.job.status().is_final(), "{:?}", w.job.failure_reason);
    // When it gets through, the job completes.
    let fx = if fx.is_empty() {
        w.now += 1_000;
        w.step(flow::Input::Tick)
    } else {
        fx
    };
    let fx = w.reveal_all(fx);
    assert!(
        fx.iter().any(|e| matches!(e, flow::Effect::Fetch { .. })),
        "{fx:?}"
    );
    assert_eq!(w.state(&worker), Some(ExecutionState::Revealed));
}

#[test]
fn a_commitment_from_a_worker_we_could_not_reach_counts_while_it_holds_its_slot() {
    // Two slots: the other worker, still running, keeps the job waiting.
    let mut w = World::new(2, 2, 2);
    let assignments = w.assign();
    let (i, a) = &assignments[0];
    let worker = w.workers[*i].public_key();
    for _ in 0..3 {
        w.step(flow::Input::AssignAnswer {
            worker,
            answer: Answer::Unreachable("timeout".into()),
        });
    }
    assert_eq!(w.state(&worker), Some(ExecutionState::Unreachable));
    // It did get the assignment: its commitment is taken.
    let fx = w.step_worker(
        *i,
        work::Input::Assigned {
            assignment: open(a, w.now),
            free_slots: 1,
        },
    );
    assert!(fx.iter().any(|e| matches!(e, work::Effect::Start { .. })));
    let fx = w.step_worker(*i, work::Input::Executed(completed("ok")));
    let commit = sent_commit(&fx);
    let reply = w.step(flow::Input::Commit(open(&commit, w.now)));
    assert!(
        reply
            .iter()
            .any(|e| matches!(e, flow::Effect::Reply(Response::Ack))),
        "{reply:?}"
    );
}

#[test]
fn a_job_that_expired_while_its_submitter_was_down_blames_no_assigned_worker() {
    let mut w = World::new(1, 1, 1);
    let assignments = w.assign();
    let worker = w.workers[assignments[0].0].public_key();
    w.now = w.job.expires_at + 30_000;
    let fx = w.step(flow::Input::Restarted);
    assert_eq!(w.job.status(), crate::JobStatus::Failed);
    // Nobody to blame: no entry at all.
    assert_eq!(World::verdicts(&fx), 0);
    assert!(w.job.execution(&worker).is_some());
    assert!(w.job.verdict.is_none());
}

#[test]
fn an_assignment_sent_again_after_the_submitter_was_down_gets_a_fresh_deadline() {
    let mut w = World::new(1, 1, 1);
    let assignments = w.assign();
    let worker = w.workers[assignments[0].0].public_key();
    let first = w.job.execution(&worker).expect("assigned").deadline;
    // The first delivery was lost with the submitter, which comes back near the deadline.
    w.now = first - 1_000;
    let fx = w.step(flow::Input::Restarted);
    let resent = assigns(&fx);
    assert_eq!(resent.len(), 1, "{fx:?}");
    let deadline = resent[0].1.decode_unchecked().expect("decodes").deadline;
    let timeout_ms = u64::from(w.job.spec.timeout_s) * 1000;
    assert!(deadline >= w.now + timeout_ms, "{deadline} vs {}", w.now);
    assert_eq!(w.job.execution(&worker).map(|e| e.deadline), Some(deadline));
}

#[test]
fn no_agreement_names_the_distinct_results_and_blames_nobody() {
    let mut w = World::new(2, 2, 2);
    let assignments = w.assign();
    let mut fx = Vec::new();
    for (n, (i, a)) in assignments.iter().enumerate() {
        fx = w.run(*i, a, completed(&format!("random {n}")));
    }
    let fx = w.reveal_all(fx);
    // With no agreed hash nobody can be shown wrong: no entry.
    assert_eq!(World::verdicts(&fx), 0, "{fx:?}");
    assert!(w.job.verdict.is_none());
    let reason = w.job.failure_reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("no agreement: 2 distinct results among 2 workers"),
        "{reason}"
    );
}

#[test]
fn a_cancelled_jobs_executions_end_cancelled() {
    let mut w = World::new(2, 2, 2);
    let assignments = w.assign();
    let (i, a) = &assignments[0];
    w.run(*i, a, completed("ok"));
    w.step(flow::Input::Cancel);
    assert!(
        w.job
            .executions
            .iter()
            .all(|e| e.state == ExecutionState::Cancelled),
        "{:?}",
        w.job.executions
    );
}

#[test]
fn a_worker_whose_clock_runs_ahead_counts_the_deadline_from_receipt() {
    let mut w = World::new(1, 1, 1);
    let assignments = w.assign();
    let (i, a) = &assignments[0];
    let signed = a.decode_unchecked().expect("decodes");
    let duration = signed.deadline - signed.issued_at;
    // The worker's clock is 120 s ahead of the submitter's.
    let ahead = w.now + 120_000;
    let assignment = a
        .open(&ValidationContext::live_at(ahead))
        .expect("within the skew bound");
    let mut ctx = Ctx {
        now: ahead,
        identity: &w.workers[*i],
        rng: &mut w.rng,
        directory: &Everyone,
        config: &w.config,
    };
    let item = w.items[*i].as_mut().expect("bid");
    let fx = item.handle(
        work::Input::Assigned {
            assignment,
            free_slots: 1,
        },
        &mut ctx,
    );
    assert!(
        fx.iter().any(|e| matches!(e, work::Effect::Start { .. })),
        "{fx:?}"
    );
    assert_eq!(item.deadline, ahead + duration);
}

#[test]
fn a_lost_worker_is_replaced_at_once_and_not_blamed() {
    // n = 1 with two bidders: the second is the reserve.
    let mut w = World::new(1, 1, 2);
    let assignments = w.assign();
    let lost = w.workers[assignments[0].0].public_key();
    let fx = w.step(flow::Input::WorkerLost { worker: lost });
    assert_eq!(w.state(&lost), Some(ExecutionState::Unreachable));
    let replacement = assigns(&fx);
    assert_eq!(replacement.len(), 1, "{fx:?}");
    assert_ne!(replacement[0].0, lost);
    // A worker that already answered is not given up on.
    let other = replacement[0].0;
    let i = w.worker_index(&other);
    w.run(i, &replacement[0].1, completed("ok"));
    let before = w.state(&other);
    w.step(flow::Input::WorkerLost { worker: other });
    assert_eq!(w.state(&other), before);
}

#[test]
fn a_timeout_every_worker_agrees_on_is_the_verdict_with_no_rerun_and_nobody_blamed() {
    // Issue 12: `--timeout 5 -- sh -c 'echo started; sleep 600'` was re-run on a reserve,
    // counted against every worker, and lost the output printed before the timeout.
    let mut w = World::new(2, 2, 3);
    let assignments = w.assign();
    assert_eq!(assignments.len(), 2, "a reserve is left over");
    let mut fx = Vec::new();
    for (i, a) in &assignments {
        fx = w.run(*i, a, ended(JobEnd::TimedOut, "started\n"));
    }
    let fx = w.reveal_all(fx);
    assert!(assigns(&fx).is_empty(), "no reserve runs it again: {fx:?}");
    assert!(fetch_of(&fx).is_none(), "nothing to fetch: {fx:?}");
    assert_eq!(World::verdicts(&fx), 1);
    assert!(matches!(
        w.job.phase,
        Phase::Decided {
            outcome: Outcome::Failed,
            ..
        }
    ));
    assert_eq!(
        w.job.failure_reason.as_deref(),
        Some("timed out after 10 s; 2 of 2 workers agree")
    );
    let verdict = w.verdict();
    let VerdictOutcome::Accepted(agreed) = &verdict.outcome else {
        panic!("the agreed failure is the verdict: {:?}", verdict.outcome)
    };
    assert_eq!(agreed.end, JobEnd::TimedOut);
    assert_eq!(agreed.image, IMAGE);
    assert!(
        verdict
            .workers
            .iter()
            .all(|r| r.result == WorkerResult::Agreed && r.paid == 3),
        "nobody penalised: {:?}",
        verdict.workers
    );
    // What each worker saw before the end is kept.
    for (i, _) in &assignments {
        let e = w
            .job
            .execution(&w.workers[*i].public_key())
            .expect("assigned");
        let tail = e.diagnostics.as_ref().map(|d| d.stdout_tail.clone());
        assert_eq!(tail.as_deref(), Some(&b"started\n"[..]));
    }
}

#[test]
fn a_worker_that_ran_another_image_under_the_same_reference_never_agrees() {
    let mut w = World::new(3, 2, 3);
    let assignments = w.assign();
    assert_eq!(assignments.len(), 3);
    let mut fx = Vec::new();
    for (n, (i, a)) in assignments.iter().enumerate() {
        let executed = if n == 0 {
            // Same output, but another image: a different result.
            Executed::Completed {
                manifest: OutputManifest::from_outputs(0, IMAGE.replace('7', "8"), b"ok", &[])
                    .expect("manifest"),
                diagnostics: Diagnostics::default(),
                dir: Some("/tmp/out".into()),
            }
        } else {
            completed("ok")
        };
        fx = w.run(*i, a, executed);
    }
    let fx = w.reveal_all(fx);
    let from = fetch_of(&fx).expect("two agree: the output is fetched");
    w.step(flow::Input::Fetched {
        worker: from,
        result: FetchResult::Verified,
    });
    let verdict = w.verdict();
    let odd = w.workers[assignments[0].0].public_key();
    for record in &verdict.workers {
        if record.bid.signer() == odd {
            assert!(
                matches!(record.result, WorkerResult::Disagreed(_)),
                "{record:?}"
            );
        } else {
            assert_eq!(record.result, WorkerResult::Agreed);
        }
    }
    let VerdictOutcome::Accepted(agreed) = &verdict.outcome else {
        panic!("accepted: {:?}", verdict.outcome)
    };
    assert_eq!(agreed.image, IMAGE, "the verdict names the image that ran");
}

#[test]
fn a_worker_fault_is_replaced_while_the_jobs_own_failure_is_not() {
    let mut w = World::new(2, 2, 3);
    let assignments = w.assign();
    let (first, a) = &assignments[0];
    w.run(
        *first,
        a,
        Executed::WorkerFault("the container engine is down".into()),
    );
    let (second, a) = &assignments[1];
    let fx = w.run(*second, a, ended(JobEnd::OutOfMemory, ""));
    let fx = w.reveal_all(fx);
    let replacement = assigns(&fx);
    assert_eq!(
        replacement.len(),
        1,
        "the faulty worker's slot goes to the reserve: {fx:?}"
    );
    let e = w
        .job
        .execution(&w.workers[*first].public_key())
        .expect("assigned");
    assert_eq!(e.state, ExecutionState::Failed);
    assert_eq!(
        e.failure.as_deref(),
        Some("could not run it: the container engine is down"),
        "the whole message"
    );
}

#[test]
fn a_busy_worker_keeps_its_assignment_and_gets_it_again_when_a_slot_frees() {
    let mut w = World::new(2, 2, 2);
    let assignments = w.assign();
    let (first, assignment) = assignments[0].clone();
    let worker = w.workers[first].public_key();
    // The other worker runs at once.
    let (second, other) = assignments[1].clone();
    let fx = w.run(second, &other, completed("ok"));
    w.reveal_all(fx);
    // Every slot of the worker is running another job.
    let fx = w.step_worker(
        first,
        work::Input::Assigned {
            assignment: open(&assignment, w.now),
            free_slots: 0,
        },
    );
    assert_eq!(fx.last(), Some(&work::Effect::Reply(Response::Busy)));
    w.step(flow::Input::AssignAnswer {
        worker,
        answer: Answer::Busy,
    });
    assert_eq!(
        w.state(&worker),
        Some(ExecutionState::Assigned),
        "not refused"
    );
    assert_eq!(w.job.status(), JobStatus::Queued);
    assert!(
        w.job
            .queued_because()
            .is_some_and(|r| r.contains("free slot on 1 worker")),
        "{:?}",
        w.job.queued_because()
    );
    // Long after its first deadline would have passed, it is still asked, not called silent.
    let first_deadline = w.job.execution(&worker).expect("assigned").deadline;
    let mut resent = None;
    while w.now <= first_deadline + 5_000 {
        w.now += 1_000;
        let fx = w.step(flow::Input::Tick);
        w.reveal_all(fx.clone());
        if let Some((_, a)) = assigns(&fx).into_iter().find(|(k, _)| *k == worker) {
            resent = Some(a);
            w.step(flow::Input::AssignAnswer {
                worker,
                answer: Answer::Busy,
            });
        }
    }
    assert_eq!(w.state(&worker), Some(ExecutionState::Assigned));
    let resent = resent.expect("the assignment goes again");
    // A slot frees: it runs, and the job completes as usual.
    assert!(
        w.job.verdict.is_none(),
        "the quorum needs it: the job waited"
    );
    let fx = w.run(first, &resent, completed("ok"));
    let fx = w.reveal_all(fx);
    assert!(fetch_of(&fx).is_some(), "{fx:?}");
}

#[test]
fn deferred_assignments_run_oldest_first_only_while_their_submitter_still_asks() {
    // Two jobs (specs differ, so their ids do).
    let mut first = World::new(2, 2, 2);
    let mut second = World::new(1, 1, 2);
    let a = open(&first.assign()[0].1, first.now);
    let b = open(&second.assign()[0].1, second.now);
    assert_ne!(a.message.job_id, b.message.job_id);
    let fresh = work::DeferredAssignments::FRESH_MS;
    let mut deferred = work::DeferredAssignments::default();
    deferred.busy(0, a.clone());
    deferred.busy(10, b.clone());
    // Asked again: kept once, its time refreshed.
    deferred.busy(fresh, a.clone());
    let waits = |_: &distributeai_protocol::JobId| true;
    // `b` went stale (not asked again), `a` did not: only `a` is started.
    let (next, waited_ms) = deferred.next(fresh + 20, waits).expect("a is still wanted");
    assert_eq!(next.message.job_id, a.message.job_id);
    assert_eq!(
        waited_ms,
        fresh + 20,
        "it waited since it was first answered busy"
    );
    assert!(
        deferred.next(fresh + 20, waits).is_none(),
        "b was dropped, a taken once"
    );
    // One whose job is no longer waiting for us is dropped too.
    deferred.busy(0, b.clone());
    assert!(deferred.next(1, |_| false).is_none());
    // One a re-send started first is taken out, with how long it waited.
    deferred.busy(100, b.clone());
    assert_eq!(deferred.take(&b.message.job_id, 350), Some(250));
    assert!(deferred.is_empty());
    assert_eq!(deferred.take(&b.message.job_id, 400), None);
}

fn removes_output(fx: &[work::Effect]) -> bool {
    fx.iter()
        .any(|e| matches!(e, work::Effect::RemoveOutput(dir) if dir == "/tmp/out"))
}

/// Issue 20: a submitter that never signs a verdict (killed, or hostile) left every worker's
/// output folder on disk for good. The worker now removes it once the output's keep window is
/// over, and deletes its record once the job's life is long over.
#[test]
fn a_submitter_that_never_signs_a_verdict_leaves_no_output_behind() {
    let mut w = World::new(2, 2, 2);
    let assignments = w.assign();
    let (i, a) = &assignments[0];
    w.run(*i, a, completed("ok"));
    let item = w.items[*i].clone().expect("item");
    let kept_until = item.output_kept_until(work::OUTPUT_KEEP_MIN_MS);
    assert!(kept_until <= item.expires_at);
    assert!(
        kept_until >= item.deadline + work::OUTPUT_KEEP_MIN_MS.min(item.expires_at - item.deadline)
    );
    // Kept while a verdict may still need it.
    w.now = kept_until;
    assert!(!removes_output(&w.step_worker(*i, work::Input::Tick)));
    // Then removed, once.
    w.now = kept_until + 1;
    let fx = w.step_worker(*i, work::Input::Tick);
    assert!(removes_output(&fx), "{fx:?}");
    assert!(fx.contains(&work::Effect::Persist));
    assert!(!removes_output(&w.step_worker(*i, work::Input::Tick)));
    // The record goes an hour past the job's expiry.
    w.now = item.expires_at + work::FORGET_AFTER_EXPIRY_MS;
    assert!(
        !w.step_worker(*i, work::Input::Tick)
            .contains(&work::Effect::Forget)
    );
    w.now += 1;
    assert!(
        w.step_worker(*i, work::Input::Tick)
            .contains(&work::Effect::Forget)
    );
}

/// A hostile submitter's far expiry (the protocol allows two days) does not hold the output:
/// the keep window is counted from the commitment deadline.
#[test]
fn a_far_expiry_does_not_hold_a_workers_output() {
    let mut w = World::new(1, 1, 1);
    let assignments = w.assign();
    let (i, a) = &assignments[0];
    w.run(*i, a, completed("ok"));
    let item = w.items[*i].as_mut().expect("item");
    item.expires_at = item.deadline + 2 * 24 * 3_600_000;
    let timeout_ms = u64::from(item.spec.timeout_s) * 1000;
    assert_eq!(
        item.output_kept_until(work::OUTPUT_KEEP_MIN_MS),
        item.deadline + work::OUTPUT_KEEP_MIN_MS.max(2 * timeout_ms)
    );
}

/// A cancel after the commitment, and a run that ends after its job was cancelled, remove
/// what nobody will fetch.
#[test]
fn a_cancel_after_the_commitment_or_during_the_run_removes_the_output() {
    let mut w = World::new(2, 2, 2);
    let assignments = w.assign();
    let (i, a) = &assignments[0];
    w.run(*i, a, completed("ok"));
    let submitter = w.submitter.public_key();
    let fx = w.step_worker(*i, work::Input::Cancelled { by: submitter });
    assert!(removes_output(&fx), "{fx:?}");

    let (j, b) = &assignments[1];
    let assignment = open(b, w.now);
    w.step_worker(
        *j,
        work::Input::Assigned {
            assignment,
            free_slots: 1,
        },
    );
    let fx = w.step_worker(*j, work::Input::Cancelled { by: submitter });
    assert!(fx.contains(&work::Effect::Stop), "{fx:?}");
    let fx = w.step_worker(*j, work::Input::Executed(completed("late")));
    assert!(removes_output(&fx), "{fx:?}");
}

/// Issue 20: a pull slower than the job's timeout plus the grace got an honest worker marked
/// silent. A worker whose bid says it must pull the image gets the pull allowance on top of
/// its deadline; one that holds it does not.
#[test]
fn a_worker_that_must_pull_the_image_gets_the_pull_allowance() {
    let mut w = World::new(2, 1, 2);
    w.step(flow::Input::Published {
        what: Gossip::Announcement,
        result: Ok(()),
    });
    let announcement = open(&w.job.announcement, w.now);
    for (i, image) in [(0, Some(IMAGE.to_string())), (1, None)] {
        let mut ctx = Ctx {
            now: w.now,
            identity: &w.workers[i],
            rng: &mut w.rng,
            directory: &Everyone,
            config: &w.config,
        };
        let (item, fx) = WorkItem::bid(&announcement, image, 0, &mut ctx).expect("bid");
        w.items[i] = Some(item);
        let work::Effect::SendBid(bid) = &fx[0] else {
            panic!("a bid is sent: {fx:?}")
        };
        let bid = open(bid, w.now);
        w.step(flow::Input::Bid(bid));
    }
    w.now += w.config.bid_window_ms + 1;
    w.step(flow::Input::Tick);
    let base = u64::from(w.job.spec.timeout_s) * 1000 + w.config.deadline_grace_ms;
    let deadline_of = |i: usize| {
        let key = w.workers[i].public_key();
        let e = w
            .job
            .executions
            .iter()
            .find(|e| e.worker == key)
            .expect("both assigned");
        e.deadline - e.assigned_at
    };
    assert_eq!(deadline_of(0), base.min(w.job.expires_at - w.now));
    assert_eq!(
        deadline_of(1),
        (base + w.config.pull_allowance_ms).min(w.job.expires_at - w.now)
    );
    assert!(
        deadline_of(1) > deadline_of(0),
        "the allowance fits in the job's life"
    );
}
