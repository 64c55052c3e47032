//! How many bids a worker holds, and for whom (issue 20).
//!
//! Every bid a worker holds keeps its job's signed announcement (up to about 512 KiB, and its
//! decoded spec beside it) until the job's submitter assigns it or the job lapses. The budget
//! bounds them in number and in bytes. Filled first come, first served, a stranger announcing
//! maximal jobs from a few keys would hold all of it, and an honest submitter would get no bid
//! from this worker until the stranger's jobs expired.
//!
//! So when the budget is full, a new bid displaces the bids of the submitter holding the most,
//! as long as that submitter holds more than the new bid's submitter did before it: max-min
//! fairness, as in fair queueing (Demers, Keshav and Shenker, SIGCOMM 1989). A submitter that
//! holds nothing here always gets its bid, however many keys a flood comes from; two
//! submitters that both keep announcing end up holding about the same. Holdings are measured
//! by [`BidBudget::cost`], so that one measure bounds both the count and the bytes. Bids whose
//! image lookup is still in flight count, but cannot be displaced.
//!
//! Pure: the node's job manager lists what it holds and carries out the answer.

use std::collections::HashMap;

use distributeai_protocol::PublicKey;
use distributeai_protocol::time::TimestampMs;

/// A bid the worker holds, or is deciding on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBid<K> {
    /// What the caller knows it by (the job's id).
    pub key: K,
    /// The job's submitter.
    pub submitter: PublicKey,
    /// Bytes of its signed announcement.
    pub bytes: usize,
    /// When its job lapses; the earliest to lapse is displaced first.
    pub expires_at: TimestampMs,
    /// Whether it is a bid already made (`false`: its image lookup is in flight).
    pub displaceable: bool,
}

/// What to do with a new bid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission<K> {
    /// It fits as things are.
    Fits,
    /// It fits once these bids are dropped.
    Displace(Vec<K>),
    /// No room: every other submitter holds no more than this one does.
    Full,
}

/// The bounds of a worker's bids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BidBudget {
    /// Most bids held at once.
    pub max_bids: usize,
    /// Most bytes of signed announcements held at once.
    pub max_bytes: usize,
}

impl BidBudget {
    /// What one bid of `bytes` counts against a submitter's share: its bytes, and at least
    /// an even share of the bytes per bid (`max_bytes / max_bids`), so that a thousand tiny
    /// bids weigh as much as the count they use.
    pub fn cost(&self, bytes: usize) -> usize {
        bytes.max(self.max_bytes / self.max_bids.max(1))
    }

    /// Whether a bid of `bytes` for `submitter` fits beside `held`, and which of `held` to
    /// drop if that makes room (module docs). Never displaces a bid of `submitter` itself,
    /// nor one that is not [`HeldBid::displaceable`].
    pub fn admit<K: Clone>(
        &self,
        held: &[HeldBid<K>],
        submitter: &PublicKey,
        bytes: usize,
    ) -> Admission<K> {
        if bytes > self.max_bytes || self.max_bids == 0 {
            return Admission::Full;
        }
        let fits = |count: usize, total: usize| {
            count < self.max_bids && total.saturating_add(bytes) <= self.max_bytes
        };
        let mut count = held.len();
        let mut total: usize = held.iter().map(|h| h.bytes).sum();
        if fits(count, total) {
            return Admission::Fits;
        }
        let mut shares: HashMap<&PublicKey, usize> = HashMap::new();
        for bid in held {
            *shares.entry(&bid.submitter).or_default() += self.cost(bid.bytes);
        }
        let mine = shares.get(submitter).copied().unwrap_or(0);
        // Displaceable bids by submitter, the earliest to lapse last so `pop` takes it.
        let mut candidates: HashMap<&PublicKey, Vec<&HeldBid<K>>> = HashMap::new();
        for bid in held
            .iter()
            .filter(|h| h.displaceable && h.submitter != *submitter)
        {
            candidates.entry(&bid.submitter).or_default().push(bid);
        }
        for bids in candidates.values_mut() {
            bids.sort_by_key(|b| std::cmp::Reverse(b.expires_at));
        }
        let mut displaced = Vec::new();
        while !fits(count, total) {
            // The largest holder above this submitter that still has a bid to give up; ties
            // go to the lower key, so the answer does not depend on iteration order.
            let victim = candidates
                .iter()
                .filter(|(s, bids)| !bids.is_empty() && shares[**s] > mine)
                .max_by(|(a, _), (b, _)| shares[**a].cmp(&shares[**b]).then(b.cmp(a)))
                .map(|(s, _)| *s);
            let Some(victim) = victim else {
                return Admission::Full;
            };
            let Some(bid) = candidates.get_mut(victim).and_then(Vec::pop) else {
                return Admission::Full;
            };
            if let Some(share) = shares.get_mut(victim) {
                *share -= self.cost(bid.bytes);
            }
            count -= 1;
            total -= bid.bytes;
            displaced.push(bid.key.clone());
        }
        Admission::Displace(displaced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use distributeai_protocol::NodeIdentity;

    const BUDGET: BidBudget = BidBudget {
        max_bids: 8,
        max_bytes: 8_000,
    };

    fn key() -> PublicKey {
        NodeIdentity::generate().expect("key").public_key()
    }

    fn bid(key: u32, submitter: &PublicKey, bytes: usize) -> HeldBid<u32> {
        HeldBid {
            key,
            submitter: *submitter,
            bytes,
            expires_at: 1_000 + u64::from(key),
            displaceable: true,
        }
    }

    /// Admits bids in turn, carrying out each answer, as the node does.
    fn offer(held: &mut Vec<HeldBid<u32>>, new: HeldBid<u32>) -> bool {
        match BUDGET.admit(held, &new.submitter, new.bytes) {
            Admission::Fits => {}
            Admission::Displace(keys) => held.retain(|h| !keys.contains(&h.key)),
            Admission::Full => return false,
        }
        held.push(new);
        true
    }

    fn within_budget(held: &[HeldBid<u32>]) -> bool {
        held.len() <= BUDGET.max_bids
            && held.iter().map(|h| h.bytes).sum::<usize>() <= BUDGET.max_bytes
    }

    #[test]
    fn bids_fit_while_there_is_room() {
        let a = key();
        let mut held = Vec::new();
        for n in 0..8 {
            assert!(offer(&mut held, bid(n, &a, 1_000)), "bid {n}");
        }
        assert_eq!(BUDGET.admit(&held, &a, 1), Admission::Full);
        assert_eq!(
            BUDGET.admit::<u32>(&[], &a, 8_001),
            Admission::Full,
            "over the whole budget"
        );
    }

    #[test]
    fn a_flood_from_one_submitter_does_not_keep_out_another() {
        let (flood, honest) = (key(), key());
        let mut held = Vec::new();
        for n in 0..100 {
            offer(&mut held, bid(n, &flood, 2_000));
        }
        assert!(within_budget(&held));
        assert!(offer(&mut held, bid(1_000, &honest, 300)));
        assert!(within_budget(&held));
        // The earliest of the flood's bids to lapse went first.
        assert!(!held.iter().any(|h| h.key == 0));
    }

    #[test]
    fn many_keys_holding_one_bid_each_do_not_keep_out_a_newcomer() {
        let mut held: Vec<_> = (0..8).map(|n| bid(n, &key(), 1_000)).collect();
        let honest = key();
        assert!(offer(&mut held, bid(100, &honest, 1_000)));
        assert!(within_budget(&held));
        // A second bid of the newcomer's displaces nobody who holds less than it did.
        assert_eq!(BUDGET.admit(&held, &honest, 1_000), Admission::Full);
    }

    #[test]
    fn two_submitters_that_keep_announcing_share_evenly() {
        let (a, b) = (key(), key());
        let mut held = Vec::new();
        for n in 0..40 {
            offer(&mut held, bid(2 * n, &a, 1_000));
            offer(&mut held, bid(2 * n + 1, &b, 1_000));
            assert!(within_budget(&held));
        }
        let of = |s: &PublicKey| held.iter().filter(|h| h.submitter == *s).count();
        assert_eq!((of(&a), of(&b)), (4, 4));
    }

    #[test]
    fn bids_still_being_decided_count_but_stay() {
        let (a, b) = (key(), key());
        let held: Vec<_> = (0..8)
            .map(|n| HeldBid {
                displaceable: false,
                ..bid(n, &a, 1_000)
            })
            .collect();
        assert_eq!(BUDGET.admit(&held, &b, 1_000), Admission::Full);
    }

    #[test]
    fn a_large_bid_displaces_as_many_as_it_needs_or_none() {
        let (a, b) = (key(), key());
        let held: Vec<_> = (0..8).map(|n| bid(n, &a, 1_000)).collect();
        assert_eq!(
            BUDGET.admit(&held, &b, 2_500),
            Admission::Displace(vec![0, 1, 2])
        );
        // Taking 3 of a's 8 leaves a above b; taking all would not: b's 7,000 bytes need
        // 7 of a's, after which a holds 1,000 against b's nothing (still more), so it fits.
        assert_eq!(
            BUDGET.admit(&held, &b, 7_000),
            Admission::Displace(vec![0, 1, 2, 3, 4, 5, 6])
        );
    }
}
