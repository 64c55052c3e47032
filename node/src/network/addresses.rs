//! Address hygiene: which of our addresses we tell peers, and which of a peer's addresses are
//! worth dialing from where we stand (issue 10, "Address hygiene").
//!
//! A home node listening on `0.0.0.0` has a loopback address, one or more private LAN
//! addresses and, behind a NAT router, no public address of its own. Told to a peer in another
//! home, its loopback address makes that peer dial *itself*, and its private address may reach
//! a *different* node on the other home's LAN (home LANs reuse the same few subnets). libp2p
//! aborts a whole dial on the first wrong-peer answer, so one such address hides every good
//! one. The rules here are pure functions of addresses, unit-tested below; the event loop
//! applies them where addresses come in (announcements, identify) and go out (announcements).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

/// Where an address can be reached from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// This machine only (`127.0.0.0/8`, `::1`).
    Loopback,
    /// One LAN only: RFC 1918, carrier-grade NAT (`100.64.0.0/10`), link-local, IPv6 ULA.
    Private,
    /// Anywhere: any other IP address, or a DNS name.
    Public,
    /// Through a relay (`…/p2p-circuit`): reachable wherever the relay is.
    Relayed,
    /// Not an address one can dial (`0.0.0.0`, no IP or DNS part).
    Unroutable,
}

/// The IP address an address dials, if it names one directly.
pub fn ip_of(address: &Multiaddr) -> Option<IpAddr> {
    address.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// Whether the address goes through a relay.
pub fn is_relayed(address: &Multiaddr) -> bool {
    address.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// The relay's own part of a circuit address: everything before `/p2p-circuit`.
pub fn relay_part(circuit: &Multiaddr) -> Multiaddr {
    circuit
        .iter()
        .take_while(|p| !matches!(p, Protocol::P2pCircuit))
        .collect()
}

/// The address without any `/p2p/<PeerId>` part: the transport endpoint it dials.
pub fn endpoint(address: &Multiaddr) -> Multiaddr {
    address
        .iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}

fn ipv4_scope(ip: Ipv4Addr) -> Scope {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
        Scope::Unroutable
    } else if ip.is_loopback() {
        Scope::Loopback
    } else if ip.is_private() || ip.is_link_local() || (a == 100 && (64..128).contains(&b)) {
        Scope::Private
    } else {
        Scope::Public
    }
}

fn ipv6_scope(ip: Ipv6Addr) -> Scope {
    let first = ip.segments()[0];
    if ip.is_unspecified() || ip.is_multicast() {
        Scope::Unroutable
    } else if ip.is_loopback() {
        Scope::Loopback
    } else if let Some(v4) = ip.to_ipv4_mapped() {
        ipv4_scope(v4)
    } else if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfe80 {
        Scope::Private
    } else {
        Scope::Public
    }
}

/// Where `address` can be reached from.
pub fn scope(address: &Multiaddr) -> Scope {
    if is_relayed(address) {
        return Scope::Relayed;
    }
    for protocol in address.iter() {
        match protocol {
            Protocol::Ip4(ip) => return ipv4_scope(ip),
            Protocol::Ip6(ip) => return ipv6_scope(ip),
            Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_) | Protocol::Dnsaddr(_) => {
                return Scope::Public;
            }
            _ => {}
        }
    }
    Scope::Unroutable
}

/// Whether two addresses are on one LAN as far as we can tell: same private range, same
/// /24 (IPv4) or /64 (IPv6). Home LANs are /24 almost always.
fn same_lan(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets()[..3] == b.octets()[..3],
        (IpAddr::V6(a), IpAddr::V6(b)) => a.segments()[..4] == b.segments()[..4],
        _ => false,
    }
}

/// The addresses a node tells the network it can be reached at, from what it listens on and
/// what has been confirmed reachable from outside (AutoNAT, relay reservations).
///
/// Confirmed external addresses first, then LAN and public listen addresses; loopback
/// addresses only on a node with no other address (a network on one machine, as in the
/// demo), since elsewhere they make the listener dial itself. At most `max` addresses.
pub fn announced(listen: &[Multiaddr], external: &[Multiaddr], max: usize) -> Vec<Multiaddr> {
    let mut out: Vec<Multiaddr> = Vec::new();
    let candidates = || external.iter().chain(listen);
    for address in candidates() {
        if matches!(reach_scope(address), Scope::Public | Scope::Private) && !out.contains(address)
        {
            out.push(address.clone());
        }
    }
    if out.is_empty() {
        for address in candidates() {
            if reach_scope(address) == Scope::Loopback && !out.contains(address) {
                out.push(address.clone());
            }
        }
    }
    out.truncate(max);
    out
}

/// Where an address can be reached from, a circuit counting as its relay's address.
pub fn reach_scope(address: &Multiaddr) -> Scope {
    match scope(address) {
        Scope::Relayed => {
            let relay = relay_part(address);
            if is_relayed(&relay) {
                Scope::Unroutable
            } else {
                scope(&relay)
            }
        }
        other => other,
    }
}

/// Whether an address a peer gave us is worth dialing from a node listening on `own`.
///
/// - loopback: only when we listen on loopback alone (everything is on this machine);
/// - private: only when one of our own addresses is on the same LAN, and it is not one of
///   our own listen addresses (which would dial ourselves);
/// - relayed: when the relay's own address passes these rules;
/// - public and DNS: always.
///
/// Same-subnet private addresses can still belong to another home's LAN; the event loop
/// drops an address for good once a dial on it reaches the wrong peer.
pub fn dialable_from(address: &Multiaddr, own: &[Multiaddr]) -> bool {
    let own_endpoint = |a: &Multiaddr| own.iter().any(|o| endpoint(o) == endpoint(a));
    match scope(address) {
        Scope::Unroutable => false,
        Scope::Public => !own_endpoint(address),
        Scope::Relayed => {
            let relay = relay_part(address);
            !is_relayed(&relay) && dialable_from(&relay, own)
        }
        Scope::Loopback => {
            !own.is_empty()
                && own.iter().all(|o| scope(o) == Scope::Loopback)
                && !own_endpoint(address)
        }
        Scope::Private => {
            let Some(ip) = ip_of(address) else {
                return false;
            };
            !own_endpoint(address)
                && own.iter().any(|o| {
                    scope(o) == Scope::Private && ip_of(o).is_some_and(|mine| same_lan(mine, ip))
                })
        }
    }
}

/// The transport an address uses, as users name it: `quic`, `tcp`, or `other`; for a circuit,
/// the transport to the relay.
pub fn transport_name(address: &Multiaddr) -> &'static str {
    let mut name = "other";
    for protocol in address.iter() {
        match protocol {
            Protocol::QuicV1 | Protocol::Quic => return "quic",
            Protocol::Tcp(_) => name = "tcp",
            Protocol::P2pCircuit => break,
            _ => {}
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Multiaddr {
        s.parse().expect("test address")
    }

    #[test]
    fn scopes() {
        assert_eq!(scope(&a("/ip4/127.0.0.1/tcp/1")), Scope::Loopback);
        assert_eq!(scope(&a("/ip4/192.168.1.2/tcp/1")), Scope::Private);
        assert_eq!(scope(&a("/ip4/10.0.0.1/udp/1/quic-v1")), Scope::Private);
        assert_eq!(scope(&a("/ip4/100.64.3.4/tcp/1")), Scope::Private);
        assert_eq!(scope(&a("/ip4/169.254.0.9/tcp/1")), Scope::Private);
        assert_eq!(scope(&a("/ip4/203.0.113.7/tcp/1")), Scope::Public);
        assert_eq!(scope(&a("/ip4/0.0.0.0/tcp/1")), Scope::Unroutable);
        assert_eq!(scope(&a("/ip6/::1/tcp/1")), Scope::Loopback);
        assert_eq!(scope(&a("/ip6/fd00::1/tcp/1")), Scope::Private);
        assert_eq!(scope(&a("/ip6/fe80::1/tcp/1")), Scope::Private);
        assert_eq!(scope(&a("/ip6/2001:db8::1/tcp/1")), Scope::Public);
        assert_eq!(scope(&a("/dns4/boot.example/tcp/1")), Scope::Public);
        let circuit = "/ip4/203.0.113.7/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit";
        assert_eq!(scope(&a(circuit)), Scope::Relayed);
        assert_eq!(transport_name(&a(circuit)), "tcp");
        assert_eq!(transport_name(&a("/ip4/1.2.3.4/udp/1/quic-v1")), "quic");
    }

    #[test]
    fn a_home_node_announces_no_loopback_address() {
        let listen = [
            a("/ip4/127.0.0.1/tcp/4001"),
            a("/ip4/192.168.1.2/tcp/4001"),
            a("/ip4/127.0.0.1/udp/4001/quic-v1"),
        ];
        let circuit = a(
            "/ip4/203.0.113.2/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit",
        );
        let told = announced(&listen, std::slice::from_ref(&circuit), 16);
        assert_eq!(told, vec![circuit, a("/ip4/192.168.1.2/tcp/4001")]);
        // On one machine, a circuit through a loopback relay goes with the loopback addresses.
        let local_circuit = a(
            "/ip4/127.0.0.1/tcp/4000/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit",
        );
        let listen = [a("/ip4/127.0.0.1/tcp/4001")];
        assert_eq!(
            announced(&listen, std::slice::from_ref(&local_circuit), 16),
            vec![local_circuit, listen[0].clone()]
        );
    }

    #[test]
    fn a_node_on_loopback_alone_announces_loopback() {
        let listen = [a("/ip4/127.0.0.1/tcp/4001")];
        assert_eq!(announced(&listen, &[], 16), listen.to_vec());
        assert!(announced(&[], &[], 16).is_empty());
    }

    #[test]
    fn announcements_are_capped() {
        let listen: Vec<Multiaddr> = (1..40)
            .map(|i| a(&format!("/ip4/192.168.1.{i}/tcp/4001")))
            .collect();
        assert_eq!(announced(&listen, &[], 16).len(), 16);
    }

    #[test]
    fn loopback_is_dialed_only_from_a_loopback_only_node() {
        let theirs = a("/ip4/127.0.0.1/tcp/4002");
        assert!(dialable_from(&theirs, &[a("/ip4/127.0.0.1/tcp/4001")]));
        assert!(!dialable_from(
            &theirs,
            &[a("/ip4/127.0.0.1/tcp/4001"), a("/ip4/192.168.1.3/tcp/4001")]
        ));
        assert!(!dialable_from(&theirs, &[]));
        // The same port as ours on loopback is ourselves.
        assert!(!dialable_from(&theirs, &[a("/ip4/127.0.0.1/tcp/4002")]));
    }

    #[test]
    fn private_addresses_only_on_our_own_lan_and_never_our_own() {
        let own = [a("/ip4/127.0.0.1/tcp/4001"), a("/ip4/192.168.1.3/tcp/4001")];
        assert!(dialable_from(&a("/ip4/192.168.1.2/tcp/4001"), &own));
        assert!(!dialable_from(&a("/ip4/192.168.7.2/tcp/4001"), &own));
        assert!(!dialable_from(&a("/ip4/10.0.0.2/tcp/4001"), &own));
        // Another home on the same subnet, at our own address and port: that dial reaches us.
        assert!(!dialable_from(&a("/ip4/192.168.1.3/tcp/4001"), &own));
        // A node with no private address of its own dials no private address.
        assert!(!dialable_from(
            &a("/ip4/192.168.1.2/tcp/4001"),
            &[a("/ip4/203.0.113.9/tcp/4001")]
        ));
    }

    #[test]
    fn public_and_relayed_addresses_are_dialed_when_the_relay_is() {
        let own = [a("/ip4/192.168.1.3/tcp/4001")];
        assert!(dialable_from(&a("/ip4/203.0.113.7/tcp/4001"), &own));
        let relay = "/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit";
        assert!(dialable_from(
            &a(&format!("/ip4/203.0.113.7/tcp/4001{relay}")),
            &own
        ));
        assert!(!dialable_from(
            &a(&format!("/ip4/127.0.0.1/tcp/4001{relay}")),
            &own
        ));
        assert!(!dialable_from(&a("/ip4/0.0.0.0/tcp/4001"), &own));
    }
}
