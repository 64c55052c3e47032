//! The node's Prometheus metrics (prometheus-client), served at `/metrics`: the node's own,
//! under `distributeai_`, and libp2p's (connections, gossipsub, Kademlia, identify, ping,
//! relay, DCUtR), under `libp2p_`, from libp2p's `metrics` feature. Names follow Prometheus'
//! conventions: counters end in `_total`, durations are histograms in `_seconds`.
//! `monitoring/README.md` lists every series with its labels.

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

/// Labels of a budget (issue 20): its name.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetLabels {
    /// The budget's stable name (`bids_held`, `requests_per_peer_per_s`...).
    pub name: String,
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
    /// `success` or `failure`; a relay reservation also `lost`; for pruned addresses, why:
    /// `wrong_peer`, `own_address`.
    pub result: String,
}

/// Labels of a job or execution outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// For jobs this node submitted: `completed`, `failed`, `cancelled`. For executions it
    /// ran: how the job ended (`exited`, `timed_out`, `out_of_memory`, `output_too_large`,
    /// `cannot_start`, `image_unavailable`), `worker_fault` or `cancelled`. For verdicts it
    /// signed: `accepted` or `failed`.
    pub outcome: String,
}

/// Labels of the jobs-by-status gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobsLabels {
    /// `submitted` (jobs this node submitted) or `executed` (work it took on as a worker).
    pub role: String,
    /// The job's status (`bidding`, `queued`, `running`, `completed`...) or, for executed
    /// work, its phase (`bid`, `queued`, `running`, `committed`, `done`...).
    pub status: String,
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
    other_genesis_peers: Gauge,
    jobs_submitted: Counter,
    jobs_finished: Family<OutcomeLabels, Counter>,
    bids_sent: Counter,
    bids_received: Counter,
    executions: Family<OutcomeLabels, Counter>,
    bidding_seconds: Histogram,
    submit_to_verdict_seconds: Histogram,
    execution_seconds: Histogram,
    first_bid_seconds: Histogram,
    queue_wait_seconds: Histogram,
    verdicts: Family<OutcomeLabels, Counter>,
    jobs: Family<JobsLabels, Gauge>,
    ledger_entries: Gauge,
    ledger_matched: Gauge,
    reputation: Gauge<f64, std::sync::atomic::AtomicU64>,
    budgets: Family<BudgetLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    credits: Gauge,
    libp2p: libp2p::metrics::Metrics,
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
    /// A fresh registry with every metric of a node registered.
    pub fn new() -> Self {
        Self::build(true)
    }

    /// A fresh registry for a bootstrap peer: libp2p's metrics and the network's (messages,
    /// peers, NAT traversal), without the job and ledger families a bootstrap peer never
    /// moves, which would otherwise read as a node with no jobs and no standing.
    pub fn for_bootstrap() -> Self {
        Self::build(false)
    }

    fn build(node: bool) -> Self {
        let mut root = Registry::default();
        // What only a node counts is registered in a registry nobody reads on a bootstrap peer.
        let mut unread = Registry::default();
        let libp2p = libp2p::metrics::Metrics::new(&mut root);
        let registry = root.sub_registry_with_prefix("distributeai");
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
        let other_genesis_peers = Gauge::default();
        registry.register(
            "other_genesis_peers",
            "Peers heard since start that list other genesis identities (another network, or \
             a misconfigured node: their standings differ from ours)",
            other_genesis_peers.clone(),
        );
        let registry: &mut Registry = if node { registry } else { &mut unread };
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
            "From submission to the verdict, for jobs this node submitted",
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
        let first_bid_seconds = Histogram::new(latency_buckets());
        registry.register_with_unit(
            "job_first_bid",
            "From submission to the first bid, for jobs this node submitted",
            prometheus_client::registry::Unit::Seconds,
            first_bid_seconds.clone(),
        );
        let queue_wait_seconds = Histogram::new(latency_buckets());
        registry.register_with_unit(
            "job_queue_wait",
            "How long assignments waited for a free slot on this worker (0 when one was free)",
            prometheus_client::registry::Unit::Seconds,
            queue_wait_seconds.clone(),
        );
        let verdicts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "verdicts",
            "Verdicts this node signed as a submitter: `accepted` (k results agreed, on an \
             output or on the job's own failure) or `failed` (no agreement)",
            verdicts.clone(),
        );
        let jobs = Family::<JobsLabels, Gauge>::default();
        registry.register(
            "jobs",
            "Jobs this node holds by status: role `submitted` for its own jobs, `executed` for \
             work it took on as a worker",
            jobs.clone(),
        );
        let ledger_entries = Gauge::default();
        registry.register(
            "ledger_entries",
            "Verdicts in this node's copy of the ledger",
            ledger_entries.clone(),
        );
        let ledger_matched = Gauge::default();
        registry.register_with_unit(
            "ledger_last_match_timestamp",
            "When this node's ledger last matched a peer's, by their summary hashes (Unix time; \
             0: never)",
            prometheus_client::registry::Unit::Seconds,
            ledger_matched.clone(),
        );
        let budgets = Family::<BudgetLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "budget",
            "Each bound on what strangers can make this node hold or do, by name, in the unit \
             `distributeai status` shows (issue 20)",
            budgets.clone(),
        );
        let reputation = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "reputation",
            "This node's reputation in its own copy of the ledger, 0 to 1000 (100 at the start)",
            reputation.clone(),
        );
        let credits = Gauge::default();
        registry.register(
            "credits",
            "This node's credits in its own copy of the ledger",
            credits.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry: root,
                first_bid_seconds,
                queue_wait_seconds,
                verdicts,
                jobs,
                ledger_entries,
                ledger_matched,
                reputation,
                budgets,
                credits,
                libp2p,
                dropped,
                accepted,
                connected_peers,
                known_peers,
                nat,
                relayed_peers,
                other_genesis_peers,
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

    /// Publishes a budget's value.
    pub fn set_budget(&self, name: &str, value: f64) {
        self.inner
            .budgets
            .get_or_create(&BudgetLabels {
                name: name.to_string(),
            })
            .set(value);
    }

    /// Counts `n` dropped messages at once.
    pub fn dropped_by(&self, kind: &str, reason: &str, n: u64) {
        if n == 0 {
            return;
        }
        self.inner
            .dropped
            .get_or_create(&DropLabels {
                kind: kind.to_string(),
                reason: reason.to_string(),
            })
            .inc_by(n);
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

    /// How many messages of `kind` were accepted.
    pub fn accepted_count(&self, kind: &str) -> u64 {
        self.inner
            .accepted
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
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

    /// Sets how many peers heard since start list other genesis identities.
    pub fn set_other_genesis_peers(&self, n: usize) {
        self.inner
            .other_genesis_peers
            .set(i64::try_from(n).unwrap_or(i64::MAX));
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

    /// Counts a submitted job that reached a final status.
    pub fn job_finished(&self, outcome: &str) {
        self.inner
            .jobs_finished
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Records how long a submitted job's bidding took (ms).
    pub fn job_bidding(&self, ms: u64) {
        self.inner.bidding_seconds.observe(seconds(ms));
    }

    /// Counts a bid sent as a worker.
    pub fn bid_sent(&self) {
        self.inner.bids_sent.inc();
    }

    /// Counts an execution that ended as `outcome`, after `duration` when it ran (a worker
    /// fault before or around the container has none, and is not timed).
    pub fn execution(&self, outcome: &str, duration: Option<std::time::Duration>) {
        self.inner
            .executions
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
        if let Some(duration) = duration {
            self.inner.execution_seconds.observe(duration.as_secs_f64());
        }
    }

    /// Records how long a submitted job waited for its first bid (ms).
    pub fn first_bid(&self, ms: u64) {
        self.inner.first_bid_seconds.observe(seconds(ms));
    }

    /// Records how long an assignment waited for a free slot on this worker (ms).
    pub fn queue_wait(&self, ms: u64) {
        self.inner.queue_wait_seconds.observe(seconds(ms));
    }

    /// Counts a verdict this node signed, `accepted` or `failed` (as the API's verdict
    /// says), decided `submit_to_verdict_ms` after the job's submission.
    pub fn verdict(&self, outcome: &str, submit_to_verdict_ms: u64) {
        self.inner
            .verdicts
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
        self.inner
            .submit_to_verdict_seconds
            .observe(seconds(submit_to_verdict_ms));
    }

    /// Counts `n` bids received for a job this node submitted.
    pub fn bids_received(&self, n: usize) {
        self.inner.bids_received.inc_by(n as u64);
    }

    /// Sets the jobs-by-status gauge of `role` (`submitted` or `executed`) to `counts`;
    /// statuses of `all` missing from `counts` are set to 0, so a status that emptied reads 0
    /// rather than its last count.
    pub fn set_jobs(
        &self,
        role: &str,
        all: &[&str],
        counts: &std::collections::HashMap<String, usize>,
    ) {
        let known = all.iter().map(|s| s.to_string());
        let seen = counts.keys().cloned();
        for status in known.chain(seen) {
            let n = counts.get(&status).copied().unwrap_or(0);
            self.inner
                .jobs
                .get_or_create(&JobsLabels {
                    role: role.to_string(),
                    status,
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Sets the ledger's gauges: its entries, and this node's reputation and credits.
    pub fn set_ledger(&self, entries: usize, reputation: f64, credits: i64) {
        self.inner
            .ledger_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.inner.reputation.set(reputation);
        self.inner.credits.set(credits);
    }

    /// Notes that this node's ledger summary matched a peer's at `now_ms` (ms since the
    /// epoch).
    pub fn ledger_matched(&self, now_ms: u64) {
        self.inner
            .ledger_matched
            .set(i64::try_from(now_ms / 1000).unwrap_or(i64::MAX));
    }

    /// libp2p's own metrics, to record swarm and behaviour events into.
    pub fn libp2p(&self) -> &libp2p::metrics::Metrics {
        &self.inner.libp2p
    }

    /// The Prometheus text exposition (version 0.0.4); see [`prometheus_text`].
    pub fn encode_prometheus_text(&self) -> String {
        prometheus_text(&self.encode())
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

/// The Prometheus text format (version 0.0.4) of an OpenMetrics exposition, for scrapers that
/// do not ask for OpenMetrics (`promtool check metrics`, older tools). The samples are the
/// same; what differs is that a counter's family is named with its `_total` suffix, and that
/// there are no `# UNIT` or `# EOF` lines.
pub fn prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            // Written after the TYPE line is read, which says whether the name changes.
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let family = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_string()
            };
            if let Some(help) = help.take() {
                let text = help.split_once(' ').map_or("", |(_, text)| text);
                out.push_str(&format!("# HELP {family} {text}\n"));
            }
            out.push_str(&format!("# TYPE {family} {kind}\n"));
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prometheus_text_names_counter_families_with_total_and_drops_openmetrics_lines() {
        let metrics = Metrics::new();
        metrics.job_submitted();
        metrics.first_bid(250);
        let text = metrics.encode_prometheus_text();
        assert!(
            text.contains(
                "# HELP distributeai_jobs_submitted_total Jobs submitted through this node.\n\
                 # TYPE distributeai_jobs_submitted_total counter\n\
                 distributeai_jobs_submitted_total 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE distributeai_job_first_bid_seconds histogram\n"),
            "{text}"
        );
        assert!(text.contains("distributeai_job_first_bid_seconds_count 1\n"));
        assert!(
            !text.contains("# UNIT") && !text.contains("# EOF"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE libp2p_identify_received_total counter"),
            "libp2p's own metrics are served too:\n{text}"
        );
        // The same samples as the OpenMetrics exposition.
        let samples = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(samples(&text), samples(&metrics.encode()));
    }
}
