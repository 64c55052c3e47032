//! The `distributeai` binary: parses the command line and hands it to the library.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = distributeai_node::Cli::parse();
    // The TUI owns the screen: nothing may be written to it behind ratatui's back.
    if !matches!(cli.command, distributeai_node::cli::Command::Tui { .. }) {
        distributeai_node::cli::init_logging(cli.log_format);
    }
    match distributeai_node::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader went away (`distributeai get ID | head -1`): nothing left to say.
        Err(e) if closed_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Whether an error comes from writing our output to a pipe whose reader has closed it (and
/// not, say, from a connection the node broke off).
fn closed_pipe(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<distributeai_node::StdoutError>()
        .is_some_and(distributeai_node::StdoutError::is_closed_pipe)
}
