//! End to end: the real `distributeai` binary creates an identity once and keeps it.

use std::process::Command;

fn identity_json(data_dir: &std::path::Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_distributeai"))
        .args(["identity", "--json", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("run distributeai");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

#[test]
fn identity_is_created_once_and_stable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = identity_json(dir.path());
    assert_eq!(first["created"], true);
    let second = identity_json(dir.path());
    assert_eq!(second["created"], false);
    assert_eq!(first["peer_id"], second["peer_id"]);
    assert!(
        first["peer_id"]
            .as_str()
            .is_some_and(|p| p.starts_with("12D3KooW"))
    );
}

#[test]
fn corrupted_identity_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    identity_json(dir.path());
    std::fs::write(dir.path().join("identity.key"), b"garbage").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_distributeai"))
        .args(["identity", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("corrupted") && stderr.contains("identity.key"),
        "{stderr}"
    );
}
