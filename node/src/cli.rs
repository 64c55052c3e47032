//! The `distributeai` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use distributeai_api::{ApiClient, DiscoverySource, PeerView, Reachability, Route};
use distributeai_protocol::{Capabilities, NodeIdentity, PublicKey};
use libp2p::Multiaddr;

use crate::config::FileConfig;
use crate::jobs::{Fault, JobsConfig};
use crate::network::{NetworkConfig, RelayLimits, Role, default_listen_addrs};
use crate::service::{NodeConfig, RunningNode};

/// Default address of the local HTTP API.
pub const DEFAULT_API: &str = "127.0.0.1:7070";

/// DistributeAI: run jobs on a peer-to-peer compute network, verified by k-of-n agreement.
#[derive(Debug, Parser)]
#[command(name = "distributeai", version, about)]
pub struct Cli {
    /// How log lines are written to stderr: `human`, or `json` (one object per line) for
    /// machines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Readable lines, with colour only on a terminal.
    Human,
    /// One JSON object per line (time, level, target, fields, spans).
    Json,
}

/// `distributeai verdict ...`.
#[derive(Debug, Subcommand)]
pub enum VerdictAction {
    /// Re-check a verdict from its evidence, as every node does, and explain each worker's
    /// line: the ledger's entry for a job, or a signed verdict in a file (its CBOR bytes, as
    /// gossiped). Exits non-zero when the verdict is refused.
    Check {
        /// The job whose ledger entry to check.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        job_id: Option<String>,
        /// A file holding a signed verdict's CBOR bytes, held by the ledger or not.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// How to reach the node.
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node: join the mesh, announce this machine, serve the local API.
    Node(NodeArgs),
    /// List the peers the local node knows.
    Peers {
        /// The node's API address.
        #[arg(long, env = "DISTRIBUTEAI_API", default_value = DEFAULT_API)]
        api: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Submit a job to the network through the local node.
    Submit(SubmitArgs),
    /// Show one job: status, bids, executions, votes and verdict.
    Get {
        /// Job id.
        id: String,
        /// How to reach the node.
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List the jobs this node submitted.
    List {
        /// How to reach the node.
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show a job's timeline.
    Logs {
        /// Job id.
        id: String,
        /// How to reach the node.
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Print a job's verified output (stdout), or unpack its /out files with -o.
    Result {
        /// Job id.
        id: String,
        /// Unpack the job's /out files into this folder instead of printing stdout.
        #[arg(short = 'o', long = "output", value_name = "DIR")]
        output: Option<PathBuf>,
        /// How to reach the node.
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Cancel a job: workers stop it.
    Cancel {
        /// Job id.
        id: String,
        /// How to reach the node.
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show the ledger: every identity's reputation and credits, and the summary hash.
    Ledger {
        /// How to reach the node.
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Work with verdicts, the ledger's entries.
    Verdict {
        /// What to do.
        #[command(subcommand)]
        action: VerdictAction,
    },
    /// Show this node: PeerId, addresses, whether it is reachable from the internet (public,
    /// behind NAT, unknown) and the relays it can be reached through.
    Status {
        /// How to reach the node.
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show counts of jobs and work.
    Stats {
        /// How to reach the node.
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The terminal UI: overview, jobs, submit, peers and ledger, live.
    Tui {
        /// The node's API address.
        #[arg(long, env = "DISTRIBUTEAI_API", default_value = DEFAULT_API)]
        api: String,
        /// The node's API token, if its operator created one [default: the one in the default
        /// data directory, if any].
        #[arg(long, env = "DISTRIBUTEAI_API_TOKEN", hide_env_values = true)]
        api_token: Option<String>,
    },
    /// Print the token that lets clients use this node's API from other machines, creating it
    /// (mode 0600 in the data directory) on first use. Once it exists the node requires it.
    ApiToken {
        /// The node's data directory [default: $XDG_DATA_HOME/distributeai].
        #[arg(long, env = "DISTRIBUTEAI_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Show this node's identity (PeerId and public key), creating it on first use.
    Identity {
        /// The node's data directory [default: $XDG_DATA_HOME/distributeai].
        #[arg(long, env = "DISTRIBUTEAI_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// How to reach the local node.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// The node's API address.
    #[arg(long, env = "DISTRIBUTEAI_API", default_value = DEFAULT_API)]
    pub api: String,
    /// The node's API token, if its operator created one [default: the one in the default
    /// data directory, if any].
    #[arg(long, env = "DISTRIBUTEAI_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Print JSON as the API returns it.
    #[arg(long)]
    pub json: bool,
}

/// Options of `distributeai submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// A job spec file (JSON, as in examples/); flags given here override its values.
    #[arg(long, value_name = "SPEC")]
    pub file: Option<PathBuf>,
    /// How many workers run the job (n).
    #[arg(long)]
    pub redundancy: Option<u8>,
    /// How many of them must agree (k).
    #[arg(long)]
    pub consensus: Option<u8>,
    /// CPUs each worker gives the job; fractions allowed (0.5).
    #[arg(long, value_parser = distributeai_protocol::Cpus::parse)]
    pub cpus: Option<distributeai_protocol::Cpus>,
    /// Memory limit in MiB.
    #[arg(long)]
    pub memory_mb: Option<u64>,
    /// Timeout in seconds.
    #[arg(long)]
    pub timeout: Option<u32>,
    /// Credits paid to each agreeing worker.
    #[arg(long)]
    pub reward: Option<u64>,
    /// Wait for the verdict, showing bids, executions and votes; exit non-zero if it fails.
    #[arg(long)]
    pub wait: bool,
    /// How to reach the node.
    #[command(flatten)]
    pub api: ApiArgs,
    /// Container image (unless --file gives one).
    pub image: Option<String>,
    /// Command and arguments, after `--`.
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// Options of `distributeai node`; each may also be set in the config file.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node's data directory [default: $XDG_DATA_HOME/distributeai].
    #[arg(long, env = "DISTRIBUTEAI_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML config file [default: <data dir>/config.toml when it exists].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on (repeatable) [default: TCP and QUIC on port 4001].
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<Multiaddr>,
    /// Bootstrap peer to join through, `/ip4/…/tcp/…/p2p/<PeerId>` (repeatable).
    #[arg(long, value_name = "MULTIADDR")]
    pub bootstrap: Vec<Multiaddr>,
    /// Do not discover peers on the LAN by mDNS.
    #[arg(long)]
    pub no_mdns: bool,
    /// Address of the local HTTP API [default: 127.0.0.1:7070].
    #[arg(long, value_name = "ADDR")]
    pub api: Option<SocketAddr>,
    /// CPUs the jobs running at once may use together [default: all of this machine's but
    /// one, at least one].
    #[arg(long)]
    pub cpus: Option<u32>,
    /// Memory the jobs running at once may use together, in MiB [default: half of this
    /// machine's].
    #[arg(long)]
    pub memory_mb: Option<u64>,
    /// Region label shown to other nodes, e.g. eu-west.
    #[arg(long)]
    pub region: Option<String>,
    /// Do not bid for or run jobs (submit only).
    #[arg(long)]
    pub no_worker: bool,
    /// Act as a Kademlia DHT server (for publicly reachable nodes).
    #[arg(long)]
    pub kad_server: bool,
    /// Relay for nodes behind NAT when this node is found publicly reachable [default: off; a
    /// home node's uplink is its owner's, and bootstrap peers relay already].
    #[arg(long)]
    pub relay_service: bool,
    /// A genesis identity of the network, by PeerId (repeatable): its founders, who count fully
    /// from the start, so others can earn standing and rewards can be paid. Every node of one
    /// network lists the same ones; a network with none pays no rewards.
    #[arg(long, value_name = "PEER_ID")]
    pub genesis: Vec<libp2p::PeerId>,
    /// Do not pull images: run only jobs whose image this machine already holds.
    #[arg(long)]
    pub no_pull: bool,
    /// A registry this worker may pull from, exactly as images name it (`docker.io`,
    /// `ghcr.io`, `registry.example:5000`; repeatable) [default: any on the internet, none on
    /// this machine or its LAN].
    #[arg(long, value_name = "HOST")]
    pub pull_registry: Vec<String>,
    /// Longest a circuit through this node's relay stays open, in seconds [default: 1800].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub max_circuit_secs: Option<u64>,
    /// Most bytes one circuit through this node's relay carries, in KiB [default: 65536].
    #[arg(long, value_name = "KIB", value_parser = clap::value_parser!(u64).range(16..=16_777_216))]
    pub max_circuit_kib: Option<u64>,
    /// FOR TESTS AND DEMOS ONLY: misbehave on purpose (return wrong results, crash mid-job,
    /// or stay silent) to show how the network copes. Never use on a real node.
    #[arg(long, value_enum, value_name = "FAULT")]
    pub simulate_fault: Option<Fault>,
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Node(args) => run_node(args).await,
        Command::Peers { api, json } => peers(&api, json).await,
        Command::Submit(args) => crate::client::submit(args).await,
        Command::Get { id, api } => crate::client::get(&id, &api).await,
        Command::List { api } => crate::client::list(&api).await,
        Command::Logs { id, api } => crate::client::logs(&id, &api).await,
        Command::Result { id, output, api } => crate::client::result(&id, output, &api).await,
        Command::Cancel { id, api } => crate::client::cancel(&id, &api).await,
        Command::Stats { api } => crate::client::stats(&api).await,
        Command::Ledger { api } => crate::client::ledger(&api).await,
        Command::Verdict {
            action: VerdictAction::Check { job_id, file, api },
        } => crate::client::verdict_check(job_id.as_deref(), file.as_deref(), &api).await,
        Command::Status { api } => crate::client::status(&api).await,
        Command::Tui { api, api_token } => {
            distributeai_tui::run(&api, api_token_or_default(api_token)).await
        }
        Command::Identity { data_dir, json } => identity(data_dir, json),
        Command::ApiToken { data_dir } => api_token(data_dir),
    }
}

fn resolve_data_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    let dir = flag
        .or_else(crate::paths::default_data_dir)
        .context("no data directory: pass --data-dir, or set HOME or XDG_DATA_HOME")?;
    // Absolute, so folders handed to Docker and printed to users are unambiguous.
    std::path::absolute(&dir).with_context(|| format!("resolving {}", dir.display()))
}

/// The token given, else the one in the default data directory (where a local node keeps
/// it), if there is one.
pub fn api_token_or_default(given: Option<String>) -> Option<String> {
    given.or_else(|| {
        let dir = crate::paths::default_data_dir()?;
        crate::api_token::load(&dir).ok().flatten()
    })
}

fn api_token(data_dir: Option<PathBuf>) -> Result<()> {
    let data_dir = resolve_data_dir(data_dir)?;
    let (token, created) = crate::api_token::load_or_create(&data_dir)?;
    if created {
        eprintln!(
            "created {}: the node requires this token from its next start",
            data_dir.join(crate::api_token::TOKEN_FILE).display()
        );
    }
    outln!("{token}");
    Ok(())
}

fn identity(data_dir: Option<PathBuf>, json: bool) -> Result<()> {
    let data_dir = resolve_data_dir(data_dir)?;
    let (identity, created) = NodeIdentity::load_or_create(&data_dir)
        .with_context(|| format!("loading the node identity from {}", data_dir.display()))?;
    if json {
        let out = serde_json::json!({
            "peer_id": identity.peer_id().to_string(),
            "public_key": identity.public_key(),
            "data_dir": data_dir,
            "created": created,
        });
        outln!("{out}");
    } else {
        if created {
            eprintln!("created a new identity in {}", data_dir.display());
        }
        outln!("peer_id:    {}", identity.peer_id());
        outln!("public_key: {}", identity.public_key());
    }
    Ok(())
}

/// CPUs a worker offers by default: all but one of the machine's, at least one, so the owner
/// always keeps a core (jobs are held to their share by the kernel's CPU quota).
pub fn default_cpus(host_cpus: u32) -> u32 {
    host_cpus.saturating_sub(1).max(1)
}

/// Memory a worker offers by default (MiB): half the machine's, so the owner's programs keep
/// the other half; the jobs running at once share it (issue 20: a worker offered all of it).
pub fn default_memory_mb(host_memory_mb: u64) -> u64 {
    host_memory_mb / 2
}

/// Merges flags over the config file over defaults.
pub fn node_config(args: NodeArgs) -> Result<NodeConfig> {
    let data_dir = resolve_data_dir(args.data_dir)?;
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::load_default(&data_dir)?,
    };
    let host = crate::host::detect();
    let listen = if !args.listen.is_empty() {
        args.listen
    } else {
        file.listen.unwrap_or_else(|| default_listen_addrs(4001))
    };
    if listen.is_empty() {
        bail!("no listen address: pass --listen or set listen in the config file");
    }
    let mut bootstrap = file.bootstrap.unwrap_or_default();
    bootstrap.extend(args.bootstrap);
    let cpus = args
        .cpus
        .or(file.cpus)
        .unwrap_or_else(|| default_cpus(host.cpus));
    let memory_mb = args
        .memory_mb
        .or(file.memory_mb)
        .unwrap_or_else(|| default_memory_mb(host.memory_mb));
    if cpus > host.cpus {
        bail!(
            "--cpus {cpus} is more than this machine has ({})",
            host.cpus
        );
    }
    if host.memory_mb > 0 && memory_mb > host.memory_mb {
        bail!(
            "--memory-mb {memory_mb} is more than this machine has ({} MiB)",
            host.memory_mb
        );
    }
    let capabilities = Capabilities {
        cpus,
        memory_mb,
        gpus: host.gpus,
        region: args.region.or(file.region).unwrap_or_default(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        images: Vec::new(),
    };
    capabilities
        .check()
        .map_err(|e| anyhow::anyhow!("invalid capabilities: {e}"))?;
    let mut genesis_ids = file.genesis.unwrap_or_default();
    genesis_ids.extend(args.genesis);
    let mut genesis = Vec::with_capacity(genesis_ids.len());
    for peer in genesis_ids {
        let key = PublicKey::from_peer_id(&peer)
            .map_err(|_| anyhow::anyhow!("--genesis {peer}: not the PeerId of an ed25519 key"))?;
        if !genesis.contains(&key) {
            genesis.push(key);
        }
    }
    let api_listen = match args.api.or(file.api) {
        Some(addr) => addr,
        None => DEFAULT_API.parse().context("default API address")?,
    };
    Ok(NodeConfig {
        data_dir,
        network: NetworkConfig {
            listen,
            bootstrap,
            mdns: !args.no_mdns && file.mdns.unwrap_or(true),
            role: Role::Node,
            kad_server: (args.kad_server || file.kad_server == Some(true)).then_some(true),
            relay_service: args.relay_service || file.relay_service == Some(true),
            relay_limits: RelayLimits::with_circuit_limits(
                args.max_circuit_secs,
                args.max_circuit_kib,
            ),
            ..NetworkConfig::default()
        },
        api_listen,
        capabilities,
        worker: !args.no_worker && file.worker.unwrap_or(true),
        announce_interval: Duration::from_secs(30),
        peer_expiry: Duration::from_secs(120),
        ledger_sync_interval: Duration::from_secs(30),
        genesis,
        allow_pull: !args.no_pull && file.pull.unwrap_or(true),
        pull_registries: if args.pull_registry.is_empty() {
            file.pull_registries.unwrap_or_default()
        } else {
            args.pull_registry
        },
        jobs: JobsConfig {
            fault: args.simulate_fault,
            ..JobsConfig::default()
        },
        executor: None,
    })
}

async fn run_node(args: NodeArgs) -> Result<()> {
    let config = node_config(args)?;
    let node = crate::service::start(config)
        .await
        .context("starting the node")?;
    // A node keeps running whoever reads (or stopped reading) what it prints at start.
    if let Err(e) = print_started(&node) {
        tracing::warn!(error = %e, "cannot print the node's addresses");
    }
    let shutdown = node.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    node.wait().await;
    Ok(())
}

fn print_started(node: &RunningNode) -> Result<()> {
    outln!("peer_id: {}", node.peer_id);
    for address in &node.listen_addrs {
        outln!("listening on {address}");
    }
    outln!("api: http://{}", node.api_addr);
    Ok(())
}

/// Logs to stderr in `format`, filtered by `DISTRIBUTEAI_LOG`, else `RUST_LOG` (default:
/// info, libp2p's chatter quieter).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DISTRIBUTEAI_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(
                "info,libp2p_mdns=warn,libp2p_gossipsub=warn,libp2p_kad=error",
            )
        });
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => logs.json().with_current_span(true).init(),
        // Colour codes only for a terminal: in a log file they are noise.
        LogFormat::Human => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// How a peer is connected, in a few characters: `direct/tcp`, `punched/quic` (a direct
/// connection opened by hole punching), `relayed/tcp`, or `no`; and the address it uses.
fn route_text(peer: &PeerView) -> (String, String) {
    // The connection the job flow uses: a direct one when there is one.
    let Some(best) = peer
        .connections
        .iter()
        .find(|c| c.route == Route::Direct)
        .or(peer.connections.first())
    else {
        return ("no".into(), "-".into());
    };
    let kind = match (best.route, best.hole_punched) {
        (Route::Direct, true) => "punched",
        (Route::Direct, false) => "direct",
        (Route::Relayed, _) => "relayed",
    };
    (format!("{kind}/{}", best.transport), best.address.clone())
}

async fn peers(api: &str, json: bool) -> Result<()> {
    let client = ApiClient::new(api);
    let peers = client.peers().await.context("listing peers")?;
    if json {
        // One line: scripts grep it.
        outln!("{}", serde_json::to_string(&peers)?);
        return Ok(());
    }
    let node = client.node().await.context("reading the node")?;
    let relays: Vec<String> = node
        .relays
        .iter()
        .map(|r| {
            let tail = &r.peer_id[r.peer_id.len().saturating_sub(8)..];
            let state = if r.reserved { "" } else { " (asking)" };
            format!("…{tail}{state}")
        })
        .collect();
    let reachability = match node.reachability {
        Reachability::Public => "public",
        Reachability::Private => "private",
        Reachability::Unknown => "unknown",
    };
    outln!(
        "this node: {}, reachability {reachability}{}",
        node.peer_id,
        if relays.is_empty() {
            String::new()
        } else {
            format!(", relays {}", relays.join(", "))
        }
    );
    let now = distributeai_protocol::time::now_ms();
    outln!(
        "{:<54} {:<13} {:<9} {:>4} {:>9} {:<10} {:>6} {:>7} {:<10} ADDRESS",
        "PEER ID",
        "CONNECTION",
        "FOUND BY",
        "CPUS",
        "MEMORY",
        "REGION",
        "REP",
        "CREDITS",
        "LAST SEEN"
    );
    for peer in &peers {
        let caps = peer.capabilities.as_ref();
        let ago = now.saturating_sub(peer.last_seen) / 1000;
        let (route, address) = route_text(peer);
        outln!(
            "{:<54} {:<13} {:<9} {:>4} {:>9} {:<10} {:>6.1} {:>7} {:<10} {}",
            peer.peer_id,
            route,
            peer.source.map_or("-", DiscoverySource::as_str),
            caps.map_or_else(|| "-".into(), |c| c.cpus.to_string()),
            caps.map_or_else(|| "-".into(), |c| format!("{} MiB", c.memory_mb)),
            caps.map(|c| c.region.as_str())
                .filter(|r| !r.is_empty())
                .unwrap_or("-"),
            peer.reputation,
            peer.credits,
            format!("{ago}s ago"),
            address,
        );
    }
    if peers.is_empty() {
        outln!("(no peers yet)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_leaves_the_owner_a_core_and_half_the_memory_by_default() {
        assert_eq!(default_cpus(1), 1);
        assert_eq!(default_cpus(2), 1);
        assert_eq!(default_cpus(8), 7);
        assert_eq!(default_memory_mb(16_384), 8_192);
    }
}
