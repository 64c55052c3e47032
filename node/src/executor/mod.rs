//! Running a job: the [`Executor`] trait and its real implementation on Docker.
//!
//! A worker runs strangers' code, so every execution goes through a sandbox (see
//! [`docker`] for exactly which protections are on) and ends in an [`ExecutionOutcome`]
//! whose result hash is computed with the protocol's canonical rule, so two honest workers
//! running the same deterministic job agree.

pub mod docker;
#[cfg(feature = "test-support")]
pub mod fake;
pub mod outputs;
pub mod quota;
pub mod registry;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use distributeai_protocol::limits::MAX_TAIL_BYTES;
use distributeai_protocol::limits::MAX_TIMEOUT_S;
use distributeai_protocol::time::TimestampMs;
use distributeai_protocol::validate::reason_text;
use distributeai_protocol::{Diagnostics, JobEnd, JobId, JobSpec, OutputManifest, ResultHash};
use tokio_util::sync::CancellationToken;

pub use docker::{DockerExecutor, DockerExecutorConfig};

/// One execution to run.
#[derive(Debug, Clone)]
pub struct ExecutionRequest {
    /// The job.
    pub job_id: JobId,
    /// Which assignment attempt this is; keeps re-runs apart on disk.
    pub attempt: u32,
    /// What to run.
    pub spec: JobSpec,
}

impl ExecutionRequest {
    /// The wall-clock limit of this execution.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.spec.timeout_s.clamp(1, MAX_TIMEOUT_S).into())
    }
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutionStatus {
    /// The job ended in a way of its own: exited (any code), timed out, ran out of memory,
    /// produced too much output, could not start its command, or had no image. Each is a
    /// result the workers agree on (issue 12). The worker's own troubles are
    /// [`ExecutorError`]s instead.
    Ended(JobEnd),
    /// The cancel signal stopped it.
    Cancelled,
}

/// Everything an execution produced.
#[derive(Debug, Clone)]
pub struct ExecutionOutcome {
    /// How it ended.
    pub status: ExecutionStatus,
    /// Captured standard output (at most the stdout cap; over it the job fails).
    pub stdout: Vec<u8>,
    /// Captured standard error, truncated at the stderr cap; it does not count in the hash.
    pub stderr: Vec<u8>,
    /// Whether stderr was truncated.
    pub stderr_truncated: bool,
    /// The folder holding the files the job wrote to `/out`, when it completed.
    pub output_dir: Option<PathBuf>,
    /// The output manifest, when the job ended (for an end other than an exit, one without
    /// output).
    pub manifest: Option<OutputManifest>,
    /// The canonical result hash of the manifest.
    pub result_hash: Option<ResultHash>,
    /// The id of the image that ran (`sha256:…`); empty when it was unavailable.
    pub image: String,
    /// The engine's or executor's words on an end other than an exit, whole.
    pub detail: String,
    /// When the container started.
    pub started_at: TimestampMs,
    /// How long it ran.
    pub duration: Duration,
    /// Highest memory use seen, in bytes, when the engine reported it.
    pub peak_memory_bytes: Option<u64>,
    /// CPU time used, in nanoseconds, when the engine reported it.
    pub cpu_time_ns: Option<u64>,
}

impl ExecutionOutcome {
    /// The outcome of a job that ended as `end` before producing anything, running `image`.
    pub fn ended(end: JobEnd, image: &str, started_at: TimestampMs) -> Self {
        let mut outcome = Self {
            status: ExecutionStatus::Ended(end),
            stdout: Vec::new(),
            stderr: Vec::new(),
            stderr_truncated: false,
            output_dir: None,
            manifest: None,
            result_hash: None,
            image: image.to_string(),
            detail: String::new(),
            started_at,
            duration: Duration::ZERO,
            peak_memory_bytes: None,
            cpu_time_ns: None,
        };
        outcome.set_manifest_without_output();
        outcome
    }

    /// For an end other than an exit: the manifest without output and its hash.
    pub fn set_manifest_without_output(&mut self) {
        if let ExecutionStatus::Ended(end) = self.status {
            let manifest = OutputManifest::without_output(end, self.image.clone());
            self.result_hash = manifest.result_hash().ok();
            self.manifest = Some(manifest);
            self.output_dir = None;
        }
    }

    /// What the worker tells the submitter beyond the result: the engine's message and the
    /// last [`MAX_TAIL_BYTES`] of stdout and of stderr, so a job that failed shows how far it
    /// got.
    pub fn diagnostics(&self) -> Diagnostics {
        let tail = |bytes: &[u8]| bytes[bytes.len().saturating_sub(MAX_TAIL_BYTES)..].to_vec();
        Diagnostics {
            detail: reason_text(&self.detail),
            stdout_tail: tail(&self.stdout),
            stderr_tail: tail(&self.stderr),
        }
    }
}

/// Why an execution could not even be attempted (as opposed to a job that failed).
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// This worker does not run jobs like this one (resources, network, GPUs).
    #[error("refused: {0}")]
    Refused(String),
    /// The container engine failed or could not be reached.
    #[error("container engine: {0}")]
    Engine(String),
    /// The job's output could not be turned into a result (a file name that is not a
    /// canonical UTF-8 path, say).
    #[error("{0}")]
    Output(String),
    /// A local file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

/// A boxed future, so executors can be used as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs jobs. [`DockerExecutor`] is the real one; tests of the job flow may use a fast fake.
pub trait Executor: Send + Sync {
    /// Whether this executor would run `spec` at all (resources, network, GPUs), so a worker
    /// never bids for a job it cannot run.
    fn admits(&self, spec: &JobSpec) -> Result<(), String>;

    /// The id (`sha256:…`) of the image this worker would run for `spec`, when it holds it
    /// (bids say so); `None` when it would have to pull it.
    fn image_id<'a>(&'a self, spec: &'a JobSpec) -> BoxFuture<'a, Option<String>>;

    /// Whether this worker would pull `spec`'s image when it does not hold it: it pulls at
    /// all, and the image's registry passes the operator's policy
    /// ([`registry::RegistryPolicy`]). A worker never bids for a job whose image it lacks
    /// and may not pull; the error says why.
    fn may_pull(&self, spec: &JobSpec) -> Result<(), String>;

    /// How this executor bounds a run's `/out` (shown in the node's budgets).
    fn output_quota(&self) -> quota::OutputQuota {
        quota::OutputQuota::Watchdog
    }

    /// Runs the job to completion, timeout, failure or cancellation. The container is gone
    /// when this returns, whatever happened.
    fn run(
        &self,
        request: ExecutionRequest,
        cancel: CancellationToken,
    ) -> BoxFuture<'_, Result<ExecutionOutcome, ExecutorError>>;
}
