//! End to end with the real binaries: a bootstrap peer and node processes on loopback form a
//! mesh that `distributeai peers` shows; SIGTERM stops them cleanly; a restarted bootstrap peer
//! keeps its address.

mod common;

use std::process::Command;

use common::*;

#[test]
fn bootstrap_and_node_processes_form_a_mesh_that_peers_shows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut boot, boot_addr) = start_bootstrap(dir.path());
    assert!(boot_addr.contains("/p2p/12D3KooW"), "{boot_addr}");

    let mut nodes: Vec<(Proc, String, String)> = (0..3)
        .map(|i| start_node(dir.path(), i, &boot_addr, None))
        .collect();
    let ids: Vec<String> = nodes.iter().map(|n| n.1.clone()).collect();
    let meshed = wait_until(|| {
        nodes.iter().all(|(_, own, api)| {
            let peers = peers_json(api);
            ids.iter().filter(|id| *id != own).all(|id| {
                peers
                    .iter()
                    .any(|p| p["peer_id"] == id.as_str() && p["capabilities"]["cpus"] == 1)
            })
        })
    });
    assert!(meshed, "every node's `distributeai peers` lists the others");

    // The human-readable table names the peers too.
    let mut cmd = Command::new(node_bin());
    cmd.args(["peers", "--api", &nodes[0].2]);
    let table = output(cmd);
    assert!(
        table.contains("PEER ID") && table.contains(&ids[1]),
        "{table}"
    );

    // SIGTERM shuts a node down cleanly.
    for (node, _, _) in &mut nodes {
        assert!(
            node.terminate().success(),
            "{} exits 0 on SIGTERM",
            node.name
        );
    }

    // A restarted bootstrap peer keeps its identity, so its address stays valid.
    assert!(boot.terminate().success());
    let (_boot, again) = start_bootstrap(dir.path());
    let peer_of = |a: &str| a.rsplit("/p2p/").next().map(str::to_string);
    assert_eq!(peer_of(&again), peer_of(&boot_addr));
}

#[test]
fn bad_flags_and_config_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "bootstrapp = []\n").expect("write");
    let out = Command::new(node_bin())
        .args(["node", "--no-mdns", "--data-dir"])
        .arg(dir.path())
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("bootstrapp"),
        "{stderr}"
    );

    let out = Command::new(node_bin())
        .args(["node", "--listen", "not-a-multiaddr"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));

    let out = Command::new(node_bin())
        .args(["peers", "--api", "127.0.0.1:1"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is `distributeai node` running?"));
}

/// Issue 13: `--log-format json` writes one JSON object per line, for log collectors.
#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = std::process::Command::new(bootstrap_bin());
    cmd.args([
        "--log-format",
        "json",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--data-dir",
    ])
    .arg(dir.path().join("boot"));
    let log = dir.path().join("boot.log");
    let mut boot = Proc::spawn("bootstrap", cmd, &log);
    boot.wait_for_line("listening on /ip4/127.0.0.1/tcp/");
    let logged =
        wait_until(|| std::fs::read_to_string(&log).is_ok_and(|text| !text.trim().is_empty()));
    assert!(logged, "the bootstrap peer logs at start");
    boot.terminate();
    let text = std::fs::read_to_string(&log).expect("log");
    for line in text.lines() {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            entry["level"].is_string() && entry["timestamp"].is_string(),
            "{line}"
        );
    }
}
