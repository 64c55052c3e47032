//! The properties the job flow must keep whatever the schedule, checked by the simulator over
//! the [`Trace`] of a run. Each check is a plain function of the trace, so a unit test can
//! feed it a violating trace and see it caught.

use std::collections::{BTreeMap, BTreeSet};

use distributeai_protocol::{
    Digest, JobId, PublicKey, ResultHash, Validate, ValidationContext, Verdict, VerdictOutcome,
    WorkerResult,
};
use distributeai_verifier::reputation::{self, GRANT};

use crate::submitter::Outcome;

/// A verdict some node signed.
#[derive(Debug, Clone)]
pub struct SignedVerdict {
    /// The job.
    pub job: JobId,
    /// Its signer.
    pub signer: PublicKey,
    /// Content id of the signed envelope: two signatures of anything differ here.
    pub content_id: Digest,
    /// The verdict.
    pub verdict: Verdict,
}

/// What the simulator knows about one submitted job.
#[derive(Debug, Clone)]
pub struct JobFacts {
    /// The job.
    pub job: JobId,
    /// Consensus k.
    pub k: usize,
    /// The announcement's expiry, in the submitter's clock (ms).
    pub expires_at: u64,
    /// When the submitter decided it, in its clock (ms); `None` if it never did.
    pub decided_at: Option<u64>,
    /// How late past expiry a decision may come: the submitter's downtime around the expiry
    /// plus a tick (ms).
    pub slack_ms: u64,
    /// The hash an honest run produces (of its output, or of its own failure: a timeout is
    /// a result too).
    pub honest_hash: Option<ResultHash>,
    /// Lying workers that were assigned the job.
    pub liars_assigned: usize,
    /// Whether nothing excuses the job from completing: k honest workers committed the
    /// honest result well before expiry, liars are fewer than k, nobody cancelled it and its
    /// submitter stayed up.
    pub must_complete: bool,
    /// How it ended, if it did.
    pub outcome: Option<Outcome>,
    /// The result its verdict accepted, if any: the output of a job that completed, or the
    /// agreed failure of one that failed on its own.
    pub accepted: Option<ResultHash>,
}

/// A commitment a worker signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitmentSigned {
    /// The job.
    pub job: JobId,
    /// The worker.
    pub worker: PublicKey,
    /// The committed outcome (digest or failure), encoded: re-signing the same outcome is
    /// fine, committing to another is not.
    pub outcome: Vec<u8>,
    /// Simulated time (ms).
    pub at: u64,
}

/// Everything a run's checks look at.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// Every verdict signed, by any node, in order.
    pub verdicts: Vec<SignedVerdict>,
    /// Every submitted job.
    pub jobs: Vec<JobFacts>,
    /// Runs an honest worker did correctly: it produced the honest hash and did not crash
    /// while holding the job.
    pub honest_runs: BTreeSet<(JobId, PublicKey)>,
    /// Every commitment signed.
    pub commitments: Vec<CommitmentSigned>,
    /// Every execution started: job, worker, simulated time (ms).
    pub starts: Vec<(JobId, PublicKey, u64)>,
    /// Each change of a job's decision as its submitter holds it: `None` while undecided,
    /// then how it ended, in order.
    pub decisions: Vec<(JobId, Option<Outcome>)>,
    /// Work items that, ticked past their job's life (expiry plus
    /// [`crate::worker::FORGET_AFTER_EXPIRY_MS`]), still held an output folder or were not
    /// forgotten: job and worker.
    pub held_after_life: Vec<(JobId, PublicKey)>,
}

/// One broken property, with what shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant.
    pub invariant: &'static str,
    /// The evidence.
    pub detail: String,
}

fn violation(invariant: &'static str, detail: String) -> Violation {
    Violation { invariant, detail }
}

/// Every check, in order.
pub fn check(trace: &Trace) -> Vec<Violation> {
    let mut out = Vec::new();
    out.extend(one_verdict_per_job(trace));
    out.extend(verdicts_recheck(trace));
    out.extend(decisions_are_final(trace));
    out.extend(honest_hash_accepted(trace));
    out.extend(decided_by_expiry(trace));
    out.extend(honest_quorum_completes(trace));
    out.extend(honest_workers_not_blamed(trace));
    out.extend(credits_conserved(trace));
    out.extend(no_rerun_or_resign(trace));
    out.extend(outputs_released(trace));
    out
}

/// Whatever happened to a job (no verdict, a cancel, a crash), every worker's output folder
/// and work record are gone once the job's life is over (issue 20: a submitter that never
/// signs a verdict must not hold a worker's disk for good).
pub fn outputs_released(trace: &Trace) -> Vec<Violation> {
    trace
        .held_after_life
        .iter()
        .map(|(job, worker)| {
            violation(
                "outputs_released",
                format!(
                    "job {}: worker {} still holds its output or record after the job's life",
                    job.short(),
                    worker.short()
                ),
            )
        })
        .collect()
}

/// Every verdict signed re-checks from its own evidence (issue 19): what any node receiving it
/// recomputes (each worker's result from its own signatures, the outcome by the k-of-n rule,
/// the payments) is what the submitter signed, so no honest verdict is ever refused.
pub fn verdicts_recheck(trace: &Trace) -> Vec<Violation> {
    trace
        .verdicts
        .iter()
        .filter_map(|v| {
            let ctx = ValidationContext::live_at(v.verdict.issued_at);
            let err = v.verdict.validate(&v.signer, &ctx).err()?;
            Some(violation(
                "verdicts re-check from their evidence",
                format!("job {}: {err}", v.job.short()),
            ))
        })
        .collect()
}

/// At most one verdict is ever signed per job, and it never changes.
pub fn one_verdict_per_job(trace: &Trace) -> Vec<Violation> {
    let mut seen: BTreeMap<JobId, Digest> = BTreeMap::new();
    let mut out = Vec::new();
    for v in &trace.verdicts {
        match seen.get(&v.job) {
            Some(first) if *first != v.content_id => out.push(violation(
                "one verdict per job",
                format!(
                    "job {} has verdicts {} and {}",
                    v.job.short(),
                    first.to_hex(),
                    v.content_id.to_hex()
                ),
            )),
            Some(_) => {}
            None => {
                seen.insert(v.job, v.content_id);
            }
        }
    }
    out
}

/// A job that reached a decision never leaves it: not back to work, not to another outcome
/// (a cancelled job that then completes would pay workers the submitter withdrew from).
pub fn decisions_are_final(trace: &Trace) -> Vec<Violation> {
    let mut decided: BTreeMap<JobId, Outcome> = BTreeMap::new();
    let mut out = Vec::new();
    for (job, state) in &trace.decisions {
        match (decided.get(job), state) {
            (Some(first), now) if now.as_ref() != Some(first) => out.push(violation(
                "decisions are final",
                format!("job {} was {first:?}, then {now:?}", job.short()),
            )),
            (None, Some(outcome)) => {
                decided.insert(*job, *outcome);
            }
            _ => {}
        }
    }
    out
}

fn facts<'a>(trace: &'a Trace, job: &JobId) -> Option<&'a JobFacts> {
    trace.jobs.iter().find(|f| f.job == *job)
}

fn honest_runs_of(trace: &Trace, job: &JobId) -> usize {
    trace.honest_runs.iter().filter(|(j, _)| j == job).count()
}

/// When at least k honest workers ran a job and liars are fewer than k, an accepted hash is
/// the honest one.
pub fn honest_hash_accepted(trace: &Trace) -> Vec<Violation> {
    let mut out = Vec::new();
    for v in &trace.verdicts {
        let VerdictOutcome::Accepted(agreed) = &v.verdict.outcome else {
            continue;
        };
        let hash = agreed.hash;
        let Some(f) = facts(trace, &v.job) else {
            continue;
        };
        if honest_runs_of(trace, &v.job) >= f.k
            && f.liars_assigned < f.k
            && Some(hash) != f.honest_hash
        {
            out.push(violation(
                "honest hash accepted",
                format!(
                    "job {} accepted {} over the honest result",
                    v.job.short(),
                    hash.short()
                ),
            ));
        }
    }
    out
}

/// Every job reaches a terminal state by its expiry (plus the submitter's downtime).
pub fn decided_by_expiry(trace: &Trace) -> Vec<Violation> {
    trace
        .jobs
        .iter()
        .filter_map(|f| match f.decided_at {
            None => Some(violation(
                "decided by expiry",
                format!("job {} was never decided", f.job.short()),
            )),
            Some(at) if at > f.expires_at + f.slack_ms => Some(violation(
                "decided by expiry",
                format!(
                    "job {} was decided {} ms after its expiry",
                    f.job.short(),
                    at - f.expires_at
                ),
            )),
            Some(_) => None,
        })
        .collect()
}

/// A job that k honest workers ran in good time is decided on their result: completed with
/// its output, or failed with the failure they agree on (a timeout, say). The flow does not
/// lose a result it was given (liveness, where the other checks are about safety).
pub fn honest_quorum_completes(trace: &Trace) -> Vec<Violation> {
    trace
        .jobs
        .iter()
        .filter(|f| f.must_complete && f.accepted.is_none())
        .map(|f| {
            violation(
                "honest quorum completes",
                format!(
                    "job {} had k honest results in time but ended {:?} with no result accepted",
                    f.job.short(),
                    f.outcome
                ),
            )
        })
        .collect()
}

/// No honest worker is recorded as disagreeing, silent or failed for a run it did correctly
/// (on jobs where liars are fewer than k: colluding liars at k or more can outvote anyone).
pub fn honest_workers_not_blamed(trace: &Trace) -> Vec<Violation> {
    let mut out = Vec::new();
    for v in &trace.verdicts {
        let Some(f) = facts(trace, &v.job) else {
            continue;
        };
        if f.liars_assigned >= f.k {
            continue;
        }
        for w in &v.verdict.workers {
            let worker = w.bid.signer();
            if matches!(w.result, WorkerResult::Agreed)
                || !trace.honest_runs.contains(&(v.job, worker))
            {
                continue;
            }
            out.push(violation(
                "honest workers not blamed",
                format!(
                    "job {}: honest worker {} recorded as {:?}",
                    v.job.short(),
                    worker.short(),
                    w.result
                ),
            ));
        }
    }
    out
}

/// Credits are conserved across the ledger: every credit paid to a worker is taken from the
/// submitter, only agreeing workers are paid, and never more than the job's reward.
pub fn credits_conserved(trace: &Trace) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut entries = Vec::new();
    let mut seen = BTreeSet::new();
    for v in &trace.verdicts {
        if !seen.insert(v.content_id) {
            continue;
        }
        let reward = v
            .verdict
            .job
            .decode_unchecked()
            .map(|a| a.spec.reward)
            .unwrap_or(0);
        for w in &v.verdict.workers {
            let agreed = matches!(w.result, WorkerResult::Agreed);
            if (!agreed && w.paid > 0) || w.paid > reward {
                out.push(violation(
                    "credits conserved",
                    format!(
                        "job {}: {} paid {} for {:?} (reward {reward})",
                        v.job.short(),
                        w.bid.signer().short(),
                        w.paid,
                        w.result
                    ),
                ));
            }
        }
        entries.push(crate::ledger_entry(&v.verdict, v.signer, v.content_id));
    }
    let standings = reputation::compute(&entries);
    let total: i64 = standings.values().map(|s| s.credits - GRANT).sum();
    if total != 0 {
        out.push(violation(
            "credits conserved",
            format!("the ledger's credits sum to {total} more than its grants"),
        ));
    }
    out
}

/// A restarted node never re-runs or re-signs what it already finished: no execution starts
/// after the worker committed, and a worker never commits to two different outcomes.
pub fn no_rerun_or_resign(trace: &Trace) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut first: BTreeMap<(JobId, PublicKey), &CommitmentSigned> = BTreeMap::new();
    for c in &trace.commitments {
        match first.get(&(c.job, c.worker)) {
            Some(f) if f.outcome != c.outcome => out.push(violation(
                "no re-run or re-sign",
                format!(
                    "worker {} committed to two outcomes for job {}",
                    c.worker.short(),
                    c.job.short()
                ),
            )),
            Some(_) => {}
            None => {
                first.insert((c.job, c.worker), c);
            }
        }
    }
    for (job, worker, at) in &trace.starts {
        if first.get(&(*job, *worker)).is_some_and(|c| c.at <= *at) {
            out.push(violation(
                "no re-run or re-sign",
                format!(
                    "worker {} started job {} again after committing",
                    worker.short(),
                    job.short()
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use distributeai_protocol::{
        AgreedResult, AssignmentAck, Bid, Evidence, JobAnnouncement, JobEnd, JobSpec, NodeIdentity,
        Signed, WorkerFault, WorkerRecord,
    };

    use super::*;

    fn identity(n: u8) -> NodeIdentity {
        NodeIdentity::from_secret([n; 32])
    }

    fn announcement(submitter: &NodeIdentity, reward: u64) -> Signed<JobAnnouncement> {
        let spec = JobSpec {
            reward,
            ..crate::test_spec(2, 2)
        };
        let a = JobAnnouncement {
            spec,
            nonce: 7,
            issued_at: 1_000,
            expires_at: 100_000,
        };
        Signed::sign(submitter, &a).expect("sign")
    }

    fn record(worker: &NodeIdentity, job: JobId, result: WorkerResult, paid: u64) -> WorkerRecord {
        let bid = Bid {
            job_id: job,
            image: None,
            running_jobs: 0,
            issued_at: 1_000,
        };
        let ack = AssignmentAck {
            job_id: job,
            attempt: 0,
            deadline_ms: 1_000,
            issued_at: 1_000,
        };
        WorkerRecord {
            bid: Signed::sign(worker, &bid).expect("sign"),
            evidence: Evidence::Accepted {
                acceptance: Signed::sign(worker, &ack).expect("sign"),
            },
            result,
            paid,
        }
    }

    fn verdict(
        submitter: &NodeIdentity,
        outcome: VerdictOutcome,
        workers: Vec<(&NodeIdentity, WorkerResult, u64)>,
        issued_at: u64,
    ) -> SignedVerdict {
        let job = announcement(submitter, 1);
        let id = job.job_id();
        let workers: Vec<WorkerRecord> = workers
            .into_iter()
            .map(|(w, r, p)| record(w, id, r, p))
            .collect();
        let draw =
            distributeai_protocol::Draw::even(workers.iter().map(|w| w.bid.clone()).collect());
        let v = Verdict {
            job,
            outcome,
            workers,
            draw,
            issued_at,
        };
        let signed = Signed::sign(submitter, &v).expect("sign");
        SignedVerdict {
            job: id,
            signer: submitter.public_key(),
            content_id: signed.content_id(),
            verdict: v,
        }
    }

    fn accepted(byte: u8) -> VerdictOutcome {
        VerdictOutcome::Accepted(AgreedResult {
            hash: ResultHash([byte; 32]),
            end: JobEnd::Exited { code: 0 },
            image: format!("sha256:{}", "a".repeat(64)),
        })
    }

    fn facts_for(job: JobId, honest: Option<ResultHash>, liars: usize) -> JobFacts {
        JobFacts {
            job,
            k: 2,
            expires_at: 100_000,
            decided_at: Some(50_000),
            slack_ms: 250,
            honest_hash: honest,
            liars_assigned: liars,
            must_complete: false,
            outcome: None,
            accepted: None,
        }
    }

    #[test]
    fn a_job_with_an_honest_quorum_in_time_that_did_not_complete_is_caught() {
        let mut stuck = facts_for(JobId([1; 32]), Some(ResultHash([1; 32])), 0);
        stuck.must_complete = true;
        stuck.outcome = Some(Outcome::Failed);
        let mut done = stuck.clone();
        done.job = JobId([2; 32]);
        done.outcome = Some(Outcome::Completed);
        done.accepted = done.honest_hash;
        // Failed on its own, with the failure agreed: decided on the honest result too.
        let mut timed_out = stuck.clone();
        timed_out.job = JobId([3; 32]);
        timed_out.accepted = timed_out.honest_hash;
        let trace = Trace {
            jobs: vec![stuck, done, timed_out],
            ..Trace::default()
        };
        assert_eq!(honest_quorum_completes(&trace).len(), 1);
    }

    #[test]
    fn a_verdict_that_does_not_recheck_from_its_evidence_is_caught() {
        let s = identity(1);
        let w = identity(2);
        // Silent, with the worker's acceptance of a one-second deadline long passed: fine.
        let silent = verdict(
            &s,
            VerdictOutcome::Failed("no result".into()),
            vec![(&w, WorkerResult::Silent, 0)],
            10_000,
        );
        assert!(
            verdicts_recheck(&Trace {
                verdicts: vec![silent],
                ..Trace::default()
            })
            .is_empty()
        );
        // Agreed on the strength of an acceptance alone: no reveal shows its result.
        let forged = verdict(&s, accepted(1), vec![(&w, WorkerResult::Agreed, 1)], 10_000);
        let found = verdicts_recheck(&Trace {
            verdicts: vec![forged],
            ..Trace::default()
        });
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].detail.contains("commitment and the reveal"),
            "{found:?}"
        );
    }

    #[test]
    fn a_second_verdict_for_a_job_is_caught() {
        let s = identity(1);
        let w = identity(2);
        let a = verdict(&s, VerdictOutcome::Failed("expired".into()), vec![], 10);
        let b = verdict(&s, accepted(1), vec![(&w, WorkerResult::Agreed, 1)], 11);
        let trace = Trace {
            verdicts: vec![a.clone(), a, b],
            ..Trace::default()
        };
        let found = one_verdict_per_job(&trace);
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn a_decision_that_changes_is_caught() {
        let job = JobId([1; 32]);
        let trace = Trace {
            decisions: vec![
                (job, None),
                (job, Some(Outcome::Cancelled)),
                (job, Some(Outcome::Completed)),
                (JobId([2; 32]), Some(Outcome::Failed)),
                (JobId([2; 32]), None),
            ],
            ..Trace::default()
        };
        assert_eq!(decisions_are_final(&trace).len(), 2);
    }

    #[test]
    fn a_liars_hash_accepted_over_k_honest_runs_is_caught() {
        let s = identity(1);
        let (h1, h2, liar) = (identity(2), identity(3), identity(4));
        let v = verdict(&s, accepted(9), vec![(&liar, WorkerResult::Agreed, 1)], 10);
        let mut trace = Trace {
            jobs: vec![facts_for(v.job, Some(ResultHash([1; 32])), 1)],
            ..Trace::default()
        };
        trace.honest_runs.insert((v.job, h1.public_key()));
        trace.honest_runs.insert((v.job, h2.public_key()));
        trace.verdicts.push(v);
        assert_eq!(honest_hash_accepted(&trace).len(), 1);
        // With k colluding liars assigned, nothing can be promised.
        trace.jobs[0].liars_assigned = 2;
        assert!(honest_hash_accepted(&trace).is_empty());
    }

    #[test]
    fn a_job_decided_late_or_never_is_caught() {
        let mut late = facts_for(JobId([1; 32]), None, 0);
        late.decided_at = Some(late.expires_at + 10_000);
        let mut never = facts_for(JobId([2; 32]), None, 0);
        never.decided_at = None;
        let on_time = facts_for(JobId([3; 32]), None, 0);
        let trace = Trace {
            jobs: vec![late, never, on_time],
            ..Trace::default()
        };
        assert_eq!(decided_by_expiry(&trace).len(), 2);
    }

    #[test]
    fn an_honest_worker_recorded_as_silent_failed_or_disagreeing_is_caught() {
        let s = identity(1);
        let honest = identity(2);
        for result in [
            WorkerResult::Silent,
            WorkerResult::Failed(WorkerFault::new("engine down")),
            WorkerResult::Disagreed(ResultHash([3; 32])),
        ] {
            let v = verdict(
                &s,
                VerdictOutcome::Failed("x".into()),
                vec![(&honest, result, 0)],
                10,
            );
            let mut trace = Trace {
                jobs: vec![facts_for(v.job, Some(ResultHash([1; 32])), 0)],
                ..Trace::default()
            };
            trace.honest_runs.insert((v.job, honest.public_key()));
            trace.verdicts.push(v);
            assert_eq!(honest_workers_not_blamed(&trace).len(), 1);
        }
    }

    #[test]
    fn credits_paid_to_a_worker_that_did_not_agree_are_caught() {
        let s = identity(1);
        let w = identity(2);
        let paid_failed = verdict(
            &s,
            VerdictOutcome::Failed("x".into()),
            vec![(&w, WorkerResult::Failed(WorkerFault::new("engine down")), 1)],
            10,
        );
        let trace = Trace {
            verdicts: vec![paid_failed],
            ..Trace::default()
        };
        assert_eq!(credits_conserved(&trace).len(), 1);
        let overpaid = verdict(&s, accepted(1), vec![(&w, WorkerResult::Agreed, 5)], 10);
        let trace = Trace {
            verdicts: vec![overpaid],
            ..Trace::default()
        };
        assert_eq!(credits_conserved(&trace).len(), 1);
    }

    #[test]
    fn a_rerun_after_committing_or_a_second_outcome_is_caught() {
        let w = identity(2).public_key();
        let job = JobId([1; 32]);
        let commit = |outcome: u8, at| CommitmentSigned {
            job,
            worker: w,
            outcome: vec![outcome],
            at,
        };
        let trace = Trace {
            commitments: vec![commit(1, 10), commit(1, 20), commit(2, 30)],
            starts: vec![(job, w, 5), (job, w, 40)],
            ..Trace::default()
        };
        let found = no_rerun_or_resign(&trace);
        assert_eq!(found.len(), 2, "{found:?}");
    }
}
