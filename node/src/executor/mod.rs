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

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use distributeai_protocol::limits::MAX_TIMEOUT_S;
use distributeai_protocol::time::TimestampMs;
use distributeai_protocol::{ExecutionFailure, JobId, JobSpec, OutputManifest, ResultHash};
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
    /// The job ran to completion with this exit code (non-zero codes are results too).
    Completed {
        /// The container's exit code.
        exit_code: i64,
    },
    /// The job produced no result.
    Failed(ExecutionFailure),
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
    /// The output manifest, when it completed.
    pub manifest: Option<OutputManifest>,
    /// The canonical result hash, when it completed.
    pub result_hash: Option<ResultHash>,
    /// When the container started.
    pub started_at: TimestampMs,
    /// How long it ran.
    pub duration: Duration,
    /// Highest memory use seen, in bytes, when the engine reported it.
    pub peak_memory_bytes: Option<u64>,
    /// CPU time used, in nanoseconds, when the engine reported it.
    pub cpu_time_ns: Option<u64>,
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

    /// Whether the job's image is present locally (bids say so).
    fn has_image<'a>(&'a self, spec: &'a JobSpec) -> BoxFuture<'a, bool>;

    /// Runs the job to completion, timeout, failure or cancellation. The container is gone
    /// when this returns, whatever happened.
    fn run(
        &self,
        request: ExecutionRequest,
        cancel: CancellationToken,
    ) -> BoxFuture<'_, Result<ExecutionOutcome, ExecutorError>>;
}
