//! The mesh: one task owns the libp2p `Swarm`; the rest of the node talks to it through a
//! cloneable [`Client`] and hears from it through a stream of [`NetworkEvent`]s.
//!
//! libp2p types stop here, apart from `PeerId` and `Multiaddr`, which name peers and
//! addresses everywhere. Behaviours: gossipsub (signed, manual validation, blake3 message ids),
//! Kademlia, identify, ping, mDNS, request-response with the protocol's CBOR codec, and relay
//! (a server on bootstrap peers, a client on nodes). Transports: TCP + noise + yamux, QUIC,
//! with DNS resolution.
//!
//! Every gossip message and every direct request is decoded and verified with the protocol
//! crate in the event loop, before anything acts on it or gossipsub forwards it; rejects are
//! reported to gossipsub (which penalises the sender's score) and counted by reason.

pub mod addresses;
mod behaviour;
pub use behaviour::GOSSIP_QUEUE_PER_PEER;
mod client;
pub mod codec;
mod event_loop;
mod hole_punch;
pub mod rate;
pub mod relays;
pub mod replay;

use std::time::Duration;

use distributeai_jobflow::submitter::OpenedReveal;
use distributeai_protocol::{
    Assignment, AssignmentAck, Bid, JobAnnouncement, JobId, LedgerSyncRequest, LedgerSyncResponse,
    NodeIdentity, OutputChunk, ResultCommitment, Verified, VerifiedGossip,
};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc;

pub use client::Client;
pub use event_loop::EventLoop;

use crate::metrics::Metrics;

/// The gossipsub topic every node subscribes to.
pub const GOSSIP_TOPIC: &str = "/distributeai/gossip/2.0.0";
/// The Kademlia protocol name: a DHT of DistributeAI nodes only.
pub const KAD_PROTOCOL: libp2p::StreamProtocol =
    libp2p::StreamProtocol::new("/distributeai/kad/2.0.0");
/// The identify protocol version.
pub const IDENTIFY_PROTOCOL: &str = "/distributeai/2.0.0";

/// What a peer on the mesh is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A full node: runs and submits jobs.
    Node,
    /// A bootstrap peer: routes only, and relays for peers behind NAT.
    Bootstrap,
}

/// Network settings.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Bootstrap peers to join through (`/ip4/…/tcp/…/p2p/<PeerId>`).
    pub bootstrap: Vec<Multiaddr>,
    /// Whether to discover peers on the LAN by mDNS.
    pub mdns: bool,
    /// Node or bootstrap peer.
    pub role: Role,
    /// Kademlia server mode: forced on or off, or `None` to let libp2p decide from whether
    /// the node's addresses are confirmed reachable.
    pub kad_server: Option<bool>,
    /// How long a direct request may take.
    pub request_timeout: Duration,
    /// Gossipsub heartbeat.
    pub gossip_heartbeat: Duration,
    /// How often to re-dial bootstrap peers when connected to none of them, and to check
    /// relay reservations.
    pub redial_interval: Duration,
    /// Whether to relay for peers behind NAT once this node is found publicly reachable
    /// (bootstrap peers always do). Off by default (issue 20): every public home node relayed
    /// for strangers, 256 circuits of 64 MiB for 30 minutes each, on its owner's uplink.
    pub relay_service: bool,
    /// Limits of the relay this node runs for others.
    pub relay_limits: RelayLimits,
    /// How many connections strangers may open to this node; `None`: the role's defaults
    /// ([`ConnectionBudget::for_role`]).
    pub connection_limits: Option<ConnectionBudget>,
    /// Which genesis identities this node lists ([`genesis_tag`]), told to peers in identify's
    /// agent version so a node whose peers list other ones says so; empty for a bootstrap
    /// peer, which keeps no ledger.
    pub genesis_tag: String,
    /// The verdicts the ledger holds, so a verdict gossiped again (past the replay window,
    /// or by a peer replaying old entries) is ignored, not forwarded, before any signature
    /// is checked.
    pub held_verdicts: KnownVerdicts,
}

/// How many connections a node holds, enforced by libp2p's `connection_limits` and
/// `memory_connection_limits` behaviours before a connection is set up (issue 20: none were
/// configured, so a stranger with many keys could hold any number of connections, each with
/// its buffers and streams). Connections over a limit are denied and counted as
/// `messages_dropped{kind="connection",reason="limit"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionBudget {
    /// Incoming connections still in their handshake (noise costs a key exchange each).
    pub pending_incoming: u32,
    /// Incoming connections established.
    pub established_incoming: u32,
    /// Connections established in all.
    pub established: u32,
    /// Connections to one peer: TCP, QUIC, a relayed one and one more while a hole punch
    /// replaces the relayed one.
    pub per_peer: u32,
    /// Above this resident memory of the node's process (bytes), new connections are denied.
    pub max_memory_bytes: usize,
}

impl ConnectionBudget {
    /// The defaults: a home node keeps a few hundred peers at most (a gossipsub mesh is 6 to
    /// 12 of them, Kademlia's table 20 per bucket), 32 handshakes at once, and stops taking
    /// connections above 1 GiB of memory; a bootstrap peer, which every node meets first and
    /// which relays, takes about ten times as many.
    pub fn for_role(role: Role) -> Self {
        match role {
            Role::Node => Self {
                pending_incoming: 32,
                established_incoming: 192,
                established: 256,
                per_peer: 4,
                max_memory_bytes: 1 << 30,
            },
            Role::Bootstrap => Self {
                pending_incoming: 256,
                established_incoming: 4096,
                established: 4608,
                per_peer: 4,
                max_memory_bytes: 4 << 30,
            },
        }
    }
}

/// Content ids of the verdicts a node's ledger holds (entries and evidence of equivocation),
/// shared between the ledger, which adds to it, and the network task and ledger sync, which
/// skip a held verdict without checking its signatures again (issue 20: a replayed verdict
/// cost up to about 260 signature checks every time and was forwarded mesh-wide again).
/// 32 bytes and a hash-set slot per entry: about 5 MB at 100,000 entries.
#[derive(Debug, Clone, Default)]
pub struct KnownVerdicts(
    std::sync::Arc<std::sync::RwLock<std::collections::HashSet<distributeai_protocol::Digest>>>,
);

impl KnownVerdicts {
    /// Whether the ledger holds the verdict with this content id.
    pub fn contains(&self, id: &distributeai_protocol::Digest) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }

    /// Notes that the ledger holds the verdict with this content id.
    pub fn insert(&self, id: distributeai_protocol::Digest) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).insert(id);
    }

    /// How many are held.
    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A short tag naming a set of genesis identities: the first 8 bytes, in hex, of blake3 over
/// the sorted keys; `none` for the empty set. Two nodes with different tags compute different
/// standings from the same ledger.
pub fn genesis_tag(genesis: &[distributeai_protocol::PublicKey]) -> String {
    if genesis.is_empty() {
        return "none".to_string();
    }
    let mut keys: Vec<_> = genesis.iter().map(|k| *k.as_bytes()).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"distributeai/genesis/v1\0");
    for key in &keys {
        hasher.update(key);
    }
    hasher.finalize().to_hex()[..16].to_string()
}

/// The genesis tag a peer's identify agent version carries (`distributeai/<version>
/// genesis/<tag>`), if any.
pub fn genesis_tag_of(agent_version: &str) -> Option<&str> {
    agent_version
        .split_whitespace()
        .find_map(|part| part.strip_prefix("genesis/"))
}

/// Limits of the circuit relay a bootstrap peer (or a public node) runs for nodes behind NAT.
///
/// libp2p's defaults (2-minute circuits of at most 128 KiB, 16 circuits, one new circuit per
/// peer every 2 minutes) are sized for hole-punch coordination only; the job flow also sends
/// bids, results and whole outputs over circuits while NATs keep peers relayed (about 30% of
/// home pairs, per the IPFS DCUtR measurements, arXiv 2510.27500). So:
/// - circuits last 30 minutes: most jobs finish on one circuit, and a longer job's messages
///   simply open a new one;
/// - 64 MiB per circuit: a job's output is fetched in pieces of [`RELAYED_CHUNK_BYTES`] and
///   resumed on a new circuit when one runs out;
/// - rate limits per peer allow bursts (a submitter opening circuits to every worker of a
///   batch) and are four times larger per IP, since several homes share one public IP
///   behind carrier-grade NAT and several nodes share one home router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayLimits {
    /// How long one circuit may stay open.
    pub max_circuit_duration: Duration,
    /// Bytes one circuit may carry (both directions together).
    pub max_circuit_bytes: u64,
    /// Circuits open at once through this relay.
    pub max_circuits: usize,
    /// Reservations held at once.
    pub max_reservations: usize,
}

/// Bytes of output asked for in one fetch over a relayed connection: small enough that a
/// circuit running out loses little, large enough that a relayed MiB takes 16 round trips.
pub const RELAYED_CHUNK_BYTES: u32 = 64 * 1024;

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            max_circuit_duration: Duration::from_secs(30 * 60),
            max_circuit_bytes: 64 * 1024 * 1024,
            max_circuits: 256,
            max_reservations: 1024,
        }
    }
}

impl RelayLimits {
    /// The defaults with a circuit lifetime (seconds) and byte budget (KiB) an operator set.
    pub fn with_circuit_limits(secs: Option<u64>, kib: Option<u64>) -> Self {
        let defaults = Self::default();
        Self {
            max_circuit_duration: secs.map_or(defaults.max_circuit_duration, Duration::from_secs),
            max_circuit_bytes: kib
                .map_or(defaults.max_circuit_bytes, |kib| kib.saturating_mul(1024)),
            ..defaults
        }
    }

    /// The libp2p relay configuration for these limits.
    pub(crate) fn relay_config(&self) -> libp2p::relay::Config {
        use std::num::NonZeroU32;
        let n = |v: u32| NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN);
        libp2p::relay::Config {
            max_reservations: self.max_reservations,
            max_reservations_per_peer: 4,
            reservation_duration: Duration::from_secs(60 * 60),
            reservation_rate_limiters: Vec::new(),
            max_circuits: self.max_circuits,
            max_circuits_per_peer: 32,
            max_circuit_duration: self.max_circuit_duration,
            max_circuit_bytes: self.max_circuit_bytes,
            circuit_src_rate_limiters: Vec::new(),
        }
        // Token buckets: up to `limit` at once, one more every `interval`.
        .reservation_rate_per_peer(n(10), Duration::from_secs(30))
        .reservation_rate_per_ip(n(40), Duration::from_secs(8))
        .circuit_src_per_peer(n(60), Duration::from_secs(2))
        .circuit_src_per_ip(n(240), Duration::from_millis(500))
    }
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            listen: default_listen_addrs(4001),
            bootstrap: Vec::new(),
            mdns: true,
            role: Role::Node,
            kad_server: None,
            request_timeout: Duration::from_secs(30),
            gossip_heartbeat: Duration::from_secs(1),
            redial_interval: Duration::from_secs(30),
            relay_service: false,
            relay_limits: RelayLimits::default(),
            connection_limits: None,
            genesis_tag: String::new(),
            held_verdicts: KnownVerdicts::default(),
        }
    }
}

/// TCP and QUIC on all IPv4 interfaces at `port`.
pub fn default_listen_addrs(port: u16) -> Vec<Multiaddr> {
    [
        format!("/ip4/0.0.0.0/tcp/{port}"),
        format!("/ip4/0.0.0.0/udp/{port}/quic-v1"),
    ]
    .iter()
    .filter_map(|a| a.parse().ok())
    .collect()
}

pub use distributeai_api::{ConnectionView, DiscoverySource, Route};

/// The source to keep when a peer known through `current` is also met through `new`.
///
/// Being a bootstrap peer, or on the LAN, says where a peer is; the other sources only say
/// how we happened to meet it first. So those two win over whatever came earlier, and
/// otherwise the first source stays.
pub fn prefer_source(current: Option<DiscoverySource>, new: DiscoverySource) -> DiscoverySource {
    fn precedence(source: DiscoverySource) -> u8 {
        match source {
            DiscoverySource::Bootstrap => 2,
            DiscoverySource::Mdns => 1,
            DiscoverySource::Dht
            | DiscoverySource::Gossip
            | DiscoverySource::Inbound
            | DiscoverySource::Dialed => 0,
        }
    }
    match current {
        Some(current) if precedence(current) >= precedence(new) => current,
        _ => new,
    }
}

/// Opaque handle of an inbound request awaiting our response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InboundRequestId(u64);

/// A direct request whose signed part has been verified, and whose signer is the peer that
/// sent it.
#[derive(Debug, Clone)]
pub enum InboundRequest {
    /// A worker's bid.
    Bid(Verified<Bid>),
    /// A submitter's assignment.
    Assign(Verified<Assignment>),
    /// A worker's commitment.
    Commit(Verified<ResultCommitment>),
    /// A submitter asks for the reveal.
    Reveal {
        /// The job.
        job_id: JobId,
        /// The attempt.
        attempt: u32,
    },
    /// A submitter fetches output.
    FetchOutput {
        /// The job.
        job_id: JobId,
        /// Offset into the bundle.
        offset: u64,
        /// Most bytes wanted.
        max_bytes: u32,
    },
    /// A peer catches up on the ledger.
    LedgerSync(LedgerSyncRequest),
    /// A submitter invites a bid for its job.
    Invite(Verified<JobAnnouncement>),
}

/// A response whose signed part has been verified against the peer that sent it.
#[derive(Debug, Clone)]
pub enum VerifiedResponse {
    /// Accepted.
    Ack,
    /// Refused, with the peer's reason.
    Refused(String),
    /// Not now: every slot of the worker is busy.
    Busy,
    /// An assignment accepted, with the acceptance signed by the peer.
    Accepted(Box<Verified<AssignmentAck>>),
    /// A reveal signed by the peer, with the manifest it names (checked against it).
    Reveal(Box<OpenedReveal>),
    /// A piece of output.
    Output(OutputChunk),
    /// Ledger entries; each is validated by the ledger on its own.
    Ledger(LedgerSyncResponse),
}

/// What the network tells the rest of the node.
#[derive(Debug, Clone)]
pub enum NetworkEvent {
    /// A valid gossip message from another node.
    Gossip {
        /// The node that published it (also its signer).
        author: PeerId,
        /// The verified message.
        message: VerifiedGossip,
    },
    /// A valid direct request; answer it with [`Client::respond`].
    Request {
        /// Who sent it.
        peer: PeerId,
        /// The verified request.
        request: InboundRequest,
        /// Where the answer goes.
        id: InboundRequestId,
    },
    /// The first connection to a peer opened.
    PeerConnected {
        /// The peer.
        peer: PeerId,
        /// How we found it.
        source: DiscoverySource,
        /// The IP address its first direct connection comes from, as this node sees it
        /// (`None` over a relay): unlike the addresses a peer announces, a stranger cannot
        /// choose it freely, so selection spreads jobs over operators by it (issue 19).
        observed: Option<std::net::IpAddr>,
    },
    /// A connected peer was met again through a more telling source (say, mDNS after it
    /// dialed us).
    PeerSource {
        /// The peer.
        peer: PeerId,
        /// The source to show from now on.
        source: DiscoverySource,
    },
    /// The last connection to a peer closed.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
    },
}

/// A connected peer, as the network sees it.
#[derive(Debug, Clone)]
pub struct ConnectedPeer {
    /// The peer.
    pub peer_id: PeerId,
    /// `direct` when any connection is direct, else `relayed`.
    pub route: Route,
    /// Each open connection.
    pub connections: Vec<ConnectionView>,
    /// How we found it.
    pub source: DiscoverySource,
}

/// A relay we hold (or have asked for) a reservation on.
#[derive(Debug, Clone)]
pub struct RelayView {
    /// The relay.
    pub peer_id: PeerId,
    /// The circuit address others reach us at through it.
    pub address: Multiaddr,
    /// Whether the relay has accepted the reservation (else it is being asked for).
    pub reserved: bool,
}

/// The network's view of itself.
#[derive(Debug, Clone)]
pub struct NetworkInfo {
    /// Our PeerId.
    pub peer_id: PeerId,
    /// Addresses we listen on.
    pub listen_addrs: Vec<Multiaddr>,
    /// Addresses confirmed reachable from outside (AutoNAT, relay reservations).
    pub external_addrs: Vec<Multiaddr>,
    /// What we tell peers: see [`addresses::announced`].
    pub announced_addrs: Vec<Multiaddr>,
    /// Whether we are publicly reachable.
    pub reachability: relays::Reachability,
    /// Relays we reserve on.
    pub relays: Vec<RelayView>,
    /// Peers with an open connection.
    pub connected: Vec<ConnectedPeer>,
}

/// Why a network operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NetworkError {
    /// The network task has stopped.
    #[error("the network task has stopped")]
    Stopped,
    /// The swarm could not be built or started.
    #[error("cannot start the network: {0}")]
    Setup(String),
    /// Publishing failed (e.g. no peers subscribed yet).
    #[error("publish failed: {0}")]
    Publish(String),
    /// A direct request failed (unreachable peer, timeout, refused stream).
    #[error("request to {peer} failed: {reason}")]
    Request {
        /// The peer.
        peer: PeerId,
        /// What happened.
        reason: String,
    },
    /// The peer's response failed verification.
    #[error("invalid response from {peer}: {reason}")]
    InvalidResponse {
        /// The peer.
        peer: PeerId,
        /// What was wrong.
        reason: String,
    },
    /// Dialing failed.
    #[error("dial failed: {0}")]
    Dial(String),
}

/// Most events queued from the swarm to the node: a burst of small messages (announcements,
/// bids) fits, and past it they are dropped, counted as `messages_dropped{reason="node_busy"}`,
/// rather than stall the swarm.
pub const EVENT_QUEUE: usize = 4096;
/// Most bytes of signed messages queued from the swarm to the node (issue 20: 4,096 events of
/// up to 1 MiB each could hold 4 GiB): 16 MiB, with their decoded forms about twice that.
/// Ordinary messages are a few KiB, so thousands still fit; a flood of maximal ones waits in
/// the sender's queue or is dropped, not held here.
pub const EVENT_QUEUE_BYTES: usize = 16 << 20;

/// Builds the swarm for `identity`. Returns the handle, the event stream and the loop that
/// must be spawned (`event_loop.run(shutdown)`) for anything to happen.
pub fn new(
    identity: &NodeIdentity,
    config: NetworkConfig,
    metrics: Metrics,
) -> Result<(Client, crate::bounded::Receiver<NetworkEvent>, EventLoop), NetworkError> {
    let swarm = behaviour::build_swarm(identity, &config, metrics.clone())?;
    let (command_tx, command_rx) = mpsc::channel(256);
    let (event_tx, event_rx) = crate::bounded::channel(EVENT_QUEUE, EVENT_QUEUE_BYTES);
    let event_loop = EventLoop::new(swarm, config, command_rx, event_tx, metrics)?;
    Ok((Client::new(command_tx), event_rx, event_loop))
}

impl crate::bounded::Weigh for VerifiedGossip {
    fn weight(&self) -> usize {
        match self {
            VerifiedGossip::Node(m) => m.envelope.body().len(),
            VerifiedGossip::Job(m) => m.envelope.body().len(),
            VerifiedGossip::Cancel(m) => m.envelope.body().len(),
            VerifiedGossip::Verdict(m) => m.envelope.body().len(),
        }
    }
}

impl crate::bounded::Weigh for InboundRequest {
    fn weight(&self) -> usize {
        match self {
            InboundRequest::Bid(m) => m.envelope.body().len(),
            InboundRequest::Assign(m) => m.envelope.body().len(),
            InboundRequest::Commit(m) => m.envelope.body().len(),
            InboundRequest::Invite(m) => m.envelope.body().len(),
            InboundRequest::Reveal { .. }
            | InboundRequest::FetchOutput { .. }
            | InboundRequest::LedgerSync(_) => 0,
        }
    }
}

impl crate::bounded::Weigh for NetworkEvent {
    fn weight(&self) -> usize {
        match self {
            NetworkEvent::Gossip { message, .. } => crate::bounded::Weigh::weight(message),
            NetworkEvent::Request { request, .. } => crate::bounded::Weigh::weight(request),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use distributeai_protocol::NodeIdentity;

    use super::*;

    #[test]
    fn genesis_tags_name_the_set_whatever_its_order() {
        let a = NodeIdentity::from_secret([1; 32]).public_key();
        let b = NodeIdentity::from_secret([2; 32]).public_key();
        assert_eq!(genesis_tag(&[]), "none");
        assert_eq!(genesis_tag(&[a, b]), genesis_tag(&[b, a, b]));
        assert_ne!(genesis_tag(&[a]), genesis_tag(&[a, b]));
        assert_eq!(genesis_tag(&[a]).len(), 16);
        let agent = format!("distributeai/0.1.0 genesis/{}", genesis_tag(&[a]));
        assert_eq!(genesis_tag_of(&agent), Some(genesis_tag(&[a]).as_str()));
        assert_eq!(genesis_tag_of("distributeai/0.1.0"), None);
    }
}
