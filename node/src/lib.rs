//! The DistributeAI node: the `distributeai` binary's library.
//!
//! - [`api`]: the local HTTP API (axum).
//! - [`bounded`]: channels bounded by the bytes they hold as well as by count.
//! - [`budgets`]: every bound on what strangers can make the node hold or do.
//! - [`cli`]: the command line (clap), one subcommand per user action.
//! - [`client`]: CLI commands that use a running node's API.
//! - [`config`]: the TOML config file.
//! - [`executor`]: running a job in a sandboxed Docker container.
//! - [`host`]: what this machine can offer (CPUs, memory, GPUs).
//! - [`jobs`]: the job flow: submitter and worker sides, persisted in the store.
//! - [`ledger`]: verdicts, and the reputation and credits derived from them; sync with peers.
//! - [`metrics`]: Prometheus counters, e.g. messages dropped at the edge by reason.
//! - [`network`]: the libp2p mesh, owned by one task, driven through a cloneable client.
//! - [`paths`]: where a node keeps its data.
//! - [`peers`]: the table of known peers and their capabilities.
//! - [`service`]: a running node: network, API and the loop tying them together.
//! - [`store`]: persistent state in sled.
//!
//! The mesh, executor, store and API are built on the protocol crate's types and the
//! verifier's decisions; see `docs/architecture.md` for how a job flows through them.

/// Writes a line to stdout, returning the error (a closed pipe, say) to the caller instead of
/// panicking as `println!` does: `distributeai get ID | head -1` must not crash.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).map_err($crate::StdoutError)?
    }};
}

/// Writing the command's output to stdout failed. A closed pipe (the reader went away, as in
/// `distributeai get ID | head -1`) ends the command quietly; see `main`.
#[derive(Debug, thiserror::Error)]
#[error("writing to stdout: {0}")]
pub struct StdoutError(#[source] pub std::io::Error);

impl StdoutError {
    /// Whether the reader of our stdout has gone away.
    pub fn is_closed_pipe(&self) -> bool {
        self.0.kind() == std::io::ErrorKind::BrokenPipe
    }
}

pub mod api;
pub mod api_token;
pub mod bounded;
pub mod budgets;
pub mod cli;
pub mod client;
pub mod config;
pub mod dashboard;
pub mod executor;
pub mod host;
pub mod jobs;
pub mod ledger;
pub mod metrics;
pub mod network;
pub mod paths;
pub mod peers;
pub mod service;
pub mod store;

pub use cli::{Cli, run};
