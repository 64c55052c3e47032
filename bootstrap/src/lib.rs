//! The DistributeAI bootstrap peer: a long-running libp2p node that only routes, so new nodes
//! have a stable address to join the mesh through.
//!
//! It is a Kademlia server, answers identify and ping, takes part in gossipsub (validating
//! and forwarding every message like any node, so the mesh forms through it), and runs a relay
//! (circuit v2) server so peers behind NAT can be reached through it. It runs no jobs, keeps no
//! ledger and serves no API. Its identity persists in its data directory, so its address stays
//! the same across restarts.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use distributeai_node::metrics::Metrics;
use distributeai_node::network::{self, NetworkConfig, NetworkEvent, RelayLimits, Role};
use distributeai_node::service::listen_addrs;
use distributeai_protocol::{NodeIdentity, Response};
use libp2p::Multiaddr;
use tokio_util::sync::CancellationToken;

/// `distributeai-bootstrap`: a routing-only peer that DistributeAI nodes join the mesh through.
#[derive(Debug, Parser)]
#[command(name = "distributeai-bootstrap", version, about)]
pub struct Args {
    /// How log lines are written to stderr: `human`, or `json` (one object per line).
    #[arg(long, value_enum, default_value_t = distributeai_node::cli::LogFormat::Human)]
    pub log_format: distributeai_node::cli::LogFormat,
    /// Address to listen on (repeatable) [default: TCP and QUIC on port 4001].
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<Multiaddr>,
    /// Directory holding the persistent identity [default: $XDG_DATA_HOME/distributeai-bootstrap].
    #[arg(long, env = "DISTRIBUTEAI_BOOTSTRAP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Other bootstrap peers to connect to, so bootstrap peers form one mesh (repeatable).
    #[arg(long, value_name = "MULTIADDR")]
    pub peer: Vec<Multiaddr>,
    /// Longest a relayed circuit stays open, in seconds [default: 1800]; a longer exchange
    /// opens a new circuit.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub max_circuit_secs: Option<u64>,
    /// Most bytes one relayed circuit carries, in KiB [default: 65536, i.e. 64 MiB].
    #[arg(long, value_name = "KIB", value_parser = clap::value_parser!(u64).range(16..=16_777_216))]
    pub max_circuit_kib: Option<u64>,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (e.g. `127.0.0.1:7069`; port 0 picks
    /// a free one). Off when not given. The address is printed as `metrics: http://…`.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
}

/// A started bootstrap peer.
pub struct Bootstrap {
    /// Its PeerId.
    pub peer_id: libp2p::PeerId,
    /// Its listen addresses, each with `/p2p/<PeerId>`.
    pub listen_addrs: Vec<Multiaddr>,
    /// Counters (dropped messages by reason).
    pub metrics: Metrics,
    shutdown: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
}

impl Bootstrap {
    /// Stops it and waits.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    /// A token that stops it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until stopped through the token.
    pub async fn wait(mut self) {
        self.shutdown.cancelled().await;
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Starts a bootstrap peer with `data_dir` and `listen` addresses, relaying for nodes behind
/// NAT within `relay_limits`.
pub async fn start(
    data_dir: PathBuf,
    listen: Vec<Multiaddr>,
    peers: Vec<Multiaddr>,
    relay_limits: RelayLimits,
) -> Result<Bootstrap> {
    let (identity, _) = NodeIdentity::load_or_create(&data_dir)
        .with_context(|| format!("loading the identity from {}", data_dir.display()))?;
    let metrics = Metrics::for_bootstrap();
    let expected = listen.len();
    let config = NetworkConfig {
        listen,
        bootstrap: peers,
        mdns: false,
        role: Role::Bootstrap,
        kad_server: Some(true),
        redial_interval: Duration::from_secs(30),
        relay_limits,
        ..NetworkConfig::default()
    };
    let (client, mut events, event_loop) = network::new(&identity, config, metrics.clone())?;
    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(event_loop.run(shutdown.clone()));
    let listen_addrs = listen_addrs(&client, expected).await?;

    // The network validates and forwards gossip by itself; the bootstrap peer only has to
    // turn away direct requests meant for nodes.
    let stop = shutdown.clone();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                event = events.recv() => match event {
                    Some(NetworkEvent::Request { id, .. }) => {
                        let refusal = Response::Refused("this is a bootstrap peer; it runs no jobs".into());
                        let _ = client.respond(id, refusal).await;
                    }
                    Some(_) => {}
                    None => break,
                },
            }
        }
    });
    Ok(Bootstrap {
        peer_id: identity.peer_id(),
        listen_addrs,
        metrics,
        shutdown,
        tasks,
    })
}

/// Runs the bootstrap peer until SIGINT or SIGTERM.
pub async fn run(args: Args) -> Result<()> {
    let data_dir = args
        .data_dir
        .or_else(|| {
            distributeai_node::paths::default_data_dir()
                .map(|d| d.with_file_name("distributeai-bootstrap"))
        })
        .context("no data directory: pass --data-dir, or set HOME or XDG_DATA_HOME")?;
    let listen = if args.listen.is_empty() {
        network::default_listen_addrs(4001)
    } else {
        args.listen
    };
    let relay_limits =
        RelayLimits::with_circuit_limits(args.max_circuit_secs, args.max_circuit_kib);
    let bootstrap = start(data_dir, listen, args.peer, relay_limits).await?;
    let metrics_url = match args.metrics {
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("--metrics: cannot listen on {address}"))?;
            let bound = listener
                .local_addr()
                .context("--metrics: the bound address")?;
            let router = distributeai_node::api::metrics_router(bootstrap.metrics.clone());
            let stop = bootstrap.shutdown_token();
            tokio::spawn(async move {
                let served = axum::serve(listener, router)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
                if let Err(e) = served {
                    tracing::warn!(error = %e, "the metrics server stopped");
                }
            });
            Some(format!("http://{bound}/metrics"))
        }
        None => None,
    };
    // Printed for whoever reads it; a closed stdout must not stop (or crash) the peer.
    let _ = print_started(&bootstrap, metrics_url.as_deref());
    let shutdown = bootstrap.shutdown_token();
    tokio::spawn(async move {
        distributeai_node::cli::wait_for_signal().await;
        shutdown.cancel();
    });
    bootstrap.wait().await;
    Ok(())
}

fn print_started(bootstrap: &Bootstrap, metrics_url: Option<&str>) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    writeln!(out, "peer_id: {}", bootstrap.peer_id)?;
    for address in &bootstrap.listen_addrs {
        writeln!(out, "listening on {address}")?;
    }
    if let Some(url) = metrics_url {
        writeln!(out, "metrics: {url}")?;
    }
    writeln!(
        out,
        "nodes join with: distributeai node --bootstrap <one of the addresses above>"
    )?;
    out.flush()
}
