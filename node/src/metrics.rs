//! The node's Prometheus metrics (prometheus-client), served at `/metrics`.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of a dropped message: what it was and why it was dropped.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// `gossip`, `request`, `response`, or a message type.
    pub kind: String,
    /// The validation reason (`bad_signature`, `oversized`, `stale`, `replayed`, ...).
    pub reason: String,
}

/// Labels of an accepted message.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The message type.
    pub kind: String,
}

/// Labels of a NAT-traversal event.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NatLabels {
    /// `hole_punch`, `relay_reservation`, `pruned_address`.
    pub event: String,
    /// `success` or `failure` (for pruned addresses, why: `wrong_peer`, `own_address`).
    pub result: String,
}

/// Counters and gauges shared by the node's tasks; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    dropped: Family<DropLabels, Counter>,
    accepted: Family<KindLabels, Counter>,
    connected_peers: Gauge,
    known_peers: Gauge,
    nat: Family<NatLabels, Counter>,
    relayed_peers: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("distributeai");
        let dropped = Family::<DropLabels, Counter>::default();
        registry.register(
            "messages_dropped",
            "Messages from the network dropped at the edge, by kind and reason",
            dropped.clone(),
        );
        let accepted = Family::<KindLabels, Counter>::default();
        registry.register(
            "messages_accepted",
            "Messages from the network accepted after validation, by kind",
            accepted.clone(),
        );
        let connected_peers = Gauge::default();
        registry.register(
            "connected_peers",
            "Peers with an open connection",
            connected_peers.clone(),
        );
        let known_peers = Gauge::default();
        registry.register(
            "known_peers",
            "Peers in the peer table",
            known_peers.clone(),
        );
        let nat = Family::<NatLabels, Counter>::default();
        registry.register(
            "nat_traversal",
            "NAT traversal: hole punches (DCUtR) and relay reservations by result, addresses \
             dropped for reaching the wrong peer",
            nat.clone(),
        );
        let relayed_peers = Gauge::default();
        registry.register(
            "relayed_peers",
            "Connected peers reached only through a relay",
            relayed_peers.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                dropped,
                accepted,
                connected_peers,
                known_peers,
                nat,
                relayed_peers,
            }),
        }
    }

    /// Counts a dropped message.
    pub fn dropped(&self, kind: &str, reason: &str) {
        self.inner
            .dropped
            .get_or_create(&DropLabels {
                kind: kind.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// How many messages of `kind` were dropped for `reason`.
    pub fn dropped_count(&self, kind: &str, reason: &str) -> u64 {
        self.inner
            .dropped
            .get_or_create(&DropLabels {
                kind: kind.to_string(),
                reason: reason.to_string(),
            })
            .get()
    }

    /// Counts an accepted message.
    pub fn accepted(&self, kind: &str) {
        self.inner
            .accepted
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .inc();
    }

    /// Sets the number of connected peers.
    pub fn set_connected_peers(&self, n: usize) {
        self.inner
            .connected_peers
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Sets the number of peers in the table.
    pub fn set_known_peers(&self, n: usize) {
        self.inner
            .known_peers
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Counts a NAT-traversal event.
    pub fn nat(&self, event: &str, result: &str) {
        self.nat_counter(event, result).inc();
    }

    /// How many NAT-traversal events of this kind and result happened.
    pub fn nat_count(&self, event: &str, result: &str) -> u64 {
        self.nat_counter(event, result).get()
    }

    fn nat_counter(&self, event: &str, result: &str) -> Counter {
        self.inner
            .nat
            .get_or_create(&NatLabels {
                event: event.to_string(),
                result: result.to_string(),
            })
            .clone()
    }

    /// Sets the number of peers connected only through relays.
    pub fn set_relayed_peers(&self, n: usize) {
        self.inner
            .relayed_peers
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.inner.registry).is_err() {
            out.clear();
        }
        out
    }
}
