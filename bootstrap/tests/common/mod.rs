//! Running the real binaries: spawn, read what they print, stop them with SIGTERM.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Generous bound for anything a test waits for.
pub const BOUND: Duration = Duration::from_secs(90);

pub fn bootstrap_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_distributeai-bootstrap"))
}

/// The `distributeai` binary, built beside this package's binary by a workspace build.
pub fn node_bin() -> PathBuf {
    let path = bootstrap_bin().with_file_name("distributeai");
    assert!(
        path.exists(),
        "{} is missing: build the whole workspace first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A running process whose stdout lines are collected.
pub struct Proc {
    pub name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `command`, capturing stdout line by line and stderr into `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Self {
        let stderr = std::fs::File::create(log).expect("log file");
        let mut child = command
            .env("DISTRIBUTEAI_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            name: name.to_string(),
            child,
            lines,
            seen: Vec::new(),
            log: log.to_path_buf(),
        }
    }

    /// Waits for a stdout line starting with `prefix`; returns the rest of the line.
    pub fn wait_for_line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(line) = self.seen.iter().find(|l| l.starts_with(prefix)) {
                return line[prefix.len()..].trim().to_string();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(500)))
            {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => panic!(
                    "{} never printed {prefix:?}; stdout {:?}; stderr:\n{}",
                    self.name,
                    self.seen,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ),
            }
        }
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + BOUND;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit after SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // The logs live in the test's temporary directory, gone after a failure: print the
        // end of each so a failed run (in CI above all) says what the processes saw.
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(80)..];
            eprintln!(
                "--- {}: last {} log lines ---\n{}",
                self.name,
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

/// Runs a command to completion and returns its stdout, panicking with stderr on failure.
pub fn output(mut command: Command) -> String {
    let out = command.output().expect("run command");
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command that may wait on the network (`submit --wait`), killing it if it has not
/// finished within `bound`, so a lost job fails the test instead of hanging it.
pub fn output_within(mut command: Command, bound: Duration) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run command");
    let deadline = Instant::now() + bound;
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
    }
    child.wait_with_output().expect("collect output")
}

/// Polls `condition` every 300 ms until it holds or [`BOUND`] passes.
pub fn wait_until(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + BOUND;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    condition()
}

/// A bootstrap peer and node processes; node 0 submits and runs no jobs.
pub struct Network {
    pub _boot: Proc,
    pub boot_addr: String,
    /// The bootstrap peer's metrics, `http://127.0.0.1:PORT/metrics`.
    pub boot_metrics: String,
    pub nodes: Vec<(Proc, String, String)>,
}

/// Starts the network and waits until node 0 hears every worker.
pub fn start_network(dir: &Path, faults: &[Option<&str>]) -> Network {
    let (mut boot, boot_addr) = start_bootstrap(dir);
    let boot_metrics = format!("http://{}", boot.wait_for_line("metrics: http://"));
    let nodes = faults
        .iter()
        .enumerate()
        .map(|(i, fault)| start_node(dir, i, &boot_addr, *fault))
        .collect();
    let network = Network {
        _boot: boot,
        boot_addr,
        boot_metrics,
        nodes,
    };
    let ids: Vec<String> = network.nodes.iter().map(|n| n.1.clone()).collect();
    let api = network.nodes[0].2.clone();
    let meshed = wait_until(|| {
        let peers = peers_json(&api);
        ids[1..].iter().all(|id| {
            peers
                .iter()
                .any(|p| p["peer_id"] == id.as_str() && p["accepts_jobs"] == true)
        })
    });
    assert!(meshed, "the submitter hears every worker");
    let heard = wait_until(|| {
        network.nodes[1..].iter().all(|(_, _, api)| {
            peers_json(api).iter().any(|p| {
                p["peer_id"] == ids[0].as_str()
                    && p["addresses"].as_array().is_some_and(|a| !a.is_empty())
            })
        })
    });
    assert!(heard, "every worker knows where the submitter is");
    network
}

/// What `distributeai peers --json` prints for the node at `api`.
pub fn peers_json(api: &str) -> Vec<serde_json::Value> {
    let mut cmd = Command::new(node_bin());
    cmd.args(["peers", "--json", "--api", api]);
    serde_json::from_str(&output(cmd)).expect("peers JSON")
}

/// Starts node `i` (node 0 runs no jobs), optionally with a simulated fault.
pub fn start_node(
    dir: &Path,
    i: usize,
    bootstrap: &str,
    fault: Option<&str>,
) -> (Proc, String, String) {
    let mut cmd = Command::new(node_bin());
    cmd.arg("node")
        .args([
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "127.0.0.1:0",
        ])
        .args([
            "--bootstrap",
            bootstrap,
            "--cpus",
            "1",
            "--memory-mb",
            "512",
        ])
        .arg("--data-dir")
        .arg(dir.join(format!("node{i}")));
    if i == 0 {
        cmd.arg("--no-worker");
    }
    if let Some(fault) = fault {
        cmd.args(["--simulate-fault", fault]);
    }
    let mut node = Proc::spawn(&format!("node{i}"), cmd, &dir.join(format!("node{i}.log")));
    let peer_id = node.wait_for_line("peer_id:");
    let api = node.wait_for_line("api: http://");
    (node, peer_id, api)
}

/// Starts a bootstrap peer on loopback; returns it and its `/ip4/…/p2p/…` address.
pub fn start_bootstrap(dir: &Path) -> (Proc, String) {
    let mut cmd = Command::new(bootstrap_bin());
    cmd.args([
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--metrics",
        "127.0.0.1:0",
        "--data-dir",
    ])
    .arg(dir.join("boot"));
    let mut boot = Proc::spawn("bootstrap", cmd, &dir.join("boot.log"));
    let address = boot.wait_for_line("listening on /ip4/127.0.0.1/tcp/");
    (boot, format!("/ip4/127.0.0.1/tcp/{address}"))
}
