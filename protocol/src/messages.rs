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
    /// Peers the node has an open connection to as it signs (at most
    /// [`MAX_ANNOUNCED_LINKS`](crate::limits::MAX_ANNOUNCED_LINKS)), so that every node can draw
    /// who is connected to whom. Informational: nothing is decided on it. Absent from
    /// announcements of nodes that predate it.
    #[serde(default)]
    pub links: Vec<PeerLink>,
}

/// A peer a node says it is connected to, in its [`NodeAnnouncement`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerLink {
    /// The peer's PeerId, as text.
    pub peer: String,
    /// Whether the node reaches it only through a relay's circuit.
    pub relayed: bool,
}

/// A number of CPUs, fractions included (`0.5` is half a CPU's time), kept in thousandths so
/// that specs compare exactly and sign the same on every node. Written and read as a plain
/// number: `1`, `0.5`, `2.25` (issue 12). Docker gets it as `nano_cpus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cpus(u32);

impl Cpus {
    /// `n` whole CPUs.
    pub const fn whole(n: u32) -> Self {
        Self(n.saturating_mul(1000))
    }

    /// `millis` thousandths of a CPU.
    pub const fn from_millis(millis: u32) -> Self {
        Self(millis)
    }

    /// In thousandths of a CPU.
    pub const fn millis(self) -> u32 {
        self.0
    }

    /// In billionths of a CPU, as Docker's `nano_cpus` takes it.
    pub fn nano_cpus(self) -> i64 {
        i64::from(self.0) * 1_000_000
    }

    /// Parses a decimal such as `0.5`: positive, at most three decimals.
    pub fn parse(text: &str) -> Result<Self, String> {
        let value: f64 = text
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not a number of CPUs, such as 1 or 0.5"))?;
        Self::from_f64(value)
    }

    fn from_f64(value: f64) -> Result<Self, String> {
        let millis = value * 1000.0;
        if !millis.is_finite() || millis < 0.0 || millis > f64::from(u32::MAX) {
            return Err(format!("{value} is not a number of CPUs"));
        }
        if (millis - millis.round()).abs() > 1e-6 {
            return Err(format!("{value} has more than three decimals"));
        }
        Ok(Self(millis.round() as u32))
    }
}

impl std::fmt::Display for Cpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (whole, frac) = (self.0 / 1000, self.0 % 1000);
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let frac = format!("{frac:03}");
            write!(f, "{whole}.{}", frac.trim_end_matches('0'))
        }
    }
}

impl Serialize for Cpus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0.is_multiple_of(1000) {
            serializer.serialize_u32(self.0 / 1000)
        } else {
            serializer.serialize_f64(f64::from(self.0) / 1000.0)
        }
    }
}

impl<'de> Deserialize<'de> for Cpus {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Cpus;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of CPUs, such as 1 or 0.5")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Cpus, E> {
                u32::try_from(v)
                    .ok()
                    .and_then(|v| v.checked_mul(1000))
                    .map(Cpus)
                    .ok_or_else(|| E::custom(format!("{v} CPUs is too many")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Cpus, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("{v} is not a number of CPUs")))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Cpus, E> {
                Cpus::from_f64(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Resources a job needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// CPUs, fractions included (`0.5`).
    pub cpus: Cpus,
    /// Memory limit in MiB.
    pub memory_mb: u64,
    /// GPUs.
    pub gpus: u32,
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            cpus: Cpus::whole(1),
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
    /// The id (content digest, `sha256:…`) of the image the worker holds for the job's
    /// reference and will run; `None` when it would pull the image first (issue 12).
    pub image: Option<String>,
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
    /// The job ended in a way that is its own (see [`JobEnd`]: an exit code, but also a
    /// timeout or running out of memory); the result stays hidden until revealed.
    Committed(Digest),
    /// The worker could not run the job; says nothing about the job.
    Failed(WorkerFault),
}

/// Why a worker produced no result: its own trouble, not the job's (the container engine was
/// down, the node crashed repeatedly running it, the result could not be hashed or kept). A
/// job's own failures are results instead, agreed on like any other ([`JobEnd`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerFault {
    /// What went wrong, at most [`crate::limits::MAX_REASON_LEN`] bytes.
    pub reason: String,
}

impl WorkerFault {
    /// A fault with `reason`, shortened at a word to fit the limit.
    pub fn new(reason: impl AsRef<str>) -> Self {
        Self {
            reason: crate::validate::reason_text(reason.as_ref()),
        }
    }
}

/// How a job's execution ended, as far as the job itself is concerned: part of the result
/// hash, so k workers agreeing that a job timed out is as much a verdict as k agreeing on its
/// output (issue 12). Only the kind counts, never an engine's wording, so honest workers on
/// different Docker versions agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobEnd {
    /// The job's process exited with this code (non-zero codes are results too).
    Exited {
        /// The exit code.
        code: i64,
    },
    /// It was still running at its timeout and was killed.
    TimedOut,
    /// The job's own main process was killed for exceeding the memory limit (a child killed
    /// for memory while the main process went on is not this).
    OutOfMemory,
    /// Its stdout or files under `/out` went over the caps.
    OutputTooLarge,
    /// Its command could not be started: not found in the image, or not executable.
    CannotStart,
    /// The image could not be found or pulled, or did not have the pinned digest.
    ImageUnavailable,
}

impl JobEnd {
    /// Whether the job ran to its own end, so its output is the result to fetch.
    pub fn is_exit(&self) -> bool {
        matches!(self, JobEnd::Exited { .. })
    }

    /// A short description, e.g. `exit code 0` or `timed out`.
    pub fn describe(&self) -> String {
        match self {
            JobEnd::Exited { code } => format!("exit code {code}"),
            JobEnd::TimedOut => "timed out".into(),
            JobEnd::OutOfMemory => "ran out of memory".into(),
            JobEnd::OutputTooLarge => "output too large".into(),
            JobEnd::CannotStart => "command could not be started".into(),
            JobEnd::ImageUnavailable => "image unavailable".into(),
        }
    }
}

/// What a worker saw of how a job ended, beyond the hashed result: engine messages and the
/// last output before the end. Signed by the worker but not agreed on, since it legitimately
/// differs between honest runs (how far a timed-out job got, an engine's wording).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostics {
    /// The engine's or executor's message, whole (at most [`crate::limits::MAX_REASON_LEN`]
    /// bytes), e.g. `exec: "nonexistentcmd": executable file not found in $PATH`.
    pub detail: String,
    /// The last bytes of stdout, at most [`crate::limits::MAX_TAIL_BYTES`].
    #[serde(with = "serde_bytes")]
    pub stdout_tail: Vec<u8>,
    /// The last bytes of stderr, at most [`crate::limits::MAX_TAIL_BYTES`].
    #[serde(with = "serde_bytes")]
    pub stderr_tail: Vec<u8>,
}

/// A worker's signed acceptance of its assignment, the answer to [`Assignment`]: the proof a
/// verdict needs to call it silent. Without it, nobody can be blamed for work it never agreed
/// to do (issue 19).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentAck {
    /// The job.
    pub job_id: JobId,
    /// The assignment attempt accepted.
    pub attempt: u32,
    /// The time the worker accepted to commit within, in ms from `issued_at`: the
    /// assignment's `deadline - issued_at`.
    pub deadline_ms: u64,
    /// When the worker signed it (on receipt of the assignment).
    pub issued_at: TimestampMs,
}

/// A worker's signed opening of its commitment, sent when the submitter asks for it after all
/// commitments are in. Small on purpose: it travels inside the verdict as the evidence of what
/// the worker returned, so that every node can re-check the decision (issue 19). The manifest
/// it stands for travels beside it in a [`RevealedResult`], bound by `result_hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultReveal {
    /// The job.
    pub job_id: JobId,
    /// The assignment attempt.
    pub attempt: u32,
    /// The result hash committed to: the canonical hash of the manifest.
    pub result_hash: ResultHash,
    /// The random salt that made the commitment hiding.
    pub salt: Digest,
    /// How the job ended, as in the manifest.
    pub end: JobEnd,
    /// The image id that ran, as in the manifest (empty when it was unavailable).
    pub image: String,
    /// When the worker signed it.
    pub issued_at: TimestampMs,
}

impl ResultReveal {
    /// Whether this reveal, by `worker`, opens the hiding commitment `digest`: it must equal
    /// [`crate::result_hash::commitment`] of the worker, this reveal's job and attempt, and
    /// its result hash and salt. The one test of an opening, at the submitter, in a verdict's
    /// re-check and in its explanation.
    pub fn opens(&self, worker: &PublicKey, digest: &Digest) -> bool {
        *digest
            == crate::result_hash::commitment(
                worker,
                &self.job_id,
                self.attempt,
                &self.result_hash,
                &self.salt,
            )
    }
}

/// A worker's answer to a reveal request: its signed reveal, with the manifest whose hash the
/// reveal names and what it saw of the job's end. The manifest needs no signature of its own:
/// its hash is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevealedResult {
    /// The signed opening of the commitment.
    pub reveal: Signed<ResultReveal>,
    /// What the output consists of; its canonical hash must equal the reveal's `result_hash`.
    pub manifest: OutputManifest,
    /// How the end looked from this worker, not hashed and not agreed on.
    pub diagnostics: Diagnostics,
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
    /// How the job ended. Only a job that exited has output: for any other end, `stdout` is
    /// empty and `files` is empty.
    pub end: JobEnd,
    /// The id (content digest, `sha256:…`) of the image that ran, so a worker that ran
    /// another image under the same reference never agrees (issue 12); empty when the image
    /// was unavailable.
    pub image: String,
    /// The captured standard output.
    pub stdout: ContentEntry,
    /// Regular files under `/out`, sorted by path (bytewise), each path once.
    pub files: Vec<OutputFile>,
}

/// How a submitter judged one assigned worker. Every variant must follow from the record's
/// [`Evidence`], which only the worker can have signed; receivers re-check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerResult {
    /// Its revealed result hash equals the accepted one.
    Agreed,
    /// Its revealed result hash equals the accepted one, but the output it served did not
    /// match the manifest: counted towards k (its signed reveal shows the result), neither
    /// paid nor credited, and not blamed either, since the bytes it served carry no signature
    /// to prove it.
    OutputRejected,
    /// It revealed this other hash.
    Disagreed(ResultHash),
    /// It signed a failure report: it could not run the job (its own fault, not the job's).
    Failed(WorkerFault),
    /// It signed its acceptance of the assignment and never revealed a result by its
    /// deadline.
    Silent,
}

/// The worker's own signed messages that prove a [`WorkerResult`]: a charge that lacks the
/// worker's signature is not an entry (issue 19).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Evidence {
    /// It committed and revealed: the reveal opens the commitment, and its hash decides
    /// whether it agreed.
    Revealed {
        /// Its signed commitment.
        commitment: Signed<ResultCommitment>,
        /// Its signed reveal, which opens the commitment.
        reveal: Signed<ResultReveal>,
    },
    /// It signed a failure report instead of a commitment.
    Failed {
        /// Its signed commitment whose outcome is [`CommittedOutcome::Failed`].
        commitment: Signed<ResultCommitment>,
    },
    /// It accepted the assignment; no valid reveal followed.
    Accepted {
        /// Its signed acceptance.
        acceptance: Signed<AssignmentAck>,
    },
}

/// One assigned worker in a verdict, with its own signatures as proof it took part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// The worker's signed bid for this job.
    pub bid: Signed<Bid>,
    /// The worker's own signed messages that prove `result`.
    pub evidence: Evidence,
    /// How it did.
    pub result: WorkerResult,
    /// Credits paid to it for this job.
    pub paid: u64,
}

/// The result k workers agreed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgreedResult {
    /// The agreed result hash.
    pub hash: ResultHash,
    /// How the job ended, from the agreed manifest: a job that timed out on k workers is
    /// decided as such.
    pub end: JobEnd,
    /// The image id (`sha256:…`) that ran, from the agreed manifest.
    pub image: String,
}

/// The decision on a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VerdictOutcome {
    /// At least k workers agreed on this result; when the job exited, its fetched output
    /// matched it.
    Accepted(AgreedResult),
    /// No result could be agreed on within the retry bound.
    Failed(String),
}

/// How the submitter drew the job's first n workers, recorded so that any node can check it
/// chose fairly (issue 19): the draw is `verifier::select_with_uniforms` over these candidates
/// with the recorded weights and operator groups, and uniforms that come from a hash of the
/// job id and each candidate's bid ([`Draw::uniforms`]), so the submitter cannot pick them.
/// The weights and groups are what the submitter saw (its ledger and its own evidence, the
/// addresses it observed): a checker verifies the draw, not those inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draw {
    /// Every bid in when bidding closed, in arrival order, each from a distinct worker.
    pub candidates: Vec<Signed<Bid>>,
    /// Each candidate's selection weight, in millionths (integers, so every node computes
    /// the same draw from them).
    pub weights: Vec<u64>,
    /// Each candidate's operator group, as an index: candidates of one group share it.
    pub groups: Vec<u16>,
}

impl Draw {
    /// A draw among `candidates` in which every one weighs 1 and is an operator of its own:
    /// for tests and tools whose verdicts name every candidate.
    pub fn even(candidates: Vec<Signed<Bid>>) -> Self {
        let count = candidates.len();
        Self {
            candidates,
            weights: vec![1_000_000; count],
            groups: (0..count)
                .map(|i| u16::try_from(i).unwrap_or(u16::MAX))
                .collect(),
        }
    }

    /// The uniform in (0, 1] each candidate draws: the first 53 bits of
    /// `blake3("distributeai/draw/v1\0" || job id || bid content id)`.
    pub fn uniforms(&self, job_id: &JobId) -> Vec<f64> {
        self.candidates
            .iter()
            .map(|bid| {
                let mut hasher = blake3::Hasher::new();
                hasher.update(b"distributeai/draw/v1\0");
                hasher.update(job_id.as_bytes());
                hasher.update(bid.content_id().as_bytes());
                let hash = hasher.finalize();
                let mut first = [0u8; 8];
                first.copy_from_slice(&hash.as_bytes()[..8]);
                let bits = u64::from_le_bytes(first) >> 11;
                1.0 - (bits as f64) / ((1u64 << 53) as f64)
            })
            .collect()
    }

    /// The workers the draw picks for `n` slots, in order, from the recorded candidates,
    /// weights and groups.
    pub fn chosen(&self, job_id: &JobId, n: usize) -> Vec<PublicKey> {
        let candidates: Vec<distributeai_verifier::Candidate<PublicKey, u16>> = self
            .candidates
            .iter()
            .zip(&self.weights)
            .zip(&self.groups)
            .map(|((bid, weight), group)| distributeai_verifier::Candidate {
                worker: bid.signer(),
                weight: *weight as f64 / 1_000_000.0,
                group: *group,
            })
            .collect();
        distributeai_verifier::select_with_uniforms(&candidates, n, &self.uniforms(job_id)).chosen
    }
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
    /// How the first n workers were drawn.
    pub draw: Draw,
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
impl SignedMessage for AssignmentAck {
    const KIND: MessageKind = MessageKind::AssignmentAck;
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

impl Evidence {
    /// `worker`'s commitment to `manifest`'s result and the reveal that opens it, both signed
    /// at `issued_at` in one go. A worker signs these at two moments (after executing, and
    /// when asked to reveal); tests and tools that need the evidence of a revealed result
    /// whole use this.
    pub fn revealed_by(
        worker: &crate::NodeIdentity,
        job_id: JobId,
        attempt: u32,
        manifest: &OutputManifest,
        salt: Digest,
        issued_at: TimestampMs,
    ) -> Result<Self, crate::EncodeError> {
        let result_hash = manifest
            .result_hash()
            .map_err(|e| crate::EncodeError::Cbor(e.to_string()))?;
        let digest = crate::result_hash::commitment(
            &worker.public_key(),
            &job_id,
            attempt,
            &result_hash,
            &salt,
        );
        let commitment = ResultCommitment {
            job_id,
            attempt,
            outcome: CommittedOutcome::Committed(digest),
            issued_at,
        };
        let reveal = ResultReveal {
            job_id,
            attempt,
            result_hash,
            salt,
            end: manifest.end,
            image: manifest.image.clone(),
            issued_at,
        };
        Ok(Evidence::Revealed {
            commitment: Signed::sign(worker, &commitment)?,
            reveal: Signed::sign(worker, &reveal)?,
        })
    }
}
