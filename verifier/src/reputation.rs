//! Reputation and credits, computed the same way on every node from the set of verdicts.
//!
//! # The rule
//!
//! Every identity starts at [`START`] (100). Each verdict moves the reputation of each worker it
//! names: [`AGREED`] +5 for a result that agreed with consensus, [`DISAGREED`] -10 for one that
//! did not, [`SILENT`] -20 for going silent on an assignment, [`FAILED`] -2 for a reported
//! failure (timeouts and out-of-memory are often the job's fault, so they cost little).
//! Reputation stays within `0..=1000`.
//!
//! To hold up against throwaway identities:
//! - **A verdict counts in proportion to its issuer's standing**: the deltas are multiplied by
//!   the issuer's weight, `standing(issuer) = min(rep/100, 1) x maturity(issuer)`, so a swarm of
//!   fresh identities issuing verdicts about each other moves almost nothing.
//! - **Maturity comes from history judged by others who count**: each agreeing result adds the
//!   issuer's weight to the worker's history `h`, and `maturity = min(1, (1 + h) / 10)^2`. A new
//!   identity starts at 0.01; about nine agreeing results judged by established submitters make
//!   it count fully, both as an issuer and in [`selection_weight`]. A ring of fresh identities
//!   judging each other starts at 0.01 weight and compounds slowly: after fifty rounds each has
//!   gained a few points where an honest worker judged by established submitters gains 250.
//!   (A brand-new network bootstraps at that same slow pace; nothing here can tell its first
//!   honest members from a ring without a trust anchor, and there is deliberately none.)
//!
//! Credits: every identity starts with a grant of [`GRANT`]; each verdict moves the paid reward
//! from its issuer (the submitter) to each agreeing worker. Balances can go below zero on paper
//! (an issuer paying more than it has); workers refuse to bid for a submitter that cannot cover
//! `reward x n`, so such a submitter gets no further work.
//!
//! The result must not depend on the order verdicts arrived in, so entries are applied in a
//! canonical order: by issue time, then by id.

use std::collections::HashMap;
use std::hash::Hash;

/// Reputation of a new identity.
pub const START: f64 = 100.0;
/// Change for a result that agreed with consensus.
pub const AGREED: f64 = 5.0;
/// Change for a result that disagreed.
pub const DISAGREED: f64 = -10.0;
/// Change for going silent on an assignment.
pub const SILENT: f64 = -20.0;
/// Change for a reported failure.
pub const FAILED: f64 = -2.0;
/// Highest reputation.
pub const MAX: f64 = 1000.0;
/// Credits every identity starts with.
pub const GRANT: i64 = 50;
/// Agreeing results after which an identity counts fully.
pub const MATURITY_JOBS: f64 = 10.0;

/// How a worker did, as a verdict records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Its result agreed.
    Agreed,
    /// Its result disagreed.
    Disagreed,
    /// It reported a failure.
    Failed,
    /// It never answered.
    Silent,
}

/// One verdict, reduced to what reputation and credits need.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<P> {
    /// A unique, stable id (the verdict's content id), for canonical ordering.
    pub id: [u8; 32],
    /// Who issued it (the job's submitter).
    pub issuer: P,
    /// When it was issued (ms).
    pub issued_at: u64,
    /// Each worker, how it did, and what it was paid.
    pub workers: Vec<(P, Outcome, u64)>,
}

/// Where one identity stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Standing {
    /// Reputation, `0..=1000`.
    pub reputation: f64,
    /// Credit balance.
    pub credits: i64,
    /// Results that agreed.
    pub agreed: u64,
    /// Results that disagreed.
    pub disagreed: u64,
    /// Reported failures.
    pub failed: u64,
    /// Assignments it went silent on.
    pub silent: u64,
    /// Agreeing results weighted by the standing of whoever judged them.
    pub history: f64,
}

impl Default for Standing {
    fn default() -> Self {
        Self {
            reputation: START,
            credits: GRANT,
            agreed: 0,
            disagreed: 0,
            failed: 0,
            silent: 0,
            history: 0.0,
        }
    }
}

impl Standing {
    /// How far this identity's history lets it count, `0.01..=1`.
    pub fn maturity(&self) -> f64 {
        let m = ((1.0 + self.history) / MATURITY_JOBS).min(1.0);
        m * m
    }

    /// How much a verdict it issues counts, `0..=1`.
    pub fn issuer_weight(&self) -> f64 {
        (self.reputation / START).clamp(0.0, 1.0) * self.maturity()
    }
}

/// The selection weight of a worker: reputation relative to a newcomer, squared so that a
/// drop costs a lot, times maturity so that throwaway identities are rarely picked.
pub fn selection_weight(standing: &Standing) -> f64 {
    let relative = standing.reputation / START;
    relative * relative * standing.maturity()
}

/// Computes every identity's standing from a set of entries, independent of their order.
pub fn compute<P: Clone + Eq + Hash>(entries: &[Entry<P>]) -> HashMap<P, Standing> {
    let mut order: Vec<&Entry<P>> = entries.iter().collect();
    order.sort_by(|a, b| a.issued_at.cmp(&b.issued_at).then(a.id.cmp(&b.id)));
    let mut standings: HashMap<P, Standing> = HashMap::new();
    for entry in order {
        apply(&mut standings, entry);
    }
    standings
}

/// Applies one entry on top of `standings`.
pub fn apply<P: Clone + Eq + Hash>(standings: &mut HashMap<P, Standing>, entry: &Entry<P>) {
    let weight = standings
        .entry(entry.issuer.clone())
        .or_default()
        .issuer_weight();
    for (worker, outcome, paid) in &entry.workers {
        if *worker == entry.issuer {
            continue; // nobody judges or pays themselves
        }
        let s = standings.entry(worker.clone()).or_default();
        let delta = match outcome {
            Outcome::Agreed => {
                s.agreed += 1;
                s.history += weight;
                AGREED
            }
            Outcome::Disagreed => {
                s.disagreed += 1;
                DISAGREED
            }
            Outcome::Failed => {
                s.failed += 1;
                FAILED
            }
            Outcome::Silent => {
                s.silent += 1;
                SILENT
            }
        };
        s.reputation = (s.reputation + delta * weight).clamp(0.0, MAX);
        let paid = i64::try_from(*paid).unwrap_or(i64::MAX);
        s.credits = s.credits.saturating_add(paid);
        let issuer = standings.entry(entry.issuer.clone()).or_default();
        issuer.credits = issuer.credits.saturating_sub(paid);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn entry(id: u8, issuer: u8, at: u64, workers: &[(u8, Outcome, u64)]) -> Entry<u8> {
        Entry {
            id: [id; 32],
            issuer,
            issued_at: at,
            workers: workers.to_vec(),
        }
    }

    #[test]
    fn base_rule_for_a_mature_issuer() {
        let mut s: HashMap<u8, Standing> = HashMap::new();
        s.insert(
            9,
            Standing {
                history: 20.0,
                ..Standing::default()
            },
        );
        assert!((s[&9].issuer_weight() - 1.0).abs() < 1e-12);
        apply(
            &mut s,
            &entry(
                1,
                9,
                100,
                &[
                    (1, Outcome::Agreed, 10),
                    (2, Outcome::Disagreed, 0),
                    (3, Outcome::Silent, 0),
                    (4, Outcome::Failed, 0),
                ],
            ),
        );
        assert_eq!(s[&1].reputation, START + AGREED);
        assert_eq!(s[&2].reputation, START + DISAGREED);
        assert_eq!(s[&3].reputation, START + SILENT);
        assert_eq!(s[&4].reputation, START + FAILED);
        assert_eq!(s[&1].credits, GRANT + 10);
        assert_eq!(s[&9].credits, GRANT - 10);
        assert_eq!(
            (s[&1].agreed, s[&2].disagreed, s[&3].silent, s[&4].failed),
            (1, 1, 1, 1)
        );

        // A fresh issuer's verdict moves almost nothing.
        let mut fresh: HashMap<u8, Standing> = HashMap::new();
        apply(&mut fresh, &entry(2, 7, 100, &[(1, Outcome::Disagreed, 0)]));
        assert!(fresh[&1].reputation > START - 0.2);
    }

    #[test]
    fn fresh_identities_voting_each_other_up_gain_little() {
        // 20 Sybils issue 50 verdicts each praising each other.
        let mut entries = Vec::new();
        let mut id = 0u8;
        for round in 0..50u64 {
            for s in 0..20u8 {
                id = id.wrapping_add(1);
                let mut e = entry(
                    id,
                    100 + s,
                    round * 100 + u64::from(s),
                    &[(100 + (s + 1) % 20, Outcome::Agreed, 0)],
                );
                e.id[1] = s;
                e.id[2] = round as u8;
                entries.push(e);
            }
        }
        let s = compute(&entries);
        // Each did "agree" 50 times, but judged only by fresh identities it gains much less
        // than an honest worker judged by a mature submitter would (+250).
        let sybil = s[&101].reputation - START;
        assert!(sybil < 0.1 * 50.0 * AGREED, "{sybil}");
    }

    proptest! {
        #[test]
        fn order_of_arrival_does_not_matter(
            raw in proptest::collection::vec((0u8..6, 0u64..50, proptest::collection::vec((0u8..6, 0u8..4, 0u64..20), 0..4)), 1..30),
            seed in any::<u64>(),
        ) {
            let entries: Vec<Entry<u8>> = raw.iter().enumerate().map(|(i, (issuer, at, ws))| {
                let workers = ws.iter().map(|(w, o, paid)| {
                    let outcome = [Outcome::Agreed, Outcome::Disagreed, Outcome::Failed, Outcome::Silent][usize::from(*o)];
                    (*w, outcome, *paid)
                }).collect();
                let mut id = [0u8; 32];
                id[0] = i as u8;
                Entry { id, issuer: *issuer, issued_at: *at, workers }
            }).collect();
            let mut shuffled = entries.clone();
            // A deterministic shuffle from the seed.
            let mut state = seed;
            for i in (1..shuffled.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let j = (state >> 33) as usize % (i + 1);
                shuffled.swap(i, j);
            }
            let a = compute(&entries);
            let b = compute(&shuffled);
            prop_assert_eq!(a.len(), b.len());
            for (k, v) in &a {
                prop_assert_eq!(v, &b[k]);
            }
        }
    }
}
