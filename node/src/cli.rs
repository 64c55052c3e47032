//! The `distributeai` command line.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use distributeai_protocol::NodeIdentity;

/// DistributeAI: run jobs on a peer-to-peer compute network, verified by k-of-n agreement.
#[derive(Debug, Parser)]
#[command(name = "distributeai", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show this node's identity (PeerId and public key), creating it on first use.
    Identity {
        /// The node's data directory [default: $XDG_DATA_HOME/distributeai].
        #[arg(long, env = "DISTRIBUTEAI_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Identity { data_dir, json } => {
            let data_dir = resolve_data_dir(data_dir)?;
            let (identity, created) =
                NodeIdentity::load_or_create(&data_dir).with_context(|| {
                    format!("loading the node identity from {}", data_dir.display())
                })?;
            if json {
                let out = serde_json::json!({
                    "peer_id": identity.peer_id().to_string(),
                    "public_key": identity.public_key(),
                    "data_dir": data_dir,
                    "created": created,
                });
                println!("{out}");
            } else {
                if created {
                    eprintln!("created a new identity in {}", data_dir.display());
                }
                println!("peer_id:    {}", identity.peer_id());
                println!("public_key: {}", identity.public_key());
            }
            Ok(())
        }
    }
}

fn resolve_data_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    flag.or_else(crate::paths::default_data_dir)
        .context("no data directory: pass --data-dir, or set HOME or XDG_DATA_HOME")
}
