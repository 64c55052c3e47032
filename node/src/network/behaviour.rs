//! The composed libp2p behaviour and the swarm built from it.

use std::time::Duration;

use distributeai_protocol::NodeIdentity;
use distributeai_protocol::limits::{MAX_CLOCK_SKEW_MS, MAX_MESSAGE_BYTES};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    Swarm, autonat, gossipsub, identify, kad, mdns, noise, ping, relay, request_response, tcp,
    yamux,
};

use super::codec::{self, Codec};
use super::{GOSSIP_TOPIC, IDENTIFY_PROTOCOL, KAD_PROTOCOL, NetworkConfig, NetworkError, Role};
use crate::metrics::Metrics;

/// Everything a DistributeAI peer speaks.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    // First, so a connection over the limits is denied before any other behaviour sets up
    // state for it.
    pub(crate) connection_limits: libp2p::connection_limits::Behaviour,
    pub(crate) memory_limits: libp2p::memory_connection_limits::Behaviour,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) kademlia: kad::Behaviour<kad::store::MemoryStore>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
    pub(crate) request_response: request_response::Behaviour<Codec>,
    pub(crate) relay_server: Toggle<relay::Behaviour>,
    pub(crate) relay_client: relay::client::Behaviour,
    pub(crate) autonat: autonat::Behaviour,
    pub(crate) dcutr: super::hole_punch::HolePunch,
}

fn setup_error(e: impl std::fmt::Display) -> NetworkError {
    NetworkError::Setup(e.to_string())
}

fn gossipsub_behaviour(
    key: &libp2p::identity::Keypair,
    config: &NetworkConfig,
) -> Result<gossipsub::Behaviour, NetworkError> {
    let gossip_config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(config.gossip_heartbeat)
        // Messages must carry the author's libp2p signature; ours sits inside the data.
        .validation_mode(gossipsub::ValidationMode::Strict)
        // Nothing is forwarded until the event loop has verified our envelope.
        .validate_messages()
        .message_id_fn(|message: &gossipsub::Message| {
            gossipsub::MessageId::from(blake3::hash(&message.data).as_bytes().to_vec())
        })
        .max_transmit_size(MAX_MESSAGE_BYTES + 64 * 1024)
        // Remember ids at least as long as a signed message stays fresh, so replays within
        // the skew window are recognised as duplicates.
        .duplicate_cache_time(Duration::from_millis(2 * MAX_CLOCK_SKEW_MS))
        // Messages queued to one peer (default 5,000): each may be up to 1 MiB, and a slow
        // or stalled peer would make us hold all of them (issue 20). 128 covers a burst of
        // ordinary gossip; past it, forwards to that peer are dropped, publishes refused.
        .connection_handler_queue_len(GOSSIP_QUEUE_PER_PEER)
        .build()
        .map_err(setup_error)?;
    let mut gossipsub = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        gossip_config,
    )
    .map_err(setup_error)?;

    let topic = gossipsub::IdentTopic::new(GOSSIP_TOPIC);
    let mut params = gossipsub::PeerScoreParams {
        // Several home nodes can share one public IP behind NAT, and test meshes share
        // 127.0.0.1: colocation is not evidence of a Sybil attack here.
        ip_colocation_factor_weight: 0.0,
        ..Default::default()
    };
    params.topics.insert(
        topic.hash(),
        gossipsub::TopicScoreParams {
            // Each rejected message costs its sender; a few push it below the gossip
            // threshold, more graylist it.
            invalid_message_deliveries_weight: -10.0,
            invalid_message_deliveries_decay: 0.5,
            ..Default::default()
        },
    );
    gossipsub
        .with_peer_score(params, gossipsub::PeerScoreThresholds::default())
        .map_err(setup_error)?;
    gossipsub.subscribe(&topic).map_err(setup_error)?;
    Ok(gossipsub)
}

/// Builds the swarm: transports, behaviours and swarm settings.
/// Gossip messages queued to one peer at most; see `build_swarm`.
pub const GOSSIP_QUEUE_PER_PEER: usize = 128;

pub(crate) fn build_swarm(
    identity: &NodeIdentity,
    config: &NetworkConfig,
    metrics: Metrics,
) -> Result<Swarm<Behaviour>, NetworkError> {
    let swarm = libp2p::SwarmBuilder::with_existing_identity(identity.libp2p_keypair())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(setup_error)?
        .with_quic()
        .with_dns()
        .map_err(setup_error)?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(setup_error)?
        .with_behaviour(|key, relay_client| {
            let peer_id = key.public().to_peer_id();
            let gossipsub = gossipsub_behaviour(key, config).map_err(|e| e.to_string())?;

            let mut kad_config = kad::Config::new(KAD_PROTOCOL);
            kad_config.set_query_timeout(Duration::from_secs(30));
            let mut kademlia = kad::Behaviour::with_config(
                peer_id,
                kad::store::MemoryStore::new(peer_id),
                kad_config,
            );
            let mode = match (config.role, config.kad_server) {
                (Role::Bootstrap, _) | (_, Some(true)) => Some(kad::Mode::Server),
                (_, Some(false)) => Some(kad::Mode::Client),
                (_, None) => None,
            };
            kademlia.set_mode(mode);

            let identify = identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())
                    .with_agent_version(if config.genesis_tag.is_empty() {
                        format!("distributeai/{}", env!("CARGO_PKG_VERSION"))
                    } else {
                        format!(
                            "distributeai/{} genesis/{}",
                            env!("CARGO_PKG_VERSION"),
                            config.genesis_tag
                        )
                    })
                    // Peers learn at once when our addresses change (a relay reservation
                    // taken or given up), not at the next periodic identify.
                    .with_push_listen_addr_updates(true)
                    // Tell peers only addresses confirmed reachable (AutoNAT, relay
                    // circuits, a bootstrap peer's own): identify hands what it hears to
                    // every behaviour that dials, and a home node's loopback or LAN address
                    // makes a peer elsewhere dial itself or a stranger. LAN peers meet by mDNS.
                    .with_hide_listen_addrs(true),
            );
            let mdns = if config.mdns {
                let mdns_config = mdns::Config {
                    query_interval: Duration::from_secs(5),
                    ..Default::default()
                };
                Some(mdns::tokio::Behaviour::new(mdns_config, peer_id).map_err(|e| e.to_string())?)
            } else {
                None
            };
            let request_response = request_response::Behaviour::with_codec(
                Codec::new(metrics.clone()),
                [(codec::PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(config.request_timeout),
            );
            let relay_server =
                (config.role == Role::Bootstrap || config.relay_service).then(|| {
                    let mut relay =
                        relay::Behaviour::new(peer_id, config.relay_limits.relay_config());
                    // Fixed before any connection exists. Left automatic, the relay re-announces
                    // its status to every connection's handler whenever our external addresses
                    // change, including relayed connections whose handler is a placeholder, and
                    // libp2p-relay 0.22 panics there (`handler/either.rs`, unreachable). Nodes
                    // choose as relays only peers that look public (`super::relays`).
                    relay.set_status(Some(relay::Status::Enable));
                    relay
                });
            let autonat = autonat::Behaviour::new(
                peer_id,
                autonat::Config {
                    // A dial-back tries our addresses one after another, each up to the
                    // connection timeout (10 s); the answer must outlive that.
                    timeout: Duration::from_secs(45),
                    boot_delay: Duration::from_secs(2),
                    retry_interval: Duration::from_secs(30),
                    refresh_interval: Duration::from_secs(5 * 60),
                    throttle_server_period: Duration::from_secs(15),
                    // Only bootstrap peers and public relays judge us (added as servers by the
                    // event loop): a LAN neighbour would dial us back on the LAN and call a
                    // node behind NAT public.
                    use_connected: false,
                    // One failed dial-back from a peer that cannot reach us is enough to
                    // act on; a public node still confirms itself within a minute.
                    confidence_max: 2,
                    // Home routers NAT into carrier-grade and private ranges too, and a LAN of
                    // its own is a network like any other: judge by dial-backs, not by ranges.
                    only_global_ips: false,
                    ..Default::default()
                },
            );
            let limits = config
                .connection_limits
                .unwrap_or_else(|| super::ConnectionBudget::for_role(config.role));
            Ok(Behaviour {
                connection_limits: libp2p::connection_limits::Behaviour::new(
                    libp2p::connection_limits::ConnectionLimits::default()
                        .with_max_pending_incoming(Some(limits.pending_incoming))
                        .with_max_established_incoming(Some(limits.established_incoming))
                        .with_max_established(Some(limits.established))
                        .with_max_established_per_peer(Some(limits.per_peer)),
                ),
                memory_limits: libp2p::memory_connection_limits::Behaviour::with_max_bytes(
                    limits.max_memory_bytes,
                ),
                gossipsub,
                kademlia,
                identify,
                ping: ping::Behaviour::default(),
                mdns: mdns.into(),
                request_response,
                relay_server: relay_server.into(),
                relay_client,
                autonat,
                dcutr: super::hole_punch::HolePunch::new(peer_id),
            })
        })
        .map_err(setup_error)?
        // Connections are kept rather than re-dialed: through a relay, every new connection costs
        // a circuit from the relay's rate limits.
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build();
    Ok(swarm)
}
