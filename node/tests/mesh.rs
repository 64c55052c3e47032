//! The mesh in-process on loopback: discovery through a bootstrap peer, gossip delivery and
//! validation, QUIC, and restarts.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use distributeai_node::network::{NetworkEvent, Role};
use distributeai_protocol::time::now_ms;
use distributeai_protocol::{GossipMessage, JobCancel, JobId, Signed, VerifiedGossip};

/// Generous: the machine is shared and slow; the mesh usually forms in a few seconds.
const BOUND: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread")]
async fn eight_nodes_joined_through_a_bootstrap_peer_all_list_each_other() {
    let bootstrap = TestPeer::start(Role::Bootstrap, vec![]).await;
    let mut nodes = Vec::new();
    for i in 0..8 {
        nodes.push(TestNode::start(bootstrap.addrs.clone(), &format!("region-{i}")).await);
    }
    let ids: Vec<String> = nodes.iter().map(|n| n.node.peer_id.to_string()).collect();

    let all_see_all = wait_until(BOUND, || async {
        for (i, node) in nodes.iter().enumerate() {
            let peers = node.peers().await;
            for (j, id) in ids.iter().enumerate() {
                if i == j {
                    continue;
                }
                let listed = peers.iter().any(|p| {
                    p["peer_id"] == id.as_str()
                        && p["capabilities"]["region"] == format!("region-{j}").as_str()
                        && p["capabilities"]["cpus"] == 2
                });
                if !listed {
                    return false;
                }
            }
        }
        true
    })
    .await;
    assert!(
        all_see_all,
        "every node must list every other node with its capabilities"
    );

    // The bootstrap peer is listed as such, connected; the node API describes the node itself.
    let peers = nodes[0].peers().await;
    let boot = peers
        .iter()
        .find(|p| p["peer_id"] == bootstrap.identity.peer_id().to_string().as_str())
        .expect("bootstrap peer listed");
    assert_eq!(boot["connected"], true);
    assert_eq!(boot["source"], "bootstrap");
    let info = get_json(&format!("{}/api/v1/node", nodes[0].api())).await;
    assert_eq!(info["peer_id"], ids[0].as_str());
    assert!(
        info["listen_addrs"][0]
            .as_str()
            .is_some_and(|a| a.ends_with(&ids[0]))
    );
    let health = reqwest::get(format!("{}/healthz", nodes[0].api()))
        .await
        .expect("healthz");
    assert_eq!(health.text().await.expect("body"), "ok");

    for node in nodes {
        node.node.stop().await;
    }
}

/// A node listening on QUIC only, so every connection it makes or takes is QUIC.
async fn start_quic_node(bootstrap: Vec<libp2p::Multiaddr>, region: &str) -> TestNode {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = node_config(dir.path(), bootstrap, region);
    config.network.listen = vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("multiaddr")];
    let node = distributeai_node::service::start(config)
        .await
        .expect("node starts");
    TestNode { node, dir }
}

/// Whether `node` lists `peer` with the region it announced.
async fn lists(node: &TestNode, peer: &str, region: &str) -> bool {
    node.peers()
        .await
        .iter()
        .any(|p| p["peer_id"] == peer && p["capabilities"]["region"] == region)
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_that_speak_only_quic_form_a_mesh() {
    let hub = start_quic_node(vec![], "hub").await;
    assert!(
        hub.node
            .listen_addrs
            .iter()
            .all(|a| a.to_string().contains("/udp/") && a.to_string().contains("/quic-v1")),
        "{:?}",
        hub.node.listen_addrs
    );
    let a = start_quic_node(hub.node.listen_addrs.clone(), "a").await;
    let b = start_quic_node(hub.node.listen_addrs.clone(), "b").await;
    let (id_a, id_b) = (a.node.peer_id.to_string(), b.node.peer_id.to_string());
    // a and b hear each other's signed announcements over gossip relayed through the hub.
    assert!(
        wait_until(BOUND, || async {
            lists(&a, &id_b, "b").await && lists(&b, &id_a, "a").await
        })
        .await,
        "nodes joined over QUIC list each other with their capabilities"
    );
    for node in [a, b, hub] {
        node.node.stop().await;
    }
}

fn cancel_message(peer: &TestPeer, nonce: u8) -> GossipMessage {
    let cancel = JobCancel {
        job_id: JobId([nonce; 32]),
        reason: "test".into(),
        issued_at: now_ms(),
    };
    GossipMessage::Cancel(Signed::sign(&peer.identity, &cancel).expect("sign"))
}

/// The same message with one bit of its envelope signature flipped.
fn with_bad_signature(message: GossipMessage) -> GossipMessage {
    let GossipMessage::Cancel(signed) = message else {
        panic!("expected a cancel");
    };
    let mut signature = signed.signature();
    signature.0[0] ^= 1;
    GossipMessage::Cancel(Signed::from_parts(
        signed.body().to_vec(),
        signed.signer(),
        signature,
    ))
}

/// Drains a peer's events, returning the job ids of the cancels it received.
fn received_cancels(peer: &mut TestPeer) -> Vec<JobId> {
    let mut got = Vec::new();
    while let Ok(event) = peer.events.try_recv() {
        if let NetworkEvent::Gossip {
            message: VerifiedGossip::Cancel(cancel),
            ..
        } = event
        {
            got.push(cancel.message.job_id);
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn gossip_reaches_every_node_exactly_once_and_bad_signatures_reach_none() {
    let mut bootstrap = TestPeer::start(Role::Bootstrap, vec![]).await;
    let mut peers = Vec::new();
    for _ in 0..10 {
        peers.push(TestPeer::start(Role::Node, bootstrap.addrs.clone()).await);
    }
    let connected = wait_until(BOUND, || async {
        for p in &peers {
            if p.connected().await == 0 {
                return false;
            }
        }
        bootstrap.connected().await >= 10
    })
    .await;
    assert!(connected, "every node connects to the bootstrap peer");
    // Let subscriptions spread and meshes form over a few heartbeats.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let message = cancel_message(&peers[0], 7);
    peers[0].client.publish(message).await.expect("publish");
    let mut counts = vec![0usize; peers.len()];
    let everyone = wait_until(BOUND, || {
        for (i, p) in peers.iter_mut().enumerate() {
            counts[i] += received_cancels(p)
                .iter()
                .filter(|id| **id == JobId([7; 32]))
                .count();
        }
        let done = counts[1..].iter().all(|c| *c >= 1);
        async move { done }
    })
    .await;
    assert!(
        everyone,
        "every other node receives the message: {counts:?}"
    );
    // Give duplicates time to show up if there were any.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (i, p) in peers.iter_mut().enumerate() {
        counts[i] += received_cancels(p).len();
    }
    assert_eq!(counts[0], 0, "the publisher does not deliver to itself");
    assert!(
        counts[1..].iter().all(|c| *c == 1),
        "exactly once each: {counts:?}"
    );

    // A misbehaving peer publishes a message whose envelope signature is wrong.
    let attacker = TestPeer::start(Role::Node, bootstrap.addrs.clone()).await;
    assert!(wait_until(BOUND, || async { attacker.connected().await > 0 }).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let forged = with_bad_signature(cancel_message(&attacker, 9));
    attacker
        .client
        .publish(forged)
        .await
        .expect("the attacker can publish");
    let rejected = wait_until(BOUND, || async {
        bootstrap.metrics.dropped_count("gossip", "bad_signature") >= 1
    })
    .await;
    assert!(
        rejected,
        "the bootstrap peer rejects and counts the forged message"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut reached = HashSet::new();
    for (i, p) in peers.iter_mut().enumerate() {
        if received_cancels(p).contains(&JobId([9; 32])) {
            reached.insert(i);
        }
    }
    assert!(
        reached.is_empty(),
        "the forged message reached nodes {reached:?}"
    );
    assert!(!received_cancels(&mut bootstrap).contains(&JobId([9; 32])));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_node_keeps_its_peer_id_and_rejoins() {
    let bootstrap = TestPeer::start(Role::Bootstrap, vec![]).await;
    let watcher = TestNode::start(bootstrap.addrs.clone(), "watcher").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = node_config(dir.path(), bootstrap.addrs.clone(), "restarted");

    let first = distributeai_node::service::start(config.clone())
        .await
        .expect("start");
    let id = first.peer_id.to_string();
    // When the run the watcher last heard announce itself began.
    let heard_run = || {
        let watcher = &watcher;
        let id = id.clone();
        async move {
            watcher
                .peers()
                .await
                .iter()
                .find(|p| p["peer_id"] == id.as_str() && p["capabilities"].is_object())
                .and_then(|p| p["started_at"].as_u64())
        }
    };
    assert!(
        wait_until(BOUND, || async { heard_run().await.is_some() }).await,
        "the watcher hears the node"
    );
    let first_run = heard_run().await;
    first.stop().await;

    let second = distributeai_node::service::start(config)
        .await
        .expect("restart");
    assert_eq!(second.peer_id.to_string(), id, "same data dir, same PeerId");
    assert!(
        wait_until(BOUND, || async { heard_run().await > first_run }).await,
        "the watcher hears the restarted node announce its new run"
    );
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_behind_nat_is_reachable_through_the_bootstrap_relay() {
    let bootstrap = TestPeer::start(Role::Bootstrap, vec![]).await;
    let relay_addr: libp2p::Multiaddr = format!("{}/p2p-circuit", bootstrap.addrs[0])
        .parse()
        .expect("addr");

    // The "NAT" node listens only through the relay: nobody can dial it directly.
    let identity = distributeai_protocol::NodeIdentity::generate().expect("identity");
    let mut config = network_config(Role::Node, bootstrap.addrs.clone());
    config.listen = vec![relay_addr.clone()];
    let (behind_nat, _events, event_loop) = distributeai_node::network::new(
        &identity,
        config,
        distributeai_node::metrics::Metrics::new(),
    )
    .expect("network");
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(event_loop.run(shutdown.clone()));
    let reserved = wait_until(BOUND, || async {
        behind_nat.info().await.is_ok_and(|i| {
            i.listen_addrs
                .iter()
                .any(|a| a.to_string().contains("p2p-circuit"))
        })
    })
    .await;
    assert!(reserved, "the relay grants a reservation");

    let dialer = TestPeer::start(Role::Node, vec![]).await;
    let through_relay: libp2p::Multiaddr = format!("{relay_addr}/p2p/{}", identity.peer_id())
        .parse()
        .expect("addr");
    dialer.client.dial(through_relay).await.expect("dial");
    let connected = wait_until(BOUND, || async {
        dialer
            .client
            .info()
            .await
            .is_ok_and(|i| i.connected.iter().any(|p| p.peer_id == identity.peer_id()))
    })
    .await;
    assert!(connected, "a peer reaches the NAT node through the relay");
    shutdown.cancel();
}
