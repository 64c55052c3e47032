//! Issue 20 across real nodes: a hostile submitter with keys of its own has honest workers
//! run its jobs and then never signs a verdict, or cancels after the commitment. The output
//! folders the workers kept for it must not stay on their disks: a cancelled job's goes at
//! once, an undecided one's once the keep window after the commitment deadline is over.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::adversary::{Forger, publish};
use common::jobs::*;
use common::*;
use distributeai_node::executor::fake::FakeBehaviour;
use distributeai_node::network::{InboundRequest, NetworkEvent, Role, VerifiedResponse};
use distributeai_protocol::time::now_ms;
use distributeai_protocol::{
    Assignment, GossipMessage, JobCancel, JobId, NodeIdentity, Request, Response, Signed,
};

/// Files and folders under `dir`, recursively (0 when it does not exist).
fn entries_under(dir: &Path) -> usize {
    let Ok(read) = std::fs::read_dir(dir) else {
        return 0;
    };
    read.flatten()
        .map(|e| {
            1 + if e.path().is_dir() {
                entries_under(&e.path())
            } else {
                0
            }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_submitter_that_never_decides_or_cancels_after_the_commit_leaves_no_output() {
    let net = network(&[(FakeBehaviour::Honest, None)]).await;
    let work_dir = net.workers[0].dir.path().join("work");
    let mut adversary = TestPeer::start(Role::Node, net.bootstrap.addrs.clone()).await;
    let accomplice = NodeIdentity::generate().expect("key");
    let forger = Forger {
        issuer: &adversary.identity,
        accomplice: &accomplice,
    };
    let mut events = std::mem::replace(
        &mut adversary.events,
        distributeai_node::bounded::channel(1, 1).1,
    );
    let client = adversary.client.clone();
    let identity = adversary.identity.clone();

    // It assigns every bid it gets and takes every commitment, and never reveals or decides.
    let committed: Arc<Mutex<Vec<JobId>>> = Arc::default();
    let serving = {
        let committed = committed.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let NetworkEvent::Request { peer, request, id } = event else {
                    continue;
                };
                match request {
                    InboundRequest::Bid(bid) => {
                        let _ = client.respond(id, Response::Ack).await;
                        let now = now_ms();
                        let assignment = Assignment {
                            job_id: bid.message.job_id,
                            worker: bid.signer,
                            attempt: 0,
                            deadline: now + 8_000,
                            issued_at: now,
                        };
                        let signed = Signed::sign(&identity, &assignment).expect("sign");
                        let client = client.clone();
                        tokio::spawn(async move {
                            let answer = client.request(peer, Request::Assign(signed)).await;
                            assert!(
                                matches!(answer, Ok(VerifiedResponse::Accepted(_))),
                                "the worker accepts: {answer:?}"
                            );
                        });
                    }
                    InboundRequest::Commit(commit) => {
                        committed.lock().expect("lock").push(commit.message.job_id);
                        let _ = client.respond(id, Response::Ack).await;
                    }
                    _ => {
                        let _ = client.respond(id, Response::Refused("no".into())).await;
                    }
                }
            }
        })
    };

    publish(
        &adversary,
        GossipMessage::Node(forger.node_announcement(&adversary.addrs)),
    )
    .await;
    let undecided = forger.job(1, 0);
    let cancelled = forger.job(2, 0);
    publish(&adversary, GossipMessage::Job(undecided.clone())).await;
    publish(&adversary, GossipMessage::Job(cancelled.clone())).await;
    let both = wait_until(BOUND, || async {
        let c = committed.lock().expect("lock");
        c.contains(&undecided.job_id()) && c.contains(&cancelled.job_id())
    })
    .await;
    assert!(both, "the worker ran both jobs and committed");
    let committed_at = Instant::now();
    let with_both = entries_under(&work_dir);
    assert!(with_both > 0, "the worker keeps the outputs for a verdict");

    // It asks for the undecided job's output again and again (a verdict never comes): the
    // worker sends it four times over (plus 64 KiB), then refuses.
    let worker = net.workers[0].node.peer_id;
    let mut sent = 0u64;
    let mut total = 0u64;
    let refusal = loop {
        let request = Request::FetchOutput {
            job_id: undecided.job_id(),
            offset: 0,
            max_bytes: 1 << 20,
        };
        match adversary.client.request(worker, request).await {
            Ok(VerifiedResponse::Output(chunk)) => {
                sent += chunk.data.len() as u64;
                total = chunk.total;
            }
            Ok(VerifiedResponse::Refused(why)) => break why,
            other => panic!("an output or a refusal: {other:?}"),
        }
        assert!(sent < 16 << 20, "no bound: {sent} bytes sent");
    };
    assert!(refusal.contains("already sent"), "{refusal}");
    assert!(
        sent <= 4 * total + 64 * 1024 + total,
        "{sent} bytes of a {total}-byte output"
    );
    assert_eq!(
        net.workers[0]
            .node
            .state
            .metrics
            .dropped_count("request", "output_served_enough"),
        1
    );

    // The cancel after the commitment: that output goes at once.
    let cancel = JobCancel {
        job_id: cancelled.job_id(),
        reason: "never mind".into(),
        issued_at: now_ms(),
    };
    let cancel = Signed::sign(&adversary.identity, &cancel).expect("sign");
    publish(&adversary, GossipMessage::Cancel(cancel)).await;
    let halved = wait_until(Duration::from_secs(10), || async {
        let left = entries_under(&work_dir);
        left > 0 && left < with_both
    })
    .await;
    assert!(halved, "the cancelled job's output is removed at once");

    // The undecided one: gone after the commitment deadline (8 s) plus the keep window
    // (twice the job's 5 s timeout, above the tests' 2 s), checked every tick.
    let emptied = wait_until(Duration::from_secs(60), || async {
        entries_under(&work_dir) == 0
    })
    .await;
    assert!(
        emptied,
        "no output is left: {} entries",
        entries_under(&work_dir)
    );
    let took = committed_at.elapsed();
    assert!(
        took >= Duration::from_secs(8) && took < Duration::from_secs(40),
        "kept for the window, then removed: {took:?}"
    );
    serving.abort();
}

/// Issue 20: a node whose API was bound to 0.0.0.0 served job requests to anyone. Now it does
/// not start that way without a token, and with one it answers only requests carrying it
/// (the health check, the metrics and the page's files aside). Traffic goes to loopback only.
#[tokio::test(flavor = "multi_thread")]
async fn the_api_off_loopback_needs_its_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = node_config(dir.path(), vec![], "exposed");
    config.api_listen = "0.0.0.0:0".parse().expect("addr");
    let refused = distributeai_node::service::start(config)
        .await
        .err()
        .expect("no token: the node does not start");
    let text = refused.to_string();
    assert!(text.contains("distributeai api-token"), "{text}");

    let (token, _) = distributeai_node::api_token::load_or_create(dir.path()).expect("token");
    let mut config = node_config(dir.path(), vec![], "exposed");
    config.api_listen = "0.0.0.0:0".parse().expect("addr");
    let node = distributeai_node::service::start(config)
        .await
        .expect("starts with a token");
    let base = format!("http://127.0.0.1:{}", node.api_addr.port());
    let http = reqwest::Client::new();
    let status = |request: reqwest::RequestBuilder| async move {
        request.send().await.expect("reachable").status().as_u16()
    };
    let spec = serde_json::json!({"image": "distributeai/toolbox:local", "command": ["true"]});
    // Without the token: nothing of the node's.
    for path in [
        "/api/v1/node",
        "/api/v1/jobs",
        "/api/v1/ledger",
        "/api/v1/events",
    ] {
        assert_eq!(
            status(http.get(format!("{base}{path}"))).await,
            401,
            "{path}"
        );
    }
    assert_eq!(
        status(http.post(format!("{base}/api/v1/jobs")).json(&spec)).await,
        401
    );
    assert_eq!(
        status(
            http.get(format!("{base}/api/v1/node"))
                .bearer_auth("0".repeat(64))
        )
        .await,
        401
    );
    // The health check, the metrics and the page itself.
    for path in ["/healthz", "/metrics", "/", "/app.js"] {
        assert_eq!(
            status(http.get(format!("{base}{path}"))).await,
            200,
            "{path}"
        );
    }
    // With it, as the CLI sends it and as the page's cookie carries it.
    assert_eq!(
        status(http.get(format!("{base}/api/v1/node")).bearer_auth(&token)).await,
        200
    );
    assert_eq!(
        status(
            http.get(format!("{base}/api/v1/jobs"))
                .header("cookie", format!("distributeai_token={token}"))
        )
        .await,
        200
    );
    let client = distributeai_api::ApiClient::new(&base).with_token(Some(token));
    assert!(client.node().await.is_ok(), "the typed client sends it");
    node.stop().await;
}

/// Issue 20: no libp2p connection limits were configured, so strangers with many keys could
/// hold any number of connections to a home node. Here a node allows two incoming ones and
/// six peers, each with a key of its own, dial it: two get in, the others are denied and
/// counted, and the node still answers its API.
#[tokio::test(flavor = "multi_thread")]
async fn strangers_cannot_open_more_connections_than_the_node_allows() {
    use distributeai_node::network::ConnectionBudget;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = node_config(dir.path(), vec![], "limited");
    config.network.connection_limits = Some(ConnectionBudget {
        established_incoming: 2,
        ..ConnectionBudget::for_role(Role::Node)
    });
    let node = distributeai_node::service::start(config)
        .await
        .expect("node starts");
    let mut strangers = Vec::new();
    for _ in 0..6 {
        strangers.push(TestPeer::start(Role::Node, node.listen_addrs.clone()).await);
    }
    let metrics = node.state.metrics.clone();
    let denied = wait_until(BOUND, || async {
        metrics.dropped_count("connection", "limit") >= 4
    })
    .await;
    assert!(denied, "four strangers were denied");
    let connected = node
        .state
        .network
        .info()
        .await
        .expect("info")
        .connected
        .len();
    assert!(connected <= 2, "{connected} connections held");
    let api = format!("http://{}/api/v1/node", node.api_addr);
    let info = get_json(&api).await;
    // The limit is visible where the operator looks: `distributeai status` and /metrics.
    let incoming = info["budgets"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["name"] == "incoming_connections"))
        .cloned()
        .expect("the budget is listed");
    assert_eq!(incoming["value"], 2.0, "{incoming}");
    let metrics_text = node.state.metrics.encode();
    assert!(
        metrics_text
            .lines()
            .any(|l| l == "distributeai_budget{name=\"incoming_connections\"} 2.0"),
        "{metrics_text}"
    );
    drop(strangers);
    node.stop().await;
}

/// Issue 20: direct requests were served unthrottled. A stranger that sends 2,000 as fast as
/// its connection carries them gets the burst (1,000) and what the rate (100 a second)
/// refills meanwhile; the rest are refused and counted, and the node's API still answers.
#[tokio::test(flavor = "multi_thread")]
async fn a_stranger_flooding_requests_is_held_to_its_rate() {
    let net = network(&[(FakeBehaviour::Honest, None)]).await;
    let target = net.workers[0].node.peer_id;
    let stranger = TestPeer::start(Role::Node, net.bootstrap.addrs.clone()).await;
    let connected = wait_until(BOUND, || async {
        stranger
            .client
            .dial(net.workers[0].node.listen_addrs[0].clone())
            .await
            .is_ok()
    })
    .await;
    assert!(connected, "the stranger reaches the worker");
    // In waves of 100 at once: a connection carries a bounded number of streams.
    let mut answers = Vec::new();
    let started = Instant::now();
    for _ in 0..20 {
        let asks = (0..100).map(|_| {
            stranger.client.request(
                target,
                Request::LedgerSync(distributeai_protocol::LedgerSyncRequest {
                    after: None,
                    limit: 1,
                }),
            )
        });
        answers.extend(futures::future::join_all(asks).await);
    }
    let refused = answers
        .iter()
        .filter(|a| matches!(a, Ok(VerifiedResponse::Refused(why)) if why.contains("rate limited")))
        .count();
    let served = answers
        .iter()
        .filter(|a| matches!(a, Ok(VerifiedResponse::Ledger(_))))
        .count();
    let other: Vec<_> = answers
        .iter()
        .filter(|a| {
            !matches!(
                a,
                Ok(VerifiedResponse::Ledger(_)) | Ok(VerifiedResponse::Refused(_))
            )
        })
        .take(2)
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    // The bound, whatever the machine's speed: the burst plus the refill over the flood.
    let bound = 1_000 + (100.0 * elapsed).ceil() as usize + 10;
    assert!(
        served <= bound,
        "{served} served in {elapsed:.1} s, over {bound}; e.g. {other:?}"
    );
    assert!(served >= 1_000, "the burst is served: {served}");
    assert_eq!(
        refused + served,
        2_000,
        "every request answered: e.g. {other:?}"
    );
    let metrics = &net.workers[0].node.state.metrics;
    assert_eq!(
        metrics.dropped_count("request", "rate_limited"),
        refused as u64
    );
    let api = format!("{}/api/v1/node", net.workers[0].api());
    assert!(reqwest::get(&api).await.expect("API").status().is_success());
}

/// Issue 20: every admitted job, from any identity, became a bid a worker holds in memory.
/// One identity announcing 400 jobs at once gets its burst (256) and the rate's refill
/// (32 a second) admitted; the rest are ignored, not forwarded, and counted.
#[tokio::test(flavor = "multi_thread")]
async fn one_identity_announcing_jobs_in_bulk_is_held_to_its_rate() {
    let net = network(&[(FakeBehaviour::Honest, None)]).await;
    let adversary = TestPeer::start(Role::Node, net.bootstrap.addrs.clone()).await;
    let accomplice = NodeIdentity::generate().expect("key");
    let forger = Forger {
        issuer: &adversary.identity,
        accomplice: &accomplice,
    };
    let jobs: Vec<_> = (0..400).map(|nonce| forger.job(nonce, 0)).collect();
    publish(&adversary, GossipMessage::Job(jobs[0].clone())).await;
    let started = Instant::now();
    for job in &jobs[1..] {
        let _ = adversary
            .client
            .publish(GossipMessage::Job(job.clone()))
            .await;
    }
    // Whichever node the flood reaches first holds it to the rate (the bootstrap peer relays
    // it here) and forwards none of the excess.
    let limited = || {
        [
            &net.bootstrap.metrics,
            &net.submitter.node.state.metrics,
            &net.workers[0].node.state.metrics,
        ]
        .iter()
        .map(|m| m.dropped_count("gossip", "rate_limited"))
        .sum::<u64>()
    };
    let held = wait_until(BOUND, || async { limited() > 0 }).await;
    let worker = &net.workers[0].node.state.metrics;
    let admitted = worker.accepted_count("job-announcement");
    let elapsed = started.elapsed().as_secs_f64();
    assert!(held, "{admitted} admitted, none limited");
    let bound = 256 + (32.0 * elapsed).ceil() as u64 + 1;
    assert!(
        admitted <= bound,
        "{admitted} admitted in {elapsed:.1} s, over {bound}"
    );
    let limited = limited();
    assert!(limited > 0, "{admitted} admitted, none limited");
}

/// Issue 20: every admitted job became a bid the worker holds with its announcement and spec
/// (up to 512 KiB each). A stranger announcing 120 jobs of about 400 KiB each, and taking
/// every bid without ever assigning, gets at most 32 MiB of them held; the rest get no bid.
#[tokio::test(flavor = "multi_thread")]
async fn bids_held_for_a_stranger_are_bounded_in_bytes() {
    let net = network(&[(FakeBehaviour::Honest, None)]).await;
    let mut adversary = TestPeer::start(Role::Node, net.bootstrap.addrs.clone()).await;
    let accomplice = NodeIdentity::generate().expect("key");
    let mut events = std::mem::replace(
        &mut adversary.events,
        distributeai_node::bounded::channel(1, 1).1,
    );
    let client = adversary.client.clone();
    let bids = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let serving = {
        let bids = bids.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let NetworkEvent::Request { request, id, .. } = event {
                    if matches!(request, InboundRequest::Bid(_)) {
                        bids.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    let _ = client.respond(id, Response::Ack).await;
                }
            }
        })
    };
    let forger = Forger {
        issuer: &adversary.identity,
        accomplice: &accomplice,
    };
    publish(
        &adversary,
        GossipMessage::Node(forger.node_announcement(&adversary.addrs)),
    )
    .await;
    for nonce in 0..120u64 {
        let job = forger.job(nonce, 0);
        let mut spec = job.decode_unchecked().expect("decodes");
        spec.spec.command = (0..100)
            .map(|i| format!("{i:04}{}", "x".repeat(4_000)))
            .collect();
        let big = Signed::sign(&adversary.identity, &spec).expect("sign");
        publish(&adversary, GossipMessage::Job(big)).await;
    }
    let metrics = &net.workers[0].node.state.metrics;
    let full = wait_until(BOUND, || async {
        metrics.dropped_count("job", "bids_full") > 0
    })
    .await;
    let held = bids.load(std::sync::atomic::Ordering::SeqCst);
    assert!(full, "the worker stopped bidding ({held} bids)");
    // 32 MiB of ~400 KiB announcements: about 80.
    assert!((60..=84).contains(&held), "{held} bids held");
    serving.abort();
}
