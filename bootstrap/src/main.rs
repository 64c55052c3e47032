//! The `distributeai-bootstrap` binary.

fn main() -> std::process::ExitCode {
    eprintln!(
        "distributeai-bootstrap: the bootstrap peer arrives with the mesh; nothing to run yet"
    );
    std::process::ExitCode::FAILURE
}
