//! [`DockerExecutor`]: runs jobs in sandboxed Docker containers through bollard.
//!
//! # The sandbox
//!
//! Every container this executor creates has:
//!
//! - **no network** (`network_mode: none`, only a private loopback), unless the job asks for
//!   network *and* the operator allowed it (`SandboxLimits::allow_network`);
//! - a **read-only root filesystem**;
//! - a writable **`/out`**, the job's own output folder (the only host folder mounted), watched
//!   while the job runs and stopped at `max_output_bytes`, and a **`/tmp`** tmpfs of
//!   `tmp_size_mb` (kernel-enforced);
//! - **memory** limited to the job's request with swap disabled, and **CPUs** limited to the
//!   job's request (fractions included, as `nano_cpus`), both capped by what the worker offers;
//! - a **pids limit** (`pids_limit`), so a fork bomb cannot exhaust the host;
//! - **all capabilities dropped** and **`no-new-privileges`**;
//! - a **non-root user** (65534 when the node runs as root, else the node's own uid);
//! - captured **stdout capped** (`max_stdout_bytes`: over it the job ends `output_too_large`)
//!   and stderr truncated at `max_stderr_bytes`; no log driver, so nothing accumulates on disk;
//! - a **deadline**: killed at the job's timeout and reported `timed out`;
//! - labels `distributeai.job=<job id>` and `distributeai.node=<peer id>`, and removal when
//!   the run ends, whatever happened; leftovers of a crashed earlier run are removed on start.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, DeviceRequest, HostConfig, HostConfigLogConfig};
use bollard::query_parameters::{
    AttachContainerOptions, CreateImageOptions, KillContainerOptions, ListContainersOptions,
    RemoveContainerOptions, StatsOptions,
};
use distributeai_protocol::limits::MAX_TIMEOUT_S;
use distributeai_protocol::time::now_ms;
use distributeai_protocol::validate::{check_image_digest, check_image_reference};
use distributeai_protocol::{Cpus, JobEnd, JobSpec, LocalImage};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::outputs::{self, CollectError, OutputCaps};
use super::quota::{self, OutputQuota};
use super::{
    BoxFuture, ExecutionOutcome, ExecutionRequest, ExecutionStatus, Executor, ExecutorError,
};

/// Label naming the job a container runs.
pub const JOB_LABEL: &str = "distributeai.job";
/// The `oom_score_adj` of every job container (`-1000..=1000`; the node and most desktop
/// programs run at 0): 500 makes the kernel's OOM killer pick a job's processes well before
/// anything of the owner's, without exempting anything else (issue 20).
pub const JOB_OOM_SCORE_ADJ: i64 = 500;
/// Label naming the node (PeerId) that created a container.
pub const NODE_LABEL: &str = "distributeai.node";

/// What a worker offers and allows; every job is capped by it.
#[derive(Debug, Clone)]
pub struct SandboxLimits {
    /// CPUs a job may use at most.
    pub max_cpus: u32,
    /// Memory a job may use at most, in MiB.
    pub max_memory_mb: u64,
    /// GPUs the worker offers.
    pub gpus: u32,
    /// Whether jobs that ask for network may have it.
    pub allow_network: bool,
    /// Whether missing images may be pulled from a registry.
    pub allow_pull: bool,
    /// Which registries they may be pulled from (default: any on the internet, none on this
    /// machine or its LAN).
    pub registries: super::registry::RegistryPolicy,
    /// Captured stdout above this ends the job as `output_too_large`.
    pub max_stdout_bytes: u64,
    /// Captured stderr is truncated here.
    pub max_stderr_bytes: u64,
    /// Total bytes of files under `/out`.
    pub max_output_bytes: u64,
    /// Number of files under `/out`.
    pub max_output_files: usize,
    /// Size of the `/tmp` tmpfs, in MiB.
    pub tmp_size_mb: u64,
    /// Processes and threads in the container.
    pub pids_limit: i64,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            max_cpus: 1,
            max_memory_mb: 512,
            gpus: 0,
            allow_network: false,
            allow_pull: true,
            registries: super::registry::RegistryPolicy::default(),
            max_stdout_bytes: 16 * 1024 * 1024,
            max_stderr_bytes: 1024 * 1024,
            max_output_bytes: 256 * 1024 * 1024,
            max_output_files: 4096,
            tmp_size_mb: 64,
            pids_limit: 256,
        }
    }
}

impl SandboxLimits {
    /// Whether a job fits what this worker offers and allows.
    pub fn admits(&self, spec: &JobSpec) -> Result<(), String> {
        let r = &spec.resources;
        if r.cpus > Cpus::whole(self.max_cpus) {
            return Err(format!(
                "job needs {} CPUs, this worker offers {}",
                r.cpus, self.max_cpus
            ));
        }
        if r.memory_mb > self.max_memory_mb {
            return Err(format!(
                "job needs {} MiB of memory, this worker offers {}",
                r.memory_mb, self.max_memory_mb
            ));
        }
        if r.gpus > self.gpus {
            return Err(format!(
                "job needs {} GPUs, this worker offers {}",
                r.gpus, self.gpus
            ));
        }
        if spec.network && !self.allow_network {
            return Err("job needs network access, which this worker does not allow".into());
        }
        Ok(())
    }
}

/// Configuration of a [`DockerExecutor`].
#[derive(Debug, Clone)]
pub struct DockerExecutorConfig {
    /// Where each execution's `/out` folder is created (one sub-folder per job attempt).
    pub work_dir: PathBuf,
    /// The node's PeerId, put on every container's labels.
    pub node_id: String,
    /// What the worker offers and allows.
    pub limits: SandboxLimits,
}

/// Runs jobs in Docker containers (see the module documentation for the sandbox).
#[derive(Clone)]
pub struct DockerExecutor {
    docker: Docker,
    config: Arc<DockerExecutorConfig>,
    /// How each run's `/out` is bounded (probed once at connect).
    quota: OutputQuota,
}

impl std::fmt::Debug for DockerExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerExecutor")
            .field("config", &self.config)
            .field("quota", &self.quota)
            .finish()
    }
}

fn engine(context: &str) -> impl FnOnce(bollard::errors::Error) -> ExecutorError + '_ {
    move |e| ExecutorError::Engine(format!("{context}: {e}"))
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ExecutorError {
    let context = context.into();
    move |source| ExecutorError::Io { context, source }
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// A run's folder (`<work dir>/<job>-<attempt>`), removed when this goes out of scope unless
/// `keep` is set: the output of a result is kept for the submitter. The sized filesystem
/// mounted on its `out` (if any) is unmounted and deleted either way.
struct RunFolder {
    dir: PathBuf,
    keep: bool,
    /// The mount point of the run's sized filesystem, while it is mounted.
    mounted: Option<PathBuf>,
}

impl RunFolder {
    /// The image file of the run's sized filesystem.
    fn image(&self) -> PathBuf {
        self.dir.join("out.img")
    }

    /// Unmounts and deletes the run's sized filesystem, if it has one.
    fn release_filesystem(&mut self) {
        if let Some(point) = self.mounted.take() {
            if let Err(e) = quota::unmount(&point) {
                warn!(dir = %point.display(), error = %e, "cannot unmount a run's /out");
            }
            let _ = fs::remove_dir(&point);
            let _ = fs::remove_file(self.image());
        }
    }
}

impl Drop for RunFolder {
    fn drop(&mut self) {
        self.release_filesystem();
        if !self.keep
            && let Err(e) = fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(dir = %self.dir.display(), error = %e, "cannot remove a run's folder");
        }
    }
}

/// How the wait for a container ended.
enum Ending {
    Exited,
    TimedOut,
    Cancelled,
    StdoutTooLarge,
    OutputTooLarge,
    /// The runtime could not start the command; with the engine's message.
    CannotStart(String),
}

/// The exit code of a process killed by SIGKILL, as the OOM killer does (128 + 9).
const SIGKILL_EXIT: i64 = 137;

/// Whether the engine's refusal to start a container is about the job's command (not found,
/// not executable) rather than about the engine or this worker: the runtime's `exec` error,
/// which the same image and command give on every worker.
fn is_command_error(e: &bollard::errors::Error) -> bool {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 400 | 404 | 500,
            message,
        } => {
            message.contains("exec:")
                || message.contains("executable file not found")
                || message.contains("no such file or directory")
                || message.contains("permission denied")
        }
        _ => false,
    }
}

/// An image the registry says does not exist: the job's own end, with the reason.
struct ImageUnavailable(String);

/// Whether a pull failed because the registry has no such image or digest (the same for every
/// worker), as opposed to this worker's network or engine.
fn is_missing_in_registry(e: &bollard::errors::Error) -> bool {
    let text = e.to_string();
    is_not_found(e)
        || [
            "manifest unknown",
            "not found",
            "does not exist",
            "pull access denied",
        ]
        .iter()
        .any(|m| text.contains(m))
}

/// The repository part of an image reference: without its tag or digest.
fn repository_of(reference: &str) -> &str {
    let reference = reference.split('@').next().unwrap_or(reference);
    match reference.rsplit_once(':') {
        // A colon after the last slash is a tag; before it, a registry's port.
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => reference,
    }
}

/// Connects to the local Docker engine, agreeing on an API version it speaks.
pub async fn connect_engine() -> Result<Docker, ExecutorError> {
    let docker = Docker::connect_with_local_defaults()
        .map_err(engine("connecting to the Docker engine"))?
        // A request stays open as long as the longest job may run.
        .with_timeout(Duration::from_secs(u64::from(MAX_TIMEOUT_S) + 600))
        .negotiate_version()
        .await
        .map_err(engine("negotiating the Docker API version"))?;
    docker
        .ping()
        .await
        .map_err(engine("pinging the Docker engine"))?;
    Ok(docker)
}

/// The tagged images present in the engine, for the node's announcement.
pub async fn local_images(docker: &Docker) -> Result<Vec<LocalImage>, ExecutorError> {
    let images = docker
        .list_images(None::<bollard::query_parameters::ListImagesOptions>)
        .await
        .map_err(engine("listing images"))?;
    let mut out = Vec::new();
    for image in images {
        for tag in image.repo_tags.iter().filter(|t| *t != "<none>:<none>") {
            if check_image_reference("images", tag).is_err() {
                continue;
            }
            let digest = Some(image.id.clone()).filter(|d| check_image_digest("images", d).is_ok());
            out.push(LocalImage {
                reference: tag.clone(),
                digest,
            });
        }
    }
    out.sort_by(|a, b| a.reference.cmp(&b.reference));
    out.truncate(distributeai_protocol::limits::MAX_LOCAL_IMAGES);
    Ok(out)
}

impl DockerExecutor {
    /// Connects to the local Docker engine, agreeing on an API version it speaks, and removes
    /// containers a crashed earlier run of this node left behind.
    pub async fn connect(config: DockerExecutorConfig) -> Result<Self, ExecutorError> {
        let docker = connect_engine().await?;
        let mut config = config;
        fs::create_dir_all(&config.work_dir)
            .map_err(io_error(format!("creating {}", config.work_dir.display())))?;
        // Docker bind-mounts only absolute paths.
        config.work_dir = fs::canonicalize(&config.work_dir)
            .map_err(io_error(format!("resolving {}", config.work_dir.display())))?;
        for point in quota::unmount_leftovers(&config.work_dir) {
            info!(point = %point.display(), "unmounted a run's /out left by an earlier run");
        }
        let quota = quota::probe(&config.work_dir).await;
        let executor = Self {
            docker,
            config: Arc::new(config),
            quota,
        };
        let removed = executor.remove_leftovers().await?;
        if removed > 0 {
            info!(removed, "removed containers left behind by an earlier run");
        }
        Ok(executor)
    }

    /// How each run's `/out` is bounded on this node.
    pub fn output_quota(&self) -> OutputQuota {
        self.quota
    }

    /// The engine client, for callers that inspect containers (tests, diagnostics).
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Removes every container labelled with this node's id; returns how many.
    pub async fn remove_leftovers(&self) -> Result<usize, ExecutorError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{NODE_LABEL}={}", self.config.node_id)],
        )]);
        let leftovers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(engine("listing containers"))?;
        let mut removed = 0;
        for container in leftovers {
            if let Some(id) = container.id {
                self.remove_container(&id).await;
                removed += 1;
            }
        }
        Ok(removed)
    }

    async fn remove_container(&self, id: &str) {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        if let Err(e) = self.docker.remove_container(id, Some(options)).await
            && !is_not_found(&e)
        {
            warn!(container = id, error = %e, "could not remove container");
        }
    }

    /// Finds the image locally (pulling it when allowed) and checks a pinned digest. Returns
    /// the image id to run, so the container runs exactly the content that was checked.
    ///
    /// Only the registry saying the image (or the pinned digest) does not exist is the job's
    /// own end, `ImageUnavailable`, which every worker agrees on. Anything else is this
    /// worker's trouble and an `ExecutorError`: an engine that fails, a pull that fails for
    /// this worker's network, or a worker that does not pull and lacks the image (it does
    /// not bid then; see `Executor::image_id`).
    async fn resolve_image(
        &self,
        spec: &JobSpec,
    ) -> Result<Result<String, ImageUnavailable>, ExecutorError> {
        let reference = match &spec.image_digest {
            Some(pinned) => match self.docker.inspect_image(&spec.image).await {
                Ok(image)
                    if image.id.as_deref().is_some_and(|id| {
                        pinned_matches(pinned, id, image.repo_digests.iter().flatten())
                    }) =>
                {
                    spec.image.clone()
                }
                // Not here under its tag: by its digest, from the registry.
                _ => format!("{}@{pinned}", repository_of(&spec.image)),
            },
            None => spec.image.clone(),
        };
        let image = match self.docker.inspect_image(&reference).await {
            Ok(image) => image,
            Err(e) if is_not_found(&e) => {
                if !self.config.limits.allow_pull {
                    return Err(ExecutorError::Refused(format!(
                        "{reference} is not present and this worker does not pull images"
                    )));
                }
                // Checked again here, right before the engine connects anywhere.
                self.config
                    .limits
                    .registries
                    .check(&reference)
                    .map_err(ExecutorError::Refused)?;
                if let Err(unavailable) = self.pull(&reference).await? {
                    return Ok(Err(unavailable));
                }
                self.docker
                    .inspect_image(&reference)
                    .await
                    .map_err(engine("inspecting the pulled image"))?
            }
            Err(e) => return Err(engine("inspecting the image")(e)),
        };
        let id = image
            .id
            .clone()
            .filter(|id| check_image_digest("image", id).is_ok())
            .ok_or_else(|| {
                ExecutorError::Engine(format!("the engine reported no image id for {reference}"))
            })?;
        if let Some(pinned) = &spec.image_digest
            && !pinned_matches(pinned, &id, image.repo_digests.iter().flatten())
        {
            return Ok(Err(ImageUnavailable(format!(
                "{reference} is {id}, not the pinned digest {pinned}"
            ))));
        }
        Ok(Ok(id))
    }

    /// Pulls `image`. `Ok(Err(_))` when the registry says it does not exist (the job's own
    /// end); `Err(_)` for anything else, such as this worker's network.
    async fn pull(&self, image: &str) -> Result<Result<(), ImageUnavailable>, ExecutorError> {
        info!(image, "pulling image");
        let mut progress = self.docker.create_image(
            Some(CreateImageOptions {
                from_image: Some(image.to_string()),
                ..Default::default()
            }),
            None,
            None,
        );
        let mut last_status = String::new();
        while let Some(step) = progress.next().await {
            let step = match step {
                Ok(step) => step,
                Err(e) if is_missing_in_registry(&e) => {
                    return Ok(Err(ImageUnavailable(format!("pulling {image}: {e}"))));
                }
                Err(e) => return Err(ExecutorError::Engine(format!("pulling {image}: {e}"))),
            };
            if let Some(status) = step.status
                && status != last_status
            {
                info!(image, %status, "pull progress");
                last_status = status;
            }
        }
        Ok(Ok(()))
    }

    /// The user the job runs as: never root.
    fn container_user(out_dir: &Path) -> Result<(String, bool), ExecutorError> {
        let meta = fs::metadata(out_dir).map_err(io_error("reading the output folder"))?;
        if meta.uid() == 0 {
            Ok(("65534:65534".into(), true))
        } else {
            Ok((format!("{}:{}", meta.uid(), meta.gid()), false))
        }
    }

    fn prepare_out_dir(&self, request: &ExecutionRequest) -> Result<PathBuf, ExecutorError> {
        let dir = self
            .config
            .work_dir
            .join(format!("{}-{}", request.job_id, request.attempt));
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(io_error(format!("clearing {}", dir.display())))?;
        }
        let out = dir.join("out");
        fs::create_dir_all(&out).map_err(io_error(format!("creating {}", out.display())))?;
        Ok(out)
    }

    fn container_config(
        &self,
        request: &ExecutionRequest,
        image_id: String,
        out_dir: &Path,
        user: String,
    ) -> ContainerCreateBody {
        let spec = &request.spec;
        let limits = &self.config.limits;
        let memory_bytes =
            i64::try_from(spec.resources.memory_mb.min(limits.max_memory_mb) * 1024 * 1024)
                .unwrap_or(i64::MAX);
        let cpus = spec
            .resources
            .cpus
            .min(Cpus::whole(limits.max_cpus))
            .max(Cpus::from_millis(1));
        let network = if spec.network && limits.allow_network {
            "bridge"
        } else {
            "none"
        };
        let device_requests = (spec.resources.gpus > 0).then(|| {
            vec![DeviceRequest {
                driver: Some("nvidia".into()),
                count: Some(spec.resources.gpus.into()),
                capabilities: Some(vec![vec!["gpu".into()]]),
                ..Default::default()
            }]
        });
        let labels = HashMap::from([
            (JOB_LABEL.to_string(), request.job_id.to_string()),
            (NODE_LABEL.to_string(), self.config.node_id.clone()),
        ]);
        ContainerCreateBody {
            image: Some(image_id),
            cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            user: Some(user),
            labels: Some(labels),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            network_disabled: Some(network == "none"),
            host_config: Some(HostConfig {
                network_mode: Some(network.into()),
                readonly_rootfs: Some(true),
                binds: Some(vec![format!("{}:/out:rw", out_dir.display())]),
                tmpfs: Some(HashMap::from([(
                    "/tmp".to_string(),
                    format!(
                        "rw,noexec,nosuid,nodev,size={}m,mode=1777",
                        limits.tmp_size_mb
                    ),
                )])),
                memory: Some(memory_bytes),
                memory_swap: Some(memory_bytes),
                nano_cpus: Some(cpus.nano_cpus()),
                pids_limit: Some(limits.pids_limit),
                // Above the node's own (0): when the host runs out of memory, the kernel
                // kills a job before the node or the owner's programs.
                oom_score_adj: Some(JOB_OOM_SCORE_ADJ),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                privileged: Some(false),
                device_requests,
                log_config: Some(HostConfigLogConfig {
                    typ: Some("none".into()),
                    config: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    async fn execute(
        &self,
        request: ExecutionRequest,
        cancel: CancellationToken,
    ) -> Result<ExecutionOutcome, ExecutorError> {
        let started_at = now_ms();
        let clock = Instant::now();
        self.config
            .limits
            .admits(&request.spec)
            .map_err(ExecutorError::Refused)?;
        // A pull can take long; a cancel stops it (issue 20: pulls ignored cancel). The
        // engine finishes or drops what it was fetching when the stream is dropped.
        let resolved = tokio::select! {
            resolved = self.resolve_image(&request.spec) => resolved?,
            _ = cancel.cancelled() => {
                let mut outcome = ExecutionOutcome::ended(JobEnd::TimedOut, "", started_at);
                outcome.status = ExecutionStatus::Cancelled;
                outcome.detail = "cancelled while getting the image".into();
                outcome.duration = clock.elapsed();
                return Ok(outcome);
            }
        };
        let image_id = match resolved {
            Ok(id) => id,
            Err(ImageUnavailable(detail)) => {
                let mut outcome = ExecutionOutcome::ended(JobEnd::ImageUnavailable, "", started_at);
                outcome.detail = detail;
                outcome.duration = clock.elapsed();
                return Ok(outcome);
            }
        };
        let out_dir = self.prepare_out_dir(&request)?;
        // Removes the run's folder on every way out but a result that keeps its output
        // (issue 20: a failed collect, or an engine error after this point, left it behind).
        let mut folder = RunFolder {
            dir: out_dir.parent().unwrap_or(&out_dir).to_path_buf(),
            keep: false,
            mounted: None,
        };
        let limits = &self.config.limits;
        if self.quota == OutputQuota::Filesystem {
            quota::mount_sized(
                &folder.image(),
                &out_dir,
                limits.max_output_bytes,
                limits.max_output_files,
            )
            .await
            .map_err(|e| ExecutorError::Output(format!("bounding /out: {e}")))?;
            folder.mounted = Some(out_dir.clone());
        }
        let (user, chown_needed) = Self::container_user(&out_dir)?;
        if chown_needed {
            // Running as root: hand the folder to the unprivileged job user.
            std::os::unix::fs::chown(&out_dir, Some(65534), Some(65534))
                .map_err(io_error("handing the output folder to the job user"))?;
        }
        fs::set_permissions(&out_dir, fs::Permissions::from_mode(0o700))
            .map_err(io_error("restricting the output folder"))?;

        let config = self.container_config(&request, image_id.clone(), &out_dir, user);
        let created = self
            .docker
            .create_container(
                None::<bollard::query_parameters::CreateContainerOptions>,
                config,
            )
            .await
            .map_err(engine("creating the container"))?;
        let id = created.id;
        debug!(job_id = %request.job_id, container = %id, "container created");

        let result = self.run_container(&id, &request, &out_dir, cancel).await;
        self.remove_container(&id).await;
        let run = result?;

        let (status, detail) = match run.ending {
            Ending::Cancelled => (ExecutionStatus::Cancelled, String::new()),
            Ending::TimedOut => (
                ExecutionStatus::Ended(JobEnd::TimedOut),
                format!(
                    "still running after its timeout of {} s; killed",
                    request.timeout().as_secs()
                ),
            ),
            Ending::StdoutTooLarge => (
                ExecutionStatus::Ended(JobEnd::OutputTooLarge),
                format!(
                    "stdout went over this worker's cap of {} bytes",
                    limits.max_stdout_bytes
                ),
            ),
            Ending::OutputTooLarge => (
                ExecutionStatus::Ended(JobEnd::OutputTooLarge),
                format!(
                    "files under /out went over this worker's cap of {} bytes or {} files and \
                     folders, or could not be measured",
                    limits.max_output_bytes, limits.max_output_files
                ),
            ),
            Ending::CannotStart(message) => (ExecutionStatus::Ended(JobEnd::CannotStart), message),
            // Docker sets OOMKilled when any process in the container was killed for memory;
            // the job ran out of memory only if its own main process was (killed by SIGKILL).
            // A child killed while the main process went on is the job's business: its exit
            // code and output are the result (issue 12).
            Ending::Exited if run.oom_killed && run.exit_code == SIGKILL_EXIT => (
                ExecutionStatus::Ended(JobEnd::OutOfMemory),
                format!(
                    "killed for using more than its memory limit of {} MiB",
                    request.spec.resources.memory_mb.min(limits.max_memory_mb)
                ),
            ),
            Ending::Exited => {
                let detail = if run.oom_killed {
                    "a process of the job was killed for memory; the job's own process went on"
                        .to_string()
                } else {
                    String::new()
                };
                (
                    ExecutionStatus::Ended(JobEnd::Exited {
                        code: run.exit_code,
                    }),
                    detail,
                )
            }
        };
        let mut outcome = ExecutionOutcome {
            status,
            stdout: run.stdout,
            stderr: run.stderr,
            stderr_truncated: run.stderr_truncated,
            output_dir: None,
            manifest: None,
            result_hash: None,
            image: image_id.clone(),
            detail,
            started_at,
            duration: run.duration,
            peak_memory_bytes: run.peak_memory_bytes,
            cpu_time_ns: run.cpu_time_ns,
        };
        match outcome.status {
            ExecutionStatus::Ended(JobEnd::Exited { code }) => {
                let caps = OutputCaps {
                    max_bytes: limits.max_output_bytes,
                    max_files: limits.max_output_files,
                };
                // Off the async threads: up to 256 MiB read, hashed and copied (issue 20).
                // From the sized filesystem, the output is copied out as it is hashed.
                let copy_to =
                    (self.quota == OutputQuota::Filesystem).then(|| folder.dir.join("kept"));
                let collected = {
                    let (from, to) = (out_dir.clone(), copy_to.clone());
                    tokio::task::spawn_blocking(move || {
                        outputs::collect(&from, caps, to.as_deref())
                    })
                    .await
                    .map_err(|e| ExecutorError::Output(format!("collecting outputs: {e}")))?
                };
                match collected {
                    Ok(files) => {
                        let manifest = outputs::manifest(code, &image_id, &outcome.stdout, files);
                        let hash = manifest.result_hash().map_err(|e| {
                            ExecutorError::Output(format!("cannot hash the result: {e}"))
                        })?;
                        outcome.result_hash = Some(hash);
                        outcome.manifest = Some(manifest);
                        if let Some(kept) = copy_to {
                            // The copy takes the place of the filesystem: the output is
                            // `<run>/out` either way, as the worker serves it.
                            folder.release_filesystem();
                            fs::rename(&kept, &out_dir).map_err(io_error("keeping the output"))?;
                        }
                        outcome.output_dir = Some(out_dir.clone());
                    }
                    Err(CollectError::TooLarge(what)) => {
                        outcome.status = ExecutionStatus::Ended(JobEnd::OutputTooLarge);
                        outcome.detail = format!("output over this worker's caps: {what}");
                        outcome.set_manifest_without_output();
                    }
                    Err(CollectError::InvalidName(path)) => {
                        return Err(ExecutorError::Output(format!(
                            "output file name {:?} is not a canonical UTF-8 path",
                            path.file_name().unwrap_or_default()
                        )));
                    }
                    Err(CollectError::Io(e)) => return Err(io_error("collecting outputs")(e)),
                }
            }
            ExecutionStatus::Ended(_) => outcome.set_manifest_without_output(),
            ExecutionStatus::Cancelled => {}
        }
        folder.keep = outcome.output_dir.is_some();
        Ok(outcome)
    }

    async fn run_container(
        &self,
        id: &str,
        request: &ExecutionRequest,
        out_dir: &Path,
        cancel: CancellationToken,
    ) -> Result<RunResult, ExecutorError> {
        let limits = &self.config.limits;
        // Attach before starting, so not a byte of output is missed.
        let attached = self
            .docker
            .attach_container(
                id,
                Some(AttachContainerOptions {
                    stream: true,
                    stdout: true,
                    stderr: true,
                    logs: false,
                    ..Default::default()
                }),
            )
            .await
            .map_err(engine("attaching to the container"))?;
        let mut output = attached.output;

        if let Err(e) = self
            .docker
            .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
        {
            if !is_command_error(&e) {
                return Err(engine("starting the container")(e));
            }
            let message = match e {
                bollard::errors::Error::DockerResponseServerError { message, .. } => message,
                other => other.to_string(),
            };
            return Ok(RunResult {
                ending: Ending::CannotStart(message),
                exit_code: 0,
                oom_killed: false,
                stdout: Vec::new(),
                stderr: Vec::new(),
                stderr_truncated: false,
                duration: Duration::ZERO,
                peak_memory_bytes: None,
                cpu_time_ns: None,
            });
        }
        let clock = Instant::now();

        let peak_memory = Arc::new(AtomicU64::new(0));
        let cpu_time = Arc::new(AtomicU64::new(0));
        let stats_task = {
            let docker = self.docker.clone();
            let id = id.to_string();
            let (peak_memory, cpu_time) = (peak_memory.clone(), cpu_time.clone());
            tokio::spawn(async move {
                let mut stats = docker.stats(
                    &id,
                    Some(StatsOptions {
                        stream: true,
                        one_shot: false,
                    }),
                );
                while let Some(Ok(sample)) = stats.next().await {
                    if let Some(memory) = sample.memory_stats {
                        let used = memory.max_usage.or(memory.usage).unwrap_or(0);
                        peak_memory.fetch_max(used, Ordering::Relaxed);
                    }
                    if let Some(total) = sample
                        .cpu_stats
                        .and_then(|c| c.cpu_usage)
                        .and_then(|u| u.total_usage)
                    {
                        cpu_time.fetch_max(total, Ordering::Relaxed);
                    }
                }
            })
        };

        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut stderr_truncated = false;
        let deadline = tokio::time::sleep(request.timeout());
        tokio::pin!(deadline);
        let mut watchdog = tokio::time::interval(Duration::from_millis(200));
        let mut stream_open = true;

        let ending = loop {
            tokio::select! {
                chunk = output.next(), if stream_open => match chunk {
                    Some(Ok(bollard::container::LogOutput::StdOut { message })) => {
                        if stdout.len() as u64 + message.len() as u64 > limits.max_stdout_bytes {
                            break Ending::StdoutTooLarge;
                        }
                        stdout.extend_from_slice(&message);
                    }
                    Some(Ok(bollard::container::LogOutput::StdErr { message })) => {
                        let room = (limits.max_stderr_bytes as usize).saturating_sub(stderr.len());
                        if message.len() > room {
                            stderr_truncated = true;
                        }
                        stderr.extend_from_slice(&message[..message.len().min(room)]);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        debug!(container = id, error = %e, "output stream ended with an error");
                        stream_open = false;
                    }
                    // The streams close when the container's process exits.
                    None => stream_open = false,
                },
                _ = async {}, if !stream_open => break Ending::Exited,
                _ = &mut deadline => break Ending::TimedOut,
                _ = cancel.cancelled() => break Ending::Cancelled,
                _ = watchdog.tick() => {
                    // Fails closed: an output the job made unmeasurable (a folder it made
                    // unreadable, a tree too deep to walk) is over the cap, not unchecked.
                    let measured = match self.quota {
                        OutputQuota::Filesystem => quota::over(
                            out_dir,
                            limits.max_output_bytes,
                            limits.max_output_files,
                        ),
                        OutputQuota::Watchdog => outputs::usage(out_dir).map(|(bytes, entries)| {
                            bytes > limits.max_output_bytes || entries > limits.max_output_files
                        }),
                    };
                    let over = match measured {
                        Ok(over) => over,
                        Err(e) => {
                            debug!(error = %e, "the output cannot be measured: stopping the job");
                            true
                        }
                    };
                    if over {
                        break Ending::OutputTooLarge;
                    }
                }
            }
        };

        if !matches!(ending, Ending::Exited) {
            let kill = self
                .docker
                .kill_container(
                    id,
                    Some(KillContainerOptions {
                        signal: "KILL".into(),
                    }),
                )
                .await;
            if let Err(e) = kill {
                debug!(container = id, error = %e, "kill failed (the job may have just exited)");
            }
        }
        // The process has exited (or been killed): wait for the engine to record its state.
        let mut wait = self
            .docker
            .wait_container(id, None::<bollard::query_parameters::WaitContainerOptions>);
        let exit_code = match tokio::time::timeout(Duration::from_secs(60), wait.next()).await {
            Ok(Some(Ok(response))) => response.status_code,
            Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => code,
            Ok(Some(Err(e))) => return Err(engine("waiting for the container")(e)),
            Ok(None) | Err(_) => {
                return Err(ExecutorError::Engine(
                    "the engine did not report the container's exit".into(),
                ));
            }
        };
        let duration = clock.elapsed();
        let inspected = self
            .docker
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(engine("inspecting the container"))?;
        stats_task.abort();
        let oom_killed = inspected.state.and_then(|s| s.oom_killed).unwrap_or(false);
        let nonzero = |v: u64| (v > 0).then_some(v);
        Ok(RunResult {
            ending,
            exit_code,
            oom_killed,
            stdout,
            stderr,
            stderr_truncated,
            duration,
            peak_memory_bytes: nonzero(peak_memory.load(Ordering::Relaxed)),
            cpu_time_ns: nonzero(cpu_time.load(Ordering::Relaxed)),
        })
    }
}

/// Whether an image with id `id` and these repository digests (`name@sha256:…`) is the one
/// `pinned` names: its id, or the registry's manifest digest of it.
fn pinned_matches<'a>(
    pinned: &str,
    id: &str,
    repo_digests: impl IntoIterator<Item = &'a String>,
) -> bool {
    id == pinned
        || repo_digests.into_iter().any(|d| {
            d.rsplit_once('@')
                .is_some_and(|(_, digest)| digest == pinned)
        })
}

struct RunResult {
    ending: Ending,
    exit_code: i64,
    oom_killed: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    stderr_truncated: bool,
    duration: Duration,
    peak_memory_bytes: Option<u64>,
    cpu_time_ns: Option<u64>,
}

impl Executor for DockerExecutor {
    fn admits(&self, spec: &JobSpec) -> Result<(), String> {
        self.config.limits.admits(spec)
    }

    fn output_quota(&self) -> OutputQuota {
        self.quota
    }

    fn may_pull(&self, spec: &JobSpec) -> Result<(), String> {
        if !self.config.limits.allow_pull {
            return Err("this worker does not pull images".into());
        }
        self.config.limits.registries.check(&spec.image)
    }

    fn image_id<'a>(&'a self, spec: &'a JobSpec) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let image = self.docker.inspect_image(&spec.image).await.ok()?;
            let id = image
                .id
                .filter(|id| check_image_digest("image", id).is_ok())?;
            // A worker that holds another image than the pinned one says it has none.
            match &spec.image_digest {
                Some(pinned)
                    if !pinned_matches(pinned, &id, image.repo_digests.iter().flatten()) =>
                {
                    None
                }
                _ => Some(id),
            }
        })
    }

    fn run(
        &self,
        request: ExecutionRequest,
        cancel: CancellationToken,
    ) -> BoxFuture<'_, Result<ExecutionOutcome, ExecutorError>> {
        Box::pin(self.execute(request, cancel))
    }
}

#[cfg(test)]
mod tests {
    use super::repository_of;

    #[test]
    fn a_reference_loses_its_tag_or_digest_but_keeps_a_registry_port() {
        assert_eq!(
            repository_of("distributeai/toolbox:local"),
            "distributeai/toolbox"
        );
        assert_eq!(repository_of("busybox"), "busybox");
        assert_eq!(
            repository_of("reg.example:5000/app:1.2"),
            "reg.example:5000/app"
        );
        assert_eq!(
            repository_of("reg.example:5000/app"),
            "reg.example:5000/app"
        );
        assert_eq!(
            repository_of(
                "app@sha256:0000000000000000000000000000000000000000000000000000000000000000"
            ),
            "app"
        );
    }
}
