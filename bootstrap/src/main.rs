//! The `distributeai-bootstrap` binary.

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let filter = EnvFilter::try_from_env("DISTRIBUTEAI_LOG").unwrap_or_else(|_| {
        EnvFilter::new("info,libp2p_mdns=warn,libp2p_gossipsub=warn,libp2p_kad=error")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match distributeai_bootstrap::run(distributeai_bootstrap::Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
