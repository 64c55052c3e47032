//! End to end with the real binaries and the real Docker engine: a bootstrap peer and four
//! `distributeai node` processes, one of them lying; `distributeai submit --wait` returns the
//! verified output of the example job and `distributeai get --json` shows the verdict. Needs
//! the `distributeai/toolbox:local` image (`scripts/build-images.sh`, run by `scripts/test.sh`).

mod common;

use std::process::Command;

use common::*;

fn example(name: &str) -> String {
    format!("{}/../examples/{name}/job.json", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn submit_wait_returns_the_verified_output_and_get_shows_the_verdict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = start_network(dir.path(), &[None, None, None, Some("wrong-result")]);
    let api = &net.nodes[0].2;
    let liar = &net.nodes[3].1;

    let mut submit = Command::new(node_bin());
    submit.args([
        "submit",
        "--wait",
        "--api",
        api,
        "--file",
        &example("hash-verify"),
    ]);
    let out = output_within(submit, 2 * BOUND);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "submit --wait failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("verdict: accepted"), "{stdout}");
    let digest = stdout.lines().last().expect("output line").trim();
    assert_eq!(
        digest.len(),
        64,
        "the verified output is the job's sha256: {stdout}"
    );
    let job_id = job_id_of(&stdout);

    let mut cmd = Command::new(node_bin());
    cmd.args(["get", "--json", "--api", api, &job_id]);
    let job: serde_json::Value = serde_json::from_str(&output(cmd)).expect("job JSON");
    assert_eq!(job["status"], "completed");
    assert_eq!(job["verdict"]["outcome"], "accepted");
    assert_eq!(job["verdict"]["agreeing"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        job["verdict"]["disagreeing"][0],
        liar.as_str(),
        "the lying worker is named"
    );
    assert_eq!(job["executions"].as_array().map(Vec::len), Some(3));

    // The /out files unpack with `result -o`, and match what stdout said.
    let files = dir.path().join("result");
    let mut cmd = Command::new(node_bin());
    cmd.args(["result", "--api", api, &job_id, "-o"])
        .arg(&files);
    output(cmd);
    let written = std::fs::read_to_string(files.join("sha256.txt")).expect("sha256.txt unpacked");
    assert_eq!(written.trim(), digest);
    let mut cmd = Command::new(node_bin());
    cmd.args(["result", "--api", api, &job_id]);
    assert_eq!(output(cmd).trim(), digest);
    let mut cmd = Command::new(node_bin());
    cmd.args(["result", "--json", "--api", api, &job_id]);
    let result: serde_json::Value = serde_json::from_str(&output(cmd)).expect("result JSON");
    assert_eq!(result["text"].as_str().map(str::trim), Some(digest));

    // A reader that goes away early (`get ID | head -1`) is no crash.
    let mut get = Command::new(node_bin());
    get.args(["get", "--api", api, &job_id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = get.spawn().expect("spawn get");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("get ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "get into a closed pipe: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // A finished job cannot be cancelled, and the CLI says so with a failing exit code.
    let mut cancel = Command::new(node_bin());
    cancel.args(["cancel", "--api", api, &job_id]);
    let out = cancel.output().expect("run cancel");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "cancelling a completed job succeeded"
    );
    assert!(stderr.contains("already completed"), "{stderr}");
    assert!(stderr.contains("409"), "{stderr}");

    // Logs written to a file carry no terminal colour codes.
    let log = std::fs::read_to_string(dir.path().join("node0.log")).expect("node log");
    assert!(!log.is_empty());
    assert!(!log.contains('\u{1b}'), "ANSI codes in a log file");
}

#[test]
fn a_worker_that_crashes_mid_job_resumes_its_assignment_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = start_network(dir.path(), &[None, None, Some("crash-mid-job")]);
    let api = net.nodes[0].2.clone();
    let mut cmd = Command::new(node_bin());
    cmd.args([
        "submit",
        "--api",
        &api,
        "--redundancy",
        "2",
        "--consensus",
        "2",
        "--file",
        &example("hash-verify"),
    ]);
    let job_id = output(cmd).trim().to_string();

    // The faulty worker accepts, starts, and dies.
    let (crashed, _, _) = &mut net.nodes[2];
    let exited = wait_until(|| crashed.exited());
    assert!(exited, "the worker crashed as told");

    // Started again on the same data without the fault, it runs the job it had accepted.
    let (restarted, _, _) = start_node(dir.path(), 2, &net.boot_addr, None);
    net.nodes[2].0 = restarted;

    let done = wait_until(|| {
        let mut cmd = Command::new(node_bin());
        cmd.args(["get", "--json", "--api", &api, &job_id]);
        let job: serde_json::Value = serde_json::from_str(&output(cmd)).unwrap_or_default();
        job["status"] == "completed"
    });
    assert!(
        done,
        "the job completes once the worker is back; logs in {}",
        dir.path().display()
    );
}

/// Runs `distributeai submit --wait` with `args` against `api`; returns its exit status,
/// stdout and stderr.
fn submit_wait(api: &str, args: &[&str]) -> (bool, String, String) {
    let mut submit = Command::new(node_bin());
    submit.args(["submit", "--wait", "--api", api]).args(args);
    let out = output_within(submit, 2 * BOUND);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn job_id_of(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("job ")
                .and_then(|r| r.split_whitespace().next())
        })
        .expect("job id")
        .trim_end_matches(':')
        .to_string()
}

fn get_json(api: &str, id: &str) -> serde_json::Value {
    let mut cmd = Command::new(node_bin());
    cmd.args(["get", "--json", "--api", api, id]);
    serde_json::from_str(&output(cmd)).expect("job JSON")
}

/// Issue 12: the job's own failures are results the workers agree on (no re-run, nobody
/// blamed, the output before the end kept), OOM means the job's own process, and a job with
/// no agreement records nobody as disagreeing. Real binaries, real Docker.
#[test]
fn a_jobs_own_failures_are_agreed_results_and_no_agreement_blames_nobody() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = start_network(dir.path(), &[None, None, None, None]);
    let api = &net.nodes[0].2;
    let two_of_two = ["--redundancy", "2", "--consensus", "2"];

    // Timed out on both workers: decided as such, output before the end shown.
    let args = [
        &two_of_two[..],
        &[
            "--timeout",
            "5",
            "distributeai/toolbox:local",
            "--",
            "sh",
            "-c",
            "echo started; sleep 600",
        ],
    ]
    .concat();
    let (ok, stdout, stderr) = submit_wait(api, &args);
    assert!(!ok, "a timed-out job is not a success: {stdout}");
    assert!(
        stderr.contains("timed out after 5 s; 2 of 2 workers agree"),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("failed: timed out after 5 s"), "{stdout}");
    assert!(
        stdout.contains("      started"),
        "the output before the end: {stdout}"
    );
    let id = job_id_of(&stdout);
    let job = get_json(api, &id);
    assert_eq!(job["status"], "failed");
    assert_eq!(job["verdict"]["outcome"], "accepted", "{job}");
    assert_eq!(job["verdict"]["end"], "timed out");
    assert!(
        job["verdict"]["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("sha256:")),
        "the verdict names the image that ran: {job}"
    );
    assert_eq!(
        job["executions"].as_array().map(Vec::len),
        Some(2),
        "no reserve ran it again: {job}"
    );
    assert_eq!(job["verdict"]["agreeing"].as_array().map(Vec::len), Some(2));
    let mut result = Command::new(node_bin());
    result.args(["result", "--api", api, &id]);
    let out = result.output().expect("run result");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("started"));

    // A command the image does not have: every worker says so, in the engine's words.
    let args = [
        &two_of_two[..],
        &["distributeai/toolbox:local", "--", "nonexistentcmd"],
    ]
    .concat();
    let (ok, stdout, stderr) = submit_wait(api, &args);
    assert!(!ok);
    assert!(
        stderr.contains("command could not be started; 2 of 2 workers agree"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("nonexistentcmd"),
        "the engine's message: {stdout}"
    );

    // A child killed for memory while the job's own process goes on: a normal result. (On
    // half a CPU each: fractional CPUs reach Docker as nano_cpus.)
    let args = [
        &two_of_two[..],
        &[
            "--cpus",
            "0.5",
            "--memory-mb",
            "64",
            "distributeai/toolbox:local",
            "--",
            "sh",
            "-c",
            "dd if=/dev/zero of=/dev/null bs=256M count=1 2>/dev/null; echo rc=$?",
        ],
    ]
    .concat();
    let (ok, stdout, stderr) = submit_wait(api, &args);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("rc=137"), "{stdout}");

    // No agreement: failed quickly, nobody recorded as disagreeing.
    let (ok, stdout, stderr) = submit_wait(
        api,
        &[
            "--redundancy",
            "3",
            "--consensus",
            "2",
            "distributeai/toolbox:local",
            "--",
            "sh",
            "-c",
            "head -c 16 /dev/urandom | sha256sum",
        ],
    );
    assert!(!ok);
    assert!(stderr.contains("no agreement"), "{stdout}\n{stderr}");
    let job = get_json(api, &job_id_of(&stdout));
    assert_eq!(job["status"], "failed", "{job}");
    // With no agreed hash nobody can be shown wrong, and a verdict that blames nobody is no
    // ledger entry (issue 19): none is signed.
    assert!(job["verdict"].is_null(), "{job}");
}
