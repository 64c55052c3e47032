//! A seeded, network-free simulation of the job flow against bad workers, to measure how often
//! a wrong result is accepted with and without reputation-weighted selection.
//!
//! The population: honest workers; random liars (each returns its own wrong hash); colluders
//! (all return the same wrong hash); and Sybils (colluders on throwaway identities: when one's
//! reputation falls below a newcomer's, it is replaced by a fresh identity). Bad workers are split
//! evenly between the three kinds. Jobs come from established honest submitters, n=3 and k=2;
//! each draws 12 bidders at random, selects as the node does (`selection::select`), decides
//! with the `consensus::Tally`, and feeds the verdict to `reputation::apply`.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::consensus::{Decision, Report, Tally};
use crate::reputation::{self, Entry, Outcome, Standing};
use crate::selection::{Candidate, select};

/// What a worker does with a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Returns the right hash.
    Honest,
    /// Returns a wrong hash of its own.
    Liar,
    /// Returns the colluders' shared wrong hash.
    Colluder,
    /// A colluder that discards its identity when its reputation drops.
    Sybil,
}

/// Simulation settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Workers in the population.
    pub workers: usize,
    /// Share of bad workers.
    pub bad_fraction: f64,
    /// Jobs to run.
    pub jobs: usize,
    /// Bidders per job.
    pub bidders: usize,
    /// Redundancy.
    pub n: usize,
    /// Consensus.
    pub k: usize,
    /// Whether selection is weighted by reputation (else uniform).
    pub weighted: bool,
    /// RNG seed.
    pub seed: u64,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcomes {
    /// Jobs whose accepted result was wrong.
    pub wrong_accepted: usize,
    /// Jobs with no accepted result.
    pub no_result: usize,
    /// Jobs run.
    pub jobs: usize,
}

impl Outcomes {
    /// Share of jobs with a wrong accepted result.
    pub fn wrong_share(&self) -> f64 {
        self.wrong_accepted as f64 / self.jobs.max(1) as f64
    }

    /// Share of jobs with no accepted result.
    pub fn no_result_share(&self) -> f64 {
        self.no_result as f64 / self.jobs.max(1) as f64
    }
}

const RIGHT: u64 = 0;
const COLLUDED: u64 = 1;
const SUBMITTERS: u64 = 20;

/// Runs the simulation.
pub fn run(settings: &Settings) -> Outcomes {
    let mut rng = StdRng::seed_from_u64(settings.seed);
    let bad = (settings.workers as f64 * settings.bad_fraction).round() as usize;
    // Identities: submitters are 0..SUBMITTERS; workers get ids from SUBMITTERS up.
    let mut next_id = SUBMITTERS;
    let mut population: Vec<(u64, Kind)> = (0..settings.workers)
        .map(|i| {
            let kind = if i >= bad {
                Kind::Honest
            } else {
                [Kind::Liar, Kind::Colluder, Kind::Sybil][i % 3]
            };
            next_id += 1;
            (next_id, kind)
        })
        .collect();
    let mut standings: HashMap<u64, Standing> = HashMap::new();
    // An established network: submitters and the existing workers have a history already;
    // Sybil identities are fresh.
    let established = Standing {
        history: 2.0 * reputation::MATURITY_JOBS,
        ..Standing::default()
    };
    for s in 0..SUBMITTERS {
        standings.insert(s, established);
    }
    for (id, kind) in &population {
        if *kind != Kind::Sybil {
            standings.insert(*id, established);
        }
    }

    let mut outcomes = Outcomes {
        wrong_accepted: 0,
        no_result: 0,
        jobs: settings.jobs,
    };
    for job in 0..settings.jobs {
        let mut bidders: Vec<usize> = (0..population.len()).collect();
        for i in 0..settings.bidders.min(bidders.len()) {
            let j = rng.random_range(i..bidders.len());
            bidders.swap(i, j);
        }
        bidders.truncate(settings.bidders);
        let candidates: Vec<Candidate<usize, usize>> = bidders
            .iter()
            .map(|&i| {
                let standing = standings.get(&population[i].0).copied().unwrap_or_default();
                Candidate {
                    worker: i,
                    weight: if settings.weighted {
                        reputation::selection_weight(&standing)
                    } else {
                        1.0
                    },
                    group: i,
                }
            })
            .collect();
        let chosen = select(&candidates, settings.n, &mut rng).chosen;
        let Ok(mut tally) = Tally::new(settings.k, chosen.iter().copied()) else {
            continue;
        };
        let mut order = chosen.clone();
        for i in (1..order.len()).rev() {
            let j = rng.random_range(0..=i);
            order.swap(i, j);
        }
        let mut hashes = HashMap::new();
        for &w in &order {
            let hash = match population[w].1 {
                Kind::Honest => RIGHT,
                Kind::Colluder | Kind::Sybil => COLLUDED,
                Kind::Liar => 2 + rng.random_range(0..u64::MAX / 2),
            };
            hashes.insert(w, hash);
            let _ = tally.record(&w, Report::Result(hash));
        }
        let accepted = match tally.decision() {
            Decision::Accepted { hash, .. } => Some(hash),
            _ => None,
        };
        match accepted {
            Some(RIGHT) => {}
            Some(_) => outcomes.wrong_accepted += 1,
            None => outcomes.no_result += 1,
        }
        let workers = chosen
            .iter()
            .map(|w| {
                let outcome = match accepted {
                    Some(h) if hashes[w] == h => Outcome::Agreed,
                    _ => Outcome::Disagreed,
                };
                (population[*w].0, outcome, 0)
            })
            .collect();
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&(job as u64).to_le_bytes());
        reputation::apply(
            &mut standings,
            &Entry {
                id,
                issuer: job as u64 % SUBMITTERS,
                issued_at: job as u64,
                workers,
            },
        );
        // Throwaway identities: a Sybil that lost standing comes back as a newcomer.
        for (id, kind) in population.iter_mut() {
            if *kind == Kind::Sybil
                && standings
                    .get(id)
                    .is_some_and(|s| s.reputation < reputation::START)
            {
                next_id += 1;
                *id = next_id;
            }
        }
    }
    outcomes
}

/// One row of the attack table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    /// Share of bad workers.
    pub bad_fraction: f64,
    /// Uniform selection.
    pub uniform: Outcomes,
    /// Reputation-weighted selection.
    pub weighted: Outcomes,
}

/// The table the README quotes: bad fractions 10%, 20%, 33%, with and without weighting.
pub fn attack_table(jobs: usize, seed: u64) -> Vec<Row> {
    [0.10, 0.20, 0.33]
        .into_iter()
        .map(|bad_fraction| {
            let settings = |weighted| Settings {
                workers: 200,
                bad_fraction,
                jobs,
                bidders: 12,
                n: 3,
                k: 2,
                weighted,
                seed,
            };
            Row {
                bad_fraction,
                uniform: run(&settings(false)),
                weighted: run(&settings(true)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighting_accepts_strictly_fewer_wrong_results_at_every_bad_fraction() {
        for row in attack_table(3000, 2026) {
            assert!(row.uniform.wrong_accepted > 0, "{row:?}");
            assert!(
                row.weighted.wrong_share() < row.uniform.wrong_share(),
                "at {:.0}% bad: weighted {:.4} vs uniform {:.4}",
                row.bad_fraction * 100.0,
                row.weighted.wrong_share(),
                row.uniform.wrong_share()
            );
        }
    }

    #[test]
    fn honest_population_never_accepts_a_wrong_result() {
        let outcomes = run(&Settings {
            workers: 50,
            bad_fraction: 0.0,
            jobs: 500,
            bidders: 12,
            n: 3,
            k: 2,
            weighted: true,
            seed: 1,
        });
        assert_eq!((outcomes.wrong_accepted, outcomes.no_result), (0, 0));
    }
}
