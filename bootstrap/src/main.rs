//! The `distributeai-bootstrap` binary.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = distributeai_bootstrap::Args::parse();
    distributeai_node::cli::init_logging(args.log_format);
    match distributeai_bootstrap::run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
