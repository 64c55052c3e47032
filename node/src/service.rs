//! A running node: starts the network, the local API and the service loop that keeps the
//! peer table and announces this node, and stops them all cleanly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use distributeai_protocol::limits::MAX_ANNOUNCED_LINKS;
use distributeai_protocol::time::{TimestampMs, now_ms};
use distributeai_protocol::{
    Capabilities, GossipMessage, IdentityError, NodeAnnouncement, NodeIdentity, PeerLink,
    PublicKey, Signed, VerifiedGossip,
};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::executor::docker::SandboxLimits;
use crate::executor::{DockerExecutor, DockerExecutorConfig, Executor};
use crate::jobs::{JobMsg, JobsConfig, JobsHandle};
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::network::{self, Client, NetworkConfig, NetworkError, NetworkEvent, Role, Route};
use crate::peers::{AnnouncementOutcome, PeerTable};
use crate::store::{Store, StoreError};

/// Everything a node needs to start.
#[derive(Clone)]
pub struct NodeConfig {
    /// Where the identity and state live.
    pub data_dir: PathBuf,
    /// Mesh settings.
    pub network: NetworkConfig,
    /// Address of the local HTTP API.
    pub api_listen: SocketAddr,
    /// What this node offers to jobs.
    pub capabilities: Capabilities,
    /// Whether this node bids for jobs.
    pub worker: bool,
    /// How often the node re-announces itself.
    pub announce_interval: Duration,
    /// Disconnected peers silent for this long are forgotten.
    pub peer_expiry: Duration,
    /// How often the ledger is compared with peers.
    pub ledger_sync_interval: Duration,
    /// The network's genesis identities (its founders, who count fully from the start;
    /// `distributeai_verifier::reputation::GENESIS_HISTORY`). Every node of one network must
    /// list the same ones, or their standings differ.
    pub genesis: Vec<PublicKey>,
    /// Whether this worker pulls images it lacks (`--no-pull` turns it off).
    pub allow_pull: bool,
    /// Registries it may pull from; empty: any on the internet, none on this machine or its
    /// LAN (`crate::executor::registry`).
    pub pull_registries: Vec<String>,
    /// Job-flow tunables (and the simulated fault, for tests and demos).
    pub jobs: JobsConfig,
    /// The executor to run jobs with; `None` connects to the local Docker engine.
    pub executor: Option<Arc<dyn Executor>>,
}

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConfig")
            .field("data_dir", &self.data_dir)
            .field("network", &self.network)
            .field("api_listen", &self.api_listen)
            .field("worker", &self.worker)
            .field("jobs", &self.jobs)
            .finish_non_exhaustive()
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The identity could not be loaded or created.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The network could not start.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The API token could not be read.
    #[error(transparent)]
    ApiToken(#[from] crate::api_token::TokenError),
    /// The API would be reachable from other machines with no token to guard it.
    #[error(
        "the API would listen on {addr}, reachable from other machines, and this node has no \
         API token: create one with `distributeai api-token --data-dir {data_dir}` (clients \
         then send it as `Authorization: Bearer <token>`), or listen on 127.0.0.1"
    )]
    ApiExposed {
        /// The address.
        addr: SocketAddr,
        /// The node's data directory.
        data_dir: String,
    },
    /// The API address could not be bound.
    #[error("cannot listen for the API on {addr}: {source}")]
    Api {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// State the API reads.
#[derive(Debug)]
pub struct SharedState {
    /// Our PeerId.
    pub peer_id: PeerId,
    /// Our public key, as the ledger knows us.
    pub public_key: distributeai_protocol::PublicKey,
    /// When the node started.
    pub started: Instant,
    /// Node or bootstrap.
    pub role: Role,
    /// Whether we bid for jobs.
    pub worker: bool,
    /// What we offer.
    pub capabilities: Capabilities,
    /// Known peers.
    pub peers: Arc<RwLock<PeerTable>>,
    /// The job flow.
    pub jobs: JobsHandle,
    /// The ledger.
    pub ledger: Arc<RwLock<Ledger>>,
    /// Changes to jobs and peers, for `GET /api/v1/events`.
    pub events: tokio::sync::broadcast::Sender<crate::api::ApiEvent>,
    /// Counters.
    pub metrics: Metrics,
    /// The network handle.
    pub network: Client,
    /// The API's bearer token, required on every route but `/healthz`, `/metrics` and the
    /// page's files once the operator created one (`crate::api_token`).
    pub api_token: Option<String>,
    /// Every bound on what strangers can make this node hold or do (`crate::budgets`).
    pub budgets: Vec<distributeai_api::BudgetView>,
}

/// A started node; [`RunningNode::stop`] shuts it down.
pub struct RunningNode {
    /// Our PeerId.
    pub peer_id: PeerId,
    /// Where the API listens.
    pub api_addr: SocketAddr,
    /// Where the mesh listens, each with `/p2p/<PeerId>`.
    pub listen_addrs: Vec<Multiaddr>,
    /// State shared with the API.
    pub state: Arc<SharedState>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl RunningNode {
    /// The network handle.
    pub fn network(&self) -> &Client {
        &self.state.network
    }

    /// A token that stops the node when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops every task and waits for them.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Waits until the node is stopped through its shutdown token.
    pub async fn wait(mut self) {
        self.shutdown.cancelled().await;
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Appends `/p2p/<peer>` to a listen address, the form users paste into `--bootstrap`.
pub fn with_peer_id(address: &Multiaddr, peer: PeerId) -> Multiaddr {
    if address.iter().any(|p| matches!(p, Protocol::P2p(_))) {
        address.clone()
    } else {
        address.clone().with(Protocol::P2p(peer))
    }
}

/// Waits (bounded) for the swarm to report its listen addresses.
pub async fn listen_addrs(
    client: &Client,
    expected: usize,
) -> Result<Vec<Multiaddr>, NetworkError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = client.info().await?;
        if info.listen_addrs.len() >= expected.max(1) || Instant::now() > deadline {
            return Ok(info
                .listen_addrs
                .iter()
                .map(|a| with_peer_id(a, info.peer_id))
                .collect());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts a node: identity, network, API and service loop.
pub async fn start(mut config: NodeConfig) -> Result<RunningNode, StartError> {
    let (identity, created) = NodeIdentity::load_or_create(&config.data_dir)?;
    let api_token = crate::api_token::load(&config.data_dir)?;
    if api_token.is_none() && !config.api_listen.ip().is_loopback() {
        return Err(StartError::ApiExposed {
            addr: config.api_listen,
            data_dir: config.data_dir.display().to_string(),
        });
    }
    let store = Store::open(&config.data_dir)?;
    let held_verdicts = crate::network::KnownVerdicts::default();
    let ledger = Arc::new(RwLock::new(Ledger::open(
        store.clone(),
        config.genesis.iter().copied().collect(),
        held_verdicts.clone(),
    )?));
    let (api_events, _) = tokio::sync::broadcast::channel(256);
    let executor = if config.worker {
        worker_executor(&mut config, &identity).await
    } else {
        None
    };
    if created {
        info!(data_dir = %config.data_dir.display(), "created a new node identity");
    }
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();

    let (client, events, event_loop) = network::new(
        &identity,
        NetworkConfig {
            genesis_tag: network::genesis_tag(&config.genesis),
            held_verdicts,
            ..config.network.clone()
        },
        metrics.clone(),
    )?;
    tasks.spawn(event_loop.run(shutdown.clone()));
    let listen_addrs = listen_addrs(&client, config.network.listen.len()).await?;

    let peers = Arc::new(RwLock::new(PeerTable::new(
        u64::try_from(config.peer_expiry.as_millis()).unwrap_or(u64::MAX),
    )));
    let output_quota = executor.as_ref().map(|e| e.output_quota());
    let jobs_config = JobsConfig {
        worker: config.worker,
        offered_cpus_millis: config.capabilities.cpus.saturating_mul(1000),
        offered_memory_mb: config.capabilities.memory_mb,
        ..config.jobs.clone()
    };
    let jobs = crate::jobs::spawn(
        crate::jobs::Parts {
            identity: identity.clone(),
            network: client.clone(),
            store,
            executor,
            config: jobs_config,
            peers: peers.clone(),
            ledger: ledger.clone(),
            metrics: metrics.clone(),
            data_dir: config.data_dir.clone(),
            events: api_events.clone(),
        },
        &mut tasks,
        shutdown.clone(),
    )?;
    let (sync_trigger, sync_requests) = mpsc::channel(64);
    tasks.spawn(crate::ledger::run_refresh(ledger.clone(), shutdown.clone()));
    tasks.spawn(crate::ledger::run_sync(
        client.clone(),
        ledger.clone(),
        peers.clone(),
        metrics.clone(),
        sync_requests,
        config.ledger_sync_interval,
        shutdown.clone(),
    ));
    let budgets = crate::budgets::of(&config, api_token.is_some(), output_quota);
    for b in &budgets {
        metrics.set_budget(&b.name, b.value);
    }
    let state = Arc::new(SharedState {
        peer_id: identity.peer_id(),
        public_key: identity.public_key(),
        started: Instant::now(),
        role: config.network.role,
        worker: config.worker,
        capabilities: config.capabilities.clone(),
        peers,
        jobs,
        ledger,
        events: api_events,
        metrics,
        network: client,
        api_token,
        budgets,
    });

    let listener = TcpListener::bind(config.api_listen)
        .await
        .map_err(|source| StartError::Api {
            addr: config.api_listen,
            source,
        })?;
    let api_addr = listener.local_addr().map_err(|source| StartError::Api {
        addr: config.api_listen,
        source,
    })?;
    tasks.spawn(crate::api::serve(listener, state.clone(), shutdown.clone()));

    let service = Service {
        identity,
        config,
        state: state.clone(),
        sequence: now_ms(),
        started_at: now_ms(),
        sync_trigger,
    };
    tasks.spawn(service.run(events, shutdown.clone()));

    Ok(RunningNode {
        peer_id: state.peer_id,
        api_addr,
        listen_addrs,
        state,
        shutdown,
        tasks,
    })
}

/// The executor a worker runs jobs with: the given one, or Docker. Without a usable engine
/// the node announces that it takes no jobs rather than bid and fail.
async fn worker_executor(
    config: &mut NodeConfig,
    identity: &NodeIdentity,
) -> Option<Arc<dyn Executor>> {
    if let Some(executor) = config.executor.clone() {
        return Some(executor);
    }
    let docker_config = DockerExecutorConfig {
        work_dir: config.data_dir.join("work"),
        node_id: identity.peer_id().to_string(),
        limits: SandboxLimits {
            max_cpus: config.capabilities.cpus.max(1),
            max_memory_mb: config.capabilities.memory_mb,
            gpus: u32::try_from(config.capabilities.gpus.len()).unwrap_or(0),
            allow_pull: config.allow_pull,
            registries: crate::executor::registry::RegistryPolicy {
                allowed: config.pull_registries.clone(),
            },
            ..SandboxLimits::default()
        },
    };
    match DockerExecutor::connect(docker_config).await {
        Ok(executor) => {
            match crate::executor::docker::local_images(executor.docker()).await {
                Ok(images) => config.capabilities.images = images,
                Err(e) => warn!(error = %e, "cannot list local images"),
            }
            Some(Arc::new(executor))
        }
        Err(e) => {
            warn!(error = %e, "no usable Docker engine: this node will not run jobs");
            config.worker = false;
            None
        }
    }
}

/// The node's own loop over network events and timers.
struct Service {
    identity: NodeIdentity,
    config: NodeConfig,
    state: Arc<SharedState>,
    sequence: u64,
    /// When this run began, announced so peers can tell we restarted.
    started_at: TimestampMs,
    sync_trigger: mpsc::Sender<()>,
}

/// Soonest an extra announcement follows the previous one.
const MIN_ANNOUNCE_GAP: Duration = Duration::from_secs(2);
/// Delay after a new connection before announcing, so the peer's gossip subscription is known.
const ANNOUNCE_AFTER_CONNECT: Duration = Duration::from_millis(1500);

impl Service {
    async fn run(
        mut self,
        mut events: crate::bounded::Receiver<NetworkEvent>,
        shutdown: CancellationToken,
    ) {
        let mut next_announce = tokio::time::Instant::now() + ANNOUNCE_AFTER_CONNECT;
        let mut last_announce = tokio::time::Instant::now() - MIN_ANNOUNCE_GAP;
        let mut expire = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                event = events.recv() => match event {
                    Some(event) => {
                        if let Some(soon) = self.on_event(event).await {
                            let earliest = last_announce + MIN_ANNOUNCE_GAP;
                            next_announce = next_announce.min((tokio::time::Instant::now() + soon).max(earliest));
                        }
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(next_announce) => {
                    self.announce().await;
                    last_announce = tokio::time::Instant::now();
                    next_announce = last_announce + self.config.announce_interval;
                }
                _ = expire.tick() => self.expire_peers(),
            }
        }
    }

    /// Handles one event; returns a delay after which to announce ourselves, if one is due.
    async fn on_event(&mut self, event: NetworkEvent) -> Option<Duration> {
        let now = now_ms();
        match event {
            NetworkEvent::Gossip { author, message } => match message {
                VerifiedGossip::Node(announcement) => {
                    let outcome =
                        self.write_peers(|t| t.on_announcement(author, &announcement, now));
                    let addresses = announcement
                        .message
                        .listen_addrs
                        .iter()
                        .filter_map(|a| a.parse().ok())
                        .collect();
                    if self
                        .state
                        .network
                        .add_peer_addresses(author, addresses)
                        .await
                        .is_err()
                    {
                        return None;
                    }
                    // A peer we had never heard from, or one that restarted, may not know where
                    // we are: introduce ourselves.
                    matches!(
                        outcome,
                        AnnouncementOutcome::New | AnnouncementOutcome::Restarted
                    )
                    .then_some(Duration::ZERO)
                }
                message => {
                    self.state
                        .jobs
                        .forward(JobMsg::Gossip { author, message })
                        .await;
                    None
                }
            },
            NetworkEvent::Request { peer, request, id } => {
                self.state
                    .jobs
                    .forward(JobMsg::Request { peer, request, id })
                    .await;
                None
            }
            NetworkEvent::PeerConnected {
                peer,
                source,
                observed,
            } => {
                self.write_peers(|t| t.on_connected(peer, source, observed, now));
                let _ = self.sync_trigger.try_send(());
                Some(ANNOUNCE_AFTER_CONNECT)
            }
            NetworkEvent::PeerSource { peer, source } => {
                self.write_peers(|t| t.on_source(peer, source));
                None
            }
            NetworkEvent::PeerDisconnected { peer } => {
                self.write_peers(|t| t.on_disconnected(peer, now));
                self.state
                    .jobs
                    .forward(JobMsg::PeerDisconnected { peer })
                    .await;
                None
            }
        }
    }

    /// Changes the peer table, then tells API clients it changed.
    fn write_peers<T>(&self, f: impl FnOnce(&mut PeerTable) -> T) -> T {
        let mut table = self
            .state
            .peers
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let result = f(&mut table);
        self.state.metrics.set_known_peers(table.len());
        drop(table);
        let _ = self.state.events.send(crate::api::ApiEvent::Peers);
        result
    }

    fn expire_peers(&self) {
        // Runs every few seconds: only a table that actually lost peers is worth an event.
        let expired = {
            let mut table = self.state.peers.write().unwrap_or_else(|p| p.into_inner());
            let expired = table.expire(now_ms());
            self.state.metrics.set_known_peers(table.len());
            expired
        };
        if !expired.is_empty() {
            let _ = self.state.events.send(crate::api::ApiEvent::Peers);
        }
        for peer in expired {
            debug!(%peer, "peer went silent; forgotten");
        }
    }

    async fn announce(&mut self) {
        let Ok(info) = self.state.network.info().await else {
            return;
        };
        self.sequence = self.sequence.max(now_ms()).saturating_add(1);
        let announcement = NodeAnnouncement {
            capabilities: self.config.capabilities.clone(),
            // Only what peers can plausibly reach: confirmed external and relay addresses, LAN
            // addresses, loopback only on a network of one machine.
            listen_addrs: info.announced_addrs.iter().map(|a| a.to_string()).collect(),
            accepts_jobs: self.config.worker,
            issued_at: now_ms(),
            started_at: self.started_at,
            sequence: self.sequence,
            links: info
                .connected
                .iter()
                .take(MAX_ANNOUNCED_LINKS)
                .map(|c| PeerLink {
                    peer: c.peer_id.to_string(),
                    relayed: c.route == Route::Relayed,
                })
                .collect(),
        };
        let signed = match Signed::sign(&self.identity, &announcement) {
            Ok(signed) => signed,
            Err(e) => {
                warn!(error = %e, "cannot sign our announcement");
                return;
            }
        };
        match self
            .state
            .network
            .publish(GossipMessage::Node(signed))
            .await
        {
            Ok(()) => debug!(sequence = self.sequence, "announced ourselves"),
            // Normal while no peer has subscribed yet; the next tick retries.
            Err(e) => debug!(error = %e, "announcement not published"),
        }
    }
}
