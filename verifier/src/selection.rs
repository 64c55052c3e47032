//! Choosing n workers among the bidders.
//!
//! Weighted random sampling without replacement (Efraimidis–Spirakis: each candidate draws
//! `u^(1/weight)` and the largest keys win), so higher-reputation workers are preferred but
//! never certain, and workers cannot arrange to be picked together. Candidates carry a group
//! (their operator, as far as the submitter can tell); a second worker of a group is taken only
//! when no other group is left. Candidates not chosen stay as reserves, best first.

use std::collections::HashSet;
use std::hash::Hash;

use rand::{Rng, RngExt};

/// One bidder.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate<W, G> {
    /// The worker.
    pub worker: W,
    /// Its selection weight (reputation); zero or less is picked only when nothing else is left.
    pub weight: f64,
    /// Its operator group.
    pub group: G,
}

/// The chosen workers and the reserves, in preference order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection<W> {
    /// Workers to assign now.
    pub chosen: Vec<W>,
    /// Workers to assign if a chosen one fails or goes silent.
    pub reserves: Vec<W>,
}

/// Picks up to `n` workers from `candidates` (see the module documentation), with `rng`
/// drawing each candidate's uniform.
pub fn select<W: Clone, G: Eq + Hash, R: Rng + ?Sized>(
    candidates: &[Candidate<W, G>],
    n: usize,
    rng: &mut R,
) -> Selection<W> {
    // u in (0, 1].
    let uniforms: Vec<f64> = candidates
        .iter()
        .map(|_| 1.0 - rng.random::<f64>())
        .collect();
    select_with_uniforms(candidates, n, &uniforms)
}

/// [`select`] with each candidate's uniform given, `uniforms[i]` in (0, 1] for
/// `candidates[i]` (a missing or out-of-range one counts as 1): the same uniforms give the
/// same choice, so a draw whose uniforms come from public data (a hash of the job and the
/// bids) can be checked by anyone (issue 19).
pub fn select_with_uniforms<W: Clone, G: Eq + Hash>(
    candidates: &[Candidate<W, G>],
    n: usize,
    uniforms: &[f64],
) -> Selection<W> {
    let mut keyed: Vec<(f64, &Candidate<W, G>)> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let key = if c.weight > 0.0 && c.weight.is_finite() {
                let u = uniforms
                    .get(i)
                    .copied()
                    .filter(|u| *u > 0.0 && *u <= 1.0)
                    .unwrap_or(1.0);
                // ln(u)/w is the log of u^(1/w), monotone in the key.
                u.ln() / c.weight
            } else {
                f64::NEG_INFINITY
            };
            (key, c)
        })
        .collect();
    keyed.sort_by(|a, b| b.0.total_cmp(&a.0));

    let mut chosen_idx = Vec::new();
    let mut groups: HashSet<&G> = HashSet::new();
    for (i, (_, c)) in keyed.iter().enumerate() {
        if chosen_idx.len() == n {
            break;
        }
        if groups.insert(&c.group) {
            chosen_idx.push(i);
        }
    }
    for i in 0..keyed.len() {
        if chosen_idx.len() == n {
            break;
        }
        if !chosen_idx.contains(&i) {
            chosen_idx.push(i);
        }
    }
    let chosen = chosen_idx
        .iter()
        .map(|&i| keyed[i].1.worker.clone())
        .collect();
    let reserves = (0..keyed.len())
        .filter(|i| !chosen_idx.contains(i))
        .map(|i| keyed[i].1.worker.clone())
        .collect();
    Selection { chosen, reserves }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn candidates(weights: &[f64]) -> Vec<Candidate<usize, usize>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| Candidate {
                worker: i,
                weight,
                group: i,
            })
            .collect()
    }

    #[test]
    fn picks_distinct_workers_and_keeps_the_rest_as_reserves() {
        let mut rng = StdRng::seed_from_u64(1);
        let s = select(&candidates(&[1.0; 6]), 3, &mut rng);
        assert_eq!(s.chosen.len(), 3);
        assert_eq!(s.reserves.len(), 3);
        let all: HashSet<usize> = s.chosen.iter().chain(&s.reserves).copied().collect();
        assert_eq!(all.len(), 6);
        let few = select(&candidates(&[1.0; 2]), 3, &mut rng);
        assert_eq!((few.chosen.len(), few.reserves.len()), (2, 0));
    }

    #[test]
    fn prefers_high_weights_statistically() {
        // Worker 0 has weight 4, workers 1..=9 weight 1; choose 3 of 10, 20,000 times.
        let mut weights = vec![1.0; 10];
        weights[0] = 4.0;
        let c = candidates(&weights);
        let mut rng = StdRng::seed_from_u64(42);
        let mut picked = [0u32; 10];
        for _ in 0..20_000 {
            for w in select(&c, 3, &mut rng).chosen {
                picked[w] += 1;
            }
        }
        let heavy = f64::from(picked[0]) / 20_000.0;
        let light = picked[1..].iter().map(|&p| f64::from(p)).sum::<f64>() / 9.0 / 20_000.0;
        assert!(heavy > 0.6, "heavy worker picked in {heavy:.2} of rounds");
        assert!(heavy > 2.0 * light, "heavy {heavy:.2} vs light {light:.2}");
        assert!(
            picked[1..].iter().all(|&p| p > 0),
            "every worker is picked sometimes"
        );
    }

    #[test]
    fn avoids_taking_two_workers_of_one_group_while_others_remain() {
        let c = vec![
            Candidate {
                worker: 0,
                weight: 100.0,
                group: "home-a",
            },
            Candidate {
                worker: 1,
                weight: 100.0,
                group: "home-a",
            },
            Candidate {
                worker: 2,
                weight: 0.01,
                group: "home-b",
            },
            Candidate {
                worker: 3,
                weight: 0.01,
                group: "home-c",
            },
        ];
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let s = select(&c, 3, &mut rng);
            let from_a = s.chosen.iter().filter(|w| **w < 2).count();
            assert_eq!(from_a, 1, "{:?}", s.chosen);
        }
        // With only one group, it still fills n.
        let same: Vec<_> = (0..3)
            .map(|i| Candidate {
                worker: i,
                weight: 1.0,
                group: 0,
            })
            .collect();
        assert_eq!(select(&same, 3, &mut rng).chosen.len(), 3);
    }

    #[test]
    fn zero_weight_is_a_last_resort() {
        let mut rng = StdRng::seed_from_u64(3);
        let s = select(&candidates(&[0.0, 1.0, 1.0]), 2, &mut rng);
        assert!(!s.chosen.contains(&0));
        assert_eq!(s.reserves, vec![0]);
    }
}
