//! Two `distributeai node` processes with no bootstrap address find each other by mDNS.
//!
//! mDNS multicasts on every interface, so the test builds its own small LAN instead of using
//! the machine's: two network namespaces joined by a veth pair, one node in each. It needs
//! root and iproute2 (`scripts/setup.sh` installs it); CI runs as root.

mod common;

use std::process::Command;

use common::*;

/// A network namespace, deleted (with its end of the veth pair) on drop.
struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .expect("run ip (iproute2)");
    assert!(
        status.success(),
        "ip {args:?} failed: this test needs root and iproute2"
    );
}

fn in_ns(ns: &str, program: &std::path::Path) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}

#[test]
fn two_nodes_on_one_lan_find_each_other_by_mdns() {
    let tag = std::process::id() % 100_000;
    let (ns_a, ns_b) = (format!("dai-a-{tag}"), format!("dai-b-{tag}"));
    let (veth_a, veth_b) = (format!("dva{tag}"), format!("dvb{tag}"));
    ip(&["netns", "add", &ns_a]);
    let _a = Namespace(ns_a.clone());
    ip(&["netns", "add", &ns_b]);
    let _b = Namespace(ns_b.clone());
    ip(&[
        "link", "add", &veth_a, "type", "veth", "peer", "name", &veth_b,
    ]);
    ip(&["link", "set", &veth_a, "netns", &ns_a]);
    ip(&["link", "set", &veth_b, "netns", &ns_b]);
    for (ns, veth, addr) in [
        (&ns_a, &veth_a, "10.231.7.1/24"),
        (&ns_b, &veth_b, "10.231.7.2/24"),
    ] {
        ip(&["-n", ns, "addr", "add", addr, "dev", veth]);
        ip(&["-n", ns, "link", "set", veth, "up", "multicast", "on"]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
        ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", veth]);
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let start = |ns: &str, host: &str, name: &str| {
        let mut cmd = in_ns(ns, &node_bin());
        cmd.arg("node")
            .args([
                "--listen",
                &format!("/ip4/{host}/tcp/4001"),
                "--api",
                "127.0.0.1:7070",
            ])
            .args(["--no-worker", "--data-dir"])
            .arg(dir.path().join(name));
        let mut node = Proc::spawn(name, cmd, &dir.path().join(format!("{name}.log")));
        let peer_id = node.wait_for_line("peer_id:");
        (node, peer_id)
    };
    let (_node_a, id_a) = start(&ns_a, "10.231.7.1", "a");
    let (_node_b, id_b) = start(&ns_b, "10.231.7.2", "b");

    let finds = |ns: &str, other: &str| {
        let mut cmd = in_ns(ns, &node_bin());
        cmd.args(["peers", "--json", "--api", "127.0.0.1:7070"]);
        let out = cmd.output().expect("run peers");
        let peers: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        peers.iter().any(|p| {
            p["peer_id"] == other && p["source"] == "mdns" && p["capabilities"].is_object()
        })
    };
    assert!(
        wait_until(|| finds(&ns_a, &id_b) && finds(&ns_b, &id_a)),
        "each node lists the other as found by mDNS; logs in {}",
        dir.path().display()
    );
}
