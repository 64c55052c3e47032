//! The task that owns the swarm: it runs commands from [`super::Client`], verifies everything
//! that arrives, and turns swarm events into [`NetworkEvent`]s.

use std::collections::{HashMap, HashSet};

use distributeai_protocol::time::now_ms;
use distributeai_protocol::validate::short_text;
use distributeai_protocol::{
    Digest, GossipMessage, PublicKey, Request, Response, SignedMessage, ValidationContext,
    ValidationError, VerifiedGossip,
};
use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identify, kad, mdns, request_response};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::behaviour::{Behaviour, BehaviourEvent};
use super::replay::SeenCache;
use super::{
    ConnectedPeer, DiscoverySource, GOSSIP_TOPIC, InboundRequest, InboundRequestId, KAD_PROTOCOL,
    NetworkConfig, NetworkError, NetworkEvent, NetworkInfo, VerifiedResponse,
};
use crate::metrics::Metrics;

/// Most peers whose addresses are remembered.
const MAX_ADDRESS_BOOK: usize = 10_000;

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
}

/// Owns the swarm; run it with [`EventLoop::run`].
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    config: NetworkConfig,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetworkEvent>,
    metrics: Metrics,
    topic: gossipsub::IdentTopic,
    pending_requests: HashMap<
        request_response::OutboundRequestId,
        (
            PeerId,
            oneshot::Sender<Result<VerifiedResponse, NetworkError>>,
        ),
    >,
    inbound: HashMap<InboundRequestId, request_response::ResponseChannel<Response>>,
    next_inbound: u64,
    sources: HashMap<PeerId, DiscoverySource>,
    /// Where peers can be dialed, from their signed announcements and mDNS. libp2p's own
    /// behaviours keep no addresses handed to `Swarm::add_peer_address`, so direct requests
    /// carry these.
    peer_addrs: HashMap<PeerId, Vec<Multiaddr>>,
    bootstrap_peers: HashSet<PeerId>,
    /// Peers mDNS currently sees on the LAN, kept connected by the redial timer.
    lan_peers: HashSet<PeerId>,
    listen_addrs: Vec<Multiaddr>,
    /// Listening through relays (`…/p2p/<relay>/p2p-circuit`): each is (re)opened once a
    /// connection to its relay exists, since a reservation rides on that connection.
    relay_listens: Vec<RelayListen>,
    seen: SeenCache,
}

struct RelayListen {
    address: Multiaddr,
    relay: PeerId,
    listener: Option<libp2p::core::transport::ListenerId>,
}

fn peer_of(address: &Multiaddr) -> Option<PeerId> {
    address.iter().find_map(|p| match p {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

/// The relay's own address: everything before `/p2p-circuit`.
fn relay_dial_address(circuit: &Multiaddr) -> Multiaddr {
    circuit
        .iter()
        .take_while(|p| !matches!(p, Protocol::P2pCircuit))
        .collect()
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
        events: mpsc::Sender<NetworkEvent>,
        metrics: Metrics,
    ) -> Result<Self, NetworkError> {
        let mut relay_listens = Vec::new();
        for address in &config.listen {
            if address.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
                let relay = peer_of(address).ok_or_else(|| {
                    NetworkError::Setup(format!(
                        "relay address {address} must name the relay with /p2p/<PeerId>"
                    ))
                })?;
                swarm.add_peer_address(relay, address.clone());
                relay_listens.push(RelayListen {
                    address: address.clone(),
                    relay,
                    listener: None,
                });
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
            bootstrap_peers,
            lan_peers: HashSet::new(),
            listen_addrs: Vec::new(),
            relay_listens,
            seen: SeenCache::new(window, 200_000),
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
                    let lan_peers: Vec<PeerId> = self.lan_peers.iter().copied().collect();
                    for peer in lan_peers {
                        self.dial_lan_peer(peer);
                    }
                }
            }
        }
        debug!("network task stopped");
    }

    fn dial_bootstrap_peers(&mut self) {
        let relays: Vec<Multiaddr> = self
            .relay_listens
            .iter()
            .filter(|r| r.listener.is_none() && !self.swarm.is_connected(&r.relay))
            .map(|r| relay_dial_address(&r.address))
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
        let relay_missing = self.relay_listens.iter().any(|r| r.listener.is_none());
        if (!self.config.bootstrap.is_empty() && !connected_to_bootstrap) || relay_missing {
            debug!("not connected to any bootstrap peer or relay; dialing them again");
            self.dial_bootstrap_peers();
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

    /// Opens the relay listeners that go through `peer`, now that we are connected to it.
    fn listen_through_relay(&mut self, peer: PeerId) {
        for relay in self
            .relay_listens
            .iter_mut()
            .filter(|r| r.relay == peer && r.listener.is_none())
        {
            match self.swarm.listen_on(relay.address.clone()) {
                Ok(id) => relay.listener = Some(id),
                Err(e) => {
                    warn!(address = %relay.address, error = %e, "cannot listen through relay")
                }
            }
        }
    }

    fn emit(&mut self, event: NetworkEvent) {
        if let Err(mpsc::error::TrySendError::Full(event)) = self.events.try_send(event) {
            // The node is not keeping up; dropping is better than stalling the swarm.
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
                let addresses = self.peer_addrs.get(&peer).cloned().unwrap_or_default();
                let id = self
                    .swarm
                    .behaviour_mut()
                    .request_response
                    .send_request_with_addresses(&peer, request, addresses);
                self.pending_requests.insert(id, (peer, reply));
            }
            Command::Respond { id, response } => {
                if let Some(channel) = self.inbound.remove(&id)
                    && self
                        .swarm
                        .behaviour_mut()
                        .request_response
                        .send_response(channel, response)
                        .is_err()
                {
                    debug!("the requester went away before our response");
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
        }
    }

    /// Records that `peer` was met through `source`, keeping the most telling source; tells
    /// the node when that changes what a connected peer shows.
    fn note_source(&mut self, peer: PeerId, source: DiscoverySource) {
        let current = self.sources.get(&peer).copied();
        let kept = DiscoverySource::prefer(current, source);
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
        let mut connected: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
        for peer in self.swarm.connected_peers() {
            connected.entry(*peer).or_default();
        }
        NetworkInfo {
            peer_id: *self.swarm.local_peer_id(),
            listen_addrs: self.listen_addrs.clone(),
            connected: connected
                .into_keys()
                .map(|peer| ConnectedPeer {
                    peer_id: peer,
                    addresses: Vec::new(),
                    source: self
                        .sources
                        .get(&peer)
                        .copied()
                        .unwrap_or(DiscoverySource::Inbound),
                })
                .collect(),
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                if self.config.role == super::Role::Bootstrap {
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
                endpoint,
                num_established,
                ..
            } if num_established.get() == 1 => {
                let source = if self.bootstrap_peers.contains(&peer_id) {
                    DiscoverySource::Bootstrap
                } else if let Some(source) = self.sources.get(&peer_id) {
                    *source
                } else if matches!(endpoint, ConnectedPoint::Listener { .. }) {
                    DiscoverySource::Inbound
                } else {
                    DiscoverySource::Dialed
                };
                self.sources.insert(peer_id, source);
                debug!(%peer_id, ?source, "connected");
                self.listen_through_relay(peer_id);
                self.metrics
                    .set_connected_peers(self.swarm.connected_peers().count());
                self.emit(NetworkEvent::PeerConnected {
                    peer: peer_id,
                    source,
                });
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.metrics
                    .set_connected_peers(self.swarm.connected_peers().count());
                self.emit(NetworkEvent::PeerDisconnected { peer: peer_id });
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                self.listen_addrs.retain(|a| !addresses.contains(a));
                match self
                    .relay_listens
                    .iter_mut()
                    .find(|r| r.listener == Some(listener_id))
                {
                    Some(relay) => {
                        // The relay went away or refused; reopened when we reconnect to it.
                        debug!(address = %relay.address, ?reason, "relay listener closed");
                        relay.listener = None;
                    }
                    None => warn!(?addresses, ?reason, "a listener closed"),
                }
            }
            SwarmEvent::ListenerError { error, .. } => warn!(%error, "listener error"),
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(?peer_id, %error, "outgoing connection failed");
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
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
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })
                if info.protocols.contains(&KAD_PROTOCOL) =>
            {
                for address in &info.listen_addrs {
                    self.swarm
                        .behaviour_mut()
                        .kademlia
                        .add_address(&peer_id, address.clone());
                }
            }
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

    fn on_gossip(
        &mut self,
        propagation_source: PeerId,
        message_id: gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
        let now = now_ms();
        let acceptance =
            match GossipMessage::decode_verified(&message.data, &ValidationContext::live_at(now)) {
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
                request_response::Message::Request {
                    request, channel, ..
                } => match verify_request(&peer, request) {
                    Ok(request) => {
                        let id = InboundRequestId(self.next_inbound);
                        self.next_inbound += 1;
                        self.inbound.insert(id, channel);
                        self.metrics.accepted("request");
                        self.emit(NetworkEvent::Request { peer, request, id });
                    }
                    Err(error) => {
                        self.metrics.dropped("request", error.reason());
                        debug!(%peer, %error, "refused direct request");
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
                    if let Some((peer, reply)) = self.pending_requests.remove(&request_id) {
                        let verified = verify_response(&peer, response).map_err(|error| {
                            self.metrics.dropped("response", error.reason());
                            NetworkError::InvalidResponse {
                                peer,
                                reason: error.to_string(),
                            }
                        });
                        let _ = reply.send(verified);
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((_, reply)) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Err(NetworkError::Request {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
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
        Request::FetchOutput { job_id, offset } => InboundRequest::FetchOutput { job_id, offset },
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
        Response::Reveal(m) => {
            let v = m.open(&ValidationContext::live())?;
            if !signer_is(&v.signer, peer) {
                return Err(ValidationError::WrongSigner(
                    "reveal is not signed by the peer that sent it",
                ));
            }
            VerifiedResponse::Reveal(Box::new(v))
        }
        Response::Output(chunk) => VerifiedResponse::Output(chunk),
        Response::Ledger(batch) => VerifiedResponse::Ledger(batch),
    })
}
