//! The `distributeai` binary: parses the command line and hands it to the library.

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
    let cli = distributeai_node::Cli::parse();
    match distributeai_node::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
