//! Recognising replayed messages.
//!
//! A signed message stays valid for the allowed clock skew, so within that window an attacker
//! could publish a captured message again. The cache remembers the content id of every message
//! accepted within twice the skew (after that the timestamp check rejects it anyway), bounded
//! in size so a flood cannot exhaust memory.

use std::collections::{HashMap, VecDeque};

use distributeai_protocol::Digest;
use distributeai_protocol::time::TimestampMs;

/// Content ids seen recently.
#[derive(Debug)]
pub struct SeenCache {
    window_ms: u64,
    capacity: usize,
    seen: HashMap<Digest, TimestampMs>,
    order: VecDeque<(TimestampMs, Digest)>,
}

impl SeenCache {
    /// Remembers ids for `window_ms`, at most `capacity` of them.
    pub fn new(window_ms: u64, capacity: usize) -> Self {
        Self {
            window_ms,
            capacity: capacity.max(1),
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Records `id` seen at `now`; false if it was already seen within the window.
    pub fn first_sighting(&mut self, id: Digest, now: TimestampMs) -> bool {
        self.expire(now);
        if self.seen.contains_key(&id) {
            return false;
        }
        if self.seen.len() >= self.capacity {
            // Forget the oldest: a replay of it will still fail the timestamp check once it is
            // older than the skew, and capacity is sized well above honest traffic.
            if let Some((_, oldest)) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(id, now);
        self.order.push_back((now, id));
        true
    }

    /// Whether `id` was seen within the window before `now` (records nothing).
    pub fn contains(&self, id: &Digest, now: TimestampMs) -> bool {
        self.seen
            .get(id)
            .is_some_and(|at| at.saturating_add(self.window_ms) > now)
    }

    fn expire(&mut self, now: TimestampMs) {
        while let Some(&(at, id)) = self.order.front() {
            if at.saturating_add(self.window_ms) > now {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&id);
        }
    }

    /// Ids currently remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_within_the_window_are_caught_and_old_ids_forgotten() {
        let mut cache = SeenCache::new(1000, 10);
        let a = Digest([1; 32]);
        assert!(cache.first_sighting(a, 0));
        assert!(!cache.first_sighting(a, 999));
        assert!(
            cache.first_sighting(a, 1000 + 999),
            "forgotten after the window"
        );
    }

    #[test]
    fn capacity_is_bounded() {
        let mut cache = SeenCache::new(u64::MAX / 2, 3);
        for i in 0..10u8 {
            assert!(cache.first_sighting(Digest([i; 32]), u64::from(i)));
        }
        assert_eq!(cache.len(), 3);
        assert!(!cache.first_sighting(Digest([9; 32]), 20));
    }
}
