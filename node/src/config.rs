//! The node's TOML config file: the same options as `distributeai node`'s flags, which
//! override it. Unknown keys are an error, so a typo is reported instead of ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use libp2p::Multiaddr;
use serde::Deserialize;

/// File name of the config inside the data directory, read when `--config` is not given.
pub const CONFIG_FILE: &str = "config.toml";

/// The config file's contents; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// Multiaddrs to listen on.
    pub listen: Option<Vec<Multiaddr>>,
    /// Bootstrap peers (`/ip4/…/tcp/…/p2p/<PeerId>`).
    pub bootstrap: Option<Vec<Multiaddr>>,
    /// Discover peers on the LAN by mDNS.
    pub mdns: Option<bool>,
    /// Address of the local HTTP API.
    pub api: Option<SocketAddr>,
    /// CPUs offered to jobs.
    pub cpus: Option<u32>,
    /// Memory offered to jobs, in MiB.
    pub memory_mb: Option<u64>,
    /// Region label.
    pub region: Option<String>,
    /// Whether to bid for and run jobs.
    pub worker: Option<bool>,
    /// Force Kademlia server mode (reachable nodes should).
    pub kad_server: Option<bool>,
    /// Relay for nodes behind NAT when this node is publicly reachable (default false).
    pub relay_service: Option<bool>,
    /// The network's genesis identities, by PeerId (see `distributeai node --genesis`).
    pub genesis: Option<Vec<libp2p::PeerId>>,
    /// Whether to pull images this machine lacks (default true).
    pub pull: Option<bool>,
    /// Registries to pull from (see `distributeai node --pull-registry`).
    pub pull_registries: Option<Vec<String>>,
}

/// Why the config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// It could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// It is not valid TOML of the expected shape.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
}

impl FileConfig {
    /// Reads `path`; a missing file is an error.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Reads `<data_dir>/config.toml` if it exists.
    pub fn load_default(data_dir: &Path) -> Result<Self, ConfigError> {
        let path = data_dir.join(CONFIG_FILE);
        if path.exists() {
            Self::load(&path)
        } else {
            Ok(Self::default())
        }
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_option_and_refuses_typos() {
        let config = FileConfig::parse(
            r#"
            listen = ["/ip4/0.0.0.0/tcp/4001"]
            bootstrap = ["/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWGRUVh8nQnR6GMYr4k5s7pG8GyJ3jBWwmLEpX5t5rD4zs"]
            mdns = false
            api = "127.0.0.1:7171"
            cpus = 2
            memory_mb = 2048
            region = "eu-west"
            worker = false
            kad_server = true
            genesis = ["12D3KooWGRUVh8nQnR6GMYr4k5s7pG8GyJ3jBWwmLEpX5t5rD4zs"]
            "#,
        )
        .expect("valid");
        assert_eq!(config.cpus, Some(2));
        assert_eq!(config.api, Some("127.0.0.1:7171".parse().expect("addr")));
        assert_eq!(config.bootstrap.as_ref().map(Vec::len), Some(1));
        assert_eq!(config.genesis.as_ref().map(Vec::len), Some(1));
        let bad_genesis = FileConfig::parse(r#"genesis = ["not a peer id"]"#).expect_err("bad id");
        assert!(bad_genesis.contains("genesis"), "{bad_genesis}");

        let typo = FileConfig::parse("bootstrapp = []").expect_err("unknown key");
        assert!(typo.contains("bootstrapp"), "{typo}");
        let bad_addr = FileConfig::parse(r#"listen = ["not a multiaddr"]"#).expect_err("bad addr");
        assert!(!bad_addr.is_empty());
        assert!(FileConfig::parse("cpus = -1").is_err());
    }
}
