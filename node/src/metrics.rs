//! The node's Prometheus metrics (prometheus-client), served at `/metrics`.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
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

/// Labels of a job or execution outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// For jobs this node submitted: `completed`, `failed`, `cancelled`. For executions it
    /// ran: how the job ended (`exited`, `timed_out`, `out_of_memory`, `output_too_large`,
    /// `cannot_start`, `image_unavailable`), `worker_fault` or `cancelled`.
    pub outcome: String,
}

/// Buckets of the latency histograms, in seconds: 50 ms doubling to about 30 min.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.05, 2.0, 16)
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
    jobs_submitted: Counter,
    jobs_finished: Family<OutcomeLabels, Counter>,
    bids_sent: Counter,
    bids_received: Counter,
    executions: Family<OutcomeLabels, Counter>,
    bidding_seconds: Histogram,
    submit_to_verdict_seconds: Histogram,
    execution_seconds: Histogram,
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
        let jobs_submitted = Counter::default();
        registry.register(
            "jobs_submitted",
            "Jobs submitted through this node",
            jobs_submitted.clone(),
        );
        let jobs_finished = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "jobs_finished",
            "Jobs this node submitted that reached a final status, by outcome",
            jobs_finished.clone(),
        );
        let bids_sent = Counter::default();
        registry.register(
            "bids_sent",
            "Bids this node made as a worker",
            bids_sent.clone(),
        );
        let bids_received = Counter::default();
        registry.register(
            "bids_received",
            "Bids received for jobs this node submitted",
            bids_received.clone(),
        );
        let executions = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "executions",
            "Executions this node ran as a worker, by how they ended",
            executions.clone(),
        );
        let bidding_seconds = Histogram::new(latency_buckets());
        registry.register_with_unit(
            "job_bidding",
            "From submission to the first assignments, for jobs this node submitted",
            prometheus_client::registry::Unit::Seconds,
            bidding_seconds.clone(),
        );
        let submit_to_verdict_seconds = Histogram::new(latency_buckets());
        registry.register_with_unit(
            "job_submit_to_verdict",
            "From submission to the final status, for jobs this node submitted",
            prometheus_client::registry::Unit::Seconds,
            submit_to_verdict_seconds.clone(),
        );
        let execution_seconds = Histogram::new(latency_buckets());
        registry.register_with_unit(
            "execution",
            "How long executions this node ran took, container start to end",
            prometheus_client::registry::Unit::Seconds,
            execution_seconds.clone(),
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
                jobs_submitted,
                jobs_finished,
                bids_sent,
                bids_received,
                executions,
                bidding_seconds,
                submit_to_verdict_seconds,
                execution_seconds,
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

    /// Counts a job submitted through this node.
    pub fn job_submitted(&self) {
        self.inner.jobs_submitted.inc();
    }

    /// Counts a submitted job that reached a final status, with how long it took (ms).
    pub fn job_finished(&self, outcome: &str, submit_to_verdict_ms: u64) {
        self.inner
            .jobs_finished
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
        self.inner
            .submit_to_verdict_seconds
            .observe(seconds(submit_to_verdict_ms));
    }

    /// Records how long a submitted job's bidding took (ms).
    pub fn job_bidding(&self, ms: u64) {
        self.inner.bidding_seconds.observe(seconds(ms));
    }

    /// Counts a bid sent as a worker.
    pub fn bid_sent(&self) {
        self.inner.bids_sent.inc();
    }

    /// Counts a bid received for a job this node submitted.
    pub fn bid_received(&self) {
        self.inner.bids_received.inc();
    }

    /// Counts an execution that ended as `outcome`, after `duration`.
    pub fn execution(&self, outcome: &str, duration: std::time::Duration) {
        self.inner
            .executions
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
        self.inner.execution_seconds.observe(duration.as_secs_f64());
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

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}
