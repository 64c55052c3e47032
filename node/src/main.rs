//! The `distributeai` binary: parses the command line and hands it to the library.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = distributeai_node::Cli::parse();
    // The TUI owns the screen: nothing may be written to it behind ratatui's back.
    if !matches!(cli.command, distributeai_node::cli::Command::Tui { .. }) {
        distributeai_node::cli::init_logging();
    }
    match distributeai_node::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
