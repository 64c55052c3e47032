//! The TUI in a real terminal (tmux): against a small local network, submit a job through the
//! form and watch it complete with its verified output, then quit.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

struct Tmux(String);

impl Tmux {
    fn capture(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.0])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    fn wait_for(&self, what: &[&str]) -> String {
        let deadline = Instant::now() + BOUND;
        loop {
            let screen = self.capture();
            if what.iter().all(|w| screen.contains(w)) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "never showed {what:?}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn alive(&self) -> bool {
        Command::new("tmux")
            .args(["has-session", "-t", &self.0])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

#[test]
fn submit_through_the_form_and_watch_the_job_complete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = start_network(dir.path(), &[None, None, None, None]);
    let api = net.nodes[0].2.clone();

    let session = Tmux(format!("dai-tui-{}", std::process::id()));
    let command = format!("{} tui --api {api}", node_bin().display());
    let status = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &session.0,
            "-x",
            "100",
            "-y",
            "30",
            &command,
        ])
        .status()
        .expect("tmux new-session (tmux is installed by scripts/setup.sh)");
    assert!(status.success());

    let overview = session.wait_for(&["1 Overview", "peers known", &format!("● {api}")]);
    assert!(overview.contains("This node"), "{overview}");

    session.keys(&["4"]);
    session.wait_for(&["Peers (", "sorted by reputation"]);

    session.keys(&["3"]);
    session.wait_for(&["Submit a job", "distributeai/toolbox:local"]);
    session.keys(&["Enter"]);
    let done = session.wait_for(&["completed", "Verified output", "Executions and votes"]);
    assert!(done.contains("revealed"), "{done}");

    session.keys(&["Escape"]);
    session.wait_for(&["Jobs (1)"]);
    session.keys(&["q"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while session.alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!session.alive(), "q quits the TUI");
}
