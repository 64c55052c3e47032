//! The k-of-n decision: given n assigned workers and consensus k, decide from the reports so
//! far whether a result is accepted, still pending, or can no longer be reached.
//!
//! # The rule
//!
//! - A result is **accepted** as soon as k workers have reported the same hash. When k <= n/2
//!   two hashes could each reach k; the first to get there (in arrival order) wins and later
//!   reports never change an accepted decision, so a submitter can act on it at once.
//! - It is **impossible** when no hash has reached k and even if every worker still missing
//!   reported the most common hash, none would: the submitter should reassign now instead of
//!   waiting for the deadline.
//! - Otherwise it is **pending**.
//!
//! Each worker counts once: a second report from the same worker is ignored, and reports from
//! workers that were never assigned are refused. A worker that stayed silent, or failed, can be
//! replaced by a reserve; its slot then waits for the new worker.

use std::collections::HashMap;
use std::hash::Hash;

/// What one worker reported.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Report<H> {
    /// It ran the job and obtained this result hash.
    Result(H),
    /// It could not produce a result (timeout, out of memory, error).
    Failed,
}

/// The decision so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<W, H> {
    /// Not decided yet; more reports may decide it.
    Pending,
    /// k workers agree on `hash`.
    Accepted {
        /// The agreed result hash.
        hash: H,
        /// Workers that reported `hash`, in arrival order.
        agreeing: Vec<W>,
        /// Workers that reported another hash, in arrival order.
        disagreeing: Vec<W>,
        /// Workers that reported a failure, replaced ones included, in arrival order.
        failed: Vec<W>,
    },
    /// Consensus can no longer be reached with the workers assigned.
    Impossible,
}

/// What [`Tally::record`] did with a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The report was counted.
    Counted,
    /// The worker had already reported; the new report was ignored.
    Duplicate,
}

/// Why the tally refused an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TallyError {
    /// `k` and the number of workers do not satisfy `1 <= k <= n`.
    #[error("consensus k = {k} is not between 1 and n = {n}")]
    InvalidConsensus {
        /// Consensus.
        k: usize,
        /// Assigned workers.
        n: usize,
    },
    /// The same worker was assigned twice.
    #[error("a worker is assigned twice")]
    DuplicateWorker,
    /// The worker is not assigned to this job.
    #[error("worker is not assigned to this job")]
    UnknownWorker,
    /// A worker that already reported a result cannot be replaced.
    #[error("worker already reported a result and cannot be replaced")]
    NotReplaceable,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Slot<W, H> {
    worker: W,
    report: Option<(u64, Report<H>)>,
}

/// The reports on one job, slot by slot, in arrival order. It serialises with serde so a
/// submitter can store it inside its job record and carry on after a restart.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Tally<W, H> {
    k: usize,
    slots: Vec<Slot<W, H>>,
    /// Workers replaced by reserves, with their failure if they reported one.
    retired: Vec<Slot<W, H>>,
    next_seq: u64,
}

impl<W: Clone + Eq, H: Clone + Eq + Hash> Tally<W, H> {
    /// A tally for `assigned` workers (n = their number) needing `k` agreeing results.
    pub fn new(k: usize, assigned: impl IntoIterator<Item = W>) -> Result<Self, TallyError> {
        let mut slots: Vec<Slot<W, H>> = Vec::new();
        for worker in assigned {
            if slots.iter().any(|s| s.worker == worker) {
                return Err(TallyError::DuplicateWorker);
            }
            slots.push(Slot {
                worker,
                report: None,
            });
        }
        if k < 1 || k > slots.len() {
            return Err(TallyError::InvalidConsensus { k, n: slots.len() });
        }
        Ok(Self {
            k,
            slots,
            retired: Vec::new(),
            next_seq: 0,
        })
    }

    /// n: the number of slots.
    pub fn n(&self) -> usize {
        self.slots.len()
    }

    /// k: results that must agree.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The workers currently assigned, one per slot.
    pub fn assigned(&self) -> impl Iterator<Item = &W> {
        self.slots.iter().map(|s| &s.worker)
    }

    /// Workers that have not reported yet.
    pub fn missing(&self) -> impl Iterator<Item = &W> {
        self.slots
            .iter()
            .filter(|s| s.report.is_none())
            .map(|s| &s.worker)
    }

    /// Workers replaced without ever reporting: the silent ones.
    pub fn silent(&self) -> impl Iterator<Item = &W> {
        self.retired
            .iter()
            .filter(|s| s.report.is_none())
            .map(|s| &s.worker)
    }

    /// What `worker` reported, if it is assigned and has reported.
    pub fn report_of(&self, worker: &W) -> Option<&Report<H>> {
        self.slots
            .iter()
            .chain(&self.retired)
            .find(|s| s.worker == *worker)
            .and_then(|s| s.report.as_ref().map(|(_, r)| r))
    }

    /// Workers that reported, in the order their reports were counted (replaced ones
    /// included): a verdict lists revealed results in this order, so that the rule replayed
    /// over it decides the same hash.
    pub fn arrival_order(&self) -> Vec<&W> {
        let mut arrived: Vec<(u64, &W)> = self
            .slots
            .iter()
            .chain(&self.retired)
            .filter_map(|s| s.report.as_ref().map(|(seq, _)| (*seq, &s.worker)))
            .collect();
        arrived.sort_by_key(|(seq, _)| *seq);
        arrived.into_iter().map(|(_, w)| w).collect()
    }

    /// Records `worker`'s report. A second report from the same worker is ignored.
    pub fn record(&mut self, worker: &W, report: Report<H>) -> Result<Recorded, TallyError> {
        let Some(slot) = self.slots.iter_mut().find(|s| s.worker == *worker) else {
            // A replaced worker answering late is not counted either.
            if self.retired.iter().any(|s| s.worker == *worker) {
                return Ok(Recorded::Duplicate);
            }
            return Err(TallyError::UnknownWorker);
        };
        if slot.report.is_some() {
            return Ok(Recorded::Duplicate);
        }
        slot.report = Some((self.next_seq, report));
        self.next_seq += 1;
        Ok(Recorded::Counted)
    }

    /// Gives `old`'s slot to `new` (a reserve), when `old` is silent or failed.
    pub fn replace(&mut self, old: &W, new: W) -> Result<(), TallyError> {
        if self
            .slots
            .iter()
            .chain(&self.retired)
            .any(|s| s.worker == new)
        {
            return Err(TallyError::DuplicateWorker);
        }
        let slot = self
            .slots
            .iter_mut()
            .find(|s| s.worker == *old)
            .ok_or(TallyError::UnknownWorker)?;
        if matches!(slot.report, Some((_, Report::Result(_)))) {
            return Err(TallyError::NotReplaceable);
        }
        let retired = std::mem::replace(
            slot,
            Slot {
                worker: new,
                report: None,
            },
        );
        self.retired.push(retired);
        Ok(())
    }

    /// The decision from the reports so far.
    pub fn decision(&self) -> Decision<W, H> {
        let mut arrived: Vec<(u64, &W, &Report<H>)> = self
            .slots
            .iter()
            .chain(&self.retired)
            .filter_map(|s| s.report.as_ref().map(|(seq, r)| (*seq, &s.worker, r)))
            .collect();
        arrived.sort_by_key(|(seq, _, _)| *seq);

        let mut counts: HashMap<&H, usize> = HashMap::new();
        let mut winner: Option<&H> = None;
        for (_, _, report) in &arrived {
            if let Report::Result(hash) = report {
                let count = counts.entry(hash).or_insert(0);
                *count += 1;
                if *count >= self.k {
                    winner = Some(hash);
                    break;
                }
            }
        }

        if let Some(hash) = winner {
            let mut agreeing = Vec::new();
            let mut disagreeing = Vec::new();
            let mut failed = Vec::new();
            for (_, worker, report) in &arrived {
                match report {
                    Report::Result(h) if h == hash => agreeing.push((*worker).clone()),
                    Report::Result(_) => disagreeing.push((*worker).clone()),
                    Report::Failed => failed.push((*worker).clone()),
                }
            }
            return Decision::Accepted {
                hash: hash.clone(),
                agreeing,
                disagreeing,
                failed,
            };
        }

        let missing = self.slots.iter().filter(|s| s.report.is_none()).count();
        let best = counts.values().copied().max().unwrap_or(0);
        if best + missing < self.k {
            Decision::Impossible
        } else {
            Decision::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One worker's state in an exhaustive pattern.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Cell {
        Missing,
        Failed,
        Hash(u8),
    }

    /// Every pattern of n cells over {missing, failed, hash 0..n}.
    fn patterns(n: usize) -> Vec<Vec<Cell>> {
        let mut alphabet = vec![Cell::Missing, Cell::Failed];
        alphabet.extend((0..n as u8).map(Cell::Hash));
        let mut out = vec![Vec::new()];
        for _ in 0..n {
            out = out
                .into_iter()
                .flat_map(|p| {
                    alphabet.iter().map(move |c| {
                        let mut p = p.clone();
                        p.push(*c);
                        p
                    })
                })
                .collect();
        }
        out
    }

    /// Independent oracle: which hash reaches k first scanning `order`.
    fn oracle_accepted(pattern: &[Cell], order: &[usize], k: usize) -> Option<u8> {
        let mut counts = [0usize; 8];
        for &i in order {
            if let Cell::Hash(h) = pattern[i] {
                counts[h as usize] += 1;
                if counts[h as usize] == k {
                    return Some(h);
                }
            }
        }
        None
    }

    /// Independent oracle: could any completion of the missing cells reach acceptance?
    fn oracle_reachable(pattern: &[Cell], k: usize) -> bool {
        let n = pattern.len();
        let fillers: Vec<Cell> = (0..=n as u8)
            .map(Cell::Hash)
            .chain([Cell::Failed])
            .collect();
        let missing: Vec<usize> = (0..n).filter(|&i| pattern[i] == Cell::Missing).collect();
        let mut choice = vec![0usize; missing.len()];
        loop {
            let mut filled = pattern.to_vec();
            for (slot, &i) in missing.iter().enumerate() {
                filled[i] = fillers[choice[slot]];
            }
            let order: Vec<usize> = (0..n).collect();
            if oracle_accepted(&filled, &order, k).is_some() {
                return true;
            }
            // Next combination, odometer style.
            let mut pos = 0;
            loop {
                if pos == choice.len() {
                    return false;
                }
                choice[pos] += 1;
                if choice[pos] < fillers.len() {
                    break;
                }
                choice[pos] = 0;
                pos += 1;
            }
        }
    }

    fn run(pattern: &[Cell], order: &[usize], k: usize) -> Tally<usize, u8> {
        let mut tally = Tally::new(k, 0..pattern.len()).expect("valid");
        for &i in order {
            let report = match pattern[i] {
                Cell::Missing => continue,
                Cell::Failed => Report::Failed,
                Cell::Hash(h) => Report::Result(h),
            };
            assert_eq!(tally.record(&i, report), Ok(Recorded::Counted));
        }
        tally
    }

    #[test]
    fn exhaustive_for_every_n_up_to_5_every_k_every_pattern() {
        let mut checked = 0u64;
        for n in 1..=5usize {
            for pattern in patterns(n) {
                let forward: Vec<usize> = (0..n).collect();
                let backward: Vec<usize> = (0..n).rev().collect();
                for k in 1..=n {
                    for order in [&forward, &backward] {
                        let tally = run(&pattern, order, k);
                        let decision = tally.decision();
                        match oracle_accepted(&pattern, order, k) {
                            Some(h) => {
                                let Decision::Accepted {
                                    hash,
                                    agreeing,
                                    disagreeing,
                                    failed,
                                } = &decision
                                else {
                                    panic!(
                                        "{pattern:?} k={k}: expected accepted, got {decision:?}"
                                    );
                                };
                                assert_eq!(*hash, h);
                                let in_order = |pred: &dyn Fn(Cell) -> bool| -> Vec<usize> {
                                    order
                                        .iter()
                                        .copied()
                                        .filter(|&i| pred(pattern[i]))
                                        .collect()
                                };
                                assert_eq!(*agreeing, in_order(&|c| c == Cell::Hash(h)));
                                assert!(agreeing.len() >= k);
                                assert_eq!(
                                    *disagreeing,
                                    in_order(&|c| matches!(c, Cell::Hash(x) if x != h))
                                );
                                assert_eq!(*failed, in_order(&|c| c == Cell::Failed));
                            }
                            None if oracle_reachable(&pattern, k) => {
                                assert_eq!(decision, Decision::Pending, "{pattern:?} k={k}")
                            }
                            None => assert_eq!(decision, Decision::Impossible, "{pattern:?} k={k}"),
                        }

                        // A second report from any worker changes nothing.
                        let mut again = tally.clone();
                        for (i, cell) in pattern.iter().enumerate() {
                            if *cell != Cell::Missing {
                                for dup in [Report::Failed, Report::Result(7)] {
                                    assert_eq!(again.record(&i, dup), Ok(Recorded::Duplicate));
                                }
                            }
                        }
                        assert_eq!(again.decision(), decision);
                        checked += 1;
                    }
                }
            }
        }
        // 1-5 workers over n+2 states each, every k, two arrival orders.
        assert!(checked > 100_000, "{checked}");
    }

    #[test]
    fn accepted_is_final() {
        // n=4, k=2: two pairs can each reach k; the first pair to complete wins for good.
        let mut tally: Tally<u8, &str> = Tally::new(2, [1, 2, 3, 4]).expect("valid");
        tally.record(&1, Report::Result("a")).expect("record");
        tally.record(&2, Report::Result("b")).expect("record");
        tally.record(&3, Report::Result("b")).expect("record");
        tally.record(&4, Report::Result("a")).expect("record");
        let Decision::Accepted {
            hash,
            agreeing,
            disagreeing,
            ..
        } = tally.decision()
        else {
            panic!("expected accepted");
        };
        assert_eq!((hash, agreeing, disagreeing), ("b", vec![2, 3], vec![1, 4]));
    }

    #[test]
    fn unknown_workers_and_bad_parameters_are_refused() {
        assert_eq!(
            Tally::<u8, u8>::new(0, [1, 2]).err(),
            Some(TallyError::InvalidConsensus { k: 0, n: 2 })
        );
        assert_eq!(
            Tally::<u8, u8>::new(3, [1, 2]).err(),
            Some(TallyError::InvalidConsensus { k: 3, n: 2 })
        );
        assert_eq!(
            Tally::<u8, u8>::new(1, [1, 1]).err(),
            Some(TallyError::DuplicateWorker)
        );
        let mut tally: Tally<u8, u8> = Tally::new(1, [1]).expect("valid");
        assert_eq!(
            tally.record(&9, Report::Failed),
            Err(TallyError::UnknownWorker)
        );
    }

    #[test]
    fn replacing_a_silent_or_failed_worker_reopens_its_slot() {
        let mut tally: Tally<u8, u8> = Tally::new(2, [1, 2, 3]).expect("valid");
        tally.record(&1, Report::Result(5)).expect("record");
        tally.record(&2, Report::Failed).expect("record");
        // Worker 3 is silent; with 2 failed, only 3 can still agree: one short of impossible.
        assert_eq!(tally.decision(), Decision::Pending);
        assert_eq!(tally.replace(&1, 9), Err(TallyError::NotReplaceable));
        tally.replace(&3, 4).expect("replace silent");
        tally.replace(&2, 5).expect("replace failed");
        assert_eq!(tally.silent().copied().collect::<Vec<_>>(), vec![3]);
        // The silent worker answering late is ignored.
        assert_eq!(tally.record(&3, Report::Result(5)), Ok(Recorded::Duplicate));
        assert_eq!(tally.decision(), Decision::Pending);
        tally.record(&4, Report::Result(5)).expect("record");
        let Decision::Accepted {
            agreeing, failed, ..
        } = tally.decision()
        else {
            panic!("expected accepted");
        };
        assert_eq!(agreeing, vec![1, 4]);
        assert_eq!(failed, vec![2]);
        assert_eq!(tally.replace(&5, 1), Err(TallyError::DuplicateWorker));
    }
}
