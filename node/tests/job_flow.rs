//! The job flow in-process with fast fake executors: consensus against liars, silent and
//! failing workers, bidding re-opened when no reserve is left, a submitter restarted mid-job,
//! and a worker that copies a commitment.

mod common;

use std::time::Duration;

use common::jobs::*;
use common::*;
use distributeai_node::executor::fake::FakeBehaviour;
use distributeai_node::jobs::Fault;
use distributeai_node::jobs::model::JobStatus;
use distributeai_node::network::{NetworkEvent, Role};
use distributeai_protocol::time::now_ms;
use distributeai_protocol::{
    Bid, CommittedOutcome, Digest, NodeIdentity, Request, ResultCommitment, Signed, VerifiedGossip,
};

#[tokio::test(flavor = "multi_thread")]
async fn two_of_three_with_one_liar_is_accepted_and_names_the_liar() {
    let net = network(&[
        (FakeBehaviour::Honest, None),
        (FakeBehaviour::Honest, None),
        (FakeBehaviour::Honest, Some(Fault::WrongResult)),
    ])
    .await;
    let job = submit(&net.submitter.node, spec(3, 2)).await;
    let job = wait_final(&net.submitter.node, &job.id).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:#?}");
    let verdict = job.verdict.expect("verdict");
    assert_eq!(verdict.outcome, "accepted");
    assert_eq!(
        verdict.disagreeing,
        vec![net.worker_id(2)],
        "the liar is named"
    );
    let mut agreeing = verdict.agreeing.clone();
    agreeing.sort();
    let mut honest = vec![net.worker_id(0), net.worker_id(1)];
    honest.sort();
    assert_eq!(agreeing, honest);

    // The verified output is the honest one.
    let out = std::fs::read(
        net.submitter
            .node
            .state
            .jobs
            .output_dir(&job.id.parse().expect("id"))
            .join("stdout"),
    )
    .expect("stored output");
    let expected = blake3::hash(b"sha256sum\0data").to_hex().to_string() + "\n";
    assert_eq!(String::from_utf8_lossy(&out), expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn three_of_three_with_two_agreeing_liars_is_never_accepted() {
    let net = network(&[
        (FakeBehaviour::Honest, None),
        (FakeBehaviour::Honest, Some(Fault::WrongResult)),
        (FakeBehaviour::Honest, Some(Fault::WrongResult)),
    ])
    .await;
    let job = submit(&net.submitter.node, spec(3, 3)).await;
    let job = wait_final(&net.submitter.node, &job.id).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:#?}");
    // With no majority, nobody can be shown wrong (issue 12), and a verdict that blames
    // nobody is no ledger entry at all (issue 19).
    assert!(job.verdict.is_none(), "{:?}", job.verdict);
    let reason = job.failure_reason.expect("reason");
    assert!(
        reason.contains("no agreement: 2 distinct results among 3 workers")
            && reason.contains("3 needed"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_failures_end_as_failed_with_a_reason() {
    let net = network(&[
        (FakeBehaviour::Fail, None),
        (FakeBehaviour::Fail, None),
        (FakeBehaviour::Honest, None),
    ])
    .await;
    let job = submit(&net.submitter.node, spec(3, 2)).await;
    let job = wait_final(&net.submitter.node, &job.id).await;
    assert_eq!(job.status, JobStatus::Failed);
    let reason = job.failure_reason.expect("reason");
    assert!(
        reason.contains("not enough matching results: 1 of 2 needed"),
        "{reason}"
    );
    assert_eq!(job.verdict.expect("verdict").failed.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_worker_is_replaced_and_the_job_completes() {
    // Four bidders for three slots, one of them silent. Selection is random, so submit until
    // the silent worker is among the chosen (three in four chances each time).
    let net = network(&[
        (FakeBehaviour::Honest, None),
        (FakeBehaviour::Honest, None),
        (FakeBehaviour::Honest, None),
        (FakeBehaviour::Honest, Some(Fault::Silent)),
    ])
    .await;
    let silent = net.worker_id(3);
    for _ in 0..10 {
        let job = submit(&net.submitter.node, spec(3, 3)).await;
        let job = wait_final(&net.submitter.node, &job.id).await;
        assert_eq!(job.status, JobStatus::Completed, "{job:#?}");
        let Some(execution) = job.executions.iter().find(|e| e.peer_id == silent) else {
            continue;
        };
        assert!(!execution.active, "the silent worker lost its slot");
        assert_eq!(format!("{:?}", execution.status), "Silent");
        assert_eq!(job.executions.len(), 4, "a reserve took its place");
        assert_eq!(job.verdict.expect("verdict").silent, vec![silent]);
        return;
    }
    panic!("the silent worker was never selected in 10 jobs");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_no_reserve_left_bidding_reopens_to_a_worker_that_joined_later() {
    // Two bidders for two places, one of them silent: no reserve. A third worker joins only
    // after the job was gossiped; when the silent one misses its deadline, the submitter
    // invites it to bid and the job completes with it.
    let net = network(&[
        (FakeBehaviour::Honest, None),
        (FakeBehaviour::Honest, Some(Fault::Silent)),
    ])
    .await;
    let silent = net.worker_id(1);
    let mut unpaid = spec(2, 2);
    unpaid.reward = 0;
    let job = submit(&net.submitter.node, unpaid).await;
    let id: distributeai_protocol::JobId = job.id.parse().expect("id");
    let running = wait_until(BOUND, || async {
        let job = net.submitter.node.state.jobs.get(id).await.expect("job");
        job.executions.len() == 2
    })
    .await;
    assert!(running, "both bidders are assigned");
    // Past the gossip history, so the newcomer cannot pick up the original announcement.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let late = start_worker(&net.bootstrap.addrs, FakeBehaviour::Honest, None).await;
    let late_id = late.node.peer_id.to_string();
    let known = wait_until(BOUND, || async {
        net.submitter
            .peers()
            .await
            .iter()
            .any(|p| p["peer_id"] == late_id.as_str() && p["accepts_jobs"] == true)
    })
    .await;
    assert!(known, "the submitter hears the newcomer");

    let job = wait_final(&net.submitter.node, &job.id).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:#?}");
    let latecomer = job
        .executions
        .iter()
        .find(|e| e.peer_id == late_id)
        .expect("the newcomer was assigned");
    assert_eq!(format!("{:?}", latecomer.status), "Revealed");
    let verdict = job.verdict.expect("verdict");
    assert_eq!(verdict.silent, vec![silent]);
    assert!(verdict.agreeing.contains(&late_id));
    let record = net.submitter.node.state.jobs.job(id).await.expect("job");
    assert!(
        record
            .events
            .iter()
            .any(|(_, e)| e.contains("bidding re-opened")),
        "{:?}",
        record.events
    );
    late.node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_submitter_killed_mid_job_and_restarted_completes_the_job() {
    // Executions long enough for the submitter to be down when the results are ready.
    let honest = (FakeBehaviour::Honest, None);
    let net = network_with_delay(&[honest, honest, honest], Duration::from_secs(4)).await;
    let Net {
        bootstrap,
        submitter,
        workers: _workers,
    } = net;

    let mut job_spec = spec(3, 2);
    job_spec.timeout_s = 30;
    let job = submit(&submitter.node, job_spec).await;
    let id: distributeai_protocol::JobId = job.id.parse().expect("id");
    let running = wait_until(BOUND, || async {
        submitter
            .node
            .state
            .jobs
            .get(id)
            .await
            .is_some_and(|j| j.status == JobStatus::Running)
    })
    .await;
    assert!(running, "the job gets assigned");

    // Kill the submitter while the workers execute, then start it again on the same data.
    let TestNode { node, dir } = submitter;
    node.stop().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let restarted = start_submitter_in(dir, &bootstrap.addrs).await;
    let job = wait_final(&restarted.node, &job.id).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:#?}");
    assert_eq!(job.verdict.expect("verdict").agreeing.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_that_copies_another_workers_commitment_is_detected() {
    let net = network(&[(FakeBehaviour::Honest, None), (FakeBehaviour::Honest, None)]).await;
    // The copier: a bare peer that bids, accepts its assignment, then sends the commitment
    // of an honest worker (as if it had leaked) instead of doing the work.
    let mut copier = TestPeer::start(Role::Node, net.bootstrap.addrs.clone()).await;
    let copier_id = copier.identity.peer_id().to_string();
    assert!(wait_until(BOUND, || async { copier.connected().await > 0 }).await);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let job = submit(&net.submitter.node, spec(3, 2)).await;
    let id: distributeai_protocol::JobId = job.id.parse().expect("id");
    let submitter_peer = net.submitter.node.peer_id;
    // Bid on the announcement, acknowledge the assignment.
    let deadline = tokio::time::Instant::now() + BOUND;
    let mut assigned_attempt = None;
    while assigned_attempt.is_none() && tokio::time::Instant::now() < deadline {
        let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_secs(1), copier.events.recv()).await
        else {
            continue;
        };
        match event {
            NetworkEvent::Gossip {
                message: VerifiedGossip::Job(announcement),
                ..
            } if announcement.envelope.job_id() == id => {
                let bid = Bid {
                    job_id: id,
                    image: None,
                    running_jobs: 0,
                    issued_at: now_ms(),
                };
                let signed = Signed::sign(&copier.identity, &bid).expect("sign");
                // A bare peer keeps no address book of its own: tell it where the submitter is.
                copier
                    .client
                    .add_peer_addresses(submitter_peer, net.submitter.node.listen_addrs.clone())
                    .await
                    .expect("add addresses");
                copier
                    .client
                    .request(submitter_peer, Request::Bid(signed))
                    .await
                    .expect("bid");
            }
            NetworkEvent::Request {
                request: distributeai_node::network::InboundRequest::Assign(a),
                id: request_id,
                ..
            } => {
                copier
                    .client
                    .respond(request_id, distributeai_protocol::Response::Ack)
                    .await
                    .expect("ack");
                assigned_attempt = Some(a.message.attempt);
            }
            _ => {}
        }
    }
    let attempt = assigned_attempt.expect("the copier is assigned");

    // Wait for an honest commitment, and send it as the copier's own.
    let deadline = tokio::time::Instant::now() + BOUND;
    let leaked: Digest = loop {
        let job = net.submitter.node.state.jobs.get(id).await.expect("job");
        let found = job
            .executions
            .iter()
            .find_map(|e| e.commitment.as_ref().and_then(|c| c.parse().ok()));
        if let Some(digest) = found {
            break digest;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "an honest worker commits"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let commit = ResultCommitment {
        job_id: id,
        attempt,
        outcome: CommittedOutcome::Committed(leaked),
        issued_at: now_ms(),
    };
    let signed = Signed::sign(&copier.identity, &commit).expect("sign");
    let _ = copier
        .client
        .request(submitter_peer, Request::Commit(signed))
        .await;

    let job = wait_final(&net.submitter.node, &job.id).await;
    let execution = job
        .executions
        .iter()
        .find(|e| e.peer_id == copier_id)
        .expect("the copier was assigned");
    assert_eq!(format!("{:?}", execution.status), "Invalid", "{job:#?}");
    assert!(
        execution
            .failure
            .as_deref()
            .is_some_and(|f| f.contains("copied"))
    );
    assert_eq!(
        job.status,
        JobStatus::Completed,
        "the honest workers still agree"
    );
    let verdict = job.verdict.expect("verdict");
    // Not counted, not paid; and not blamed in the ledger either, since its deadline had not
    // passed when the verdict was signed and a charge needs the worker's own signature on
    // what it is blamed for (issue 19).
    assert!(!verdict.agreeing.contains(&copier_id));
    assert!(!verdict.failed.contains(&copier_id));
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_job_stops_it_on_the_workers() {
    let honest = (FakeBehaviour::Honest, None);
    let net = network_with_delay(&[honest, honest], Duration::from_secs(600)).await;

    let mut long = spec(2, 2);
    long.timeout_s = 900;
    let job = submit(&net.submitter.node, long).await;
    let id: distributeai_protocol::JobId = job.id.parse().expect("id");
    let running = wait_until(BOUND, || async {
        let mut busy = 0;
        for w in &net.workers {
            busy += w.node.state.jobs.stats().await.work_running;
        }
        busy == 2
    })
    .await;
    assert!(running, "both workers run the job");

    let cancelled = net
        .submitter
        .node
        .state
        .jobs
        .cancel(id)
        .await
        .expect("known job");
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    let stopped = wait_until(BOUND, || async {
        let mut busy = 0;
        for w in &net.workers {
            busy += w.node.state.jobs.stats().await.work_running;
        }
        busy == 0
    })
    .await;
    assert!(
        stopped,
        "the workers stop the job when the signed cancel arrives"
    );
    let job = net.submitter.node.state.jobs.get(id).await.expect("job");
    assert_eq!(job.status, JobStatus::Cancelled);
    assert!(
        job.executions
            .iter()
            .all(|e| e.status == distributeai_node::jobs::model::ExecutionState::Cancelled),
        "the executions end cancelled: {:?}",
        job.executions
    );
    // Cancelling it again does nothing, and says why.
    let again = net.submitter.node.state.jobs.cancel(id).await;
    assert!(
        matches!(
            again,
            Err(distributeai_node::jobs::CancelError::Finished(
                JobStatus::Cancelled
            ))
        ),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_spec_is_stored_completes_and_is_still_completed_after_a_restart() {
    let honest = (FakeBehaviour::Honest, None);
    let Net {
        bootstrap,
        submitter,
        workers: _workers,
    } = network(&[honest, honest]).await;

    // Issue 12's input: about 360 KB of arguments (90 of 4,000 bytes). Its record holds the
    // spec, the announcement and the verdict, more than one message's worth.
    let mut big = spec(2, 2);
    big.command = (0..90)
        .map(|i| format!("{i:04}{}", "x".repeat(3996)))
        .collect();
    let job = submit(&submitter.node, big).await;
    let done = wait_final(&submitter.node, &job.id).await;
    assert_eq!(
        done.status,
        JobStatus::Completed,
        "{:?}",
        done.failure_reason
    );
    let entry = done.verdict.expect("verdict").entry_id;

    let TestNode { node, dir } = submitter;
    node.stop().await;
    let restarted = start_submitter_in(dir, &bootstrap.addrs).await;
    let id = job.id.parse().expect("id");
    let again = restarted.node.state.jobs.get(id).await.expect("kept");
    assert_eq!(again.status, JobStatus::Completed);
    assert_eq!(
        again.verdict.expect("verdict").entry_id,
        entry,
        "one verdict"
    );

    // A spec over the bound is refused at submission, naming the limit.
    let mut huge = spec(2, 2);
    huge.command = (0..140).map(|_| "y".repeat(4000)).collect();
    let refused = restarted.node.state.jobs.submit(huge).await;
    let message = refused.expect_err("too large").to_string();
    assert!(
        message.contains("spec") && message.contains("524288 bytes"),
        "{message}"
    );
    restarted.node.stop().await;
}

/// Issue 12's input: a worker killed two seconds into its run was replaced only after the
/// job's timeout plus grace, though its connection dropped at once. Now it is given up on
/// once it cannot be reached again for `LIVENESS_BOUND` (15 s), and not blamed.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_that_disappears_mid_run_is_replaced_within_the_liveness_bound() {
    let honest = (FakeBehaviour::Honest, None);
    let Net {
        bootstrap: _bootstrap,
        submitter,
        workers,
    } = network_with_delay(&[honest, honest, honest], Duration::from_secs(8)).await;
    let mut long = spec(2, 2);
    // Deadline 130 s (timeout plus the tests' 10 s grace): far past the liveness bound.
    long.timeout_s = 120;
    let job = submit(&submitter.node, long).await;
    let id: distributeai_protocol::JobId = job.id.parse().expect("id");
    let assigned = wait_until(BOUND, || async {
        submitter
            .node
            .state
            .jobs
            .get(id)
            .await
            .is_some_and(|j| j.executions.len() == 2)
    })
    .await;
    assert!(assigned, "the job gets assigned");
    let job = submitter.node.state.jobs.get(id).await.expect("job");
    let victim = job.executions[0].peer_id.clone();
    let mut killed = None;
    let mut _alive = Vec::new();
    for w in workers {
        if w.node.peer_id.to_string() == victim {
            w.node.stop().await;
            killed = Some(tokio::time::Instant::now());
        } else {
            _alive.push(w);
        }
    }
    let killed = killed.expect("the victim is one of ours");

    let job = wait_final(&submitter.node, &job.id).await;
    let took = killed.elapsed();
    assert_eq!(job.status, JobStatus::Completed, "{job:#?}");
    assert!(
        took < Duration::from_secs(100),
        "replaced only after {took:?}, as late as its deadline"
    );
    let lost = job
        .executions
        .iter()
        .find(|e| e.peer_id == victim)
        .expect("the victim's execution");
    assert_eq!(
        lost.status,
        distributeai_node::jobs::model::ExecutionState::Unreachable
    );
    let verdict = job.verdict.expect("verdict");
    assert!(!verdict.silent.contains(&victim), "{verdict:?}");
}

/// Issue 20: a worker's offer is what the jobs running at once share, not what each may take.
/// Two jobs that each ask for 800 of the 1,024 MiB a worker offers (two slots free) run one
/// after the other: the second waits for the first.
#[tokio::test(flavor = "multi_thread")]
async fn jobs_running_at_once_share_the_memory_a_worker_offers() {
    let honest = (FakeBehaviour::Honest, None);
    let net = network_with_delay(&[honest], Duration::from_secs(1)).await;
    let mut ids = Vec::new();
    for i in 0..2 {
        let mut big = spec(1, 1);
        big.resources.memory_mb = 800;
        big.command = vec!["echo".into(), i.to_string()];
        ids.push(submit(&net.submitter.node, big).await.id);
    }
    let mut waited = 0;
    for id in &ids {
        let job = wait_final(&net.submitter.node, id).await;
        assert_eq!(job.status, JobStatus::Completed, "{job:#?}");
        if waited_for_a_slot(&net.submitter.node, id).await {
            waited += 1;
        }
    }
    assert_eq!(waited, 1, "one of the two waited for the other's memory");
}

/// Issue 12: five jobs at once on three workers with two slots each failed with "refused the
/// assignment: busy". A batch far larger than the free slots now queues and drains in full.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_larger_than_the_free_slots_drains_in_full() {
    let honest = (FakeBehaviour::Honest, None);
    let net = network_with_delay(&[honest, honest, honest], Duration::from_secs(1)).await;
    let mut ids = Vec::new();
    for i in 0..12 {
        let mut spec = spec(2, 2);
        spec.command = vec!["echo".into(), i.to_string()];
        ids.push(submit(&net.submitter.node, spec).await.id);
    }
    let mut waited = 0;
    for id in &ids {
        let job = wait_final(&net.submitter.node, id).await;
        assert_eq!(
            job.status,
            JobStatus::Completed,
            "job {id}: {:?}",
            job.failure_reason
        );
        if waited_for_a_slot(&net.submitter.node, id).await {
            waited += 1;
        }
    }
    assert!(
        waited > 0,
        "24 runs on 6 slots: some assignments waited for a slot"
    );

    // The counters moved (issue 13): what a Prometheus scrape of /metrics sees.
    let submitter = net.submitter.node.state.metrics.encode();
    for line in [
        "distributeai_jobs_submitted_total 12",
        "distributeai_jobs_finished_total{outcome=\"completed\"} 12",
        "distributeai_job_submit_to_verdict_seconds_count 12",
        "distributeai_job_bidding_seconds_count 12",
    ] {
        assert!(
            submitter.lines().any(|l| l == line),
            "{line} in:\n{submitter}"
        );
    }
    let executed: u64 = net
        .workers
        .iter()
        .map(|w| w.node.state.metrics.encode())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| {
                    l.strip_prefix("distributeai_executions_total{outcome=\"exited\"} ")
                })
                .filter_map(|n| n.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum();
    assert_eq!(executed, 24, "12 jobs, 2 runs each");
}

/// Issue 19: a fresh identity's grant is locked until others who count have judged its work,
/// so its node refuses a paid job up front, naming what it can spend, instead of announcing
/// a job no worker would bid on (workers check the same before bidding).
#[tokio::test(flavor = "multi_thread")]
async fn a_paid_job_beyond_what_the_submitter_can_spend_is_refused_with_the_reason() {
    let net = network(&[(FakeBehaviour::Honest, None)]).await;
    let mut paid = spec(1, 1);
    paid.reward = 5;
    let err = net
        .submitter
        .node
        .state
        .jobs
        .submit(paid)
        .await
        .expect_err("a fresh identity cannot pay");
    let text = err.to_string();
    assert!(
        text.contains("reward x n is 5 credits, it can spend 0"),
        "{text}"
    );
    // An unpaid job from the same node runs.
    let job = submit(&net.submitter.node, spec(1, 1)).await;
    let job = wait_final(&net.submitter.node, &job.id).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:#?}");
}

/// A network that names its founder can pay: the genesis submitter's grant is spendable from
/// the start, workers bid on its paid job, and every node's ledger moves the same credits from
/// it to the agreeing workers, which can spend what they earned at once (their own grant stays
/// locked until identities that count have judged their work).
#[tokio::test(flavor = "multi_thread")]
async fn a_genesis_submitter_pays_and_every_ledger_moves_the_same_credits() {
    let net = network_founded_by_submitter(&[
        (FakeBehaviour::Honest, None),
        (FakeBehaviour::Honest, None),
    ])
    .await;
    let mut paid = spec(2, 2);
    paid.reward = 5;
    let job = submit(&net.submitter.node, paid).await;
    let job = wait_final(&net.submitter.node, &job.id).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:#?}");
    let founder = net.submitter.node.peer_id.to_string();
    let workers = [net.worker_id(0), net.worker_id(1)];
    for node in std::iter::once(&net.submitter).chain(&net.workers) {
        let settled = wait_until(BOUND, || async {
            let ledger = get_json(&format!("{}/api/v1/ledger", node.api())).await;
            let standing = |id: &str| {
                ledger["peers"]
                    .as_array()
                    .and_then(|peers| peers.iter().find(|p| p["peer_id"] == id).cloned())
            };
            let Some(f) = standing(&founder) else {
                return false;
            };
            f["genesis"] == true
                && f["credits"] == 40
                && f["spendable"] == 40
                && workers.iter().all(|w| {
                    standing(w).is_some_and(|s| {
                        s["credits"] == 55 && s["spendable"] == 5 && s["genesis"] == false
                    })
                })
        })
        .await;
        assert!(settled, "{}: the payment is on its ledger", node.api());
    }

    // A node that lists another founder computes other standings: the founder's node says so.
    let stranger = NodeIdentity::generate().expect("key").public_key();
    let _misconfigured = start_worker_rooted(
        &net.bootstrap.addrs,
        FakeBehaviour::Honest,
        None,
        Duration::from_millis(300),
        &[stranger],
    )
    .await;
    let noticed = wait_until(BOUND, || async {
        net.submitter
            .node
            .state
            .metrics
            .encode()
            .lines()
            .any(|l| l == "distributeai_other_genesis_peers 1")
    })
    .await;
    assert!(noticed, "the misconfigured peer is counted");
}

/// Issue 20: a job whose image comes from a registry on the worker's own machine or LAN gets
/// no bid (the engine would connect there to pull it); the refusal is counted.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_does_not_bid_for_an_image_from_a_loopback_or_lan_registry() {
    let net = network(&[(FakeBehaviour::Honest, None)]).await;
    let mut job_ids = Vec::new();
    for image in ["127.0.0.1:5000/x:1", "192.168.1.10/x:1", "nas:5000/x:1"] {
        let mut local = spec(1, 1);
        local.image = image.into();
        job_ids.push(submit(&net.submitter.node, local).await.id);
    }
    let line = "distributeai_messages_dropped_total{kind=\"job\",reason=\"image_not_pullable\"} 3";
    let counted = wait_until(BOUND, || async {
        net.workers[0]
            .node
            .state
            .metrics
            .encode()
            .lines()
            .any(|l| l == line)
    })
    .await;
    assert!(counted, "the worker refused all three");
    for id in job_ids {
        let job = net
            .submitter
            .node
            .state
            .jobs
            .get(id.parse().expect("id"))
            .await
            .expect("job");
        assert!(job.bids.is_empty(), "no bid: {job:#?}");
    }
    // The same worker still bids for an image it may get.
    let job = submit(&net.submitter.node, spec(1, 1)).await;
    let job = wait_final(&net.submitter.node, &job.id).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:#?}");
}

/// Issue 19, as a new user tried it: four honest workers and one that lies, 16 jobs at n=3,
/// k=2. Before, after the liar was first caught it still ran 8 of the next 12 jobs: bidding
/// closed at the n-th bid and the fastest got the job. Now the submitter draws among every
/// candidate, weighted by standing times what it saw itself, and a liar it caught is a last
/// resort at once, though its global weight barely moved on this fresh network.
#[tokio::test(flavor = "multi_thread")]
async fn a_liar_the_submitter_caught_stops_getting_its_jobs() {
    let net = network(&[
        (FakeBehaviour::Honest, None),
        (FakeBehaviour::Honest, None),
        (FakeBehaviour::Honest, None),
        (FakeBehaviour::Honest, None),
        (FakeBehaviour::Honest, Some(Fault::WrongResult)),
    ])
    .await;
    let liar = net.worker_id(4);
    let mut caught_at = None;
    let mut ran_after = 0;
    for i in 0..16 {
        let job = submit(&net.submitter.node, spec(3, 2)).await;
        let job = wait_final(&net.submitter.node, &job.id).await;
        assert_eq!(job.status, JobStatus::Completed, "{job:#?}");
        let assigned = job.executions.iter().any(|e| e.peer_id == liar);
        if caught_at.is_some() && assigned {
            ran_after += 1;
        }
        let verdict = job.verdict.expect("verdict");
        if caught_at.is_none() && verdict.disagreeing.contains(&liar) {
            caught_at = Some(i);
        }
    }
    let caught_at = caught_at.expect("the liar was drawn and caught at least once in 16 jobs");
    assert_eq!(
        ran_after,
        0,
        "the liar ran {ran_after} of the {} jobs after it was caught",
        15 - caught_at
    );
}
