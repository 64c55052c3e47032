//! The Docker executor against the real engine: determinism of the result hash, every sandbox
//! protection, the failure outcomes, and cleanup. Needs the `distributeai/toolbox:local` image
//! (`scripts/build-images.sh`, which `scripts/test.sh` runs first).

use std::collections::HashMap;
use std::time::Duration;

use bollard::query_parameters::ListContainersOptions;
use distributeai_node::executor::docker::{JOB_OOM_SCORE_ADJ, NODE_LABEL, SandboxLimits};
use distributeai_node::executor::registry::RegistryPolicy;
use distributeai_node::executor::{
    BoxFuture, DockerExecutor, DockerExecutorConfig, ExecutionOutcome, ExecutionRequest,
    ExecutionStatus, Executor, ExecutorError,
};
use distributeai_protocol::{JobEnd, JobId, JobSpec};
use tokio_util::sync::CancellationToken;

const TOOLBOX: &str = "distributeai/toolbox:local";

struct Harness {
    executor: DockerExecutor,
    node_id: String,
    _work: tempfile::TempDir,
}

impl Harness {
    async fn new(limits: SandboxLimits) -> Self {
        let work = tempfile::tempdir().expect("tempdir");
        // A distinct node id per test, so parallel tests never see each other's containers.
        let node_id = format!("test-{}", hex_id());
        let executor = DockerExecutor::connect(DockerExecutorConfig {
            work_dir: work.path().to_path_buf(),
            node_id: node_id.clone(),
            limits,
        })
        .await
        .expect("the Docker engine must be reachable for these tests");
        assert!(
            executor.docker().inspect_image(TOOLBOX).await.is_ok(),
            "image {TOOLBOX} is missing: run scripts/build-images.sh"
        );
        Self {
            executor,
            node_id,
            _work: work,
        }
    }

    async fn default() -> Self {
        Self::new(test_limits()).await
    }

    async fn run(&self, spec: JobSpec) -> ExecutionOutcome {
        self.run_cancellable(spec, CancellationToken::new()).await
    }

    /// Runs `spec` and hands back what the executor said, refusal included.
    fn try_run(&self, spec: JobSpec) -> BoxFuture<'_, Result<ExecutionOutcome, ExecutorError>> {
        self.executor.run(
            ExecutionRequest {
                job_id: JobId(rand_bytes()),
                attempt: 0,
                spec,
            },
            CancellationToken::new(),
        )
    }

    async fn run_cancellable(&self, spec: JobSpec, cancel: CancellationToken) -> ExecutionOutcome {
        let request = ExecutionRequest {
            job_id: JobId(rand_bytes()),
            attempt: 0,
            spec,
        };
        let outcome =
            tokio::time::timeout(Duration::from_secs(180), self.executor.run(request, cancel))
                .await
                .expect("execution must end within its bound")
                .expect("execution");
        self.assert_no_containers_left().await;
        outcome
    }

    async fn containers(&self) -> usize {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{NODE_LABEL}={}", self.node_id)],
        )]);
        self.executor
            .docker()
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .expect("list")
            .len()
    }

    async fn assert_no_containers_left(&self) {
        assert_eq!(
            self.containers().await,
            0,
            "a container created by this test remains"
        );
    }
}

fn rand_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let seed = blake3::hash(
        &[
            nanos.to_le_bytes().as_slice(),
            &std::process::id().to_le_bytes(),
        ]
        .concat(),
    );
    b.copy_from_slice(seed.as_bytes());
    b
}

fn hex_id() -> String {
    rand_bytes()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn test_limits() -> SandboxLimits {
    SandboxLimits {
        max_cpus: 1,
        max_memory_mb: 256,
        allow_pull: false,
        ..SandboxLimits::default()
    }
}

fn sh(script: &str) -> JobSpec {
    let mut spec = JobSpec::new(TOOLBOX, vec!["sh".into(), "-c".into(), script.into()]);
    spec.resources.memory_mb = 64;
    spec.timeout_s = 60;
    spec
}

fn stdout(outcome: &ExecutionOutcome) -> String {
    String::from_utf8_lossy(&outcome.stdout).into_owned()
}

fn exited(code: i64) -> ExecutionStatus {
    ExecutionStatus::Ended(JobEnd::Exited { code })
}

fn stderr(outcome: &ExecutionOutcome) -> String {
    String::from_utf8_lossy(&outcome.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn same_deterministic_job_gives_same_hash_and_different_output_a_different_one() {
    let h = Harness::default().await;
    let job = "seq 1 1000 | sha256sum; echo result > /out/answer.txt; mkdir -p /out/d; seq 1 10 > /out/d/n; cat /proc/sys/kernel/random/uuid >&2";
    let first = h.run(sh(job)).await;
    let second = h.run(sh(job)).await;
    assert_eq!(first.status, exited(0), "{}", stderr(&first));
    assert!(first.result_hash.is_some());
    assert_eq!(
        first.result_hash, second.result_hash,
        "stderr differs, the hash must not"
    );
    assert_ne!(first.stderr, second.stderr);

    let different = h.run(sh(&job.replace("1000", "1001"))).await;
    assert_ne!(first.result_hash, different.result_hash);
    let other_file = h.run(sh(&job.replace("echo result", "echo other"))).await;
    assert_ne!(first.result_hash, other_file.result_hash);
    let other_exit = h.run(sh(&format!("{job}; exit 3"))).await;
    assert_eq!(other_exit.status, exited(3));
    assert_ne!(first.result_hash, other_exit.result_hash);
}

#[tokio::test(flavor = "multi_thread")]
async fn output_files_are_returned_and_hashed() {
    let h = Harness::default().await;
    let outcome = h
        .run(sh("echo hello > /out/a.txt; mkdir /out/sub; printf xyz > /out/sub/b.bin; ln -s /etc/passwd /out/link; echo done"))
        .await;
    assert_eq!(outcome.status, exited(0), "{}", stderr(&outcome));
    let manifest = outcome.manifest.as_ref().expect("manifest");
    let paths: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["a.txt", "sub/b.bin"], "symlinks are not outputs");
    let dir = outcome.output_dir.as_ref().expect("output dir");
    assert_eq!(std::fs::read(dir.join("sub/b.bin")).expect("read"), b"xyz");
    // Kept as `<run>/out` whichever way `/out` was bounded (the worker serves it from there),
    // on disk, with no filesystem left mounted on it.
    assert_eq!(dir.file_name().and_then(|n| n.to_str()), Some("out"));
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(h._work.path().to_str().expect("utf-8")),
        "a run's filesystem is still mounted"
    );
    assert!(!dir.with_file_name("out.img").exists(), "its image is gone");
    assert_eq!(
        manifest.files[1].content,
        distributeai_protocol::ContentEntry::of(b"xyz")
    );
    assert_eq!(
        Some(manifest.result_hash().expect("hash")),
        outcome.result_hash
    );
    assert_eq!(stdout(&outcome), "done\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn output_over_the_cap_is_output_too_large() {
    let h = Harness::new(SandboxLimits {
        max_output_bytes: 1024 * 1024,
        max_stdout_bytes: 64 * 1024,
        ..test_limits()
    })
    .await;
    let files = h
        .run(sh(
            "dd if=/dev/zero of=/out/big bs=1M count=4 2>/dev/null; sleep 50",
        ))
        .await;
    assert_eq!(files.status, ExecutionStatus::Ended(JobEnd::OutputTooLarge));
    assert!(
        files.duration < Duration::from_secs(40),
        "the watchdog stops it long before it ends"
    );
    // Folders count (issue 20: a million `mkdir`s could exhaust the disk's inodes).
    let folders = h
        .run(sh(
            "i=0; while [ $i -lt 20000 ]; do mkdir /out/d$i; i=$((i+1)); done; sleep 50",
        ))
        .await;
    assert_eq!(
        folders.status,
        ExecutionStatus::Ended(JobEnd::OutputTooLarge)
    );
    assert!(folders.duration < Duration::from_secs(40));
    let stdout = h.run(sh("head -c 200000 /dev/zero")).await;
    assert_eq!(
        stdout.status,
        ExecutionStatus::Ended(JobEnd::OutputTooLarge)
    );
}

/// Bytes the files under `dir` take on its own disk, not crossing into a run's mounted
/// filesystem (that is the image file, counted as the file it is): what the host pays.
fn host_bytes_under(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(root) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let Ok(listing) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in listing.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.dev() != root.dev() {
                continue;
            }
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

/// Issue 20: the `/out` cap was a walk every 200 ms that a job could make fail or outrun.
/// Each way of trying, beside writes well past the cap: a folder made unreadable, a tree
/// deeper than `PATH_MAX`, files made and deleted in a loop, and empty folders without end.
/// Each ends `output too large`, the host's disk never holds more than the cap's sized
/// filesystem, and nothing is left. Run as root (as in CI), `/out` must be the kernel-bounded
/// filesystem.
#[tokio::test(flavor = "multi_thread")]
async fn the_out_cap_cannot_be_switched_off() {
    use distributeai_node::executor::quota::{self, OutputQuota};
    let limits = SandboxLimits {
        max_output_bytes: 4 * 1024 * 1024,
        ..test_limits()
    };
    let cap_on_disk = quota::image_bytes(limits.max_output_bytes, limits.max_output_files);
    let h = Harness::new(limits).await;
    // Where the node may mount (root, loop devices, mkfs.ext4, as on CI), it must: a silent
    // fall back to the watchdog would lose the kernel's bound.
    let can_mount = is_root()
        && std::path::Path::new("/dev/loop-control").exists()
        && std::process::Command::new("mkfs.ext4")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
    let kernel = h.executor.output_quota() == OutputQuota::Filesystem;
    if can_mount {
        assert!(
            kernel,
            "this node may mount, so /out must be a sized filesystem"
        );
    }
    let write_past_the_cap = "dd if=/dev/zero of=big bs=1M count=64 2>/dev/null";
    let attempts = [
        (
            "an unreadable folder",
            format!("mkdir /out/u && chmod 000 /out/u; cd /out && {write_past_the_cap}; sleep 50"),
        ),
        (
            "a tree deeper than PATH_MAX",
            format!(
                "cd /out; i=0; while [ $i -lt 700 ]; do mkdir aaaaaaa && cd aaaaaaa || break; \
                 i=$((i+1)); done; {write_past_the_cap}; sleep 50"
            ),
        ),
        (
            "create-delete churn",
            format!(
                "(while :; do for i in 1 2 3 4 5 6 7 8; do touch /out/c$i; rm -f /out/c$i; \
                 done; done) & cd /out && {write_past_the_cap}; sleep 50"
            ),
        ),
        (
            "a million empty folders",
            "i=0; while [ $i -lt 1000000 ]; do mkdir /out/d$i || break; i=$((i+1)); done; \
             sleep 50"
                .to_string(),
        ),
    ];
    for (what, script) in attempts {
        let work = h._work.path().to_path_buf();
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sampler = {
            let peak = peak.clone();
            tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                while started.elapsed() < Duration::from_secs(60) {
                    peak.fetch_max(
                        host_bytes_under(&work),
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    std::thread::sleep(Duration::from_millis(20));
                    if std::fs::read_dir(&work)
                        .map(|mut d| d.next().is_none())
                        .unwrap_or(true)
                        && started.elapsed() > Duration::from_secs(2)
                    {
                        break;
                    }
                }
            })
        };
        let mut spec = sh(&script);
        spec.timeout_s = 120;
        let outcome = h.run(spec).await;
        sampler.await.expect("sampler");
        assert_eq!(
            outcome.status,
            ExecutionStatus::Ended(JobEnd::OutputTooLarge),
            "{what}: {}",
            outcome.detail
        );
        assert!(
            outcome.duration < Duration::from_secs(40),
            "{what}: stopped long before its sleep ends ({:?})",
            outcome.duration
        );
        let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
        // Only the kernel holds a job that writes faster than the watchdog looks.
        assert!(
            !kernel || peak <= cap_on_disk,
            "{what}: the host held {peak} bytes, over the cap's {cap_on_disk}"
        );
        let left: Vec<_> = std::fs::read_dir(h._work.path())
            .expect("work dir")
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "{what}: left behind: {left:?}");
        eprintln!(
            "{what}: stopped after {:?}, host peak {peak} bytes",
            outcome.duration
        );
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// Issue 20: a failed collect left the run's folder behind (every early return after the
/// folder was made, now one guard removes it). An output file whose name is not UTF-8 fails
/// the collect (the worker reports it as its own failure); the folder goes.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_collect_leaves_nothing_behind() {
    let h = Harness::default().await;
    let result = h
        .try_run(sh(r"printf x > /out/$(printf 'bad\377name')"))
        .await;
    match result {
        Err(ExecutorError::Output(why)) => assert!(why.contains("UTF-8"), "{why}"),
        other => panic!("a failed collect: {other:?}"),
    }
    let left: Vec<_> = std::fs::read_dir(h._work.path())
        .expect("work dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    h.assert_no_containers_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_cannot_reach_the_network() {
    let h = Harness::default().await;
    // A listener on the host's loopback: with host networking the job would reach it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let outcome = h
        .run(sh(&format!(
            "ls /sys/class/net; if echo hi | nc -w 2 127.0.0.1 {port}; then echo CONNECTED; fi"
        )))
        .await;
    assert_eq!(
        stdout(&outcome),
        "lo\n",
        "only a loopback interface; no connection made"
    );
    assert!(
        listener.accept().is_err(),
        "the host listener must not have been reached"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_cannot_write_to_the_root_filesystem_and_runs_unprivileged() {
    let h = Harness::default().await;
    let outcome = h
        .run(sh(
            "touch /evil 2>&1 || echo ROOT_RO; id -u; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; \
             dd if=/dev/zero of=/tmp/fill bs=1M count=100 2>/dev/null || echo TMP_FULL",
        ))
        .await;
    let out = stdout(&outcome);
    assert!(
        out.contains("Read-only file system") && out.contains("ROOT_RO"),
        "{out}"
    );
    assert!(
        out.contains("\n65534\n"),
        "runs as an unprivileged user: {out}"
    );
    assert!(
        out.contains("CapEff:\t0000000000000000"),
        "all capabilities dropped: {out}"
    );
    assert!(out.contains("NoNewPrivs:\t1"), "no-new-privileges: {out}");
    assert!(out.contains("TMP_FULL"), "/tmp is size-limited: {out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_over_the_limit_ends_as_oom_and_the_worker_keeps_running() {
    let h = Harness::default().await;
    let mut spec = sh("x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}");
    spec.resources.memory_mb = 32;
    let outcome = h.run(spec).await;
    assert_eq!(
        outcome.status,
        ExecutionStatus::Ended(JobEnd::OutOfMemory),
        "the job's own process was killed"
    );
    assert!(outcome.detail.contains("32 MiB"), "{}", outcome.detail);
    let after = h.run(sh("echo still here")).await;
    assert_eq!(stdout(&after), "still here\n");
    // When the host itself runs short, the kernel picks a job before the node (issue 20).
    let adj = h.run(sh("cat /proc/self/oom_score_adj")).await;
    assert_eq!(stdout(&adj), format!("{JOB_OOM_SCORE_ADJ}\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fork_bomb_is_stopped_by_the_pids_limit() {
    let h = Harness::new(SandboxLimits {
        pids_limit: 64,
        ..test_limits()
    })
    .await;
    let forks = h
        .run(sh(
            "for i in $(seq 1 1000); do sleep 30 & done; echo all started",
        ))
        .await;
    assert!(stderr(&forks).contains("can't fork"), "{}", stderr(&forks));
    assert!(!stdout(&forks).contains("all started"));

    let mut bomb = sh("bomb() { bomb | bomb & }; bomb; sleep 30");
    bomb.timeout_s = 5;
    let outcome = h.run(bomb).await;
    assert!(
        matches!(
            outcome.status,
            ExecutionStatus::Ended(JobEnd::TimedOut | JobEnd::Exited { .. })
        ),
        "{:?}",
        outcome.status
    );
    assert_eq!(stdout(&h.run(sh("echo alive")).await), "alive\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_past_its_timeout_is_a_result_that_keeps_what_it_printed() {
    // Issue 12: `--timeout 5 -- sh -c 'echo started; sleep 600'` lost its output and was
    // blamed on the workers.
    let h = Harness::default().await;
    let mut spec = sh("echo started; echo warming up >&2; sleep 60");
    spec.timeout_s = 2;
    let outcome = h.run(spec.clone()).await;
    assert_eq!(outcome.status, ExecutionStatus::Ended(JobEnd::TimedOut));
    assert!(outcome.duration < Duration::from_secs(30));
    let diagnostics = outcome.diagnostics();
    assert_eq!(diagnostics.stdout_tail, b"started\n");
    assert_eq!(diagnostics.stderr_tail, b"warming up\n");
    assert!(
        diagnostics.detail.contains("timeout of 2 s"),
        "{diagnostics:?}"
    );
    // A result like any other: hashed, the same on every run, with no output to serve.
    let manifest = outcome.manifest.as_ref().expect("a manifest");
    assert_eq!(manifest.end, JobEnd::TimedOut);
    assert!(manifest.files.is_empty() && manifest.stdout.size == 0);
    assert!(outcome.result_hash.is_some() && outcome.output_dir.is_none());
    assert_eq!(outcome.result_hash, h.run(spec).await.result_hash);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_child_killed_for_memory_is_not_the_jobs_oom() {
    // Issue 12: Docker sets OOMKilled when any process was killed; here the job's own
    // process goes on and exits 0, and its stdout is the result.
    let h = Harness::default().await;
    let mut spec = sh("dd if=/dev/zero of=/dev/null bs=256M count=1 2>/dev/null; echo rc=$?");
    spec.resources.memory_mb = 64;
    let outcome = h.run(spec).await;
    assert_eq!(outcome.status, exited(0), "{}", stderr(&outcome));
    assert_eq!(stdout(&outcome), "rc=137\n");
    assert!(outcome.result_hash.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_that_does_not_exist_cannot_start_and_says_why_in_full() {
    let h = Harness::default().await;
    let spec = JobSpec::new(TOOLBOX, vec!["nonexistentcmd".into()]);
    let outcome = h.run(spec.clone()).await;
    assert_eq!(outcome.status, ExecutionStatus::Ended(JobEnd::CannotStart));
    assert!(
        outcome.detail.contains("nonexistentcmd") && outcome.detail.contains("not found"),
        "the engine's whole message: {}",
        outcome.detail
    );
    assert_eq!(
        outcome.diagnostics().detail,
        outcome.detail,
        "never cut mid-word"
    );
    assert_eq!(
        outcome.result_hash,
        h.run(spec).await.result_hash,
        "every worker agrees on it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_image_that_ran_is_part_of_the_result() {
    // Issue 12: a worker whose tag points at another image must never agree.
    let h = Harness::default().await;
    let docker = h.executor.docker();
    let toolbox_id = docker
        .inspect_image(TOOLBOX)
        .await
        .expect("inspect")
        .id
        .expect("id");
    // The same files under another id: a committed container with one more label.
    let variant_tag = format!("variant-{}", hex_id());
    let container = docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            bollard::models::ContainerCreateBody {
                image: Some(TOOLBOX.into()),
                cmd: Some(vec!["true".into()]),
                ..Default::default()
            },
        )
        .await
        .expect("create");
    docker
        .commit_container(
            bollard::query_parameters::CommitContainerOptionsBuilder::new()
                .container(&container.id)
                .repo("distributeai/toolbox")
                .tag(&variant_tag)
                .build(),
            bollard::models::ContainerConfig {
                labels: Some(HashMap::from([("variant".into(), variant_tag.clone())])),
                ..Default::default()
            },
        )
        .await
        .expect("commit");
    let _ = docker
        .remove_container(
            &container.id,
            None::<bollard::query_parameters::RemoveContainerOptions>,
        )
        .await;
    let variant = format!("distributeai/toolbox:{variant_tag}");

    let mut on_variant = sh("echo same");
    on_variant.image = variant.clone();
    let ours = h.run(sh("echo same")).await;
    let theirs = h.run(on_variant.clone()).await;
    let _ = docker
        .remove_image(
            &variant,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await;
    assert_eq!(stdout(&ours), stdout(&theirs));
    assert_eq!(ours.image, toolbox_id);
    assert_ne!(theirs.image, toolbox_id);
    assert_ne!(
        ours.result_hash, theirs.result_hash,
        "the same output from another image is another result"
    );
    assert_eq!(
        h.executor.image_id(&sh("true")).await.as_deref(),
        Some(toolbox_id.as_str()),
        "bids name the image id"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_stops_the_container() {
    let h = Harness::default().await;
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        trigger.cancel();
    });
    let outcome = h.run_cancellable(sh("sleep 60"), cancel).await;
    assert_eq!(outcome.status, ExecutionStatus::Cancelled);
}

#[tokio::test(flavor = "multi_thread")]
async fn images_must_be_present_or_pullable_and_match_a_pinned_digest() {
    // This worker does not pull (as on this machine, which reaches no registry): lacking an
    // image is its own limit, not the job's end, so it is refused (and the worker does not
    // bid for such a job: it says it holds no such image and does not pull).
    let h = Harness::default().await;
    assert!(h.executor.may_pull(&sh("true")).is_err());
    let run = |spec: JobSpec| h.try_run(spec);
    let missing = JobSpec::new("distributeai/does-not-exist:1", vec![]);
    assert_eq!(h.executor.image_id(&missing).await, None);
    match run(missing).await {
        Err(ExecutorError::Refused(reason)) => {
            assert!(reason.contains("distributeai/does-not-exist:1"), "{reason}")
        }
        other => panic!("refused, not the job's end: {other:?}"),
    }

    let id = h
        .executor
        .docker()
        .inspect_image(TOOLBOX)
        .await
        .expect("inspect")
        .id
        .expect("id");
    let mut pinned = sh("echo pinned");
    pinned.image_digest = Some(id.clone());
    let outcome = h.run(pinned).await;
    assert_eq!(stdout(&outcome), "pinned\n");
    assert_eq!(outcome.image, id);

    let mut wrong = sh("echo pinned");
    wrong.image_digest = Some(format!("sha256:{}", "0".repeat(64)));
    assert_eq!(
        h.executor.image_id(&wrong).await,
        None,
        "a worker without the pinned image does not claim to hold it"
    );
    match run(wrong).await {
        Err(ExecutorError::Refused(reason)) => assert!(reason.contains("@sha256:000"), "{reason}"),
        other => panic!("refused: it would have to pull the pinned digest: {other:?}"),
    }
    h.assert_no_containers_left().await;
}

/// A stand-in "registry" on 127.0.0.1 that counts the connections it gets and either closes
/// each at once or holds it open unanswered; stops when dropped.
struct StandInRegistry {
    port: u16,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    server: tokio::task::JoinHandle<()>,
}

impl StandInRegistry {
    async fn start(hold: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listener");
        let port = listener.local_addr().expect("addr").port();
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
        let server = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if hold {
                    open.push(socket); // never answered, never closed
                }
            }
        });
        Self {
            port,
            connections,
            server,
        }
    }
}

impl Drop for StandInRegistry {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Limits of a worker that pulls, from the registry on 127.0.0.1:`port` only.
fn pulling_from(port: u16) -> SandboxLimits {
    SandboxLimits {
        allow_pull: true,
        registries: RegistryPolicy {
            allowed: vec![format!("127.0.0.1:{port}")],
        },
        ..test_limits()
    }
}

/// Issue 20: a job naming a registry on the worker's own loopback made the worker's engine
/// connect to it. A stand-in "registry" on 127.0.0.1 counts connections: under the default
/// policy the worker refuses before any pull and nothing connects; an operator that lists it
/// lets the engine pull from it (and then the listener sees the engine, which shows the count
/// would have caught a pull).
#[tokio::test(flavor = "multi_thread")]
async fn a_job_naming_a_loopback_registry_is_refused_before_any_pull() {
    use std::sync::atomic::Ordering;

    let registry = StandInRegistry::start(false).await;
    let (port, connections) = (registry.port, registry.connections.clone());
    let image = format!("127.0.0.1:{port}/distributeai/stand-in:1");
    let h = Harness::new(SandboxLimits {
        allow_pull: true,
        ..test_limits()
    })
    .await;
    let spec = JobSpec::new(&image, vec!["true".into()]);
    let why = h.executor.may_pull(&spec).expect_err("no bid for it");
    assert!(why.contains(&format!("127.0.0.1:{port}")), "{why}");
    match h.try_run(spec.clone()).await {
        Err(ExecutorError::Refused(reason)) => assert!(reason.contains("registry"), "{reason}"),
        other => panic!("refused before pulling: {other:?}"),
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0, "nothing connected");

    // The same job on a worker whose operator lists that registry: the engine goes there.
    let listed = Harness::new(pulling_from(port)).await;
    assert_eq!(listed.executor.may_pull(&spec), Ok(()));
    let _ = listed.try_run(spec).await;
    assert!(
        connections.load(Ordering::SeqCst) > 0,
        "the engine connected to the listed registry"
    );
}

/// Issue 20: pulls ignored cancel. A "registry" (listed by the operator) that accepts and never
/// answers holds the pull; cancelling the job ends the execution at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_pull_that_hangs_ends_with_its_jobs_cancel() {
    let registry = StandInRegistry::start(true).await;
    let port = registry.port;
    let h = Harness::new(pulling_from(port)).await;
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.cancel();
    });
    let started = std::time::Instant::now();
    let outcome = h
        .run_cancellable(
            JobSpec::new(
                format!("127.0.0.1:{port}/distributeai/hangs:1"),
                vec!["true".into()],
            ),
            cancel,
        )
        .await;
    assert_eq!(
        outcome.status,
        ExecutionStatus::Cancelled,
        "{}",
        outcome.detail
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "ended {:?} after the start",
        started.elapsed()
    );
    h.assert_no_containers_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_beyond_what_the_worker_offers_are_refused() {
    let h = Harness::default().await;
    let mut big = sh("true");
    big.resources.memory_mb = 100_000;
    let request = ExecutionRequest {
        job_id: JobId([1; 32]),
        attempt: 0,
        spec: big.clone(),
    };
    assert!(h.executor.admits(&big).is_err());
    assert!(matches!(
        h.executor.run(request, CancellationToken::new()).await,
        Err(ExecutorError::Refused(_))
    ));
    let mut net = sh("true");
    net.network = true;
    assert!(h.executor.admits(&net).is_err());
    let mut gpu = sh("true");
    gpu.resources.gpus = 1;
    assert!(h.executor.admits(&gpu).is_err());
    assert!(h.executor.image_id(&sh("true")).await.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_left_by_a_crashed_run_are_removed_on_start() {
    let first = Harness::default().await;
    // Simulate a crash: a labelled container that nobody removed.
    let labels = HashMap::from([(NODE_LABEL.to_string(), first.node_id.clone())]);
    first
        .executor
        .docker()
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            bollard::models::ContainerCreateBody {
                image: Some(TOOLBOX.into()),
                cmd: Some(vec!["sleep".into(), "600".into()]),
                labels: Some(labels),
                ..Default::default()
            },
        )
        .await
        .expect("create");
    assert_eq!(first.containers().await, 1);
    let removed = first.executor.remove_leftovers().await.expect("cleanup");
    assert_eq!(removed, 1);
    first.assert_no_containers_left().await;
}

fn example_spec(name: &str) -> JobSpec {
    let path = format!("{}/../examples/{name}/job.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("read example spec");
    let spec: JobSpec = serde_json::from_str(&text).expect("example spec parses");
    spec.check().expect("example spec is valid");
    spec
}

#[tokio::test(flavor = "multi_thread")]
async fn the_examples_run_and_are_deterministic() {
    let h = Harness::default().await;
    for name in ["hash-verify", "image-process"] {
        let spec = example_spec(name);
        let first = h.run(spec.clone()).await;
        assert_eq!(first.status, exited(0), "{name}: {}", stderr(&first));
        assert_eq!(
            stdout(&first).trim().len(),
            64,
            "{name} prints a sha256: {}",
            stdout(&first)
        );
        let second = h.run(spec).await;
        assert_eq!(
            first.result_hash, second.result_hash,
            "{name} is deterministic"
        );
        assert!(first.manifest.as_ref().is_some_and(|m| m.files.len() >= 2));
    }
}
