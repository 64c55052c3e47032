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
        Self {
            inner: Arc::new(Inner {
                registry,
                dropped,
                accepted,
                connected_peers,
                known_peers,
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

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.inner.registry).is_err() {
            out.clear();
        }
        out
    }
}
