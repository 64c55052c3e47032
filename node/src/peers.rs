//! The table of peers this node knows: who they are, where they listen, what they offer, when
//! we last heard from them, and whether we are connected. Pure state, updated by the node's
//! service loop from network events; peers that go silent expire.

use std::collections::HashMap;

use distributeai_protocol::time::TimestampMs;
use distributeai_protocol::{Capabilities, NodeAnnouncement, PublicKey, Verified};
use libp2p::{Multiaddr, PeerId};

use crate::network::{DiscoverySource, Route};

/// What we know of one peer.
#[derive(Debug, Clone)]
pub struct PeerRecord {
    /// Its PeerId.
    pub peer_id: PeerId,
    /// Its public key, when it has announced itself.
    pub public_key: Option<PublicKey>,
    /// Addresses it announced.
    pub addresses: Vec<Multiaddr>,
    /// The IP address a direct connection of its came from, as this node saw it: the
    /// operator it belongs to as far as can be told (see [`NetworkEvent::PeerConnected`]).
    ///
    /// [`NetworkEvent::PeerConnected`]: crate::network::NetworkEvent::PeerConnected
    pub observed_ip: Option<std::net::IpAddr>,
    /// What it offers, from its latest signed announcement.
    pub capabilities: Option<Capabilities>,
    /// Whether it bids for jobs.
    pub accepts_jobs: bool,
    /// When we last heard from it (ms since the epoch).
    pub last_seen: TimestampMs,
    /// Whether a connection to it is open.
    pub connected: bool,
    /// How we found it.
    pub source: Option<DiscoverySource>,
    /// Sequence number of its latest announcement.
    pub sequence: u64,
    /// When its current run began (ms since the epoch), from its announcements; 0 until
    /// it has announced itself.
    pub started_at: TimestampMs,
    /// The peers it said it was connected to in its latest announcement, and how.
    pub links: Vec<(PeerId, Route)>,
}

/// What an announcement did to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnouncementOutcome {
    /// A peer we had not heard announce before.
    New,
    /// A newer announcement of a known peer.
    Updated,
    /// A newer announcement from a new run of a known peer.
    Restarted,
    /// Older than one we already have: ignored.
    Stale,
}

/// Known peers, by PeerId.
#[derive(Debug, Clone)]
pub struct PeerTable {
    peers: HashMap<PeerId, PeerRecord>,
    expiry_ms: u64,
}

impl PeerTable {
    /// A table that forgets disconnected peers silent for `expiry_ms`.
    pub fn new(expiry_ms: u64) -> Self {
        Self {
            peers: HashMap::new(),
            expiry_ms,
        }
    }

    /// Most peers remembered (issue 20: the table had no cap, and every signed announcement
    /// from a fresh key added a record). 4,096 records of at most a few KiB each (addresses and
    /// `MAX_ANNOUNCED_LINKS` links) is at most about 16 MiB, and far more than the 256
    /// connections a node holds (`network::ConnectionBudget`), so a connected peer always has
    /// its place: when the table is full, a new peer takes the place of the disconnected one
    /// seen longest ago.
    pub const MAX_PEERS: usize = 4_096;

    fn entry(&mut self, peer: PeerId, now: TimestampMs) -> &mut PeerRecord {
        if !self.peers.contains_key(&peer) && self.peers.len() >= Self::MAX_PEERS {
            let oldest = self
                .peers
                .values()
                .filter(|r| !r.connected)
                .min_by_key(|r| r.last_seen)
                .map(|r| r.peer_id);
            if let Some(oldest) = oldest {
                self.peers.remove(&oldest);
            }
        }
        self.peers.entry(peer).or_insert_with(|| PeerRecord {
            peer_id: peer,
            public_key: None,
            addresses: Vec::new(),
            observed_ip: None,
            capabilities: None,
            accepts_jobs: false,
            last_seen: now,
            connected: false,
            source: None,
            sequence: 0,
            started_at: 0,
            links: Vec::new(),
        })
    }

    /// Records a verified announcement from `peer` (its signer).
    pub fn on_announcement(
        &mut self,
        peer: PeerId,
        announcement: &Verified<NodeAnnouncement>,
        now: TimestampMs,
    ) -> AnnouncementOutcome {
        let message = &announcement.message;
        let record = self.entry(peer, now);
        let outcome = if record.capabilities.is_none() {
            AnnouncementOutcome::New
        } else if message.sequence <= record.sequence {
            return AnnouncementOutcome::Stale;
        } else if message.started_at != record.started_at {
            AnnouncementOutcome::Restarted
        } else {
            AnnouncementOutcome::Updated
        };
        record.public_key = Some(announcement.signer);
        record.capabilities = Some(message.capabilities.clone());
        record.accepts_jobs = message.accepts_jobs;
        record.addresses = message
            .listen_addrs
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        record.links = message
            .links
            .iter()
            .filter_map(|link| {
                let peer = link.peer.parse().ok()?;
                let route = if link.relayed {
                    Route::Relayed
                } else {
                    Route::Direct
                };
                Some((peer, route))
            })
            .collect();
        record.sequence = message.sequence;
        record.started_at = message.started_at;
        record.last_seen = now;
        if record.source.is_none() {
            record.source = Some(DiscoverySource::Gossip);
        }
        outcome
    }

    /// Records that a connection to `peer` opened.
    pub fn on_connected(
        &mut self,
        peer: PeerId,
        source: DiscoverySource,
        observed: Option<std::net::IpAddr>,
        now: TimestampMs,
    ) {
        let record = self.entry(peer, now);
        record.connected = true;
        if observed.is_some() {
            record.observed_ip = observed;
        }
        record.last_seen = now;
        record.source = Some(crate::network::prefer_source(record.source, source));
    }

    /// Records that a known peer was met again through `source`.
    pub fn on_source(&mut self, peer: PeerId, source: DiscoverySource) {
        if let Some(record) = self.peers.get_mut(&peer) {
            record.source = Some(crate::network::prefer_source(record.source, source));
        }
    }

    /// Records that the last connection to `peer` closed.
    pub fn on_disconnected(&mut self, peer: PeerId, now: TimestampMs) {
        if let Some(record) = self.peers.get_mut(&peer) {
            record.connected = false;
            record.last_seen = now;
        }
    }

    /// Forgets disconnected peers not heard from within the expiry; returns them.
    pub fn expire(&mut self, now: TimestampMs) -> Vec<PeerId> {
        let expiry = self.expiry_ms;
        let expired: Vec<PeerId> = self
            .peers
            .values()
            .filter(|r| !r.connected && r.last_seen.saturating_add(expiry) < now)
            .map(|r| r.peer_id)
            .collect();
        for peer in &expired {
            self.peers.remove(peer);
        }
        expired
    }

    /// One peer.
    pub fn get(&self, peer: &PeerId) -> Option<&PeerRecord> {
        self.peers.get(peer)
    }

    /// Every record as stored, in no order: for callers that only filter, without the copy
    /// and sort of [`PeerTable::list`].
    pub fn records(&self) -> impl Iterator<Item = &PeerRecord> {
        self.peers.values()
    }

    /// All peers, sorted by PeerId, as of `now`: a connected peer is heard from all the time
    /// (libp2p pings it and closes the connection when pings fail), so it was last seen now.
    pub fn list(&self, now: TimestampMs) -> Vec<PeerRecord> {
        let mut peers: Vec<PeerRecord> = self
            .peers
            .values()
            .map(|p| PeerRecord {
                last_seen: if p.connected { now } else { p.last_seen },
                ..p.clone()
            })
            .collect();
        peers.sort_by_key(|p| p.peer_id.to_string());
        peers
    }

    /// Number of peers.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use distributeai_protocol::{NodeIdentity, Signed, ValidationContext};

    use super::*;

    fn announcement(
        identity: &NodeIdentity,
        sequence: u64,
        now: TimestampMs,
    ) -> Verified<NodeAnnouncement> {
        announcement_of_run(identity, sequence, now, 0)
    }

    fn announcement_of_run(
        identity: &NodeIdentity,
        sequence: u64,
        now: TimestampMs,
        started_at: TimestampMs,
    ) -> Verified<NodeAnnouncement> {
        let message = NodeAnnouncement {
            capabilities: Capabilities {
                cpus: 4,
                memory_mb: 8192,
                gpus: vec![],
                region: "test".into(),
                version: "0.1.0".into(),
                images: vec![],
            },
            listen_addrs: vec!["/ip4/127.0.0.1/tcp/4001".into(), "not an address".into()],
            links: vec![],
            accepts_jobs: true,
            issued_at: now,
            started_at,
            sequence,
        };
        Signed::sign(identity, &message)
            .expect("sign")
            .open(&ValidationContext::live_at(now))
            .expect("open")
    }

    #[test]
    fn announcements_from_many_fresh_keys_cannot_grow_the_table_nor_push_out_connected_peers() {
        let mut table = PeerTable::new(u64::MAX);
        let connected = NodeIdentity::from_secret([9; 32]).peer_id();
        table.on_connected(connected, DiscoverySource::Bootstrap, None, 0);
        for i in 0..PeerTable::MAX_PEERS + 500 {
            let mut secret = [0u8; 32];
            secret[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            let identity = NodeIdentity::from_secret(secret);
            let now = 1 + i as u64;
            table.on_announcement(identity.peer_id(), &announcement(&identity, 1, now), now);
        }
        assert_eq!(table.len(), PeerTable::MAX_PEERS);
        assert!(
            table.get(&connected).is_some(),
            "the connected peer keeps its place"
        );
    }

    #[test]
    fn announcements_update_newer_only_and_silent_peers_expire() {
        let identity = NodeIdentity::from_secret([3; 32]);
        let peer = identity.peer_id();
        let mut table = PeerTable::new(1000);
        assert_eq!(
            table.on_announcement(peer, &announcement(&identity, 5, 0), 0),
            AnnouncementOutcome::New
        );
        assert_eq!(
            table.on_announcement(peer, &announcement(&identity, 4, 10), 10),
            AnnouncementOutcome::Stale
        );
        assert_eq!(
            table.on_announcement(peer, &announcement(&identity, 6, 20), 20),
            AnnouncementOutcome::Updated
        );
        let record = table.get(&peer).expect("record");
        assert_eq!(
            record.addresses.len(),
            1,
            "unparsable addresses are skipped"
        );
        assert_eq!(record.last_seen, 20);

        table.on_connected(peer, DiscoverySource::Mdns, None, 30);
        assert_eq!(table.list(900)[0].last_seen, 900, "connected: seen now");
        assert!(
            table.expire(5000).is_empty(),
            "connected peers never expire"
        );
        table.on_disconnected(peer, 40);
        assert_eq!(
            table.list(900)[0].last_seen,
            40,
            "disconnected: when the connection closed"
        );
        assert!(table.expire(1040).is_empty());
        assert_eq!(table.expire(1041), vec![peer]);
        assert!(table.is_empty());
    }

    #[test]
    fn lan_and_bootstrap_sources_win_over_how_a_peer_first_connected() {
        let peer = NodeIdentity::from_secret([4; 32]).peer_id();
        let mut table = PeerTable::new(1000);
        table.on_connected(peer, DiscoverySource::Inbound, None, 0);
        table.on_source(peer, DiscoverySource::Dht);
        assert_eq!(
            table.get(&peer).expect("peer").source,
            Some(DiscoverySource::Inbound)
        );
        table.on_source(peer, DiscoverySource::Mdns);
        assert_eq!(
            table.get(&peer).expect("peer").source,
            Some(DiscoverySource::Mdns)
        );
        table.on_connected(peer, DiscoverySource::Dialed, None, 10);
        assert_eq!(
            table.get(&peer).expect("peer").source,
            Some(DiscoverySource::Mdns)
        );
        table.on_source(peer, DiscoverySource::Bootstrap);
        assert_eq!(
            table.get(&peer).expect("peer").source,
            Some(DiscoverySource::Bootstrap)
        );
        table.on_source(peer, DiscoverySource::Mdns);
        assert_eq!(
            table.get(&peer).expect("peer").source,
            Some(DiscoverySource::Bootstrap)
        );
    }

    #[test]
    fn a_new_run_of_a_known_peer_is_told_apart_from_an_update() {
        let identity = NodeIdentity::from_secret([5; 32]);
        let peer = identity.peer_id();
        let mut table = PeerTable::new(1000);
        let first = announcement_of_run(&identity, 1, 10, 5);
        assert_eq!(
            table.on_announcement(peer, &first, 10),
            AnnouncementOutcome::New
        );
        let update = announcement_of_run(&identity, 2, 20, 5);
        assert_eq!(
            table.on_announcement(peer, &update, 20),
            AnnouncementOutcome::Updated
        );
        let restart = announcement_of_run(&identity, 3, 30, 25);
        assert_eq!(
            table.on_announcement(peer, &restart, 30),
            AnnouncementOutcome::Restarted
        );
        assert_eq!(
            table.on_announcement(peer, &restart, 30),
            AnnouncementOutcome::Stale
        );
    }
}
