//! The messages of the job flow, from a node announcing itself to the verdict on a job.
//!
//! Every type here travels inside a [`Signed`] envelope (or inside a message that does), so the
//! sender of each one is known and cannot be forged. Bounds on every field are checked by
//! [`crate::validate`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, JobId, PublicKey, ResultHash};
use crate::envelope::{MessageKind, Signed, SignedMessage};
use crate::time::TimestampMs;

/// What a node can offer to run jobs, as it announces it to the mesh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// CPUs offered to jobs.
    pub cpus: u32,
    /// Memory offered to jobs, in MiB.
    pub memory_mb: u64,
    /// GPUs offered to jobs.
    pub gpus: Vec<GpuInfo>,
    /// Free-form region label chosen by the operator (e.g. `eu-west`), for locality.
    pub region: String,
    /// The node software's version.
    pub version: String,
    /// Container images present locally, which the node can run without pulling.
    pub images: Vec<LocalImage>,
}

/// One GPU a node offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuInfo {
    /// Vendor, e.g. `nvidia`.
    pub vendor: String,
    /// Model name as the driver reports it.
    pub model: String,
    /// Device memory in MiB (0 if unknown).
    pub memory_mb: u64,
}

/// A container image present on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalImage {
    /// Reference such as `distributeai/toolbox:local`.
    pub reference: String,
    /// Content digest (`sha256:…`) when the engine knows it.
    pub digest: Option<String>,
}

/// A node's signed statement of who it is, where it listens and what it can run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAnnouncement {
    /// What the node offers.
    pub capabilities: Capabilities,
    /// Multiaddrs the node listens on, as text.
    pub listen_addrs: Vec<String>,
    /// Whether the node bids for jobs (false for `--no-worker` nodes).
    pub accepts_jobs: bool,
    /// When the node signed this announcement.
    pub issued_at: TimestampMs,
    /// When this run of the node began: a new value tells peers it restarted and has
    /// forgotten where they are.
    pub started_at: TimestampMs,
    /// Increases with every announcement from the same node, so older ones are ignored.
    pub sequence: u64,
}

/// Resources a job needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// Whole CPUs.
    pub cpus: u32,
    /// Memory limit in MiB.
    pub memory_mb: u64,
    /// GPUs.
    pub gpus: u32,
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            cpus: 1,
            memory_mb: 256,
            gpus: 0,
        }
    }
}

/// What a submitter wants run: the user-facing job description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Container image reference.
    pub image: String,
    /// When set, the job runs only on an image with exactly this digest (`sha256:<64 hex>`).
    #[serde(default)]
    pub image_digest: Option<String>,
    /// Program and arguments; empty runs the image's default command.
    #[serde(default)]
    pub command: Vec<String>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Resources each worker must give the job.
    #[serde(default)]
    pub resources: Resources,
    /// Wall-clock limit for one execution, in seconds.
    #[serde(default = "JobSpec::default_timeout_s")]
    pub timeout_s: u32,
    /// How many independent workers run the job (n).
    #[serde(default = "JobSpec::default_redundancy")]
    pub redundancy: u8,
    /// How many of them must return the same result hash (k).
    #[serde(default = "JobSpec::default_consensus")]
    pub consensus: u8,
    /// Credits paid to each worker whose result agrees with the accepted one.
    #[serde(default)]
    pub reward: u64,
    /// Whether the job needs network access (a worker runs it only if its operator allows).
    #[serde(default)]
    pub network: bool,
}

impl JobSpec {
    /// Default timeout: five minutes.
    pub const DEFAULT_TIMEOUT_S: u32 = 300;
    /// Default redundancy n.
    pub const DEFAULT_REDUNDANCY: u8 = 3;
    /// Default consensus k.
    pub const DEFAULT_CONSENSUS: u8 = 2;

    fn default_timeout_s() -> u32 {
        Self::DEFAULT_TIMEOUT_S
    }
    fn default_redundancy() -> u8 {
        Self::DEFAULT_REDUNDANCY
    }
    fn default_consensus() -> u8 {
        Self::DEFAULT_CONSENSUS
    }

    /// A spec with defaults for everything but the image and command.
    pub fn new(image: impl Into<String>, command: Vec<String>) -> Self {
        Self {
            image: image.into(),
            image_digest: None,
            command,
            env: BTreeMap::new(),
            resources: Resources::default(),
            timeout_s: Self::DEFAULT_TIMEOUT_S,
            redundancy: Self::DEFAULT_REDUNDANCY,
            consensus: Self::DEFAULT_CONSENSUS,
            reward: 0,
            network: false,
        }
    }
}

/// A submitter's signed offer of a job to the mesh. Its [`JobId`] is the hash of the envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobAnnouncement {
    /// The job.
    pub spec: JobSpec,
    /// Random value that makes two submissions of the same spec distinct jobs.
    pub nonce: u64,
    /// When the submitter signed it.
    pub issued_at: TimestampMs,
    /// After this, no worker starts the job and the submitter stops waiting for it.
    pub expires_at: TimestampMs,
}

/// A submitter's signed withdrawal of its job; workers stop its containers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCancel {
    /// The job withdrawn.
    pub job_id: JobId,
    /// Why, for the workers' logs.
    pub reason: String,
    /// When the submitter signed it.
    pub issued_at: TimestampMs,
}

/// A worker's signed offer to run a job, sent straight to the submitter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    /// The job bid for.
    pub job_id: JobId,
    /// Whether the image is already present (no pull needed before starting).
    pub image_present: bool,
    /// Jobs the worker is running now, a hint of how soon it starts.
    pub running_jobs: u32,
    /// When the worker signed it.
    pub issued_at: TimestampMs,
}

/// A submitter's signed instruction to one worker to run the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The job.
    pub job_id: JobId,
    /// The worker chosen.
    pub worker: PublicKey,
    /// Counts reassignments of the job, so a late answer to an earlier attempt is told apart.
    pub attempt: u32,
    /// The worker's commitment must arrive by then, or it is replaced.
    pub deadline: TimestampMs,
    /// When the submitter signed it.
    pub issued_at: TimestampMs,
}

/// A worker's signed, hiding commitment to its result, sent only to the submitter.
///
/// `commitment = blake3(tag, worker key, job id, attempt, result hash, salt)` (see
/// [`crate::result_hash::commitment`]). It reveals nothing about the result, and because the
/// worker's own key is inside it, a commitment copied from another worker cannot be opened by
/// the copier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultCommitment {
    /// The job.
    pub job_id: JobId,
    /// The assignment attempt this answers.
    pub attempt: u32,
    /// The hiding commitment, or the reason the execution failed.
    pub outcome: CommittedOutcome,
    /// When the worker signed it.
    pub issued_at: TimestampMs,
}

/// What a worker commits to after executing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommittedOutcome {
    /// The job ran to completion (any exit code); the result stays hidden until revealed.
    Committed(Digest),
    /// The job could not produce a result.
    Failed(ExecutionFailure),
}

/// Why an execution produced no result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutionFailure {
    /// It ran past its timeout and was killed.
    Timeout,
    /// It was killed for exceeding its memory limit.
    OutOfMemory,
    /// Its stdout or output files exceeded the worker's caps.
    OutputTooLarge,
    /// The image could not be found, pulled, or did not match the pinned digest.
    ImageUnavailable(String),
    /// Anything else that stopped the worker from running it.
    Error(String),
}

/// A worker's signed opening of its commitment, sent when the submitter asks for it after all
/// commitments are in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultReveal {
    /// The job.
    pub job_id: JobId,
    /// The assignment attempt.
    pub attempt: u32,
    /// The result hash committed to.
    pub result_hash: ResultHash,
    /// The random salt that made the commitment hiding.
    pub salt: Digest,
    /// What the output consists of; its canonical hash must equal `result_hash`.
    pub manifest: OutputManifest,
    /// When the worker signed it.
    pub issued_at: TimestampMs,
}

/// A blob's size and blake3 hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentEntry {
    /// Length in bytes.
    pub size: u64,
    /// blake3 of the bytes.
    pub hash: Digest,
}

/// One file the job wrote under `/out`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Path relative to `/out`, `/`-separated, without `.` or `..` components.
    pub path: String,
    /// Its size and hash.
    pub content: ContentEntry,
}

/// Everything a worker serves as a job's output: the inputs of the canonical result hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputManifest {
    /// The container's exit code.
    pub exit_code: i64,
    /// The captured standard output.
    pub stdout: ContentEntry,
    /// Regular files under `/out`, sorted by path (bytewise), each path once.
    pub files: Vec<OutputFile>,
}

/// How a submitter judged one assigned worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerResult {
    /// Its result hash equals the accepted one.
    Agreed,
    /// It returned this other hash.
    Disagreed(ResultHash),
    /// It reported a failure.
    Failed(ExecutionFailure),
    /// It never answered by its deadline.
    Silent,
}

/// One assigned worker in a verdict, with its own signatures as proof it took part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// The worker's signed bid for this job.
    pub bid: Signed<Bid>,
    /// The worker's own signed commitment (or failure report) for this job: proof that it was
    /// assigned and answered, so a submitter cannot blame a bidder it never assigned. Required
    /// for every result but `Silent`, which by nature has no signature of the worker.
    pub commitment: Option<Signed<ResultCommitment>>,
    /// How it did.
    pub result: WorkerResult,
    /// Credits paid to it for this job.
    pub paid: u64,
}

/// The decision on a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VerdictOutcome {
    /// At least k workers agreed on this hash, and the fetched output matched it.
    Accepted(ResultHash),
    /// No result could be agreed on within the retry bound.
    Failed(String),
}

/// A submitter's signed verdict on its job: one entry of the gossiped ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The job's own signed announcement, so anyone can check the issuer and recompute the id.
    pub job: Signed<JobAnnouncement>,
    /// The decision.
    pub outcome: VerdictOutcome,
    /// Every worker assigned to the job, at most once each.
    pub workers: Vec<WorkerRecord>,
    /// When the submitter signed it.
    pub issued_at: TimestampMs,
}

/// Asks a peer for ledger entries after a cursor, for catching up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerSyncRequest {
    /// Entries are served in job-id order; only those after this id are wanted.
    pub after: Option<JobId>,
    /// At most this many entries (the server also caps it).
    pub limit: u32,
}

/// A batch of ledger entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerSyncResponse {
    /// Entries in job-id order, each validated by the receiver one by one.
    pub entries: Vec<Signed<Verdict>>,
    /// Whether more entries follow the last one.
    pub more: bool,
    /// The server's ledger summary hash, to tell whether the two ledgers now match.
    pub summary: Digest,
}

impl SignedMessage for NodeAnnouncement {
    const KIND: MessageKind = MessageKind::NodeAnnouncement;
}
impl SignedMessage for JobAnnouncement {
    const KIND: MessageKind = MessageKind::JobAnnouncement;
}
impl SignedMessage for JobCancel {
    const KIND: MessageKind = MessageKind::JobCancel;
}
impl SignedMessage for Bid {
    const KIND: MessageKind = MessageKind::Bid;
}
impl SignedMessage for Assignment {
    const KIND: MessageKind = MessageKind::Assignment;
}
impl SignedMessage for ResultCommitment {
    const KIND: MessageKind = MessageKind::ResultCommitment;
}
impl SignedMessage for ResultReveal {
    const KIND: MessageKind = MessageKind::ResultReveal;
}
impl SignedMessage for Verdict {
    const KIND: MessageKind = MessageKind::Verdict;
}
