//! The `distributeai-bootstrap` binary.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    distributeai_node::cli::init_logging();
    match distributeai_bootstrap::run(distributeai_bootstrap::Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
