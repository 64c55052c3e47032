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
