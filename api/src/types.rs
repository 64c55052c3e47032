//! The JSON the node's API serves, as Rust types: the node builds them,
//! [`ApiClient`](crate::ApiClient) reads them, and the web dashboard reads the same JSON. Times are ms since
//! the Unix epoch, durations are ms, ids are lowercase hex, PeerIds and multiaddrs are their
//! usual text forms.

use std::collections::HashMap;

use distributeai_protocol::time::TimestampMs;
use distributeai_protocol::{Capabilities, JobSpec, PublicKey};
use serde::{Deserialize, Serialize};

pub use distributeai_jobflow::submitter::{ExecutionState, JobStatus};

/// An error answer: `{"error": "..."}`, with a 4xx or 5xx status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, naming the field or limit when the request was at fault.
    pub error: String,
}

/// Whether a node can be dialed from the internet, as AutoNAT judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reachability {
    /// Not decided yet.
    Unknown,
    /// Dial-backs to our address succeed.
    Public,
    /// Dial-backs fail: behind NAT or a firewall, reachable through relays.
    Private,
}

/// The answer of `GET /api/v1/node`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Our PeerId.
    pub peer_id: String,
    /// Listen addresses, each ending in `/p2p/<PeerId>`.
    pub listen_addrs: Vec<String>,
    /// Software version.
    pub version: String,
    /// Seconds since start.
    pub uptime_s: u64,
    /// `node` or `bootstrap`.
    pub role: String,
    /// Whether this node bids for jobs.
    pub worker: bool,
    /// What it offers.
    pub capabilities: Capabilities,
    /// Peers with an open connection.
    pub connected_peers: usize,
    /// Whether this node is publicly reachable (AutoNAT).
    pub reachability: Reachability,
    /// Addresses confirmed reachable from outside (AutoNAT, relay circuits).
    #[serde(default)]
    pub external_addrs: Vec<String>,
    /// The addresses this node tells peers in its announcements.
    #[serde(default)]
    pub announced_addrs: Vec<String>,
    /// Relays this node holds (or is asking for) a reservation on.
    #[serde(default)]
    pub relays: Vec<RelayStatus>,
    /// What strangers can make this node hold or do, and the bound on each (issue 20); also
    /// `distributeai_budget{name}` in `/metrics`.
    #[serde(default)]
    pub budgets: Vec<BudgetView>,
}

/// One bound on what strangers can make a node hold or do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetView {
    /// A stable name, as in `/metrics` (`bids_held`, `requests_per_peer_per_s`...).
    pub name: String,
    /// The bound, in `unit`.
    pub value: f64,
    /// Its unit: `count`, `bytes`, `seconds`, `cpus`, `per_second`, or `on` (1 or 0).
    pub unit: String,
    /// What it bounds, for people.
    pub what: String,
}

/// A relay reservation, as `GET /api/v1/node` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RelayStatus {
    /// The relay's PeerId.
    pub peer_id: String,
    /// The circuit address others reach this node at through the relay.
    pub address: String,
    /// Whether the relay accepted the reservation.
    pub reserved: bool,
}

/// How a node came to know a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscoverySource {
    /// It is one of our bootstrap peers.
    Bootstrap,
    /// Found on the LAN by mDNS.
    Mdns,
    /// Found through the Kademlia DHT.
    Dht,
    /// Learned from its signed node announcement on gossip.
    Gossip,
    /// It connected to us.
    Inbound,
    /// Dialed on request.
    Dialed,
}

impl DiscoverySource {
    /// The source as the API spells it: `bootstrap`, `mdns`...
    pub fn as_str(self) -> &'static str {
        match self {
            DiscoverySource::Bootstrap => "bootstrap",
            DiscoverySource::Mdns => "mdns",
            DiscoverySource::Dht => "dht",
            DiscoverySource::Gossip => "gossip",
            DiscoverySource::Inbound => "inbound",
            DiscoverySource::Dialed => "dialed",
        }
    }
}

/// How a connection reaches its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// A direct connection (dialed, accepted, or hole-punched).
    Direct,
    /// Through a relay's circuit.
    Relayed,
}

/// One open connection to a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionView {
    /// Direct or relayed.
    pub route: Route,
    /// `tcp` or `quic` (for a circuit, the transport to the relay).
    pub transport: String,
    /// The peer's address on this connection (for a circuit, the relay's address with
    /// `/p2p-circuit`).
    pub address: String,
    /// `outbound` when we dialed it, `inbound` when the peer did.
    pub direction: String,
    /// Whether it was opened by hole punching (DCUtR).
    pub hole_punched: bool,
}

/// A peer as `GET /api/v1/peers` shows it: what the peer table knows, its ledger standing
/// and its open connections.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerView {
    /// Its PeerId.
    pub peer_id: String,
    /// Its public key, once it has announced itself.
    pub public_key: Option<PublicKey>,
    /// Addresses it announced.
    pub addresses: Vec<String>,
    /// What it offers, from its latest signed announcement.
    pub capabilities: Option<Capabilities>,
    /// Whether it bids for jobs.
    pub accepts_jobs: bool,
    /// When we last heard from it.
    pub last_seen: TimestampMs,
    /// Whether a connection to it is open.
    pub connected: bool,
    /// How we found it.
    pub source: Option<DiscoverySource>,
    /// When its current run began, from its announcements; 0 until it announced itself.
    pub started_at: TimestampMs,
    /// Reputation from the ledger, 0 to 1000 (every identity starts at 100), two decimals.
    pub reputation: f64,
    /// Credits from the ledger.
    pub credits: i64,
    /// For a connected peer: `direct` when any connection is direct, else `relayed`.
    pub route: Option<Route>,
    /// Its open connections.
    pub connections: Vec<ConnectionView>,
    /// The peers it is connected to, as its latest signed announcement says (every 30 s and
    /// on new connections): with this node's own connections, who is connected to whom.
    #[serde(default)]
    pub links: Vec<LinkView>,
}

/// A connection a peer says it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkView {
    /// The PeerId at the other end.
    pub peer_id: String,
    /// Direct, or through a relay.
    pub route: Route,
}

/// A bid for a job this node submitted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BidView {
    /// Bidder's PeerId.
    pub peer_id: String,
    /// When it arrived.
    pub received_at: TimestampMs,
    /// The image id the bidder holds and would run (`None`: it would pull the image).
    pub image: Option<String>,
}

/// One worker's execution of a job this node submitted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecutionView {
    /// Worker's PeerId.
    pub peer_id: String,
    /// Assignment attempt.
    pub attempt: u32,
    /// Where it is.
    pub status: ExecutionState,
    /// Whether it holds a slot.
    pub active: bool,
    /// Revealed result hash.
    pub result_hash: Option<String>,
    /// How the job ended on this worker, from its revealed manifest: `exit code 0`,
    /// `timed out`, `ran out of memory`...
    pub end: Option<String>,
    /// Exit code from the revealed manifest, when the job exited.
    pub exit_code: Option<i64>,
    /// The image id it ran, from its revealed manifest.
    pub image: Option<String>,
    /// What it saw of the end: the engine's message, whole.
    pub detail: Option<String>,
    /// The last bytes of the job's stdout on this worker (lossy UTF-8), at most 4 KiB.
    pub stdout_tail: Option<String>,
    /// The last bytes of the job's stderr on this worker (lossy UTF-8), at most 4 KiB.
    pub stderr_tail: Option<String>,
    /// Failure, refusal or invalidity reason.
    pub failure: Option<String>,
    /// Commitment digest (hex) once committed.
    pub commitment: Option<String>,
    /// When assigned.
    pub assigned_at: TimestampMs,
    /// When committed.
    pub committed_at: Option<TimestampMs>,
    /// When revealed.
    pub revealed_at: Option<TimestampMs>,
    /// Assignment to commitment, in ms.
    pub duration_ms: Option<u64>,
}

/// A job's verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerdictView {
    /// `accepted` (k workers agreed, on an output or on the job's own failure) or `failed`.
    pub outcome: String,
    /// The agreed hash when accepted.
    pub result_hash: Option<String>,
    /// How the job ended, as agreed (`exit code 0`, `timed out`...), when accepted.
    pub end: Option<String>,
    /// The image id that ran, as agreed, when accepted.
    pub image: Option<String>,
    /// Why it failed.
    pub reason: Option<String>,
    /// Workers whose hash agreed.
    pub agreeing: Vec<String>,
    /// Workers whose hash differed.
    pub disagreeing: Vec<String>,
    /// Workers that reported failure.
    pub failed: Vec<String>,
    /// Workers that never answered.
    pub silent: Vec<String>,
    /// Content id of the signed verdict (the ledger entry).
    pub entry_id: String,
}

/// A job's phase durations, in ms; `None` until the phase ended.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    /// Announcement to first assignment.
    pub bidding_ms: Option<u64>,
    /// First assignment to the last commitment.
    pub execution_ms: Option<u64>,
    /// Last commitment to the decision (reveals and comparison).
    pub verification_ms: Option<u64>,
    /// Decision to verified output.
    pub fetch_ms: Option<u64>,
    /// Submission to final status.
    pub total_ms: Option<u64>,
}

/// A job this node submitted, as `GET /api/v1/jobs/{id}` returns it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobView {
    /// Job id (64 hex digits).
    pub id: String,
    /// Status.
    pub status: JobStatus,
    /// The spec.
    pub spec: JobSpec,
    /// When submitted.
    pub submitted_at: TimestampMs,
    /// Bids.
    pub bids: Vec<BidView>,
    /// Per-worker executions.
    pub executions: Vec<ExecutionView>,
    /// The verdict, once decided.
    pub verdict: Option<VerdictView>,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// Why it waits, while `status` is `queued`: every worker that can run it is busy.
    pub queued_reason: Option<String>,
    /// Phase durations.
    pub timings: Timings,
}

impl JobView {
    /// A job just submitted: its spec, nothing else yet.
    pub fn new(
        id: impl Into<String>,
        status: JobStatus,
        spec: JobSpec,
        submitted_at: TimestampMs,
    ) -> Self {
        Self {
            id: id.into(),
            status,
            spec,
            submitted_at,
            bids: Vec::new(),
            executions: Vec::new(),
            verdict: None,
            failure_reason: None,
            queued_reason: None,
            timings: Timings::default(),
        }
    }
}

/// One line of a job's timeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    /// When.
    pub at: TimestampMs,
    /// What happened.
    pub message: String,
}

/// Counts for `GET /api/v1/stats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Jobs this node submitted, by status (as [`JobStatus`] spells it).
    pub jobs: HashMap<String, usize>,
    /// Assignments accepted as a worker.
    pub work_accepted: usize,
    /// Assignments running now.
    pub work_running: usize,
    /// Work this node took on as a worker, by phase: `bid` (bid, not assigned), `queued`
    /// (assigned while every slot ran; starts when one frees), `running`, `waiting` (accepted,
    /// to run again after a restart), `committed`, `cancelled`, `done`.
    #[serde(default)]
    pub work: HashMap<String, usize>,
}

/// The ledger, as `GET /api/v1/ledger` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerView {
    /// The summary hash: equal on two nodes exactly when they hold the same entries.
    pub summary: String,
    /// Number of entries.
    pub entries: usize,
    /// Every identity in the ledger and every genesis identity, best reputation first.
    pub peers: Vec<StandingView>,
    /// The network's genesis identities (PeerIds) as this node lists them (`--genesis`);
    /// nodes that list different ones compute different standings.
    #[serde(default)]
    pub genesis: Vec<String>,
}

/// One identity's standing in the ledger.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StandingView {
    /// PeerId.
    pub peer_id: String,
    /// Reputation, 0 to 1000 (every identity starts at 100), two decimals.
    pub reputation: f64,
    /// Credits held, including a grant still locked.
    pub credits: i64,
    /// Credits it can promise now: its balance less a locked grant, less nothing for jobs in
    /// flight (workers subtract those themselves).
    #[serde(default)]
    pub spendable: i64,
    /// Whether it is one of the network's genesis identities.
    #[serde(default)]
    pub genesis: bool,
    /// Results that agreed.
    pub agreed: u64,
    /// Results that disagreed.
    pub disagreed: u64,
    /// Reported failures.
    pub failed: u64,
    /// Assignments gone silent on.
    pub silent: u64,
    /// Selection weight.
    pub weight: f64,
}

/// A change worth redrawing for, one per server-sent event on `GET /api/v1/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ApiEvent {
    /// A job changed.
    Job {
        /// Job id.
        id: String,
        /// Its status now.
        status: JobStatus,
    },
    /// The peer table changed.
    Peers,
    /// The client fell behind and missed events: fetch everything again.
    Resync,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_spelt_as_the_json_spells_them() {
        let json = |v: &dyn erased::Name| v.json();
        for status in JobStatus::ALL {
            assert_eq!(json(&status), status.as_str());
        }
        for state in [
            ExecutionState::Assigned,
            ExecutionState::Refused,
            ExecutionState::Unreachable,
            ExecutionState::Committed,
            ExecutionState::Failed,
            ExecutionState::Silent,
            ExecutionState::Revealed,
            ExecutionState::Invalid,
            ExecutionState::Cancelled,
        ] {
            assert_eq!(json(&state), state.as_str());
        }
        for source in [
            DiscoverySource::Bootstrap,
            DiscoverySource::Mdns,
            DiscoverySource::Dht,
            DiscoverySource::Gossip,
            DiscoverySource::Inbound,
            DiscoverySource::Dialed,
        ] {
            assert_eq!(json(&source), source.as_str());
        }
    }

    mod erased {
        /// A value's JSON spelling, for comparing with `as_str`.
        pub(super) trait Name {
            fn json(&self) -> String;
        }
        impl<T: serde::Serialize> Name for T {
            fn json(&self) -> String {
                serde_json::to_value(self)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            }
        }
    }

    #[test]
    fn events_read_as_the_node_writes_them() {
        let job: ApiEvent =
            serde_json::from_str(r#"{"type":"job","id":"ab","status":"completed"}"#).expect("job");
        assert_eq!(
            job,
            ApiEvent::Job {
                id: "ab".into(),
                status: JobStatus::Completed
            }
        );
        let resync: ApiEvent = serde_json::from_str(r#"{"type":"resync"}"#).expect("resync");
        assert_eq!(resync, ApiEvent::Resync);
        assert_eq!(
            serde_json::to_string(&ApiEvent::Peers).expect("encode"),
            r#"{"type":"peers"}"#
        );
    }
}

/// A ledger entry re-checked from its evidence, as `GET /api/v1/ledger/{job_id}/check` and
/// `POST /api/v1/verdicts/check` show it (issue 19).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerdictCheck {
    /// The job, 64 hex digits.
    pub job_id: String,
    /// The issuer (the job's submitter), as a PeerId.
    pub issuer: String,
    /// The verdict's content id, 64 hex digits.
    pub verdict_id: String,
    /// Whether every node accepts it: each worker's result follows from that worker's own
    /// signatures and the outcome and payments from the k-of-n rule.
    pub valid: bool,
    /// Why it is refused, naming the field, when it is.
    #[serde(default)]
    pub error: Option<String>,
    /// The outcome, e.g. `accepted 1a2b3c4d5e6f (exit code 0)` or `failed: no agreement`.
    pub outcome: String,
    /// Consensus k of the job.
    pub k: u8,
    /// Redundancy n of the job.
    pub n: u8,
    /// Credits per agreeing worker.
    pub reward: u64,
    /// Each worker's line, in the verdict's order (the order its results were counted).
    pub workers: Vec<WorkerCheck>,
    /// How the first workers were drawn, replayed from the recorded bids: the candidates and
    /// the workers the draw picks.
    #[serde(default)]
    pub draw: String,
    /// The content id of another verdict the issuer signed for the same job, if this node
    /// holds one: the issuer equivocated and its weight is zero.
    #[serde(default)]
    pub equivocation: Option<String>,
}

/// One worker's line in a [`VerdictCheck`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerCheck {
    /// The worker, as a PeerId.
    pub peer_id: String,
    /// What the verdict says: `agreed`, `disagreed`, `failed`, `silent`, `output rejected`.
    pub result: String,
    /// Credits paid to it.
    pub paid: u64,
    /// What the worker signed that proves it.
    pub evidence: String,
}

/// The body of `POST /api/v1/verdicts/check`: a signed verdict as it travels.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerdictCheckRequest {
    /// The CBOR encoding of the signed verdict (`Signed<Verdict>`), as lowercase hex.
    pub verdict: String,
}
