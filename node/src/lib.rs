//! The DistributeAI node: the `distributeai` binary's library.
//!
//! - [`cli`]: the command line (clap), one subcommand per user action.
//! - [`executor`]: running a job in a sandboxed Docker container.
//! - [`host`]: what this machine can offer (CPUs, memory, GPUs).
//! - [`paths`]: where a node keeps its data.
//!
//! The mesh, executor, store and API are built on the protocol crate's types and the
//! verifier's decisions; see `docs/architecture.md` for how a job flows through them.

pub mod cli;
pub mod executor;
pub mod host;
pub mod paths;

pub use cli::{Cli, run};
