//! Seeded, network-free simulations of attacks on the job flow and the ledger.
//!
//! - [`run`] / [`attack_table`]: how often a wrong result is accepted with and without
//!   reputation-weighted selection. The population: honest workers; random liars (each returns
//!   its own wrong hash); colluders (all return the same wrong hash); and Sybils (colluders on
//!   throwaway identities: when one's reputation falls below a newcomer's, it is replaced by a
//!   fresh identity). Bad workers are split evenly between the three kinds. Jobs come from
//!   established honest submitters, n=3 and k=2; each draws 12 bidders at random, selects as
//!   the node does (`selection::select`), decides with the `consensus::Tally`, and feeds the
//!   verdict to `reputation::apply`.
//! - [`farming_ring`] / [`ring_table`]: identities that sign verdicts only about each other,
//!   optionally backed by identities of the attacker that matured by honest work, against an
//!   honest worker after as many jobs ([`honest_worker`]); [`ring_limit`] and
//!   [`ring_takeoff_size`] give the mean-field fixed point and the ring size from which a ring
//!   lifts itself.
//! - [`slander`]: a submitter whose jobs its own liars take, so that each verdict marks an
//!   honest worker disagreeing with the worker's own signed evidence.

use std::collections::{HashMap, HashSet};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::consensus::{Decision, Report, Tally};
use crate::reputation::{self, Book, Entry, Outcome, Standing};
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
    let mut standings: Book<u64> = Book::new();
    // An established network: submitters and the existing workers have a history already;
    // Sybil identities are fresh.
    let established = Standing {
        history: 2.0 * reputation::MATURITY_JOBS,
        ..Standing::default()
    };
    for s in 0..SUBMITTERS {
        standings.seed(s, established);
    }
    for (id, kind) in &population {
        if *kind != Kind::Sybil {
            standings.seed(*id, established);
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

/// An entry id from a counter: unique within one scenario.
fn entry_id(n: u64) -> [u8; 32] {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&n.to_be_bytes());
    id
}

/// An identity that counts fully: history twice what full maturity needs, grant unlocked.
fn established() -> Standing {
    Standing {
        history: 2.0 * reputation::MATURITY_JOBS,
        ..Standing::default()
    }
}

/// Most workers one verdict may name (the protocol's bound).
pub const MAX_NAMED: usize = 64;

/// A farming ring: identities that sign verdicts only about each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingSettings {
    /// Identities in the ring.
    pub ring: usize,
    /// Entries the ring signs in all, issued in turn by each member, each naming the next
    /// `min(ring - 1, 64)` members as agreeing.
    pub entries: usize,
    /// Credits each entry tries to pay each worker it names.
    pub reward: u64,
    /// Identities outside the ring that count fully (the attacker's, matured by honest work)
    /// and judge every member agreeing twice before the ring starts: each member then has
    /// history `backers x PAIR_CAP`. 0 for a ring of fresh keys with no honest work.
    pub backers: usize,
}

/// What a ring holds at the end, over its members.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RingOutcome {
    /// Highest issuer weight of a member, `0..=1` (a newcomer's is 0.01).
    pub issuer_weight: f64,
    /// Highest selection weight of a member (a newcomer's is 0.01).
    pub selection_weight: f64,
    /// Highest reputation of a member (points).
    pub reputation: f64,
    /// Highest history of a member (history units).
    pub history: f64,
    /// Credits the members hold in all (credits), locked grants included.
    pub credits: i64,
    /// Credits the members can spend in all (credits).
    pub spendable: i64,
    /// Entries whose payments were void.
    pub voided: u64,
}

/// Runs a farming ring (see [`RingSettings`]).
pub fn farming_ring(settings: &RingSettings) -> RingOutcome {
    let mut book: Book<u64> = Book::new();
    let ring = settings.ring.max(1) as u64;
    // Members are 0..ring; backers come after.
    let mut n = 0u64;
    for b in 0..settings.backers as u64 {
        let backer = ring + b;
        book.seed(backer, established());
        for _ in 0..2 {
            for member in 0..ring {
                n += 1;
                reputation::apply(
                    &mut book,
                    &Entry {
                        id: entry_id(n),
                        issuer: backer,
                        issued_at: n,
                        workers: vec![(member, Outcome::Agreed, 0)],
                    },
                );
            }
        }
    }
    let named = (settings.ring.saturating_sub(1)).min(MAX_NAMED) as u64;
    for i in 0..settings.entries as u64 {
        let issuer = i % ring;
        let workers = (1..=named)
            .map(|k| ((issuer + k) % ring, Outcome::Agreed, settings.reward))
            .collect();
        n += 1;
        reputation::apply(
            &mut book,
            &Entry {
                id: entry_id(n),
                issuer,
                issued_at: n,
                workers,
            },
        );
    }
    let members: Vec<Standing> = (0..ring).map(|m| book.standing(&m)).collect();
    let max = |f: fn(&Standing) -> f64| members.iter().map(f).fold(0.0, f64::max);
    RingOutcome {
        issuer_weight: max(Standing::issuer_weight),
        selection_weight: max(reputation::selection_weight),
        reputation: max(|s| s.reputation),
        history: max(|s| s.history),
        credits: members.iter().map(|s| s.credits).sum(),
        spendable: members.iter().map(Standing::spendable).sum(),
        voided: members.iter().map(|s| s.voided).sum(),
    }
}

/// Where an honest worker stands after some jobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkerOutcome {
    /// Its issuer weight, `0..=1`.
    pub issuer_weight: f64,
    /// Its selection weight.
    pub selection_weight: f64,
    /// Its reputation (points).
    pub reputation: f64,
    /// Its history (history units).
    pub history: f64,
    /// Credits it holds (credits).
    pub credits: i64,
    /// Credits it can spend (credits).
    pub spendable: i64,
}

impl From<Standing> for WorkerOutcome {
    fn from(s: Standing) -> Self {
        Self {
            issuer_weight: s.issuer_weight(),
            selection_weight: reputation::selection_weight(&s),
            reputation: s.reputation,
            history: s.history,
            credits: s.credits,
            spendable: s.spendable(),
        }
    }
}

/// Established honest submitters in [`honest_worker`].
pub const HONEST_SUBMITTERS: u64 = 20;

/// A fresh honest worker running `jobs` jobs for [`HONEST_SUBMITTERS`] established submitters
/// in turn, each agreeing and paying it `reward` credits. The submitters are seeded with
/// enough credits to pay.
pub fn honest_worker(jobs: usize, reward: u64) -> WorkerOutcome {
    honest_worker_book(jobs, reward, &HashSet::new())
        .standing(&0)
        .into()
}

fn honest_worker_book(jobs: usize, reward: u64, equivocators: &HashSet<u64>) -> Book<u64> {
    let mut book: Book<u64> = Book::with_equivocators(equivocators);
    let budget = i64::try_from(reward.saturating_mul(jobs as u64)).unwrap_or(i64::MAX / 2);
    for s in 1..=HONEST_SUBMITTERS {
        book.seed(
            s,
            Standing {
                credits: reputation::GRANT.saturating_add(budget),
                ..established()
            },
        );
    }
    for j in 0..jobs as u64 {
        reputation::apply(
            &mut book,
            &Entry {
                id: entry_id(j + 1),
                issuer: 1 + j % HONEST_SUBMITTERS,
                issued_at: j + 1,
                workers: vec![(0, Outcome::Agreed, reward)],
            },
        );
    }
    book
}

/// Jobs a fresh honest worker needs (as in [`honest_worker`]) before its issuer weight
/// exceeds `weight`; `None` if it never does within 10,000 jobs.
pub fn jobs_to_weight(weight: f64) -> Option<usize> {
    (1..=10_000).find(|&jobs| honest_worker(jobs, 0).issuer_weight > weight)
}

/// The weight a ring of `ring` members converges to (mean field: every member judged by
/// every other as often as it takes, at the vouch value of their weight), when each member
/// has `outside_history` from judges outside the ring. Reputation is assumed at least 100,
/// as it is for members that only agree.
pub fn ring_limit(ring: usize, outside_history: f64) -> f64 {
    let maturity = |h: f64| {
        let m = ((1.0 + h) / reputation::MATURITY_JOBS).min(1.0);
        m * m
    };
    let others = ring.saturating_sub(1) as f64;
    let mut w = maturity(outside_history);
    for _ in 0..100_000 {
        let next =
            maturity(outside_history + others * reputation::PAIR_CAP * reputation::vouch_value(w));
        if (next - w).abs() < 1e-13 {
            return next;
        }
        w = next;
    }
    w
}

/// The smallest ring whose members, each with `outside_history` from outside judges, lift
/// each other to full weight (`ring_limit >= 0.99`); `None` if no ring up to 10^9 members
/// does.
pub fn ring_takeoff_size(outside_history: f64) -> Option<usize> {
    const LIMIT: usize = 1_000_000_000;
    let takes_off = |r: usize| ring_limit(r, outside_history) >= 0.99;
    let mut hi = 2;
    while !takes_off(hi) {
        if hi >= LIMIT {
            return None;
        }
        hi = (hi * 2).min(LIMIT);
    }
    let mut lo = hi / 2; // does not take off (or is below 2)
    if lo < 2 {
        return Some(hi);
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if takes_off(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// One row of the farming-ring table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RingRow {
    /// The ring's settings.
    pub settings: RingSettings,
    /// What the ring holds.
    pub ring: RingOutcome,
    /// An honest worker after as many jobs as the ring signed entries.
    pub honest: WorkerOutcome,
}

/// The farming-ring table: fresh rings of `sizes` members signing each of `entries` entries,
/// paying 1 credit per worker named, against an honest worker after as many jobs at 1 credit.
pub fn ring_table(sizes: &[usize], entries: &[usize]) -> Vec<RingRow> {
    let mut rows = Vec::new();
    for &e in entries {
        let honest = honest_worker(e, 1);
        for &r in sizes {
            let settings = RingSettings {
                ring: r,
                entries: e,
                reward: 1,
                backers: 0,
            };
            rows.push(RingRow {
                settings,
                ring: farming_ring(&settings),
                honest,
            });
        }
    }
    rows
}

/// A slandering submitter: its jobs are taken by two liars of its own and one honest worker
/// (n=3, k=2), so each verdict marks the honest worker disagreeing with the worker's own
/// signed reveal as evidence, and the liars agreeing. This is what a slanderer can still do
/// once a charge needs the worker's signature.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlanderSettings {
    /// The slanderer's history (history units): 0 for a fresh key or a ring member (which
    /// gain nothing, see [`farming_ring`]), 9 or more for one that counts fully.
    pub slanderer_history: f64,
    /// Whether the slanderer is a known equivocator.
    pub equivocator: bool,
    /// Honest jobs the worker ran for established submitters before.
    pub honest_jobs: usize,
    /// Slandering verdicts, each after the honest jobs.
    pub slanders: usize,
}

/// What slander did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlanderOutcome {
    /// The slanderer's issuer weight, `0..=1`.
    pub slanderer_weight: f64,
    /// The honest worker before the slander.
    pub before: WorkerOutcome,
    /// The honest worker after it.
    pub after: WorkerOutcome,
    /// History each liar gained from the slanderer's verdicts (history units).
    pub liar_history: f64,
}

/// Runs a slandering submitter (see [`SlanderSettings`]).
pub fn slander(settings: &SlanderSettings) -> SlanderOutcome {
    const WORKER: u64 = 0;
    const SLANDERER: u64 = 100;
    const LIARS: [u64; 2] = [101, 102];
    let equivocators = if settings.equivocator {
        HashSet::from([SLANDERER])
    } else {
        HashSet::new()
    };
    let mut book = honest_worker_book(settings.honest_jobs, 0, &equivocators);
    book.seed(
        SLANDERER,
        Standing {
            history: settings.slanderer_history,
            ..Standing::default()
        },
    );
    let before = WorkerOutcome::from(book.standing(&WORKER));
    let start = settings.honest_jobs as u64 + 1;
    for j in 0..settings.slanders as u64 {
        reputation::apply(
            &mut book,
            &Entry {
                id: entry_id(start + j),
                issuer: SLANDERER,
                issued_at: start + j,
                workers: vec![
                    (LIARS[0], Outcome::Agreed, 0),
                    (LIARS[1], Outcome::Agreed, 0),
                    (WORKER, Outcome::Disagreed, 0),
                ],
            },
        );
    }
    SlanderOutcome {
        slanderer_weight: book.standing(&SLANDERER).issuer_weight(),
        before,
        after: book.standing(&WORKER).into(),
        liar_history: book.standing(&LIARS[0]).history,
    }
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
    #[test]
    fn fresh_rings_stay_at_a_newcomers_weight_however_many_entries() {
        for row in ring_table(&[2, 5, 10, 25, 50], &[100, 10_000]) {
            let (r, e) = (row.settings.ring, row.settings.entries);
            let ring = row.ring;
            assert!(ring.issuer_weight < 0.02, "r={r} e={e}: {ring:?}");
            assert!(
                (ring.issuer_weight - reputation::NEWCOMER_WEIGHT).abs() < 1e-12,
                "r={r} e={e}: {ring:?}"
            );
            assert!(ring.selection_weight <= reputation::NEWCOMER_WEIGHT + 1e-12);
            assert_eq!((ring.history, ring.reputation), (0.0, reputation::START));
            assert_eq!(ring.spendable, 0, "r={r} e={e}");
            assert_eq!(ring.credits, reputation::GRANT * r as i64);
            assert_eq!(ring.voided, e as u64, "every payment attempt is void");
            // The honest worker after as many jobs counts fully and can spend.
            assert!(row.honest.issuer_weight > 0.9, "{:?}", row.honest);
            assert_eq!(row.honest.spendable, reputation::GRANT + e as i64);
        }
    }

    #[test]
    fn many_fresh_keys_gain_nothing() {
        let ring = farming_ring(&RingSettings {
            ring: 1_000,
            entries: 5_000,
            reward: 1_000_000,
            backers: 0,
        });
        assert_eq!(ring.spendable, 0);
        assert!((ring.issuer_weight - reputation::NEWCOMER_WEIGHT).abs() < 1e-12);
        assert!(ring.selection_weight <= reputation::NEWCOMER_WEIGHT + 1e-12);
    }

    #[test]
    fn honest_worker_counts_after_17_jobs_from_distinct_submitters() {
        assert_eq!(jobs_to_weight(0.9), Some(17));
        assert_eq!(jobs_to_weight(0.24), Some(8));
        let w = honest_worker(8, 1);
        assert_eq!(w.spendable, reputation::GRANT + 8, "unlocked after 8 jobs");
        let w = honest_worker(7, 1);
        assert_eq!(w.spendable, 7, "grant locked after 7 jobs");
        assert!((honest_worker(18, 0).issuer_weight - 1.0).abs() < 1e-12);
    }

    #[test]
    fn rings_take_off_only_from_outside_history_above_the_floor() {
        assert_eq!(ring_takeoff_size(0.0), None);
        assert_eq!(ring_takeoff_size(1.0), None);
        assert_eq!(ring_takeoff_size(4.0), None);
        assert_eq!(ring_takeoff_size(4.5), Some(25));
        assert_eq!(ring_takeoff_size(5.0), Some(11));
        assert_eq!(ring_takeoff_size(6.0), Some(5));
        assert_eq!(ring_takeoff_size(7.0), Some(4));
        assert_eq!(ring_takeoff_size(8.0), Some(2));
    }

    #[test]
    fn backed_rings_follow_the_mean_field() {
        let run = |ring, backers| {
            farming_ring(&RingSettings {
                ring,
                entries: 4_000,
                reward: 0,
                backers,
            })
        };
        // Four backers: weight 0.25, on the floor: the ring adds nothing.
        let four = run(25, 4);
        assert!((four.issuer_weight - 0.25).abs() < 1e-12, "{four:?}");
        assert_eq!(
            four.spendable,
            25 * reputation::GRANT,
            "four backers unlock grants"
        );
        assert_eq!(run(25, 3).spendable, 0, "three do not");
        // Five backers: below the take-off size it settles at the mean-field fixed point...
        let small = run(10, 5);
        let limit = ring_limit(10, 5.0);
        assert!(
            (small.issuer_weight - limit).abs() < 0.01,
            "{small:?} vs {limit}"
        );
        assert!(small.issuer_weight < 0.5);
        // ...and from it, the ring takes off.
        assert!(run(11, 5).issuer_weight > 0.99);
    }

    #[test]
    fn slander_moves_an_honest_worker_by_the_slanderers_weight() {
        let run = |slanderer_history, equivocator| {
            slander(&SlanderSettings {
                slanderer_history,
                equivocator,
                honest_jobs: 100,
                slanders: 100,
            })
        };
        let fresh = run(0.0, false);
        let lost = fresh.before.reputation - fresh.after.reputation;
        assert!((lost - 100.0 * 10.0 * 0.01).abs() < 1e-9, "{fresh:?}");
        assert_eq!(fresh.liar_history, 0.0);
        assert!(fresh.after.selection_weight > 0.9 * fresh.before.selection_weight);

        let equivocator = run(20.0, true);
        assert_eq!(equivocator.slanderer_weight, 0.0);
        assert_eq!(equivocator.after, equivocator.before);

        let mature = run(20.0, false);
        assert_eq!(mature.slanderer_weight, 1.0);
        assert_eq!(mature.after.reputation, 0.0);
        assert_eq!(mature.liar_history, reputation::PAIR_CAP);
    }
}
