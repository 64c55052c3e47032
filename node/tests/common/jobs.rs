//! Helpers for job-flow tests: a bootstrap peer, a submitter and workers with fake executors.

use std::sync::Arc;
use std::time::Duration;

use distributeai_node::executor::fake::{FakeBehaviour, FakeExecutor};
use distributeai_node::jobs::model::JobView;
use distributeai_node::jobs::{Fault, JobsConfig};
use distributeai_node::network::Role;
use distributeai_node::service::{self, RunningNode};
use distributeai_protocol::{JobSpec, NodeIdentity, PublicKey};
use libp2p::Multiaddr;

use super::*;

pub const BOUND: Duration = Duration::from_secs(120);

pub fn jobs_config(fault: Option<Fault>) -> JobsConfig {
    JobsConfig {
        bid_window: Duration::from_secs(1),
        reserve_bids: 1,
        bid_wait_max: Duration::from_secs(30),
        // Generous: a loaded CI machine must not make honest workers look silent.
        deadline_grace: Duration::from_secs(10),
        // Short, so tests see a worker drop the output of a job whose verdict never comes
        // (issue 20); an honest submitter fetches within a second, far inside it.
        output_keep: Duration::from_secs(2),
        fault,
        ..JobsConfig::default()
    }
}

pub struct Net {
    pub bootstrap: TestPeer,
    pub submitter: TestNode,
    pub workers: Vec<TestNode>,
}

pub async fn start_worker(
    bootstrap: &[Multiaddr],
    behaviour: FakeBehaviour,
    fault: Option<Fault>,
) -> TestNode {
    start_worker_with_delay(bootstrap, behaviour, fault, Duration::from_millis(300)).await
}

/// A worker whose fake executions each take `delay`.
pub async fn start_worker_with_delay(
    bootstrap: &[Multiaddr],
    behaviour: FakeBehaviour,
    fault: Option<Fault>,
    delay: Duration,
) -> TestNode {
    start_worker_rooted(bootstrap, behaviour, fault, delay, &[]).await
}

/// A worker of a network whose genesis identities are `genesis`.
pub async fn start_worker_rooted(
    bootstrap: &[Multiaddr],
    behaviour: FakeBehaviour,
    fault: Option<Fault>,
    delay: Duration,
    genesis: &[PublicKey],
) -> TestNode {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = node_config(dir.path(), bootstrap.to_vec(), "worker");
    config.genesis = genesis.to_vec();
    config.jobs = jobs_config(fault);
    config.executor = Some(Arc::new(FakeExecutor {
        work_dir: dir.path().join("work"),
        behaviour,
        delay,
    }));
    let node = service::start(config).await.expect("worker starts");
    TestNode { node, dir }
}

pub async fn start_submitter_in(dir: tempfile::TempDir, bootstrap: &[Multiaddr]) -> TestNode {
    start_submitter_rooted(dir, bootstrap, &[]).await
}

/// A submitter of a network whose genesis identities are `genesis`.
pub async fn start_submitter_rooted(
    dir: tempfile::TempDir,
    bootstrap: &[Multiaddr],
    genesis: &[PublicKey],
) -> TestNode {
    let mut config = node_config(dir.path(), bootstrap.to_vec(), "submitter");
    config.genesis = genesis.to_vec();
    config.worker = false;
    config.jobs = jobs_config(None);
    let node = service::start(config).await.expect("submitter starts");
    TestNode { node, dir }
}

/// A bootstrap peer, a submitter and workers, with the submitter hearing every worker.
pub async fn network(workers: &[(FakeBehaviour, Option<Fault>)]) -> Net {
    network_with_delay(workers, Duration::from_millis(300)).await
}

/// Like [`network`], with each fake execution taking `delay`.
pub async fn network_with_delay(
    workers: &[(FakeBehaviour, Option<Fault>)],
    delay: Duration,
) -> Net {
    network_of(workers, delay, false).await
}

/// A network whose one genesis identity is the submitter's: it counts fully and can pay
/// rewards from the start.
pub async fn network_founded_by_submitter(workers: &[(FakeBehaviour, Option<Fault>)]) -> Net {
    network_of(workers, Duration::from_millis(300), true).await
}

async fn network_of(
    workers: &[(FakeBehaviour, Option<Fault>)],
    delay: Duration,
    submitter_is_genesis: bool,
) -> Net {
    let bootstrap = TestPeer::start(Role::Bootstrap, vec![]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let genesis = if submitter_is_genesis {
        let (identity, _) = NodeIdentity::load_or_create(dir.path()).expect("identity");
        vec![identity.public_key()]
    } else {
        Vec::new()
    };
    let submitter = start_submitter_rooted(dir, &bootstrap.addrs, &genesis).await;
    let mut nodes = Vec::new();
    for (behaviour, fault) in workers {
        nodes
            .push(start_worker_rooted(&bootstrap.addrs, *behaviour, *fault, delay, &genesis).await);
    }
    let net = Net {
        bootstrap,
        submitter,
        workers: nodes,
    };
    net.wait_meshed().await;
    net
}

impl Net {
    pub async fn wait_meshed(&self) {
        let ids: Vec<String> = self
            .workers
            .iter()
            .map(|w| w.node.peer_id.to_string())
            .collect();
        let meshed = wait_until(BOUND, || async {
            let peers = self.submitter.peers().await;
            ids.iter().all(|id| {
                peers
                    .iter()
                    .any(|p| p["peer_id"] == id.as_str() && p["accepts_jobs"] == true)
            })
        })
        .await;
        assert!(meshed, "the submitter hears every worker");
        let submitter = self.submitter.node.peer_id.to_string();
        let heard = wait_until(BOUND, || async {
            for worker in &self.workers {
                let peers = worker.peers().await;
                let knows = peers.iter().any(|p| {
                    p["peer_id"] == submitter.as_str()
                        && p["addresses"].as_array().is_some_and(|a| !a.is_empty())
                });
                if !knows {
                    return false;
                }
            }
            true
        })
        .await;
        assert!(heard, "every worker knows where the submitter is");
    }

    pub fn worker_id(&self, i: usize) -> String {
        self.workers[i].node.peer_id.to_string()
    }
}

pub fn spec(n: u8, k: u8) -> JobSpec {
    let mut spec = JobSpec::new(
        "distributeai/toolbox:local",
        vec!["sha256sum".into(), "data".into()],
    );
    spec.redundancy = n;
    spec.consensus = k;
    spec.timeout_s = 3;
    // Unpaid: a fresh network's identities cannot pay yet (issue 19: a grant is spendable
    // only once others who count have judged the identity's work).
    spec.reward = 0;
    spec
}

pub async fn submit(node: &RunningNode, spec: JobSpec) -> JobView {
    node.state.jobs.submit(spec).await.expect("submit")
}

pub async fn wait_final(node: &RunningNode, id: &str) -> JobView {
    let id = id.parse().expect("job id");
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let job = node.state.jobs.get(id).await.expect("job exists");
        if job.status.is_final() {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job did not finish: {job:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether the job's record says one of its assignments waited for a free slot.
pub async fn waited_for_a_slot(submitter: &RunningNode, id: &str) -> bool {
    let record = submitter
        .state
        .jobs
        .job(id.parse().expect("id"))
        .await
        .expect("record");
    record
        .events
        .iter()
        .any(|(_, e)| e.contains("waits for a free slot"))
}
