//! The job flow of DistributeAI as pure state machines, and a deterministic simulator of a
//! whole network built from them.
//!
//! - [`submitter`]: the submitter's side of one job ([`SubmittedJob`]), from the signed
//!   announcement to the one verdict it ever signs.
//! - [`worker`]: the worker's side of one job ([`WorkItem`]), from its bid to the end of its
//!   assignment.
//! - [`bid_budget`]: how many bids a worker holds, shared fairly among submitters.
//! - [`first_hand`]: what a submitter saw itself of the workers on its own jobs, which
//!   steers its draws at once.
//! - [`promises`]: what each submitter promised to jobs in flight, so that none promises
//!   more than it can spend.
//! - [`sim`]: a seeded simulator of many submitters and workers exchanging real signed
//!   messages with delays, loss, duplication, reordering, partitions, crashes and clock skew,
//!   and [`invariants`] it checks throughout a run.
//!
//! Both machines are sans-I/O: one entry point each, `handle(input, ctx) -> effects`. Inputs
//! are everything that can happen to the job; [`Ctx`] brings the time, the randomness, the
//! node's signing key and what the node knows of its peers; the effects are everything the
//! node must then do, in order (a `Persist` comes before the sends that depend on it). No
//! clock, rng, network, store or Docker is reached from here: the node's `jobs` module is the
//! driver that carries the effects out, and the simulator is another.

pub mod bid_budget;
pub mod first_hand;
pub mod invariants;
#[cfg(test)]
mod machine_tests;
pub mod promises;
pub mod sim;
pub mod submitter;
pub mod worker;

use distributeai_protocol::time::TimestampMs;
use distributeai_protocol::{Digest, JobSpec, NodeIdentity, PublicKey, Verdict, WorkerResult};
use distributeai_verifier::reputation::{Entry, Outcome};
use rand::rngs::StdRng;

pub use submitter::{JobStatus, SubmittedJob};
pub use worker::WorkItem;

/// Tunables of the job flow, in milliseconds where they are times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowConfig {
    /// How long after publishing to wait for n bids before the job counts as queued (when
    /// workers that could run it exist) or runs with what there is.
    pub bid_window_ms: u64,
    /// Bids beyond n taken as reserves as they come (0 by default: replacements are then
    /// invited when needed, and bids not needed are refused at once).
    pub reserve_bids: usize,
    /// The selection window: after the n-th bid, collect more candidates for up to this
    /// long (until [`CANDIDATES_PER_SLOT`] x n are in, or every peer that could run the job
    /// has bid), so that the weighted draw among them decides who runs the job, not who
    /// answered first (issue 19).
    pub bid_quiet_ms: u64,
    /// After this long with fewer than n bids, run with what there is (at least k), or fail
    /// saying why; until then the job waits (`queued`) while peers that could run it have
    /// not bid.
    pub bid_wait_max_ms: u64,
    /// Extra time on top of the job's timeout before a worker counts as silent; also how long
    /// reveals are asked for before an unanswered one counts as failed.
    pub deadline_grace_ms: u64,
    /// Most replacement workers assigned to one job.
    pub max_reassignments: u32,
    /// Largest output (stdout and files, bytes) a submitter fetches.
    pub max_output_bytes: u64,
    /// Extra time a worker that said in its bid it would have to pull the image gets before
    /// its commitment is due (issue 20: a pull slower than the job's timeout plus the grace
    /// got an honest worker marked silent), still never past the job's expiry.
    pub pull_allowance_ms: u64,
    /// Least time a worker keeps a run's output past the commitment deadline for a verdict
    /// that has not come (default [`worker::OUTPUT_KEEP_MIN_MS`], 30 minutes; see
    /// [`worker::WorkItem::output_kept_until`]).
    pub output_keep_ms: u64,
}

impl Default for FlowConfig {
    fn default() -> Self {
        Self {
            bid_window_ms: 3_000,
            reserve_bids: 0,
            // A LAN round trip is under 1 ms and an internet one under 300 ms: 250 ms lets the
            // bids of peers that heard the announcement at once arrive, and costs a few
            // percent of a job that runs for seconds (scripts/bench-latency.sh measures it).
            bid_quiet_ms: 250,
            bid_wait_max_ms: 60_000,
            deadline_grace_ms: 60_000,
            max_reassignments: 4,
            max_output_bytes: 512 * 1024 * 1024,
            output_keep_ms: worker::OUTPUT_KEEP_MIN_MS,
            // Five minutes: a few GB at a home connection's tens of Mbit/s.
            pull_allowance_ms: 5 * 60 * 1000,
        }
    }
}

/// What a node knows of the others, which the machines ask for but cannot find out
/// themselves: reputation (from the ledger) and operators and capabilities (from the peer
/// table).
pub trait Directory {
    /// Selection weight of a bidder (`verifier::reputation::selection_weight`).
    fn weight(&self, worker: &PublicKey) -> f64;
    /// The operator a bidder belongs to, as far as can be told, so selection spreads a job
    /// over operators.
    fn group(&self, worker: &PublicKey) -> String;
    /// Peers that announced they run jobs and could run `spec`, other than `exclude`: whom to
    /// invite when bidding re-opens.
    fn invitees(&self, spec: &JobSpec, exclude: &[PublicKey]) -> Vec<PublicKey>;
    /// One sentence on the workers this node can reach, to say why too few bid.
    fn worker_reach(&self) -> String;
    /// Credits an identity can spend, from the ledger (`Standing::spendable`: earned credits,
    /// and its grant once it counts), for the worker's check that a submitter can pay before
    /// bidding (see [`promises`]).
    fn spendable(&self, key: &PublicKey) -> i64;
}

/// Candidates a submitter waits for per slot before drawing, within the selection window:
/// with twice as many candidates as slots, a bidder's chance of a slot depends on its weight,
/// and k Sybils that bid instantly no longer take every slot.
pub const CANDIDATES_PER_SLOT: usize = 2;

/// Everything a machine needs from outside for one step.
pub struct Ctx<'a> {
    /// The node's wall clock, ms since the Unix epoch.
    pub now: TimestampMs,
    /// The node's key: signing (ed25519, deterministic) is pure.
    pub identity: &'a NodeIdentity,
    /// Randomness: nonces, salts, selection. A seeded one in the simulator.
    pub rng: &'a mut StdRng,
    /// The node's view of its peers.
    pub directory: &'a dyn Directory,
    /// Tunables.
    pub config: &'a FlowConfig,
}

/// How a request the machine asked for was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Received and accepted.
    Ack,
    /// An assignment accepted, with the worker's signed acceptance (checked at the edge).
    Accepted(Box<distributeai_protocol::Verified<distributeai_protocol::AssignmentAck>>),
    /// Received and refused, with the peer's reason.
    Refused(String),
    /// Received, but every slot of the worker is busy: try again later.
    Busy,
    /// It never arrived or no answer came back (dial failure, timeout, broken connection):
    /// says nothing about the peer's work.
    Unreachable(String),
}

/// The ledger entry of a verdict, as every node computes standings from it (the node's
/// ledger and the simulator alike).
pub fn ledger_entry(verdict: &Verdict, signer: PublicKey, content_id: Digest) -> Entry<PublicKey> {
    Entry {
        id: content_id.0,
        issuer: signer,
        issued_at: verdict.issued_at,
        workers: verdict
            .workers
            .iter()
            .filter_map(|w| {
                let outcome = match w.result {
                    WorkerResult::Agreed => Outcome::Agreed,
                    // Counted towards k, but its output could not be used: neither credited
                    // nor blamed, as nothing it signed shows who was at fault.
                    WorkerResult::OutputRejected => return None,
                    WorkerResult::Disagreed(_) => Outcome::Disagreed,
                    WorkerResult::Failed(_) => Outcome::Failed,
                    WorkerResult::Silent => Outcome::Silent,
                };
                Some((w.bid.signer(), outcome, w.paid))
            })
            .collect(),
    }
}

/// A small valid spec for unit tests: n workers, consensus k, a reward of 3 credits.
#[cfg(test)]
pub(crate) fn test_spec(n: u8, k: u8) -> JobSpec {
    JobSpec {
        image: "test/job".into(),
        image_digest: None,
        command: vec!["run".into()],
        env: Default::default(),
        resources: distributeai_protocol::Resources {
            cpus: distributeai_protocol::Cpus::whole(1),
            memory_mb: 64,
            gpus: 0,
        },
        timeout_s: 10,
        redundancy: n,
        consensus: k,
        reward: 3,
        network: false,
    }
}

/// `n` and the noun in the right number: "1 worker", "3 workers".
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A few trailing characters of a peer's id, for timeline lines.
pub fn short(key: &PublicKey) -> String {
    match key.peer_id() {
        Ok(p) => {
            let s = p.to_string();
            format!("…{}", &s[s.len().saturating_sub(8)..])
        }
        Err(_) => key.short(),
    }
}

/// What a caller should log about a step, at which level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Routine.
    Debug,
    /// Worth a line by default.
    Info,
    /// Something went wrong that an operator should see.
    Warn,
}
