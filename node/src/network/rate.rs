//! Per-sender rate limits on what enters a node (issue 20): token buckets keyed by the sender,
//! with time passed in so they are tested without waiting.
//!
//! A bucket holds at most `burst` tokens and gains `per_second` a second; each message takes
//! one, and a message finding the bucket empty is dropped (and counted by the caller). The map
//! of buckets is bounded: when it is full, a sender not in it is refused until a bucket frees
//! (a full bucket, that is one whose sender has been quiet long enough, is dropped first), so a
//! flood of fresh keys cannot grow it, nor evict the buckets of senders being limited.

use std::collections::HashMap;
use std::hash::Hash;

use distributeai_protocol::time::TimestampMs;

/// How fast one sender may send, and how much at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens a second.
    pub per_second: f64,
    /// Most tokens held: the largest burst.
    pub burst: f64,
}

impl Rate {
    /// Direct requests from one peer (bids, assignments, commitments, reveals, output pieces,
    /// ledger pages, invitations): 100 a second, bursts of 1,000. A burst of 200 jobs between
    /// one submitter and a worker (`scripts/bench-burst.sh`) is about 800 requests, and an
    /// output of 512 MiB is fetched in 1,024 pieces over a few seconds.
    pub const REQUESTS_PER_PEER: Rate = Rate {
        per_second: 100.0,
        burst: 1_000.0,
    };
    /// Job announcements and cancels signed by one identity, wherever they came from: 32 a
    /// second, bursts of 256 (the burst bench posts 200 jobs at once). Each admitted job may
    /// make a worker hold its announcement and spec (up to about 512 KiB) as a bid.
    pub const JOBS_PER_SIGNER: Rate = Rate {
        per_second: 32.0,
        burst: 256.0,
    };
    /// Verdicts signed by one identity, by gossip: one per job it ran, so the job rate's, and
    /// each costs up to about 260 signature checks (`limits::MAX_VERDICT_WORKERS`).
    pub const VERDICTS_PER_SIGNER: Rate = Rate {
        per_second: 32.0,
        burst: 256.0,
    };
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: TimestampMs,
}

/// Token buckets for at most `capacity` senders.
#[derive(Debug)]
pub struct RateLimiter<K> {
    rate: Rate,
    capacity: usize,
    buckets: HashMap<K, Bucket>,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    /// Buckets of `rate` for at most `capacity` senders.
    pub fn new(rate: Rate, capacity: usize) -> Self {
        Self {
            rate,
            capacity: capacity.max(1),
            buckets: HashMap::new(),
        }
    }

    fn refill(&self, bucket: &mut Bucket, now: TimestampMs) {
        let elapsed_s = now.saturating_sub(bucket.at) as f64 / 1000.0;
        bucket.tokens = (bucket.tokens + elapsed_s * self.rate.per_second).min(self.rate.burst);
        bucket.at = bucket.at.max(now);
    }

    /// Whether `sender` may send one more message at `now`; takes its token if so.
    pub fn allow(&mut self, sender: &K, now: TimestampMs) -> bool {
        if !self.buckets.contains_key(sender) && self.buckets.len() >= self.capacity {
            // Senders quiet long enough to have a full bucket lose nothing by being forgotten.
            let rate = self.rate;
            self.buckets.retain(|_, b| {
                let elapsed_s = now.saturating_sub(b.at) as f64 / 1000.0;
                b.tokens + elapsed_s * rate.per_second < rate.burst
            });
            if self.buckets.len() >= self.capacity {
                return false;
            }
        }
        let fresh = Bucket {
            tokens: self.rate.burst,
            at: now,
        };
        let mut bucket = self.buckets.get(sender).copied().unwrap_or(fresh);
        self.refill(&mut bucket, now);
        let allowed = bucket.tokens >= 1.0;
        if allowed {
            bucket.tokens -= 1.0;
        }
        self.buckets.insert(sender.clone(), bucket);
        allowed
    }

    /// Senders with a bucket.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no sender has a bucket.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate {
        per_second: 10.0,
        burst: 5.0,
    };

    #[test]
    fn a_burst_then_the_rate() {
        let mut limiter = RateLimiter::new(RATE, 10);
        let allowed = (0..8).filter(|_| limiter.allow(&1, 1_000)).count();
        assert_eq!(allowed, 5, "the burst");
        assert!(!limiter.allow(&1, 1_050), "half a token");
        assert!(limiter.allow(&1, 1_100), "one token after 100 ms");
        assert!(!limiter.allow(&1, 1_100));
        // Another sender has its own bucket.
        assert!(limiter.allow(&2, 1_100));
        // Quiet for a long time: a full burst again, no more.
        let allowed = (0..8).filter(|_| limiter.allow(&1, 100_000)).count();
        assert_eq!(allowed, 5);
    }

    #[test]
    fn fresh_keys_cannot_grow_the_map_nor_evict_a_limited_sender() {
        let mut limiter = RateLimiter::new(RATE, 4);
        // Sender 0 is being limited: its bucket is empty.
        while limiter.allow(&0, 0) {}
        for key in 1..1_000 {
            limiter.allow(&key, 0);
        }
        assert_eq!(limiter.len(), 4);
        assert!(!limiter.allow(&0, 0), "still limited");
        // Once the others have been quiet long enough, newcomers get their place.
        assert!(limiter.allow(&5_000, 10_000));
    }
}
