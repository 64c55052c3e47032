//! The task that owns the swarm: it runs commands from [`super::Client`], verifies everything
//! that arrives, and turns swarm events into [`NetworkEvent`]s.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use distributeai_protocol::time::now_ms;
use distributeai_protocol::validate::short_text;
use distributeai_protocol::{
    Digest, GossipMessage, PublicKey, Request, Response, SignedMessage, ValidationContext,
    ValidationError, VerifiedGossip,
};
use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, DialError, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, Swarm, autonat, dcutr, gossipsub, identify, kad, mdns, relay,
    request_response,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::addresses::{self, Scope};
use super::behaviour::{Behaviour, BehaviourEvent};
use super::relays::{self, Reachability, RelayAction, Relays};
use super::replay::SeenCache;
use super::{
    ConnectedPeer, ConnectionView, DiscoverySource, GOSSIP_TOPIC, InboundRequest, InboundRequestId,
    KAD_PROTOCOL, NetworkConfig, NetworkError, NetworkEvent, NetworkInfo, RelayView, Route,
    VerifiedResponse,
};
use crate::metrics::Metrics;
use distributeai_jobflow::submitter::OpenedReveal;

/// Most peers whose addresses are remembered.
const MAX_ADDRESS_BOOK: usize = 10_000;
/// How long an address that reached the wrong peer (or ourselves) is not dialed again for
/// the peer that announced it.
const BAD_ADDRESS_TTL: Duration = Duration::from_secs(10 * 60);
/// How long a peer dialed to find out whether it relays is not dialed for that again: one
/// dial a minute per missing relay, while short of relays.
const RELAY_PROBE_INTERVAL: Duration = Duration::from_secs(60);
/// The circuit relay v2 hop protocol: a peer that speaks it can relay for us.
const RELAY_HOP_PROTOCOL: libp2p::StreamProtocol =
    libp2p::StreamProtocol::new("/libp2p/circuit/relay/0.2.0/hop");

/// Commands from [`super::Client`].
#[derive(Debug)]
pub(crate) enum Command {
    /// Publish on the gossip topic.
    Publish {
        message: GossipMessage,
        reply: oneshot::Sender<Result<(), NetworkError>>,
    },
    /// Send a direct request.
    Request {
        peer: PeerId,
        request: Request,
        reply: oneshot::Sender<Result<VerifiedResponse, NetworkError>>,
    },
    /// Answer an inbound request.
    Respond {
        id: InboundRequestId,
        response: Response,
    },
    /// Dial an address.
    Dial {
        address: Multiaddr,
        reply: oneshot::Sender<Result<(), NetworkError>>,
    },
    /// Remember addresses of a peer.
    AddAddresses {
        peer: PeerId,
        addresses: Vec<Multiaddr>,
    },
    /// Report our state.
    Info { reply: oneshot::Sender<NetworkInfo> },
    /// How we are connected to a peer right now.
    Route {
        peer: PeerId,
        reply: oneshot::Sender<Option<Route>>,
    },
}

/// A direct request on its way, kept so it can be sent once more when the connection it
/// was on closes or the dial failed on an address we have since dropped.
struct PendingRequest {
    peer: PeerId,
    request: Request,
    retried: bool,
    reply: oneshot::Sender<Result<VerifiedResponse, NetworkError>>,
}

/// One open connection.
struct OpenConnection {
    id: ConnectionId,
    /// The peer's address on it.
    address: Multiaddr,
    relayed: bool,
    outbound: bool,
    /// Opened by hole punching (DCUtR).
    hole_punched: bool,
}

impl OpenConnection {
    fn route(&self) -> Route {
        if self.relayed {
            Route::Relayed
        } else {
            Route::Direct
        }
    }
}

/// How a peer is reached over `connections`: directly when any connection is direct.
fn route_over(connections: &[OpenConnection]) -> Route {
    if connections.iter().any(|c| !c.relayed) {
        Route::Direct
    } else {
        Route::Relayed
    }
}

/// Whether some connection to `peer` is direct.
fn directly_connected(connections: &HashMap<PeerId, Vec<OpenConnection>>, peer: &PeerId) -> bool {
    connections
        .get(peer)
        .is_some_and(|c| route_over(c) == Route::Direct)
}

/// Owns the swarm; run it with [`EventLoop::run`].
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    config: NetworkConfig,
    commands: mpsc::Receiver<Command>,
    events: crate::bounded::Sender<NetworkEvent>,
    metrics: Metrics,
    topic: gossipsub::IdentTopic,
    pending_requests: HashMap<request_response::OutboundRequestId, PendingRequest>,
    inbound: HashMap<InboundRequestId, (PeerId, request_response::ResponseChannel<Response>)>,
    next_inbound: u64,
    sources: HashMap<PeerId, DiscoverySource>,
    /// Where peers can be dialed, from their signed announcements and mDNS, filtered by
    /// [`addresses::dialable_from`]. Direct requests carry these (less `bad_addrs`); what
    /// other behaviours remember of a peer is cleaned when an address proves wrong.
    peer_addrs: HashMap<PeerId, Vec<Multiaddr>>,
    /// Addresses that reached the wrong peer (or us), per peer that announced them, with
    /// when they may be tried again.
    bad_addrs: HashMap<PeerId, HashMap<Multiaddr, Instant>>,
    /// The last reason a dial to a peer failed, to tell users why a request did not arrive.
    dial_errors: HashMap<PeerId, String>,
    bootstrap_peers: HashSet<PeerId>,
    /// Peers mDNS currently sees on the LAN, kept connected by the redial timer.
    lan_peers: HashSet<PeerId>,
    listen_addrs: Vec<Multiaddr>,
    /// Open connections by peer: direct or relayed, on which address.
    connections: HashMap<PeerId, Vec<OpenConnection>>,
    reachability: Reachability,
    relays: Relays,
    /// Relay listeners we closed ourselves (the reservation was given up, not lost).
    released: HashSet<ListenerId>,
    /// Peers with a public address dialed to learn (by identify) whether they relay.
    relay_probes: HashMap<PeerId, Instant>,
    /// Peers whose identify listed the relay hop protocol.
    hop_peers: HashSet<PeerId>,
    /// Peers heard listing other genesis identities than ours (at most [`MAX_ADDRESS_BOOK`]).
    other_genesis: HashSet<PeerId>,
    /// Our genesis tag ([`super::genesis_tag`]); empty on a bootstrap peer.
    genesis_tag: String,
    /// The verdicts our ledger holds.
    held_verdicts: super::KnownVerdicts,
    started: Instant,
    seen: SeenCache,
    /// Direct requests per peer ([`super::rate::Rate::REQUESTS_PER_PEER`]).
    request_rates: super::rate::RateLimiter<PeerId>,
    /// Job announcements and cancels per signer, gossip verdicts per signer.
    job_rates: super::rate::RateLimiter<PublicKey>,
    verdict_rates: super::rate::RateLimiter<PublicKey>,
}

fn peer_of(address: &Multiaddr) -> Option<PeerId> {
    address.iter().find_map(|p| match p {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

fn signer_is(signer: &PublicKey, peer: &PeerId) -> bool {
    signer.peer_id().is_ok_and(|p| p == *peer)
}

fn gossip_parts(message: &VerifiedGossip) -> (&'static str, PublicKey, Digest) {
    match message {
        VerifiedGossip::Node(m) => (kind_name(&m.envelope), m.signer, m.envelope.content_id()),
        VerifiedGossip::Job(m) => (kind_name(&m.envelope), m.signer, m.envelope.content_id()),
        VerifiedGossip::Cancel(m) => (kind_name(&m.envelope), m.signer, m.envelope.content_id()),
        VerifiedGossip::Verdict(m) => (kind_name(&m.envelope), m.signer, m.envelope.content_id()),
    }
}

fn kind_name<T: SignedMessage>(_: &distributeai_protocol::Signed<T>) -> &'static str {
    T::KIND.name()
}

impl EventLoop {
    pub(super) fn new(
        mut swarm: Swarm<Behaviour>,
        config: NetworkConfig,
        commands: mpsc::Receiver<Command>,
        events: crate::bounded::Sender<NetworkEvent>,
        metrics: Metrics,
    ) -> Result<Self, NetworkError> {
        let mut relays = Relays::default();
        for address in &config.listen {
            if addresses::is_relayed(address) {
                // Listening through a named relay: it becomes a relay we reserve on as soon
                // as we are connected to it, like a bootstrap peer.
                let relay_address = addresses::relay_part(address);
                let relay = peer_of(&relay_address).ok_or_else(|| {
                    NetworkError::Setup(format!(
                        "relay address {address} must name the relay with /p2p/<PeerId>"
                    ))
                })?;
                relays.add_candidate(relay, relay_address, true);
                continue;
            }
            swarm
                .listen_on(address.clone())
                .map_err(|e| NetworkError::Setup(format!("cannot listen on {address}: {e}")))?;
        }
        let mut bootstrap_peers = HashSet::new();
        for address in &config.bootstrap {
            match peer_of(address) {
                Some(peer) => {
                    bootstrap_peers.insert(peer);
                    swarm
                        .behaviour_mut()
                        .kademlia
                        .add_address(&peer, address.clone());
                }
                None => {
                    warn!(%address, "bootstrap address has no /p2p/<PeerId>; dialing it anyway")
                }
            }
        }
        let window = 2 * distributeai_protocol::limits::MAX_CLOCK_SKEW_MS;
        // A bootstrap peer is public by definition: people join through its address.
        let genesis_tag = config.genesis_tag.clone();
        let held_verdicts = config.held_verdicts.clone();
        let reachability = if config.role == super::Role::Bootstrap {
            Reachability::Public
        } else {
            Reachability::Unknown
        };
        Ok(Self {
            swarm,
            config,
            commands,
            events,
            metrics,
            topic: gossipsub::IdentTopic::new(GOSSIP_TOPIC),
            pending_requests: HashMap::new(),
            inbound: HashMap::new(),
            next_inbound: 0,
            sources: HashMap::new(),
            peer_addrs: HashMap::new(),
            bad_addrs: HashMap::new(),
            dial_errors: HashMap::new(),
            bootstrap_peers,
            lan_peers: HashSet::new(),
            listen_addrs: Vec::new(),
            connections: HashMap::new(),
            reachability,
            relays,
            released: HashSet::new(),
            relay_probes: HashMap::new(),
            hop_peers: HashSet::new(),
            other_genesis: HashSet::new(),
            genesis_tag,
            held_verdicts,
            started: Instant::now(),
            seen: SeenCache::new(window, 200_000),
            // More buckets than connections allowed: a peer being limited keeps its bucket.
            request_rates: super::rate::RateLimiter::new(
                super::rate::Rate::REQUESTS_PER_PEER,
                4_096,
            ),
            // About 1 MB each at most.
            job_rates: super::rate::RateLimiter::new(super::rate::Rate::JOBS_PER_SIGNER, 16_384),
            verdict_rates: super::rate::RateLimiter::new(
                super::rate::Rate::VERDICTS_PER_SIGNER,
                16_384,
            ),
        })
    }

    /// Runs until `shutdown` fires or every [`super::Client`] is dropped.
    pub async fn run(mut self, shutdown: CancellationToken) {
        self.dial_bootstrap_peers();
        let mut redial = tokio::time::interval(self.config.redial_interval);
        redial.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break,
                },
                _ = redial.tick() => {
                    self.redial_if_isolated();
                    self.on_tick();
                    let lan_peers: Vec<PeerId> = self.lan_peers.iter().copied().collect();
                    for peer in lan_peers {
                        self.dial_lan_peer(peer);
                    }
                }
            }
        }
        debug!("network task stopped");
    }

    /// Addresses of relays named in `--listen …/p2p-circuit`, dialed like bootstrap peers.
    fn named_relays(&self) -> Vec<Multiaddr> {
        self.config
            .listen
            .iter()
            .filter(|a| addresses::is_relayed(a))
            .map(addresses::relay_part)
            .collect()
    }

    fn dial_bootstrap_peers(&mut self) {
        let relays: Vec<Multiaddr> = self
            .named_relays()
            .into_iter()
            .filter(|a| peer_of(a).is_some_and(|p| !self.swarm.is_connected(&p)))
            .collect();
        for address in self.config.bootstrap.iter().cloned().chain(relays) {
            if let Err(e) = self.swarm.dial(address.clone()) {
                warn!(%address, error = %e, "cannot dial bootstrap peer");
            }
        }
        if !self.bootstrap_peers.is_empty() {
            // Fills the routing table; fails only when no peer is known, which we just added.
            let _ = self.swarm.behaviour_mut().kademlia.bootstrap();
        }
    }

    fn redial_if_isolated(&mut self) {
        let connected_to_bootstrap = self
            .bootstrap_peers
            .iter()
            .any(|p| self.swarm.is_connected(p));
        let relay_missing = self
            .named_relays()
            .iter()
            .any(|a| peer_of(a).is_some_and(|p| !self.swarm.is_connected(&p)));
        if (!self.config.bootstrap.is_empty() && !connected_to_bootstrap) || relay_missing {
            debug!("not connected to any bootstrap peer or relay; dialing them again");
            self.dial_bootstrap_peers();
        }
    }

    /// Every timer tick: forget old bad addresses, keep relay reservations, drop relayed
    /// connections that a direct one has replaced.
    fn on_tick(&mut self) {
        let now = Instant::now();
        self.bad_addrs.retain(|_, addrs| {
            addrs.retain(|_, until| *until > now);
            !addrs.is_empty()
        });
        self.plan_relays();
        self.seek_relays();
        let peers: Vec<PeerId> = self.connections.keys().copied().collect();
        for peer in peers {
            self.close_relayed_if_idle(peer);
        }
    }

    /// Short of relays while not known to be public: dial a few peers that announced a public
    /// address. Nobody else may have connected us to them; once connected, identify says
    /// whether they relay ([`Self::on_identify`]), and they become candidates.
    fn seek_relays(&mut self) {
        let held = self.relays.reservations().count();
        if self.reachability == Reachability::Public || held >= relays::WANTED_RELAYS {
            return;
        }
        // Peers that relay and that we reach directly become candidates once their signed
        // announcement shows a public address and no circuit address (a node that is not
        // public keeps its reservations): identify may have run before AutoNAT confirmed
        // that address, and tells no one when it does.
        let promote: Vec<(PeerId, Multiaddr)> = self
            .hop_peers
            .iter()
            .filter(|p| !self.relays.is_candidate(p) && self.has_direct_connection(p))
            .filter_map(|p| {
                let announced = self.peer_addrs.get(p)?;
                if announced.iter().any(addresses::is_relayed) {
                    return None;
                }
                let public = announced
                    .iter()
                    .find(|a| addresses::scope(a) == Scope::Public)?;
                Some((*p, crate::service::with_peer_id(public, *p)))
            })
            .collect();
        if !promote.is_empty() {
            for (peer, address) in promote {
                debug!(%peer, %address, "a public node offers to relay");
                self.relays.add_candidate(peer, address, false);
            }
            self.plan_relays();
            if self.relays.reservations().count() >= relays::WANTED_RELAYS {
                return;
            }
        }
        let held = self.relays.reservations().count();
        let now = Instant::now();
        self.relay_probes
            .retain(|_, at| now.duration_since(*at) < RELAY_PROBE_INTERVAL);
        let picks: Vec<(PeerId, Vec<Multiaddr>)> = self
            .peer_addrs
            .iter()
            // A peer we reach only through a relay (it dialed our circuit address) may still
            // relay for us once we dial it directly.
            .filter(|(p, _)| {
                !self.has_direct_connection(p)
                    && !self.relay_probes.contains_key(p)
                    && !self.relays.is_candidate(p)
            })
            .filter_map(|(p, addrs)| {
                let public: Vec<Multiaddr> = addrs
                    .iter()
                    .filter(|a| addresses::scope(a) == Scope::Public)
                    .cloned()
                    .collect();
                (!public.is_empty()).then_some((*p, public))
            })
            .take(relays::WANTED_RELAYS - held)
            .collect();
        for (peer, public) in picks {
            debug!(%peer, "dialing a public peer to see whether it relays");
            self.relay_probes.insert(peer, now);
            // Always: a hole-punch attempt to the same peer may be under way (it dialed our
            // circuit address), and with a public peer that attempt cannot succeed; an
            // ordinary dial beside it can.
            let dial = DialOpts::peer_id(peer)
                .condition(libp2p::swarm::dial_opts::PeerCondition::Always)
                .addresses(public)
                .build();
            if let Err(e) = self.swarm.dial(dial) {
                debug!(%peer, error = %e, "cannot dial a possible relay");
                self.relay_probes.remove(&peer);
            }
        }
    }

    fn has_direct_connection(&self, peer: &PeerId) -> bool {
        directly_connected(&self.connections, peer)
    }

    /// Reserves relay slots while we are not known to be public; gives them up once we are.
    fn plan_relays(&mut self) {
        let connections = &self.connections;
        let actions = self.relays.plan(
            self.reachability,
            |p| directly_connected(connections, p),
            Instant::now(),
        );
        for action in actions {
            match action {
                RelayAction::Reserve { relay, address } => {
                    match self.swarm.listen_on(address.clone()) {
                        Ok(listener) => {
                            debug!(%relay, %address, "asking for a relay reservation");
                            self.relays.on_listening(relay, address, listener);
                        }
                        Err(e) => warn!(%address, error = %e, "cannot listen through relay"),
                    }
                }
                RelayAction::Release(listener) => {
                    self.released.insert(listener);
                    self.swarm.remove_listener(listener);
                }
            }
        }
    }

    /// Once a direct connection to `peer` exists, its relayed connections only cost the relay
    /// bandwidth and make requests take the slow path (request-response spreads requests over
    /// all connections). They are closed when no exchange with the peer is under way, so no
    /// request in flight is lost; the next tick tries again otherwise.
    fn close_relayed_if_idle(&mut self, peer: PeerId) {
        let Some(connections) = self.connections.get(&peer) else {
            return;
        };
        if route_over(connections) == Route::Relayed || !connections.iter().any(|c| c.relayed) {
            return;
        }
        let busy = self.pending_requests.values().any(|p| p.peer == peer)
            || self.inbound.values().any(|(p, _)| *p == peer);
        if busy {
            return;
        }
        let relayed: Vec<ConnectionId> = connections
            .iter()
            .filter(|c| c.relayed)
            .map(|c| c.id)
            .collect();
        for id in relayed {
            debug!(%peer, "closing a relayed connection: a direct one exists");
            self.swarm.close_connection(id);
        }
    }

    /// The addresses of `peer` worth dialing: announced or found on the LAN, less those that
    /// reached the wrong peer.
    fn dial_addresses(&self, peer: &PeerId) -> Vec<Multiaddr> {
        let bad = self.bad_addrs.get(peer);
        self.peer_addrs
            .get(peer)
            .map(|addrs| {
                addrs
                    .iter()
                    .filter(|a| !bad.is_some_and(|b| b.contains_key(*a)))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Drops an address that answered as another peer (or as ourselves) from everything that
    /// dials `peer`, so the dials that follow try only the others.
    fn drop_bad_address(&mut self, peer: PeerId, address: &Multiaddr, why: &str) {
        let address = addresses::endpoint(address);
        info!(%peer, %address, why, "not dialing this address of the peer again");
        self.metrics.nat("pruned_address", why);
        if let Some(addrs) = self.peer_addrs.get_mut(&peer) {
            addrs.retain(|a| *a != address);
        }
        self.swarm
            .behaviour_mut()
            .kademlia
            .remove_address(&peer, &address);
        // Request-response keeps the addresses other behaviours report (identify's among
        // them) and drops only those that failed at the transport, not a wrong peer's.
        #[allow(deprecated)]
        self.swarm
            .behaviour_mut()
            .request_response
            .remove_address(&peer, &address);
        let entry = self.bad_addrs.entry(peer).or_default();
        if entry.len() < 64 {
            entry.insert(address, Instant::now() + BAD_ADDRESS_TTL);
        }
    }

    /// Dials a LAN peer found by mDNS unless connected. Both sides of a LAN usually find each
    /// other in the same instant and dial at once; reusing the listen port for that would make
    /// a TCP simultaneous open, where both ends act as the noise initiator and both dials
    /// fail. A fresh port gives two ordinary connections instead.
    fn dial_lan_peer(&mut self, peer: PeerId) {
        if self.swarm.is_connected(&peer) {
            return;
        }
        let addresses = self.peer_addrs.get(&peer).cloned().unwrap_or_default();
        let dial = DialOpts::peer_id(peer)
            .addresses(addresses)
            .allocate_new_port()
            .build();
        if let Err(e) = self.swarm.dial(dial) {
            debug!(%peer, error = %e, "cannot dial mDNS peer");
        }
    }

    fn emit(&mut self, event: NetworkEvent) {
        if let Err(crate::bounded::TrySendError::Full(event)) = self.events.try_send(event) {
            // The node is not keeping up (the queue holds its count or its bytes); dropping is
            // better than stalling the swarm.
            let kind = match event {
                NetworkEvent::Gossip { .. } => "gossip",
                NetworkEvent::Request { .. } => "request",
                _ => "event",
            };
            self.metrics.dropped(kind, "node_busy");
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { message, reply } => {
                let result = message
                    .encode()
                    .map_err(|e| NetworkError::Publish(e.to_string()))
                    .and_then(|bytes| {
                        self.swarm
                            .behaviour_mut()
                            .gossipsub
                            .publish(self.topic.clone(), bytes)
                            .map(|_| ())
                            .map_err(|e| NetworkError::Publish(e.to_string()))
                    });
                let _ = reply.send(result);
            }
            Command::Request {
                peer,
                request,
                reply,
            } => {
                self.send_request(PendingRequest {
                    peer,
                    request,
                    retried: false,
                    reply,
                });
            }
            Command::Respond { id, response } => {
                if let Some((peer, channel)) = self.inbound.remove(&id) {
                    if self
                        .swarm
                        .behaviour_mut()
                        .request_response
                        .send_response(channel, response)
                        .is_err()
                    {
                        debug!("the requester went away before our response");
                    }
                    self.close_relayed_if_idle(peer);
                }
            }
            Command::Dial { address, reply } => {
                if let Some(peer) = peer_of(&address) {
                    self.note_source(peer, DiscoverySource::Dialed);
                }
                let result = self
                    .swarm
                    .dial(address)
                    .map_err(|e| NetworkError::Dial(e.to_string()));
                let _ = reply.send(result);
            }
            Command::AddAddresses { peer, addresses } => {
                if peer == *self.swarm.local_peer_id() {
                    return;
                }
                self.note_source(peer, DiscoverySource::Gossip);
                // Only what we could plausibly reach: a remote node's loopback address would
                // dial ourselves, another LAN's private address someone else.
                let own = self.own_addresses();
                let addresses: Vec<Multiaddr> = addresses
                    .into_iter()
                    .filter(|a| addresses::dialable_from(a, &own))
                    .collect();
                for address in &addresses {
                    self.swarm.add_peer_address(peer, address.clone());
                }
                // An announcement lists all current addresses: it replaces what we had, so
                // addresses a restarted node no longer uses are not dialed again.
                if self.peer_addrs.len() < MAX_ADDRESS_BOOK || self.peer_addrs.contains_key(&peer) {
                    self.peer_addrs.insert(peer, addresses);
                }
            }
            Command::Info { reply } => {
                let _ = reply.send(self.info());
            }
            Command::Route { peer, reply } => {
                let route = self.connections.get(&peer).map(|c| route_over(c));
                let _ = reply.send(route);
            }
        }
    }

    /// The addresses we listen on, as peers' addresses are judged against them.
    fn own_addresses(&self) -> Vec<Multiaddr> {
        self.listen_addrs
            .iter()
            .filter(|a| !addresses::is_relayed(a))
            .cloned()
            .collect()
    }

    fn send_request(&mut self, pending: PendingRequest) {
        let addresses = self.dial_addresses(&pending.peer);
        let id = self
            .swarm
            .behaviour_mut()
            .request_response
            .send_request_with_addresses(&pending.peer, pending.request.clone(), addresses);
        self.pending_requests.insert(id, pending);
    }

    /// Records that `peer` was met through `source`, keeping the most telling source; tells
    /// the node when that changes what a connected peer shows.
    fn note_source(&mut self, peer: PeerId, source: DiscoverySource) {
        let current = self.sources.get(&peer).copied();
        let kept = crate::network::prefer_source(current, source);
        if current == Some(kept) {
            return;
        }
        if self.sources.len() >= MAX_ADDRESS_BOOK && current.is_none() {
            return;
        }
        self.sources.insert(peer, kept);
        if current.is_some() && self.swarm.is_connected(&peer) {
            self.emit(NetworkEvent::PeerSource { peer, source: kept });
        }
    }

    fn info(&self) -> NetworkInfo {
        let external: Vec<Multiaddr> = self.swarm.external_addresses().cloned().collect();
        let connected = self
            .connections
            .iter()
            .map(|(peer, connections)| ConnectedPeer {
                peer_id: *peer,
                route: route_over(connections),
                connections: connections
                    .iter()
                    .map(|c| ConnectionView {
                        route: c.route(),
                        transport: addresses::transport_name(&c.address).to_string(),
                        address: c.address.to_string(),
                        direction: if c.outbound { "outbound" } else { "inbound" }.to_string(),
                        hole_punched: c.hole_punched,
                    })
                    .collect(),
                source: self
                    .sources
                    .get(peer)
                    .copied()
                    .unwrap_or(DiscoverySource::Inbound),
            })
            .collect();
        NetworkInfo {
            peer_id: *self.swarm.local_peer_id(),
            listen_addrs: self.listen_addrs.clone(),
            announced_addrs: addresses::announced(
                &self.listen_addrs,
                &external,
                distributeai_protocol::limits::MAX_LISTEN_ADDRS,
            ),
            external_addrs: external,
            reachability: self.reachability,
            relays: self
                .relays
                .reservations()
                .map(|(peer, r)| RelayView {
                    peer_id: *peer,
                    address: r.address.clone(),
                    reserved: r.accepted,
                })
                .collect(),
            connected,
        }
    }

    /// Counts the event in libp2p's own metrics (`libp2p_*`).
    fn record_libp2p_metrics(&self, event: &SwarmEvent<BehaviourEvent>) {
        use libp2p::metrics::Recorder;
        let recorder = self.metrics.libp2p();
        match event {
            SwarmEvent::Behaviour(behaviour) => match behaviour {
                BehaviourEvent::Gossipsub(e) => recorder.record(e),
                BehaviourEvent::Kademlia(e) => recorder.record(e),
                BehaviourEvent::Identify(e) => recorder.record(e),
                BehaviourEvent::Ping(e) => recorder.record(e),
                BehaviourEvent::RelayServer(e) => recorder.record(e),
                BehaviourEvent::Dcutr(e) => recorder.record(e),
                _ => {}
            },
            other => recorder.record(other),
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.record_libp2p_metrics(&event);
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                if self.config.role == super::Role::Bootstrap && self.confirms_itself(&address) {
                    // A bootstrap peer is reachable at the addresses it listens on by
                    // definition; confirming them lets it serve Kademlia and relay
                    // reservations, which libp2p offers only with known external addresses.
                    self.swarm.add_external_address(address.clone());
                }
                self.listen_addrs.push(address);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| *a != address);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => self.on_connection_established(
                peer_id,
                connection_id,
                &endpoint,
                num_established.get(),
            ),
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                if let Some(connections) = self.connections.get_mut(&peer_id) {
                    connections.retain(|c| c.id != connection_id);
                    if connections.is_empty() {
                        self.connections.remove(&peer_id);
                    }
                }
                self.update_connection_metrics();
                if num_established == 0 {
                    self.emit(NetworkEvent::PeerDisconnected { peer: peer_id });
                    if self.relays.reservation(&peer_id).is_some() {
                        // Its listener closes too; a new relay is chosen on that event.
                        debug!(relay = %peer_id, "lost the connection to a relay");
                    }
                }
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                self.listen_addrs.retain(|a| !addresses.contains(a));
                let released = self.released.remove(&listener_id);
                match self
                    .relays
                    .on_listener_closed(listener_id, released, Instant::now())
                {
                    Some(relay) if released => {
                        info!(%relay, "gave up the relay reservation: this node is publicly reachable")
                    }
                    Some(relay) => {
                        self.metrics.nat("relay_reservation", "lost");
                        info!(%relay, ?reason, "relay reservation ended; choosing a relay again");
                        self.plan_relays();
                    }
                    None => warn!(?addresses, ?reason, "a listener closed"),
                }
            }
            SwarmEvent::ListenerError { error, .. } => warn!(%error, "listener error"),
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                self.on_dial_error(peer_id, &error);
            }
            SwarmEvent::IncomingConnectionError {
                error: libp2p::swarm::ListenError::Denied { cause },
                send_back_addr,
                ..
            } => {
                let over_limit = cause
                    .downcast_ref::<libp2p::connection_limits::Exceeded>()
                    .is_some()
                    || cause
                        .downcast_ref::<libp2p::memory_connection_limits::MemoryUsageLimitExceeded>(
                        )
                        .is_some();
                if over_limit {
                    self.metrics.dropped("connection", "limit");
                    debug!(%send_back_addr, %cause, "denied a connection over the limits");
                }
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                info!(%address, "reachable from outside at this address");
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                debug!(%address, "external address expired");
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    /// Whether a bootstrap peer confirms a listen address as its own external address: not a
    /// loopback one, unless it listens on loopback alone (a network on one machine).
    fn confirms_itself(&self, address: &Multiaddr) -> bool {
        addresses::scope(address) != Scope::Loopback
            || self
                .config
                .listen
                .iter()
                .all(|a| addresses::scope(a) == Scope::Loopback)
    }

    fn update_connection_metrics(&self) {
        self.metrics
            .set_connected_peers(self.swarm.connected_peers().count());
        let relayed = self
            .connections
            .values()
            .filter(|c| route_over(c) == Route::Relayed)
            .count();
        self.metrics.set_relayed_peers(relayed);
    }

    fn on_connection_established(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        endpoint: &ConnectedPoint,
        num_established: u32,
    ) {
        let relayed = endpoint.is_relayed();
        // An inbound circuit's remote address is only `/p2p/<peer>`; the circuit address we
        // listen on says which relay carries it.
        let address = match endpoint {
            ConnectedPoint::Listener { local_addr, .. } if relayed => local_addr.clone(),
            _ => endpoint.get_remote_address().clone(),
        };
        let outbound = endpoint.is_dialer();
        self.connections
            .entry(peer_id)
            .or_default()
            .push(OpenConnection {
                id: connection_id,
                address: address.clone(),
                relayed,
                outbound,
                hole_punched: false,
            });
        self.dial_errors.remove(&peer_id);
        self.update_connection_metrics();
        if !relayed && self.bootstrap_peers.contains(&peer_id) {
            // A bootstrap peer relays for us; reserve through the address we reached it on.
            if let Some(relay_address) = self.bootstrap_address_of(peer_id, &address, outbound) {
                self.relays.add_candidate(peer_id, relay_address, true);
            }
        }
        if !relayed {
            self.plan_relays();
            self.close_relayed_if_idle(peer_id);
        }
        if num_established != 1 {
            debug!(%peer_id, %address, relayed, "another connection");
            return;
        }
        let source = if self.bootstrap_peers.contains(&peer_id) {
            DiscoverySource::Bootstrap
        } else if let Some(source) = self.sources.get(&peer_id) {
            *source
        } else if !outbound {
            DiscoverySource::Inbound
        } else {
            DiscoverySource::Dialed
        };
        self.sources.insert(peer_id, source);
        debug!(%peer_id, ?source, %address, relayed, "connected");
        let observed = if relayed {
            None
        } else {
            address.iter().find_map(|p| match p {
                Protocol::Ip4(ip) => Some(std::net::IpAddr::V4(ip)),
                Protocol::Ip6(ip) => Some(std::net::IpAddr::V6(ip)),
                _ => None,
            })
        };
        self.emit(NetworkEvent::PeerConnected {
            peer: peer_id,
            source,
            observed,
        });
    }

    /// The address to reserve a relay slot through on bootstrap peer `peer`: the configured
    /// one we dialed, with its `/p2p/<PeerId>`.
    fn bootstrap_address_of(
        &self,
        peer: PeerId,
        connected_on: &Multiaddr,
        outbound: bool,
    ) -> Option<Multiaddr> {
        let configured = || {
            self.config
                .bootstrap
                .iter()
                .chain(self.named_relays().iter())
                .find(|a| peer_of(a) == Some(peer))
                .cloned()
        };
        if outbound {
            let with_id = crate::service::with_peer_id(connected_on, peer);
            Some(with_id)
        } else {
            configured()
        }
    }

    fn on_dial_error(&mut self, peer_id: Option<PeerId>, error: &DialError) {
        let Some(peer) = peer_id else {
            debug!(%error, "outgoing connection failed");
            return;
        };
        match error {
            DialError::WrongPeerId { obtained, address } => {
                debug!(%peer, %obtained, %address, "address answered as another peer");
                self.drop_bad_address(peer, address, "wrong_peer");
            }
            DialError::LocalPeerId { address } => {
                self.drop_bad_address(peer, address, "own_address");
            }
            _ => debug!(%peer, %error, "outgoing connection failed"),
        }
        let summary = dial_error_summary(error);
        if self.dial_errors.len() < MAX_ADDRESS_BOOK || self.dial_errors.contains_key(&peer) {
            self.dial_errors.insert(peer, summary);
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => self.on_gossip(propagation_source, message_id, message),
            BehaviourEvent::RequestResponse(event) => self.on_request_response(event),
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                self.on_identify(peer_id, &info)
            }
            BehaviourEvent::Autonat(autonat::Event::StatusChanged { old, new }) => {
                self.on_nat_status(&old, &new)
            }
            BehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                ..
            }) => {
                self.relays.on_accepted(relay_peer_id);
                if !renewal {
                    self.metrics.nat("relay_reservation", "success");
                    info!(relay = %relay_peer_id, "reserved a relay slot: peers can reach this node through it");
                }
            }
            BehaviourEvent::RelayClient(event) => debug!(?event, "relay client"),
            BehaviourEvent::RelayServer(event) => debug!(?event, "relay server"),
            BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            }) => self.on_hole_punch(remote_peer_id, result),
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                let mut found_peers = HashSet::new();
                for (peer, address) in found {
                    if peer == *self.swarm.local_peer_id() {
                        continue;
                    }
                    self.note_source(peer, DiscoverySource::Mdns);
                    self.swarm.add_peer_address(peer, address.clone());
                    if self.peer_addrs.len() < MAX_ADDRESS_BOOK
                        || self.peer_addrs.contains_key(&peer)
                    {
                        let known = self.peer_addrs.entry(peer).or_default();
                        if !known.contains(&address) && known.len() < 32 {
                            known.push(address.clone());
                        }
                    }
                    if self.lan_peers.len() < MAX_ADDRESS_BOOK {
                        self.lan_peers.insert(peer);
                    }
                    found_peers.insert(peer);
                }
                for peer in found_peers {
                    self.dial_lan_peer(peer);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Expired(expired)) => {
                for (peer, _) in expired {
                    self.lan_peers.remove(&peer);
                }
            }
            BehaviourEvent::Kademlia(kad::Event::RoutingUpdated {
                peer, is_new_peer, ..
            }) if is_new_peer => {
                self.note_source(peer, DiscoverySource::Dht);
            }
            _ => {}
        }
    }

    fn on_identify(&mut self, peer: PeerId, info: &identify::Info) {
        if let Some(theirs) = super::genesis_tag_of(&info.agent_version)
            && !self.genesis_tag.is_empty()
            && theirs != self.genesis_tag
            && !self.other_genesis.contains(&peer)
            && self.other_genesis.len() < MAX_ADDRESS_BOOK
        {
            self.other_genesis.insert(peer);
            self.metrics
                .set_other_genesis_peers(self.other_genesis.len());
            warn!(
                %peer,
                ours = %self.genesis_tag,
                theirs = %theirs.chars().take(16).collect::<String>(),
                "this peer lists other genesis identities (--genesis): its reputation and \
                 credits will differ from ours; every node of one network must list the same"
            );
        }
        let own = self.own_addresses();
        let usable: Vec<Multiaddr> = info
            .listen_addrs
            .iter()
            .filter(|a| addresses::dialable_from(a, &own))
            .cloned()
            .collect();
        if info.protocols.contains(&KAD_PROTOCOL) {
            for address in &usable {
                self.swarm
                    .behaviour_mut()
                    .kademlia
                    .add_address(&peer, address.clone());
            }
        }
        // A public node that relays: it speaks the hop protocol, tells a public address (our
        // nodes tell only confirmed external addresses, so a node behind NAT tells circuit
        // addresses alone), and we reach it directly. It can also judge our reachability
        // (AutoNAT server). Circuit addresses beside the public one are fine: a node keeps
        // its reservations until AutoNAT finds it public, and identify's push can still
        // carry them.
        let speaks_hop = info.protocols.contains(&RELAY_HOP_PROTOCOL);
        if speaks_hop && self.hop_peers.len() < MAX_ADDRESS_BOOK {
            self.hop_peers.insert(peer);
        }
        let offers_relay = speaks_hop && self.has_direct_connection(&peer);
        let public = usable
            .iter()
            .find(|a| addresses::scope(a) == Scope::Public)
            .cloned();
        let bootstrap = self.bootstrap_peers.contains(&peer);
        if let Some(public) = public.filter(|_| offers_relay || bootstrap) {
            self.swarm
                .behaviour_mut()
                .autonat
                .add_server(peer, Some(public.clone()));
            if !bootstrap && !self.relays.is_candidate(&peer) {
                debug!(%peer, address = %public, "a public node offers to relay");
                self.relays
                    .add_candidate(peer, crate::service::with_peer_id(&public, peer), false);
                self.plan_relays();
            }
        } else if bootstrap {
            // A bootstrap peer on a LAN or on this machine still judges us for that network.
            let address = self
                .connections
                .get(&peer)
                .and_then(|c| c.iter().find(|c| !c.relayed))
                .map(|c| c.address.clone());
            self.swarm.behaviour_mut().autonat.add_server(peer, address);
        }
    }

    fn on_nat_status(&mut self, old: &autonat::NatStatus, new: &autonat::NatStatus) {
        if self.config.role == super::Role::Bootstrap {
            return;
        }
        let reachability = match new {
            autonat::NatStatus::Public(_) => Reachability::Public,
            autonat::NatStatus::Private => Reachability::Private,
            autonat::NatStatus::Unknown => Reachability::Unknown,
        };
        match new {
            autonat::NatStatus::Public(address) => {
                info!(%address, "AutoNAT: this node is publicly reachable")
            }
            autonat::NatStatus::Private => {
                info!("AutoNAT: this node is behind NAT; peers reach it through relays")
            }
            autonat::NatStatus::Unknown => debug!(?old, "AutoNAT: reachability unknown"),
        }
        self.reachability = reachability;
        self.plan_relays();
    }

    fn on_hole_punch(&mut self, peer: PeerId, result: Result<ConnectionId, dcutr::Error>) {
        match result {
            Ok(connection) => {
                self.metrics.nat("hole_punch", "success");
                if let Some(opened) = self
                    .connections
                    .get_mut(&peer)
                    .and_then(|c| c.iter_mut().find(|c| c.id == connection))
                {
                    opened.hole_punched = true;
                }
                info!(
                    %peer,
                    since_start_ms = self.started.elapsed().as_millis() as u64,
                    "hole punched: direct connection to a peer behind NAT"
                );
                self.close_relayed_if_idle(peer);
            }
            Err(error) => {
                self.metrics.nat("hole_punch", "failure");
                info!(%peer, %error, "hole punching failed; the connection stays relayed");
            }
        }
    }

    fn on_request_failed(
        &mut self,
        pending: PendingRequest,
        error: &request_response::OutboundFailure,
    ) {
        use request_response::OutboundFailure;
        let peer = pending.peer;
        // A circuit that ran out of time or bytes, a relayed connection closed for a direct
        // one, or a dial that hit an address we have dropped since: one more try.
        let worth_retrying = match error {
            OutboundFailure::ConnectionClosed => true,
            OutboundFailure::DialFailure => !self.dial_addresses(&peer).is_empty(),
            _ => false,
        };
        if worth_retrying && !pending.retried {
            debug!(%peer, %error, "request failed in transit; sending it again");
            self.send_request(PendingRequest {
                retried: true,
                ..pending
            });
            return;
        }
        let reason = match (error, self.dial_errors.get(&peer)) {
            (OutboundFailure::DialFailure, Some(why)) => format!("cannot reach the peer: {why}"),
            (OutboundFailure::DialFailure, None) => {
                "cannot reach the peer: none of its announced addresses is reachable from here"
                    .to_string()
            }
            _ => error.to_string(),
        };
        let _ = pending
            .reply
            .send(Err(NetworkError::Request { peer, reason }));
        self.close_relayed_if_idle(peer);
    }

    fn on_gossip(
        &mut self,
        propagation_source: PeerId,
        message_id: gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
        let now = now_ms();
        // Recognised before any signature is checked: a verdict the ledger holds, or a message
        // accepted within the replay window (marked seen only once accepted below, so a copy
        // with a bad signature or the wrong author cannot shadow the real one).
        let decoded = GossipMessage::decode(&message.data);
        if let Ok(decoded) = &decoded {
            let id = decoded.content_id();
            let known = if matches!(decoded, GossipMessage::Verdict(_))
                && self.held_verdicts.contains(&id)
            {
                Some("held")
            } else if self.seen.contains(&id, now) {
                Some("replayed")
            } else {
                None
            };
            // Per signer, once the outer signature (one check) shows who signed: a verdict's
            // evidence costs up to ~260 more, a job may become a bid held in memory.
            let known = known.or_else(|| {
                let limited = match decoded {
                    GossipMessage::Job(m) => m
                        .verify_signature()
                        .is_ok()
                        .then(|| self.job_rates.allow(&m.signer(), now)),
                    GossipMessage::Cancel(m) => m
                        .verify_signature()
                        .is_ok()
                        .then(|| self.job_rates.allow(&m.signer(), now)),
                    GossipMessage::Verdict(m) => m
                        .verify_signature()
                        .is_ok()
                        .then(|| self.verdict_rates.allow(&m.signer(), now)),
                    GossipMessage::Node(_) => None,
                };
                (limited == Some(false)).then_some("rate_limited")
            });
            if let Some(reason) = known {
                self.metrics.dropped("gossip", reason);
                debug!(%propagation_source, reason, "ignored gossip already known");
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(
                        &message_id,
                        &propagation_source,
                        gossipsub::MessageAcceptance::Ignore,
                    );
                return;
            }
        }
        let acceptance = match decoded.and_then(|m| m.verify(&ValidationContext::live_at(now))) {
            Ok(verified) => {
                let (kind, signer, content_id) = gossip_parts(&verified);
                let author = message.source;
                if !author.is_some_and(|a| signer_is(&signer, &a)) {
                    self.drop_gossip(
                        &propagation_source,
                        "inconsistent",
                        "signer is not the gossip author",
                    );
                    gossipsub::MessageAcceptance::Reject
                } else if !self.seen.first_sighting(content_id, now) {
                    self.metrics.dropped("gossip", "replayed");
                    debug!(%propagation_source, kind, "dropped replayed gossip");
                    gossipsub::MessageAcceptance::Ignore
                } else {
                    self.metrics.accepted(kind);
                    if let Some(author) = author {
                        self.emit(NetworkEvent::Gossip {
                            author,
                            message: verified,
                        });
                    }
                    gossipsub::MessageAcceptance::Accept
                }
            }
            Err(error) => {
                self.drop_gossip(&propagation_source, error.reason(), &error.to_string());
                gossipsub::MessageAcceptance::Reject
            }
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&message_id, &propagation_source, acceptance);
    }

    fn drop_gossip(&self, from: &PeerId, reason: &str, detail: &str) {
        self.metrics.dropped("gossip", reason);
        debug!(%from, reason, detail, "dropped gossip message");
    }

    fn on_request_response(&mut self, event: request_response::Event<Request, Response>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { channel, .. }
                    if !self.request_rates.allow(&peer, now_ms()) =>
                {
                    self.metrics.dropped("request", "rate_limited");
                    debug!(%peer, "refused a request over the peer's rate");
                    let _ = self.swarm.behaviour_mut().request_response.send_response(
                        channel,
                        Response::Refused("rate limited: too many requests from this peer".into()),
                    );
                }
                request_response::Message::Request {
                    request, channel, ..
                } => match verify_request(&peer, request) {
                    Ok(request) => {
                        let id = InboundRequestId(self.next_inbound);
                        self.next_inbound += 1;
                        self.inbound.insert(id, (peer, channel));
                        self.metrics.accepted("request");
                        self.emit(NetworkEvent::Request { peer, request, id });
                    }
                    Err(error) => {
                        self.metrics.dropped("request", error.reason());
                        if matches!(error.reason(), "from_future" | "stale") {
                            // Either clock may be wrong; the operator should hear of it.
                            warn!(%peer, %error, "refused a direct request");
                        } else {
                            debug!(%peer, %error, "refused direct request");
                        }
                        let _ = self.swarm.behaviour_mut().request_response.send_response(
                            channel,
                            Response::Refused(short_text(&error.to_string())),
                        );
                    }
                },
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(pending) = self.pending_requests.remove(&request_id) {
                        let peer = pending.peer;
                        let verified = verify_response(&peer, response).map_err(|error| {
                            self.metrics.dropped("response", error.reason());
                            NetworkError::InvalidResponse {
                                peer,
                                reason: error.to_string(),
                            }
                        });
                        let _ = pending.reply.send(verified);
                        self.close_relayed_if_idle(peer);
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(pending) = self.pending_requests.remove(&request_id) {
                    self.on_request_failed(pending, &error);
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}

/// One line saying why a dial failed, for logs and for request errors users see.
fn dial_error_summary(error: &DialError) -> String {
    match error {
        DialError::Transport(errors) if !errors.is_empty() => {
            let parts: Vec<String> = errors
                .iter()
                .take(4)
                .map(|(address, e)| {
                    let mut text = e.to_string();
                    if let Some(source) = std::error::Error::source(e) {
                        text = format!("{text}: {source}");
                    }
                    format!("{address}: {text}")
                })
                .collect();
            let more = errors.len().saturating_sub(4);
            let tail = if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            };
            format!("every address failed: {}{tail}", parts.join("; "))
        }
        DialError::NoAddresses => "no address of it is known that we can reach".into(),
        other => other.to_string(),
    }
}

/// Opens the signed part of a request and checks it was signed by the peer that sent it.
fn verify_request(peer: &PeerId, request: Request) -> Result<InboundRequest, ValidationError> {
    let ctx = ValidationContext::live();
    let from_peer = |signer: &PublicKey| {
        if signer_is(signer, peer) {
            Ok(())
        } else {
            Err(ValidationError::WrongSigner(
                "request is not signed by the peer that sent it",
            ))
        }
    };
    Ok(match request {
        Request::Bid(m) => {
            let v = m.open(&ctx)?;
            from_peer(&v.signer)?;
            InboundRequest::Bid(v)
        }
        Request::Assign(m) => {
            let v = m.open(&ctx)?;
            from_peer(&v.signer)?;
            InboundRequest::Assign(v)
        }
        Request::Commit(m) => {
            let v = m.open(&ctx)?;
            from_peer(&v.signer)?;
            InboundRequest::Commit(v)
        }
        Request::Reveal { job_id, attempt } => InboundRequest::Reveal { job_id, attempt },
        Request::FetchOutput {
            job_id,
            offset,
            max_bytes,
        } => InboundRequest::FetchOutput {
            job_id,
            offset,
            max_bytes,
        },
        Request::LedgerSync(sync) => InboundRequest::LedgerSync(sync),
        Request::Invite(m) => {
            let v = m.open(&ctx)?;
            from_peer(&v.signer)?;
            InboundRequest::Invite(v)
        }
    })
}

/// Opens the signed part of a response and checks it was signed by the peer that sent it.
fn verify_response(peer: &PeerId, response: Response) -> Result<VerifiedResponse, ValidationError> {
    Ok(match response {
        Response::Ack => VerifiedResponse::Ack,
        Response::Refused(reason) => VerifiedResponse::Refused(reason),
        Response::Busy => VerifiedResponse::Busy,
        Response::Accepted(m) => {
            let v = m.open(&ValidationContext::live())?;
            if !signer_is(&v.signer, peer) {
                return Err(ValidationError::WrongSigner(
                    "acceptance is not signed by the peer that sent it",
                ));
            }
            VerifiedResponse::Accepted(Box::new(v))
        }
        Response::Reveal(answer) => {
            let reveal = answer.open(&ValidationContext::live())?;
            if !signer_is(&reveal.signer, peer) {
                return Err(ValidationError::WrongSigner(
                    "reveal is not signed by the peer that sent it",
                ));
            }
            VerifiedResponse::Reveal(Box::new(OpenedReveal {
                reveal,
                manifest: answer.manifest,
                diagnostics: answer.diagnostics,
            }))
        }
        Response::Output(chunk) => VerifiedResponse::Output(chunk),
        Response::Ledger(batch) => VerifiedResponse::Ledger(batch),
    })
}
