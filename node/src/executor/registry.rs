//! Which registries a worker lets its engine pull job images from (issue 20).
//!
//! A job names its image, and so the registry the worker's Docker engine connects to when the
//! image is not already here. Left open, any stranger can make a home worker's engine open
//! connections to hosts on the owner's own machine or LAN (`localhost:5000/x`,
//! `192.168.1.1:80/x`, `nas:5000/x`): a request forgery from inside the home network. So the
//! policy is checked before a worker bids and again right before it pulls:
//! - the registry is the first part of the reference when it holds a `.` or `:` or is
//!   `localhost` (Docker's own rule, `distribution/reference`); otherwise it is Docker Hub;
//! - by default, refused: `localhost` and `*.localhost`, single-label host names (`nas:5000`,
//!   only a LAN can resolve them), `*.local`, `*.internal`, `*.lan`, `*.home.arpa`, and IP
//!   literals that are loopback, private (RFC 1918, IPv6 unique local), link-local, carrier-grade
//!   NAT (RFC 6598), unspecified or multicast;
//! - an operator may list the registries it allows (`--pull-registry`, exact host names, with
//!   `docker.io` for Docker Hub): every other one is refused, private ones included unless
//!   listed. Listing a private registry is how an operator allows its own.
//!
//! Not covered: a public name that resolves to a private address (DNS rebinding). The engine
//! resolves names itself, so only an egress firewall on the host closes that; the default
//! refusals above cover what a job can name directly.

use std::net::IpAddr;

/// The registry a pull of `image` contacts: its host and port as written, or `docker.io`.
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

/// The host part of a registry (`127.0.0.1` of `127.0.0.1:5000`, `::1` of `[::1]:5000`),
/// lowercased.
fn host_of(registry: &str) -> String {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        match registry.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => registry,
        }
    };
    host.to_ascii_lowercase()
}

/// Whether `ip` is an address of this machine or its local network, not the internet's.
fn is_local_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || (a == 100 && (64..128).contains(&b)) // RFC 6598 carrier-grade NAT
                || a == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_local_ip(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        }
    }
}

/// Suffixes of names only a local network resolves.
const LOCAL_SUFFIXES: &[&str] = &[".localhost", ".local", ".internal", ".lan", ".home.arpa"];

/// Why the registry's host belongs to this machine or its LAN, if it does.
fn local_host(host: &str) -> Option<&'static str> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return is_local_ip(ip).then_some("an address of this machine or its local network");
    }
    if host == "localhost" || LOCAL_SUFFIXES.iter().any(|s| host.ends_with(s)) {
        return Some("a name of this machine or its local network");
    }
    if !host.contains('.') {
        return Some("a single-label name, which only a local network resolves");
    }
    None
}

/// Where a worker may pull images from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryPolicy {
    /// Registries allowed, exact (`docker.io`, `ghcr.io`, `registry.example:5000`); empty
    /// allows every registry on the internet and none on this machine or its LAN.
    pub allowed: Vec<String>,
}

impl RegistryPolicy {
    /// Whether this worker may pull `image`; the error names the registry and the rule.
    pub fn check(&self, image: &str) -> Result<(), String> {
        let registry = registry_of(image);
        if !self.allowed.is_empty() {
            let listed = self
                .allowed
                .iter()
                .any(|r| r.eq_ignore_ascii_case(registry));
            return if listed {
                Ok(())
            } else {
                Err(format!(
                    "registry {registry} is not among the registries this worker pulls from ({})",
                    self.allowed.join(", ")
                ))
            };
        }
        match local_host(&host_of(registry)) {
            Some(why) => Err(format!(
                "registry {registry} is {why}; workers do not pull from those unless their \
                 operator lists it (--pull-registry)"
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_is_docker_hub_unless_the_first_part_names_a_host() {
        assert_eq!(registry_of("alpine"), "docker.io");
        assert_eq!(registry_of("library/alpine:3"), "docker.io");
        assert_eq!(registry_of("ghcr.io/a/b@sha256:00"), "ghcr.io");
        assert_eq!(registry_of("localhost/x"), "localhost");
        assert_eq!(registry_of("localhost:5000/x"), "localhost:5000");
        assert_eq!(registry_of("[::1]:5000/x"), "[::1]:5000");
        assert_eq!(registry_of("nas:5000/x"), "nas:5000");
    }

    #[test]
    fn registries_on_this_machine_or_its_lan_are_refused_by_default() {
        let policy = RegistryPolicy::default();
        for refused in [
            "localhost:5000/x",
            "localhost/x",
            "LOCALHOST:5000/x",
            "foo.localhost/x",
            "127.0.0.1:5000/x",
            "127.8.9.1/x",
            "0.0.0.0:5000/x",
            "10.0.0.2/x",
            "172.16.5.4:443/x",
            "192.168.1.1:80/x",
            "169.254.169.254/x",
            "100.64.0.1/x",
            "[::1]:5000/x",
            "[fd00::1]/x",
            "[fe80::1]:5000/x",
            "[::ffff:127.0.0.1]:5000/x",
            "nas:5000/x",
            "printer.local/x",
            "registry.internal/x",
            "box.lan:5000/x",
            "x.home.arpa/y",
        ] {
            let err = policy.check(refused).expect_err(refused);
            assert!(err.contains("registry"), "{refused}: {err}");
        }
        for allowed in [
            "alpine",
            "docker.io/library/alpine",
            "ghcr.io/org/img:1",
            "registry.example.com:5000/x",
            "8.8.8.8/x",
            "[2001:db8::1]:5000/x",
        ] {
            assert_eq!(policy.check(allowed), Ok(()), "{allowed}");
        }
    }

    #[test]
    fn an_operator_list_allows_exactly_its_registries() {
        let policy = RegistryPolicy {
            allowed: vec!["docker.io".into(), "localhost:5000".into()],
        };
        assert_eq!(policy.check("alpine"), Ok(()));
        assert_eq!(policy.check("localhost:5000/mine"), Ok(()));
        let err = policy.check("ghcr.io/a/b").expect_err("not listed");
        assert!(
            err.contains("ghcr.io") && err.contains("docker.io"),
            "{err}"
        );
        assert!(policy.check("localhost:5001/x").is_err());
    }
}
