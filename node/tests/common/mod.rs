//! Helpers to start bootstrap peers, nodes and bare network instances on loopback.

#![allow(dead_code, unreachable_pub)]

#[allow(dead_code)]
pub mod adversary;
pub mod jobs;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use distributeai_node::metrics::Metrics;
use distributeai_node::network::{self, Client, NetworkConfig, NetworkEvent, Role};
use distributeai_node::service::{self, NodeConfig, RunningNode};
use distributeai_protocol::{Capabilities, NodeIdentity};
use libp2p::Multiaddr;
use tokio_util::sync::CancellationToken;

pub fn loopback() -> Vec<Multiaddr> {
    vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")]
}

/// Network settings for tests: loopback only, no mDNS (it would reach the LAN), quick timers.
pub fn network_config(role: Role, bootstrap: Vec<Multiaddr>) -> NetworkConfig {
    NetworkConfig {
        listen: loopback(),
        bootstrap,
        mdns: false,
        role,
        kad_server: Some(true),
        request_timeout: Duration::from_secs(30),
        gossip_heartbeat: Duration::from_millis(500),
        redial_interval: Duration::from_secs(2),
        ..NetworkConfig::default()
    }
}

/// Sends the nodes' logs to the test's output when `RUST_LOG` is set (shown for failed tests).
pub fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
    }
}

pub fn node_config(data_dir: &Path, bootstrap: Vec<Multiaddr>, region: &str) -> NodeConfig {
    init_logs();
    NodeConfig {
        data_dir: data_dir.to_path_buf(),
        network: network_config(Role::Node, bootstrap),
        api_listen: "127.0.0.1:0".parse().expect("addr"),
        capabilities: Capabilities {
            cpus: 2,
            memory_mb: 1024,
            gpus: vec![],
            region: region.to_string(),
            version: "test".into(),
            images: vec![],
        },
        worker: true,
        announce_interval: Duration::from_secs(3),
        peer_expiry: Duration::from_secs(60),
        ledger_sync_interval: Duration::from_secs(5),
        genesis: Vec::new(),
        allow_pull: true,
        pull_registries: Vec::new(),
        jobs: distributeai_node::jobs::JobsConfig::default(),
        executor: None,
    }
}

/// A node started in-process with its own temporary data directory.
pub struct TestNode {
    pub node: RunningNode,
    pub dir: tempfile::TempDir,
}

impl TestNode {
    pub async fn start(bootstrap: Vec<Multiaddr>, region: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = service::start(node_config(dir.path(), bootstrap, region))
            .await
            .expect("node starts");
        Self { node, dir }
    }

    pub fn api(&self) -> String {
        format!("http://{}", self.node.api_addr)
    }

    pub async fn peers(&self) -> Vec<serde_json::Value> {
        get_json(&format!("{}/api/v1/peers", self.api()))
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

pub async fn get_json(url: &str) -> serde_json::Value {
    let response = reqwest::get(url).await.expect("API reachable");
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.json().await.expect("JSON")
}

/// A bare network instance whose events the test reads itself.
pub struct TestPeer {
    pub identity: NodeIdentity,
    pub client: Client,
    pub events: distributeai_node::bounded::Receiver<NetworkEvent>,
    pub metrics: Metrics,
    pub addrs: Vec<Multiaddr>,
    pub shutdown: CancellationToken,
}

impl TestPeer {
    pub async fn start(role: Role, bootstrap: Vec<Multiaddr>) -> Self {
        let identity = NodeIdentity::generate().expect("identity");
        let metrics = Metrics::new();
        let (client, events, event_loop) =
            network::new(&identity, network_config(role, bootstrap), metrics.clone())
                .expect("network");
        let shutdown = CancellationToken::new();
        tokio::spawn(event_loop.run(shutdown.clone()));
        let addrs = service::listen_addrs(&client, 1)
            .await
            .expect("listen addresses");
        Self {
            identity,
            client,
            events,
            metrics,
            addrs,
            shutdown,
        }
    }

    pub async fn connected(&self) -> usize {
        self.client
            .info()
            .await
            .map(|i| i.connected.len())
            .unwrap_or(0)
    }
}

impl Drop for TestPeer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Polls `condition` every 200 ms until it holds or `bound` passes; returns whether it held.
pub async fn wait_until<F, Fut>(bound: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
