//! What a submitter has seen itself of each worker on its own jobs: first-hand evidence,
//! kept locally and acted on at once (issue 19).
//!
//! The ledger's global weights move slowly on purpose: on a fresh network every issuer still
//! weighs a newcomer's 0.01, so a liar caught by its submitter would lose almost nothing
//! globally and go on being drawn. The submitter itself has no reason to wait: a worker that
//! revealed a result its own k agreeing workers outvoted is drawn only as a last resort for
//! its jobs. A worker that mostly agrees and was outvoted once in a while (a flaky host, an
//! honest worker outvoted by colluders) keeps most of its weight.

use std::collections::HashMap;

use distributeai_protocol::{PublicKey, Verdict, WorkerResult};

/// Agreements that offset one disagreement: a worker whose disagreements times this reach
/// its agreements is drawn only when nobody else can take the slot. One caught lie outweighs
/// four agreed runs, so a liar that answers right a few times to build standing with us and
/// then lies loses it at once.
pub const AGREEMENTS_PER_DISAGREEMENT: u64 = 5;

/// Most workers remembered. A submitter meets at most the workers that bid on its own jobs;
/// 65,536 is far beyond a home submitter's reach, about 2 MB, and the least-seen are
/// forgotten first past it.
pub const MAX_WORKERS: usize = 65_536;

/// One worker's record on this submitter's jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Record {
    /// Its results that agreed with the accepted one.
    pub agreed: u64,
    /// Its results that k other workers outvoted.
    pub disagreed: u64,
}

/// First-hand evidence on the workers of this node's own jobs.
#[derive(Debug, Clone, Default)]
pub struct FirstHand {
    workers: HashMap<PublicKey, Record>,
}

impl FirstHand {
    /// Nothing seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in one of this node's own verdicts (every verdict it signs, once; also those
    /// loaded from its store at start).
    pub fn observe(&mut self, verdict: &Verdict) {
        for record in &verdict.workers {
            let (agreed, disagreed) = match record.result {
                WorkerResult::Agreed => (1, 0),
                WorkerResult::Disagreed(_) => (0, 1),
                _ => continue,
            };
            if self.workers.len() >= MAX_WORKERS && !self.workers.contains_key(&record.bid.signer())
            {
                self.forget_least_seen();
            }
            let r = self.workers.entry(record.bid.signer()).or_default();
            r.agreed += agreed;
            r.disagreed += disagreed;
        }
    }

    /// What this node saw of `worker`.
    pub fn record(&self, worker: &PublicKey) -> Record {
        self.workers.get(worker).copied().unwrap_or_default()
    }

    /// The factor this node's own evidence puts on `worker`'s global selection weight: 1 with
    /// nothing against it, 0 (a last resort) once its disagreements times
    /// [`AGREEMENTS_PER_DISAGREEMENT`] reach its agreements, and in between a share that
    /// shrinks with each disagreement.
    pub fn factor(&self, worker: &PublicKey) -> f64 {
        let r = self.record(worker);
        if r.disagreed == 0 {
            return 1.0;
        }
        let weighed = r.disagreed.saturating_mul(AGREEMENTS_PER_DISAGREEMENT);
        if weighed >= r.agreed {
            return 0.0;
        }
        (r.agreed - weighed) as f64 / r.agreed as f64
    }

    fn forget_least_seen(&mut self) {
        let least = self
            .workers
            .iter()
            .min_by_key(|(key, r)| (r.agreed + r.disagreed, **key))
            .map(|(key, _)| *key);
        if let Some(key) = least {
            self.workers.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use distributeai_protocol::{AgreedResult, JobEnd, NodeIdentity, ResultHash, Signed};

    use super::*;

    fn verdict(results: &[(&NodeIdentity, WorkerResult)]) -> Verdict {
        let submitter = NodeIdentity::from_secret([1; 32]);
        let job = distributeai_protocol::JobAnnouncement {
            spec: crate::test_spec(3, 2),
            nonce: 1,
            issued_at: 0,
            expires_at: 1,
        };
        let job = Signed::sign(&submitter, &job).expect("sign");
        let workers = results
            .iter()
            .map(|(w, result)| {
                let bid = distributeai_protocol::Bid {
                    job_id: job.job_id(),
                    image: None,
                    running_jobs: 0,
                    issued_at: 0,
                };
                let ack = distributeai_protocol::AssignmentAck {
                    job_id: job.job_id(),
                    attempt: 0,
                    deadline_ms: 1,
                    issued_at: 0,
                };
                distributeai_protocol::WorkerRecord {
                    bid: Signed::sign(w, &bid).expect("sign"),
                    evidence: distributeai_protocol::Evidence::Accepted {
                        acceptance: Signed::sign(w, &ack).expect("sign"),
                    },
                    result: result.clone(),
                    paid: 0,
                }
            })
            .collect();
        Verdict {
            job,
            outcome: VerdictOutcome::Accepted(AgreedResult {
                hash: ResultHash([1; 32]),
                end: JobEnd::Exited { code: 0 },
                image: String::new(),
            }),
            draw: distributeai_protocol::Draw::even(Vec::new()),
            workers,
            issued_at: 0,
        }
    }

    use distributeai_protocol::VerdictOutcome;

    #[test]
    fn a_caught_liar_is_a_last_resort_at_once_and_a_rare_outvote_costs_little() {
        let (honest, liar, flaky) = (
            NodeIdentity::from_secret([2; 32]),
            NodeIdentity::from_secret([3; 32]),
            NodeIdentity::from_secret([4; 32]),
        );
        let mut seen = FirstHand::new();
        assert_eq!(seen.factor(&liar.public_key()), 1.0);
        seen.observe(&verdict(&[
            (&honest, WorkerResult::Agreed),
            (&liar, WorkerResult::Disagreed(ResultHash([9; 32]))),
        ]));
        assert_eq!(seen.factor(&liar.public_key()), 0.0);
        assert_eq!(seen.factor(&honest.public_key()), 1.0);
        // Twenty agreed runs and one outvote: most of its weight stays.
        for _ in 0..20 {
            seen.observe(&verdict(&[(&flaky, WorkerResult::Agreed)]));
        }
        seen.observe(&verdict(&[(
            &flaky,
            WorkerResult::Disagreed(ResultHash([9; 32])),
        )]));
        assert!((seen.factor(&flaky.public_key()) - 0.75).abs() < 1e-9);
        // A liar that agreed four times first still loses everything with one lie.
        let sly = NodeIdentity::from_secret([5; 32]);
        for _ in 0..4 {
            seen.observe(&verdict(&[(&sly, WorkerResult::Agreed)]));
        }
        seen.observe(&verdict(&[(
            &sly,
            WorkerResult::Disagreed(ResultHash([9; 32])),
        )]));
        assert_eq!(seen.factor(&sly.public_key()), 0.0);
    }
}
