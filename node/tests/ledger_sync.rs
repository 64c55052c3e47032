//! The ledger across nodes: verdicts reach every node by gossip, a node that was cut off
//! catches up by sync, and every node computes the same ledger (summary hash) and standings.

mod common;

use std::time::Duration;

use common::jobs::*;
use common::*;
use distributeai_node::executor::fake::FakeBehaviour;
use distributeai_node::jobs::model::JobStatus;
use distributeai_node::service;

async fn ledger(node: &TestNode) -> serde_json::Value {
    get_json(&format!("{}/api/v1/ledger", node.api())).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_cut_off_while_jobs_complete_catches_up_and_every_ledger_matches() {
    // Six nodes with ledgers: a submitter and five workers (plus the bootstrap peer).
    let honest = (FakeBehaviour::Honest, None);
    let mut net = network(&[honest, honest, honest, honest, honest]).await;

    // Cut one worker off: it stops, and misses the jobs and their gossiped verdicts.
    let TestNode { node, dir } = net.workers.remove(4);
    let cut_off_id = node.peer_id.to_string();
    node.stop().await;

    for _ in 0..3 {
        let mut unpaid = spec(3, 2);
        unpaid.reward = 0;
        let job = submit(&net.submitter.node, unpaid).await;
        let job = wait_final(&net.submitter.node, &job.id).await;
        assert_eq!(job.status, JobStatus::Completed, "{job:#?}");
    }
    let submitter_ledger = ledger(&net.submitter).await;
    assert_eq!(submitter_ledger["entries"], 3);

    // Reconnected (started again on its data), it has none of them until it syncs.
    let mut config = node_config(dir.path(), net.bootstrap.addrs.clone(), "worker");
    config.jobs = jobs_config(None);
    let back = TestNode {
        node: service::start(config).await.expect("restart"),
        dir,
    };
    assert_eq!(back.node.peer_id.to_string(), cut_off_id);
    net.workers.push(back);

    let summary = submitter_ledger["summary"].clone();
    let converged = wait_until(BOUND, || async {
        for node in net.workers.iter().chain([&net.submitter]) {
            let l = ledger(node).await;
            // Entries synced out of order are in the standings at the next refresh.
            let stale = node.node.state.ledger.read().expect("ledger").is_stale();
            if l["summary"] != summary || l["entries"] != 3 || stale {
                return false;
            }
        }
        true
    })
    .await;
    assert!(
        converged,
        "every node's ledger summary matches the submitter's"
    );

    // The same standings everywhere, and the peer list shows them.
    let reference = ledger(&net.submitter).await["peers"].clone();
    for node in &net.workers {
        assert_eq!(ledger(node).await["peers"], reference);
    }
    let agreed_total: u64 = reference
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| p["agreed"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        agreed_total >= 6,
        "three jobs with at least two agreeing workers each"
    );
    let peers = net.submitter.peers().await;
    assert!(
        peers
            .iter()
            .any(|p| p["reputation"].as_f64().is_some() && p["credits"].as_i64().is_some())
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
}
