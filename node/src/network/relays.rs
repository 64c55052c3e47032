//! Which relays a node behind NAT reserves a slot on: pure bookkeeping, fed by the event loop
//! and asked for a plan (issue 10, "Reachability, automatically").
//!
//! A node that is not known to be publicly reachable keeps reservations on up to
//! [`WANTED_RELAYS`] relays, so losing one relay leaves it reachable through another. It
//! reserves as soon as it is connected to a relay, without waiting for AutoNAT: AutoNAT's
//! verdict takes one dial-back (tens of seconds behind a router that drops the probe), and a
//! public node only pays a short-lived reservation. Once AutoNAT says the node is public, the
//! reservations are released. Bootstrap peers come first; other public nodes that offer
//! relaying (they speak the hop protocol and announce a public, non-relayed address) follow.
//! A relay that refused or dropped a reservation is left alone for [`RELAY_BACKOFF`], so a
//! misbehaving relay cannot make us hammer its rate limits.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::core::transport::ListenerId;
use libp2p::{Multiaddr, PeerId};

/// How many relays a node behind NAT keeps a reservation on.
pub const WANTED_RELAYS: usize = 2;
/// How long a relay that refused or dropped our reservation is not asked again.
pub const RELAY_BACKOFF: Duration = Duration::from_secs(30);

pub use distributeai_api::Reachability;

/// A peer that can relay for us.
#[derive(Debug, Clone)]
struct Candidate {
    /// The relay's own address, ending in `/p2p/<relay>`.
    address: Multiaddr,
    /// A bootstrap peer (preferred) or a public node.
    bootstrap: bool,
}

/// A reservation asked for or held.
#[derive(Debug, Clone)]
pub struct Reservation {
    /// The circuit address we listen on (`<relay address>/p2p-circuit`).
    pub address: Multiaddr,
    /// The listener carrying it.
    pub listener: ListenerId,
    /// Whether the relay has accepted it.
    pub accepted: bool,
}

/// What the event loop should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayAction {
    /// Listen on this circuit address (reserve a slot on `relay`).
    Reserve {
        /// The relay.
        relay: PeerId,
        /// `<relay address>/p2p-circuit`.
        address: Multiaddr,
    },
    /// Close this relay listener (give the reservation up).
    Release(ListenerId),
}

/// Relay candidates and our reservations on them.
#[derive(Debug, Default)]
pub struct Relays {
    candidates: HashMap<PeerId, Candidate>,
    reservations: HashMap<PeerId, Reservation>,
    backoff: HashMap<PeerId, Instant>,
}

impl Relays {
    /// Notes a peer that can relay for us, reached at `address` (with `/p2p/<peer>`).
    pub fn add_candidate(&mut self, peer: PeerId, address: Multiaddr, bootstrap: bool) {
        let entry = self.candidates.entry(peer).or_insert(Candidate {
            address: address.clone(),
            bootstrap,
        });
        entry.bootstrap |= bootstrap;
        if !entry.bootstrap || bootstrap {
            entry.address = address;
        }
    }

    /// Whether `peer` is a relay candidate.
    pub fn is_candidate(&self, peer: &PeerId) -> bool {
        self.candidates.contains_key(peer)
    }

    /// The reservation on `peer`, if any.
    pub fn reservation(&self, peer: &PeerId) -> Option<&Reservation> {
        self.reservations.get(peer)
    }

    /// Every reservation, by relay.
    pub fn reservations(&self) -> impl Iterator<Item = (&PeerId, &Reservation)> {
        self.reservations.iter()
    }

    /// The event loop opened `listener` for a reservation on `relay`.
    pub fn on_listening(&mut self, relay: PeerId, address: Multiaddr, listener: ListenerId) {
        self.reservations.insert(
            relay,
            Reservation {
                address,
                listener,
                accepted: false,
            },
        );
    }

    /// The relay accepted (or renewed) our reservation.
    pub fn on_accepted(&mut self, relay: PeerId) {
        if let Some(r) = self.reservations.get_mut(&relay) {
            r.accepted = true;
        }
    }

    /// A listener closed; returns the relay it reserved on, if it was ours. Unless we
    /// released it ourselves, the relay is backed off.
    pub fn on_listener_closed(
        &mut self,
        listener: ListenerId,
        released: bool,
        now: Instant,
    ) -> Option<PeerId> {
        let relay = self
            .reservations
            .iter()
            .find(|(_, r)| r.listener == listener)
            .map(|(p, _)| *p)?;
        self.reservations.remove(&relay);
        if !released {
            self.backoff.insert(relay, now + RELAY_BACKOFF);
        }
        Some(relay)
    }

    /// What to do now, given our reachability and which peers we hold a direct connection to.
    pub fn plan(
        &mut self,
        reachability: Reachability,
        directly_connected: impl Fn(&PeerId) -> bool,
        now: Instant,
    ) -> Vec<RelayAction> {
        self.backoff.retain(|_, until| *until > now);
        if reachability == Reachability::Public {
            return self
                .reservations
                .values()
                .map(|r| RelayAction::Release(r.listener))
                .collect();
        }
        let held = self.reservations.len();
        if held >= WANTED_RELAYS {
            return Vec::new();
        }
        let mut choices: Vec<(&PeerId, &Candidate)> = self
            .candidates
            .iter()
            .filter(|(p, _)| {
                !self.reservations.contains_key(p)
                    && !self.backoff.contains_key(p)
                    && directly_connected(p)
            })
            .collect();
        // Bootstrap peers first; then a stable order, so every planning round agrees.
        choices.sort_by_key(|(p, c)| (!c.bootstrap, p.to_bytes()));
        choices
            .into_iter()
            .take(WANTED_RELAYS - held)
            .map(|(relay, c)| RelayAction::Reserve {
                relay: *relay,
                address: c
                    .address
                    .clone()
                    .with(libp2p::multiaddr::Protocol::P2pCircuit),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(peer: PeerId) -> Multiaddr {
        format!("/ip4/203.0.113.2/tcp/4001/p2p/{peer}")
            .parse()
            .expect("address")
    }

    #[test]
    fn reserves_on_two_relays_bootstrap_first_and_releases_when_public() {
        let now = Instant::now();
        let (boot, public_a, public_b) = (PeerId::random(), PeerId::random(), PeerId::random());
        let mut relays = Relays::default();
        relays.add_candidate(public_a, addr(public_a), false);
        relays.add_candidate(public_b, addr(public_b), false);
        relays.add_candidate(boot, addr(boot), true);
        let plan = relays.plan(Reachability::Unknown, |_| true, now);
        assert_eq!(plan.len(), WANTED_RELAYS);
        assert!(
            matches!(&plan[0], RelayAction::Reserve { relay, address }
                if *relay == boot && address.to_string().ends_with("/p2p-circuit")),
            "{plan:?}"
        );
        let mut listeners = Vec::new();
        for (i, action) in plan.iter().enumerate() {
            let RelayAction::Reserve { relay, address } = action else {
                panic!("{action:?}")
            };
            let id = ListenerId::next();
            listeners.push(id);
            relays.on_listening(*relay, address.clone(), id);
            if i == 0 {
                relays.on_accepted(*relay);
            }
        }
        assert!(relays.plan(Reachability::Private, |_| true, now).is_empty());
        let release = relays.plan(Reachability::Public, |_| true, now);
        assert_eq!(release.len(), 2);
        assert!(release.iter().all(|a| matches!(a, RelayAction::Release(_))));
    }

    #[test]
    fn only_directly_connected_relays_and_a_refusing_relay_is_backed_off() {
        let now = Instant::now();
        let (boot, other) = (PeerId::random(), PeerId::random());
        let mut relays = Relays::default();
        relays.add_candidate(boot, addr(boot), true);
        relays.add_candidate(other, addr(other), false);
        let plan = relays.plan(Reachability::Private, |p| *p == boot, now);
        assert_eq!(plan.len(), 1);
        let listener = ListenerId::next();
        relays.on_listening(boot, addr(boot), listener);
        assert_eq!(relays.on_listener_closed(listener, false, now), Some(boot));
        // Refused: not asked again until the back-off ends.
        assert!(
            relays
                .plan(Reachability::Private, |p| *p == boot, now)
                .is_empty()
        );
        let later = now + RELAY_BACKOFF + Duration::from_secs(1);
        assert_eq!(
            relays
                .plan(Reachability::Private, |p| *p == boot, later)
                .len(),
            1
        );
        // A listener that is not ours is none of our business.
        assert_eq!(
            relays.on_listener_closed(ListenerId::next(), false, now),
            None
        );
    }
}
