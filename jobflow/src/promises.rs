//! What each submitter has promised to jobs still in flight, as one node has seen them
//! announced: a submitter's spendable credits must cover the job it announces now on top of
//! every reward it already promised and has not settled (issue 19). Without it, a submitter
//! with 50 credits could post thirty jobs of 2 credits each at once, and every worker would
//! bid on each, since each alone is covered.
//!
//! A promise is `reward x n` for one job; it is settled when the job's verdict or cancel
//! arrives, and lapses at the job's expiry. The tracker is bounded, since every entry comes
//! from a stranger's announcement.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use distributeai_protocol::time::TimestampMs;
use distributeai_protocol::{JobId, JobSpec, PublicKey};

/// Most jobs in flight tracked for one submitter. A home worker meets a few jobs a minute
/// from one submitter; 1,024 live jobs from one identity is far past any honest batch that
/// workers could serve, and a submitter past it gets no bids until some settle.
pub const MAX_PROMISES_PER_SUBMITTER: usize = 1024;
/// Most promises tracked in all: about 100 bytes each, so at most about 6.5 MB however many
/// identities announce. Past it the promise that lapses first is dropped, which can only
/// make a later check stricter for its submitter, never let a payment through that the
/// ledger would void.
pub const MAX_PROMISES: usize = 65_536;

/// The promises one node has seen, per submitter.
#[derive(Debug, Clone, Default)]
pub struct Promises {
    by_submitter: HashMap<PublicKey, BTreeMap<JobId, (u64, TimestampMs)>>,
    job_submitter: HashMap<JobId, PublicKey>,
    /// Every promise by expiry, so that the first to lapse is found in O(log n) when the
    /// tracker is full: a stranger's announcement never costs a scan of all of them.
    by_expiry: BTreeSet<(TimestampMs, JobId)>,
}

/// Why a job cannot be promised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromiseError {
    /// The submitter cannot cover this job on top of what it promised to jobs in flight.
    #[error(
        "the submitter cannot cover the reward: {spendable} credits spendable, {promised} \
         promised to {jobs} jobs in flight, {owed} owed by this one"
    )]
    Uncovered {
        /// What it can spend, from the ledger.
        spendable: i64,
        /// What it promised to other jobs in flight.
        promised: u64,
        /// How many other paid jobs it has in flight.
        jobs: usize,
        /// `reward x n` of this job.
        owed: u64,
    },
    /// The submitter has [`MAX_PROMISES_PER_SUBMITTER`] paid jobs in flight.
    #[error("the submitter has {0} paid jobs in flight, the most a node tracks")]
    TooMany(usize),
}

/// What a job owes its workers at most: `reward x n` credits.
pub fn owed(spec: &JobSpec) -> u64 {
    spec.reward.saturating_mul(spec.redundancy.into())
}

impl Promises {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks that `submitter`, with `spendable` credits, can promise `spec`'s rewards on top
    /// of its other unsettled jobs at `now`, and records the promise if so. A job already
    /// recorded passes again (a repeated announcement or an invitation). Jobs without a
    /// reward promise nothing and always pass.
    pub fn promise(
        &mut self,
        submitter: PublicKey,
        job: JobId,
        spec: &JobSpec,
        expires_at: TimestampMs,
        spendable: i64,
        now: TimestampMs,
    ) -> Result<(), PromiseError> {
        let owed = owed(spec);
        if owed == 0 {
            return Ok(());
        }
        self.lapse(&submitter, now);
        let jobs = self.by_submitter.get(&submitter);
        if jobs.is_some_and(|j| j.contains_key(&job)) {
            return Ok(());
        }
        let count = jobs.map_or(0, |j| j.len());
        if count >= MAX_PROMISES_PER_SUBMITTER {
            return Err(PromiseError::TooMany(count));
        }
        let promised: u64 = jobs.map_or(0, |j| {
            j.values().fold(0u64, |sum, (o, _)| sum.saturating_add(*o))
        });
        let total = i128::from(promised) + i128::from(owed);
        if total > i128::from(spendable) {
            return Err(PromiseError::Uncovered {
                spendable,
                promised,
                jobs: count,
                owed,
            });
        }
        if self.job_submitter.len() >= MAX_PROMISES {
            self.drop_first_to_lapse();
        }
        self.by_submitter
            .entry(submitter)
            .or_default()
            .insert(job, (owed, expires_at));
        self.job_submitter.insert(job, submitter);
        self.by_expiry.insert((expires_at, job));
        Ok(())
    }

    /// The job's submitter `by` decided or cancelled it: what it promised is settled (paid
    /// or released). A verdict or cancel signed by anyone else settles nothing.
    pub fn settle(&mut self, job: &JobId, by: &PublicKey) {
        if self.job_submitter.get(job) != Some(by) {
            return;
        }
        if let Some(submitter) = self.job_submitter.remove(job)
            && let Some(jobs) = self.by_submitter.get_mut(&submitter)
        {
            if let Some((_, expires_at)) = jobs.remove(job) {
                self.by_expiry.remove(&(expires_at, *job));
            }
            if jobs.is_empty() {
                self.by_submitter.remove(&submitter);
            }
        }
    }

    /// What `submitter` has promised to unsettled, unexpired jobs at `now`.
    pub fn promised(&self, submitter: &PublicKey, now: TimestampMs) -> u64 {
        self.by_submitter.get(submitter).map_or(0, |jobs| {
            jobs.values()
                .filter(|(_, expires_at)| *expires_at > now)
                .fold(0u64, |sum, (o, _)| sum.saturating_add(*o))
        })
    }

    /// Number of promises tracked.
    pub fn len(&self) -> usize {
        self.job_submitter.len()
    }

    /// Whether none are tracked.
    pub fn is_empty(&self) -> bool {
        self.job_submitter.is_empty()
    }

    fn lapse(&mut self, submitter: &PublicKey, now: TimestampMs) {
        let Some(jobs) = self.by_submitter.get_mut(submitter) else {
            return;
        };
        let lapsed: Vec<JobId> = jobs
            .iter()
            .filter(|(_, (_, expires_at))| *expires_at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in lapsed {
            if let Some((_, expires_at)) = jobs.remove(&id) {
                self.by_expiry.remove(&(expires_at, id));
            }
            self.job_submitter.remove(&id);
        }
        if jobs.is_empty() {
            self.by_submitter.remove(submitter);
        }
    }

    fn drop_first_to_lapse(&mut self) {
        if let Some((_, job)) = self.by_expiry.first().copied()
            && let Some(submitter) = self.job_submitter.get(&job).copied()
        {
            self.settle(&job, &submitter);
        }
    }
}

#[cfg(test)]
mod tests {
    use distributeai_protocol::NodeIdentity;

    use super::*;

    fn spec(reward: u64, n: u8) -> JobSpec {
        JobSpec {
            reward,
            redundancy: n,
            consensus: 1,
            ..crate::test_spec(n, 1)
        }
    }

    /// Issue 19: a fresh submitter with 50 credits posted 30 jobs at reward 1, n = 2 (60
    /// owed) at once, and all 30 ran: each alone was covered.
    #[test]
    fn thirty_jobs_of_two_credits_against_fifty_stop_at_twenty_five() {
        let submitter = NodeIdentity::from_secret([1; 32]).public_key();
        let mut promises = Promises::new();
        let mut accepted = 0;
        for i in 0..30u8 {
            if promises
                .promise(submitter, JobId([i; 32]), &spec(1, 2), 10_000, 50, 0)
                .is_ok()
            {
                accepted += 1;
            }
        }
        assert_eq!(accepted, 25);
        assert_eq!(promises.promised(&submitter, 0), 50);
        let err = promises
            .promise(submitter, JobId([99; 32]), &spec(1, 2), 10_000, 50, 0)
            .expect_err("uncovered");
        assert!(err.to_string().contains("50 promised to 25 jobs"), "{err}");
        // A settled job frees its promise; an expired one lapses.
        // Settled only by its own submitter.
        let stranger = NodeIdentity::from_secret([2; 32]).public_key();
        promises.settle(&JobId([0; 32]), &stranger);
        assert_eq!(promises.promised(&submitter, 0), 50);
        promises.settle(&JobId([0; 32]), &submitter);
        assert!(
            promises
                .promise(submitter, JobId([99; 32]), &spec(1, 2), 10_000, 50, 0)
                .is_ok()
        );
        assert_eq!(promises.promised(&submitter, 10_000), 0);
        assert!(
            promises
                .promise(
                    submitter,
                    JobId([100; 32]),
                    &spec(25, 2),
                    20_000,
                    50,
                    10_000
                )
                .is_ok()
        );
        // Unpaid jobs promise nothing; a repeated announcement passes again.
        assert!(
            promises
                .promise(submitter, JobId([101; 32]), &spec(0, 2), 20_000, 0, 0)
                .is_ok()
        );
        assert!(
            promises
                .promise(
                    submitter,
                    JobId([100; 32]),
                    &spec(25, 2),
                    20_000,
                    50,
                    10_000
                )
                .is_ok()
        );
    }

    #[test]
    fn the_tracker_is_bounded_per_submitter_and_in_all() {
        let submitter = NodeIdentity::from_secret([1; 32]).public_key();
        let mut promises = Promises::new();
        let id = |i: usize| {
            let mut b = [0u8; 32];
            b[..8].copy_from_slice(&(i as u64).to_le_bytes());
            JobId(b)
        };
        for i in 0..MAX_PROMISES_PER_SUBMITTER {
            promises
                .promise(submitter, id(i), &spec(1, 1), 10_000, i64::MAX, 0)
                .expect("covered");
        }
        assert_eq!(
            promises.promise(
                submitter,
                id(MAX_PROMISES_PER_SUBMITTER),
                &spec(1, 1),
                10_000,
                i64::MAX,
                0
            ),
            Err(PromiseError::TooMany(MAX_PROMISES_PER_SUBMITTER))
        );
        // Many identities: never more than MAX_PROMISES held.
        for s in 0..(MAX_PROMISES / MAX_PROMISES_PER_SUBMITTER + 2) {
            let key = NodeIdentity::from_secret([(s % 250) as u8 + 2; 32]).public_key();
            for i in 0..MAX_PROMISES_PER_SUBMITTER {
                let _ = promises.promise(
                    key,
                    id(1_000_000 * (s + 1) + i),
                    &spec(1, 1),
                    10_000 + i as u64,
                    i64::MAX,
                    0,
                );
            }
        }
        assert!(promises.len() <= MAX_PROMISES, "{}", promises.len());
    }
}
