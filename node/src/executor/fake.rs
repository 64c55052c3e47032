//! A fast fake executor for in-process job-flow tests. Only built with the `test-support`
//! feature; a node never uses it unless a test hands it over explicitly.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use distributeai_protocol::JobEnd;
use distributeai_protocol::time::now_ms;
use tokio_util::sync::CancellationToken;

use super::{
    BoxFuture, ExecutionOutcome, ExecutionRequest, ExecutionStatus, Executor, ExecutorError,
    outputs,
};

/// The image id the fake claims to run.
pub const FAKE_IMAGE: &str =
    "sha256:fafafafafafafafafafafafafafafafafafafafafafafafafafafafafafafafa";

/// How the fake behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeBehaviour {
    /// Produces output determined by the command alone, like an honest deterministic job.
    Honest,
    /// Fails as a worker (its engine is down, say).
    Fail,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct FakeExecutor {
    /// Where outputs are written.
    pub work_dir: PathBuf,
    /// What it does.
    pub behaviour: FakeBehaviour,
    /// How long each execution takes.
    pub delay: Duration,
}

impl Executor for FakeExecutor {
    fn admits(&self, _spec: &distributeai_protocol::JobSpec) -> Result<(), String> {
        Ok(())
    }

    fn may_pull(&self, spec: &distributeai_protocol::JobSpec) -> Result<(), String> {
        // The fake holds every image, but keeps the real policy so job-flow tests can show
        // a worker refusing to bid for an image from this machine's own registry.
        super::registry::RegistryPolicy::default().check(&spec.image)
    }

    fn image_id<'a>(
        &'a self,
        spec: &'a distributeai_protocol::JobSpec,
    ) -> BoxFuture<'a, Option<String>> {
        // An image of a registry the policy refuses stands for one this worker lacks.
        let held = self.may_pull(spec).is_ok();
        Box::pin(async move { held.then(|| FAKE_IMAGE.into()) })
    }

    fn run(
        &self,
        request: ExecutionRequest,
        cancel: CancellationToken,
    ) -> BoxFuture<'_, Result<ExecutionOutcome, ExecutorError>> {
        Box::pin(async move {
            let started_at = now_ms();
            let clock = Instant::now();
            let done =
                |status,
                 stdout: Vec<u8>,
                 dir: Option<PathBuf>,
                 manifest: Option<distributeai_protocol::OutputManifest>| {
                    ExecutionOutcome {
                        result_hash: manifest.as_ref().and_then(|m| m.result_hash().ok()),
                        status,
                        stdout,
                        stderr: Vec::new(),
                        stderr_truncated: false,
                        output_dir: dir,
                        manifest,
                        image: FAKE_IMAGE.into(),
                        detail: String::new(),
                        started_at,
                        duration: clock.elapsed(),
                        peak_memory_bytes: None,
                        cpu_time_ns: None,
                    }
                };
            tokio::select! {
                _ = cancel.cancelled() => return Ok(done(ExecutionStatus::Cancelled, Vec::new(), None, None)),
                _ = tokio::time::sleep(self.delay) => {}
            }
            if self.behaviour == FakeBehaviour::Fail {
                return Err(ExecutorError::Engine("simulated failure".into()));
            }
            let answer = blake3::hash(request.spec.command.join("\0").as_bytes())
                .to_hex()
                .to_string();
            let stdout = format!("{answer}\n").into_bytes();
            let dir = self
                .work_dir
                .join(format!("{}-{}", request.job_id, request.attempt))
                .join("out");
            let io = |context: &str| {
                let context = context.to_string();
                move |source| ExecutorError::Io { context, source }
            };
            std::fs::create_dir_all(&dir).map_err(io("creating the output folder"))?;
            std::fs::write(dir.join("answer.txt"), &stdout).map_err(io("writing the output"))?;
            let caps = outputs::OutputCaps {
                max_bytes: 1 << 20,
                max_files: 16,
            };
            let files = outputs::collect(&dir, caps, None)
                .map_err(|e| ExecutorError::Engine(e.to_string()))?;
            let manifest = outputs::manifest(0, FAKE_IMAGE, &stdout, files);
            Ok(done(
                ExecutionStatus::Ended(JobEnd::Exited { code: 0 }),
                stdout,
                Some(dir),
                Some(manifest),
            ))
        })
    }
}
