//! The node's budgets (issue 20): every bound on what strangers can make it hold or do, with
//! its value on this node, as `GET /api/v1/node` (`distributeai status`) and `/metrics`
//! (`distributeai_budget{name}`) show them. The reasons for each value are beside the code
//! that enforces it; `docs/architecture.md` lists them all.

use distributeai_api::BudgetView;
use distributeai_jobflow::worker::FORGET_AFTER_EXPIRY_MS;
use distributeai_protocol::limits::MAX_VERDICT_WORKERS;

use crate::executor::docker::SandboxLimits;
use crate::executor::quota::OutputQuota;
use crate::jobs::{
    JOB_QUEUE_BYTES, MAX_BID_BYTES, MAX_BIDS_HELD, MAX_OUTPUT_SERVES, SERVES_AT_ONCE,
};
use crate::ledger::{MAX_PAGES_PER_ROUND, MAX_STALE_PAGES, REFRESH_INTERVAL};
use crate::network::rate::Rate;
use crate::network::{ConnectionBudget, EVENT_QUEUE_BYTES};
use crate::peers::PeerTable;
use crate::service::NodeConfig;

fn budget(name: &str, value: f64, unit: &str, what: &str) -> BudgetView {
    BudgetView {
        name: name.to_string(),
        value,
        unit: unit.to_string(),
        what: what.to_string(),
    }
}

/// Every budget of a node started with `config`; `api_token` says whether its API requires
/// one; `output_quota` is how its executor bounds a run's `/out` (`None`: it runs no jobs).
pub fn of(
    config: &NodeConfig,
    api_token: bool,
    output_quota: Option<OutputQuota>,
) -> Vec<BudgetView> {
    let sandbox = SandboxLimits::default();
    let connections = config
        .network
        .connection_limits
        .unwrap_or_else(|| ConnectionBudget::for_role(config.network.role));
    let on = |b: bool| if b { 1.0 } else { 0.0 };
    vec![
        budget(
            "offered_cpus",
            f64::from(config.capabilities.cpus),
            "cpus",
            "CPUs the jobs running at once share",
        ),
        budget(
            "offered_memory_bytes",
            config.capabilities.memory_mb as f64 * 1_048_576.0,
            "bytes",
            "memory the jobs running at once share",
        ),
        budget(
            "jobs_at_once",
            config.jobs.max_concurrent as f64,
            "count",
            "jobs running at once",
        ),
        budget(
            "output_keep_seconds",
            config.jobs.output_keep.as_secs_f64(),
            "seconds",
            "least time an output is kept past the commitment deadline for a verdict (or twice the job's timeout)",
        ),
        budget(
            "output_bytes_per_run",
            sandbox.max_output_bytes as f64,
            "bytes",
            "bytes a run may write to /out",
        ),
        budget(
            "output_entries_per_run",
            sandbox.max_output_files as f64,
            "count",
            "files and folders a run may make in /out",
        ),
        budget(
            "output_quota_by_kernel",
            on(output_quota == Some(OutputQuota::Filesystem)),
            "on",
            "/out is a sized filesystem the kernel enforces (else the watchdog's walk alone)",
        ),
        budget(
            "work_record_after_expiry_seconds",
            FORGET_AFTER_EXPIRY_MS as f64 / 1000.0,
            "seconds",
            "how long a finished job's work record is kept after the job expired",
        ),
        budget(
            "output_serves",
            MAX_OUTPUT_SERVES as f64,
            "count",
            "times over a job's output is sent to its submitter",
        ),
        budget(
            "bids_held",
            MAX_BIDS_HELD as f64,
            "count",
            "bids held at once",
        ),
        budget(
            "bid_bytes",
            MAX_BID_BYTES as f64,
            "bytes",
            "signed announcements held as bids",
        ),
        budget(
            "serves_at_once",
            SERVES_AT_ONCE as f64,
            "count",
            "output chunks and ledger pages read for peers at once",
        ),
        budget(
            "event_queue_bytes",
            EVENT_QUEUE_BYTES as f64,
            "bytes",
            "messages queued from the network to the node",
        ),
        budget(
            "job_queue_bytes",
            JOB_QUEUE_BYTES as f64,
            "bytes",
            "messages queued for the job manager",
        ),
        budget(
            "gossip_queue_per_peer",
            crate::network::GOSSIP_QUEUE_PER_PEER as f64,
            "count",
            "gossip messages queued to one peer",
        ),
        budget(
            "peer_records",
            PeerTable::MAX_PEERS as f64,
            "count",
            "peers remembered",
        ),
        budget(
            "pending_incoming_connections",
            f64::from(connections.pending_incoming),
            "count",
            "incoming connections in their handshake",
        ),
        budget(
            "incoming_connections",
            f64::from(connections.established_incoming),
            "count",
            "incoming connections",
        ),
        budget(
            "connections",
            f64::from(connections.established),
            "count",
            "connections in all",
        ),
        budget(
            "connections_per_peer",
            f64::from(connections.per_peer),
            "count",
            "connections to one peer",
        ),
        budget(
            "memory_for_new_connections_bytes",
            connections.max_memory_bytes as f64,
            "bytes",
            "resident memory above which new connections are denied",
        ),
        budget(
            "requests_per_peer_per_s",
            Rate::REQUESTS_PER_PEER.per_second,
            "per_second",
            "direct requests from one peer (bursts of 1,000)",
        ),
        budget(
            "jobs_per_signer_per_s",
            Rate::JOBS_PER_SIGNER.per_second,
            "per_second",
            "job announcements and cancels signed by one identity (bursts of 256)",
        ),
        budget(
            "verdicts_per_signer_per_s",
            Rate::VERDICTS_PER_SIGNER.per_second,
            "per_second",
            "verdicts gossiped by one identity (bursts of 256)",
        ),
        budget(
            "signatures_per_verdict",
            (MAX_VERDICT_WORKERS * 4 + 2) as f64,
            "count",
            "signature checks one verdict can cost at most",
        ),
        budget(
            "ledger_pages_per_round",
            MAX_PAGES_PER_ROUND as f64,
            "count",
            "ledger sync pages fetched from one peer a round",
        ),
        budget(
            "ledger_stale_pages",
            MAX_STALE_PAGES as f64,
            "count",
            "pages in a row with nothing new that end a sync round",
        ),
        budget(
            "ledger_recompute_interval_seconds",
            REFRESH_INTERVAL.as_secs_f64(),
            "seconds",
            "least time between two recomputes of the standings (backdated verdicts wait for the next)",
        ),
        budget(
            "relay_service",
            on(config.network.role == crate::network::Role::Bootstrap
                || config.network.relay_service),
            "on",
            "relays for nodes behind NAT",
        ),
        budget(
            "image_pulls",
            on(config.allow_pull),
            "on",
            "pulls job images it lacks (never from registries on this machine or its LAN unless listed)",
        ),
        budget(
            "api_token_required",
            on(api_token),
            "on",
            "the API requires its token",
        ),
    ]
}
