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
        // The reader went away (`distributeai get ID | head -1`): nothing left to say.
        Err(e) if closed_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Whether an error comes from writing to a pipe whose reader has closed it.
fn closed_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
