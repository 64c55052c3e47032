//! Home nodes behind NAT routers, end to end (issue 10): the real binaries in a lab of network
//! namespaces that `scripts/nat-lab.sh` builds: a public bootstrap peer, home A (a submitter)
//! and home B (two workers) behind routers that masquerade their LAN and drop unsolicited
//! inbound traffic. Both homes use the same private subnet, as real homes do. Every node is
//! started with nothing but `--bootstrap` (plus its data folder and API port), as the README
//! says; jobs run in the real Docker engine.
//!
//! - endpoint-independent NAT: the homes' nodes end up directly connected by hole punching
//!   and run a 2-of-2 job with 1 MiB of output;
//! - port-randomising NAT: hole punching cannot work, nodes stay relayed (through the
//!   bootstrap peer and a public node that offers relaying), and the same job completes over
//!   circuits of 256 KiB (its output resumed piece by piece across circuits), as does one
//!   running longer than a circuit's lifetime; the two workers behind one router, sharing its
//!   public address, both hold reservations and both run the job.
//!
//! Needs root, iproute2, iptables (`scripts/setup.sh`) and the `distributeai/toolbox:local`
//! image (`scripts/build-images.sh`); CI has all of them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

/// The labs share the machine's two cores and its Docker engine: one at a time.
static ONE_LAB_AT_A_TIME: Mutex<()> = Mutex::new(());

const BOOT_IP: &str = "203.0.113.2";
const PUBLIC_IP: &str = "203.0.113.3";
/// One MiB of output: 65,536 lines of 16 bytes.
const MIB_JOB: &str = "yes 0123456789abcde | head -c 1048576";

fn lab_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/nat-lab.sh")
}

/// A lab of namespaces, taken down on drop.
struct Lab {
    tag: String,
}

impl Lab {
    fn up(kind: &str) -> Self {
        let tag = format!("n{}{}", &kind[..1], std::process::id() % 10_000);
        // Whatever an earlier, killed run left behind.
        let _ = Command::new(lab_script()).args(["down", &tag]).status();
        let lab = Lab { tag };
        let status = Command::new(lab_script())
            .args(["up", &lab.tag, kind])
            .status()
            .expect("run scripts/nat-lab.sh");
        assert!(
            status.success(),
            "scripts/nat-lab.sh up failed: the NAT lab needs root, iproute2 and iptables"
        );
        lab
    }

    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.tag)
    }

    /// `program` run inside `host`'s namespace, logging how it reaches peers in detail (the
    /// tail of each log is printed when a test fails).
    fn command(&self, host: &str, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(host)])
            .args([
                "env",
                "DISTRIBUTEAI_LOG=info,distributeai_node::network=debug",
            ])
            .arg(program);
        cmd
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(lab_script())
            .args(["down", &self.tag])
            .status();
    }
}

/// Every node's API listens on 127.0.0.1:7070 inside its own namespace.
const API: &str = "127.0.0.1:7070";

struct Homes<'a> {
    lab: &'a Lab,
    _procs: Vec<Proc>,
    ids: std::collections::HashMap<&'static str, String>,
}

impl Homes<'_> {
    /// A CLI call on `host`'s node; its JSON answer.
    fn json(&self, host: &str, args: &[&str]) -> serde_json::Value {
        let mut cmd = self.lab.command(host, &node_bin());
        cmd.args(args).args(["--json", "--api", API]);
        serde_json::from_str(&output(cmd)).unwrap_or_default()
    }

    fn peer<'p>(&self, peers: &'p serde_json::Value, host: &str) -> Option<&'p serde_json::Value> {
        let id = &self.ids[host];
        peers
            .as_array()?
            .iter()
            .find(|p| p["peer_id"] == id.as_str())
    }

    /// How `from`'s node is connected to `to`'s: `direct`, `relayed`, or null.
    fn route(&self, from: &str, to: &str) -> serde_json::Value {
        let peers = self.json(from, &["peers"]);
        self.peer(&peers, to)
            .map(|p| p["route"].clone())
            .unwrap_or_default()
    }

    fn text(&self, host: &str, args: &[&str]) -> String {
        let mut cmd = self.lab.command(host, &node_bin());
        cmd.args(args).args(["--api", API]);
        output(cmd)
    }

    /// Submits a 2-of-2 job from home A and waits for its verdict; returns the job's JSON.
    fn run_job(&self, script: &str, bound: Duration) -> serde_json::Value {
        let mut cmd = self.lab.command("a1", &node_bin());
        cmd.args(["submit", "--api", API])
            .args(["--redundancy", "2", "--consensus", "2"])
            .args(["--memory-mb", "64", "--timeout", "120"])
            .args(["distributeai/toolbox:local", "--", "sh", "-c", script]);
        let job_id = output(cmd).trim().to_string();
        let deadline = Instant::now() + bound;
        loop {
            let job = self.json("a1", &["get", &job_id]);
            let status = job["status"].as_str().unwrap_or("");
            if matches!(status, "completed" | "failed" | "cancelled") || Instant::now() > deadline {
                return job;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// Starts the bootstrap peer (with `boot_args`), optionally a public node, the submitter in
/// home A and two workers in home B; waits until the submitter hears both workers.
fn start_homes<'a>(
    lab: &'a Lab,
    dir: &Path,
    relay_args: &[&str],
    public_node: bool,
    b2_args: &[&str],
) -> Homes<'a> {
    let mut procs = Vec::new();
    let mut ids = std::collections::HashMap::new();
    let mut cmd = lab.command("boot", &bootstrap_bin());
    cmd.args(["--listen", &format!("/ip4/{BOOT_IP}/tcp/4001")])
        .args(["--listen", &format!("/ip4/{BOOT_IP}/udp/4001/quic-v1")])
        .args(relay_args)
        .arg("--data-dir")
        .arg(dir.join("boot"));
    let mut boot = Proc::spawn("bootstrap", cmd, &dir.join("boot.log"));
    let rest = boot.wait_for_line(&format!("listening on /ip4/{BOOT_IP}/tcp/4001"));
    let boot_addr = format!("/ip4/{BOOT_IP}/tcp/4001{rest}");
    procs.push(boot);

    let mut hosts = vec![("a1", false), ("b1", true), ("b2", true)];
    if public_node {
        hosts.insert(0, ("pub", false));
    }
    for (host, worker) in hosts {
        let mut cmd = lab.command(host, &node_bin());
        cmd.args([
            "node",
            "--bootstrap",
            &boot_addr,
            "--api",
            API,
            "--data-dir",
        ])
        .arg(dir.join(host));
        if !worker {
            cmd.arg("--no-worker");
        }
        if host == "pub" {
            cmd.arg("--relay-service").args(relay_args);
        }
        if host == "b2" {
            cmd.args(b2_args);
        }
        let mut node = Proc::spawn(host, cmd, &dir.join(format!("{host}.log")));
        ids.insert(host, node.wait_for_line("peer_id:"));
        procs.push(node);
    }
    let homes = Homes {
        lab,
        _procs: procs,
        ids,
    };
    let heard = wait_until(|| {
        let peers = homes.json("a1", &["peers"]);
        ["b1", "b2"].iter().all(|w| {
            homes
                .peer(&peers, w)
                .is_some_and(|p| p["accepts_jobs"] == true)
        })
    });
    assert!(
        heard,
        "the submitter in home A hears both workers in home B"
    );
    homes
}

fn assert_completed_with_a_mib(homes: &Homes, job: &serde_json::Value, what: &str) {
    assert_eq!(
        job["status"],
        "completed",
        "{what}: {job:#}\nlogs: {}",
        homes.text("a1", &["logs", job["id"].as_str().unwrap_or("")])
    );
    assert_eq!(job["verdict"]["agreeing"].as_array().map(Vec::len), Some(2));
    let out = homes.text("a1", &["result", job["id"].as_str().unwrap_or("")]);
    assert_eq!(out.len(), 1 << 20, "{what}: the whole verified MiB arrives");
}

#[test]
fn behind_endpoint_independent_nats_home_nodes_hole_punch_and_run_a_job_with_1_mib_of_output() {
    let _one = ONE_LAB_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let lab = Lab::up("eim");
    let dir = tempfile::tempdir().expect("tempdir");
    // Linux's MASQUERADE keeps a host's source port only while no other mapping holds it, so
    // the second of two machines behind one router listening on the same port gets one port
    // towards the bootstrap peer and another towards everyone else, which no hole punch can
    // predict. Real endpoint-independent NATs keep one mapping; giving b2 its own port
    // models that for both workers.
    let b2_port = [
        "--listen",
        "/ip4/0.0.0.0/tcp/4002",
        "--listen",
        "/ip4/0.0.0.0/udp/4002/quic-v1",
    ];
    let homes = start_homes(&lab, dir.path(), &[], false, &b2_port);

    let job = homes.run_job(MIB_JOB, BOUND);
    assert_completed_with_a_mib(&homes, &job, "2-of-2 job across two NATs");

    // The bids and results opened relayed connections; hole punching upgraded them.
    let direct = wait_until(|| {
        ["b1", "b2"]
            .iter()
            .all(|w| homes.route("a1", w) == "direct")
    });
    assert!(
        direct,
        "home A's submitter is directly connected to both workers in home B: {:#}",
        homes.json("a1", &["peers"])
    );
    let peers = homes.json("a1", &["peers"]);
    for worker in ["b1", "b2"] {
        let connections = &homes.peer(&peers, worker).expect("worker listed")["connections"];
        assert!(
            connections.as_array().is_some_and(|c| c.iter().all(|c| {
                c["route"] == "direct"
                    && c["hole_punched"] == true
                    && c["address"]
                        .as_str()
                        .is_some_and(|a| a.contains("203.0.113.20"))
            })),
            "one hole-punched connection to home B's public address, the relayed one closed: {connections:#}"
        );
    }
    // Home A's node learns it is behind NAT (AutoNAT: the bootstrap peer's dial-back fails).
    let private = wait_until(|| homes.json("a1", &["status"])["reachability"] == "private");
    assert!(private, "{:#}", homes.json("a1", &["status"]));
}

#[test]
fn behind_port_randomising_nats_nodes_stay_relayed_and_jobs_complete_even_past_a_circuit_lifetime()
{
    let _one = ONE_LAB_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let lab = Lab::up("random");
    let dir = tempfile::tempdir().expect("tempdir");
    // Both relays keep circuits 20 s and 256 KiB at most: the MiB of output is fetched over
    // several circuits in turn, each piece resumed where the last circuit ended, and the long
    // job below outlives the circuit it started on.
    let limits = ["--max-circuit-secs", "20", "--max-circuit-kib", "256"];
    let homes = start_homes(&lab, dir.path(), &limits, true, &[]);

    // Each node behind NAT reserves on both relays: the bootstrap peer and the public node.
    // The two workers share home B's public address and both get their slots.
    for host in ["a1", "b1", "b2"] {
        let both = wait_until(|| {
            let status = homes.json(host, &["status"]);
            status["relays"]
                .as_array()
                .is_some_and(|r| r.iter().filter(|r| r["reserved"] == true).count() == 2)
        });
        assert!(
            both,
            "{host} holds reservations on two relays: {:#}",
            homes.json(host, &["status"])
        );
    }
    let public = homes.json("pub", &["status"]);
    assert_eq!(public["reachability"], "public", "{public:#}");
    assert!(
        public["announced_addrs"].as_array().is_some_and(|a| a
            .iter()
            .any(|a| a.as_str().is_some_and(|a| a.contains(PUBLIC_IP)))),
        "{public:#}"
    );

    let job = homes.run_job(MIB_JOB, BOUND);
    assert_completed_with_a_mib(&homes, &job, "2-of-2 job through relays");
    // Circuits this short come and go, so at any instant a1 may hold a circuit to a worker
    // or none; it never holds a direct connection.
    for worker in ["b1", "b2"] {
        assert_ne!(
            homes.route("a1", worker),
            "direct",
            "no hole can be punched through port-randomising NATs"
        );
    }

    let long = homes.run_job("sleep 30; echo done", 2 * BOUND);
    assert_eq!(
        long["status"],
        "completed",
        "a job longer than a circuit's lifetime: {long:#}\nlogs: {}",
        homes.text("a1", &["logs", long["id"].as_str().unwrap_or("")])
    );
}
