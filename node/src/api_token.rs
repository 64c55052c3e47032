//! The API's bearer token (issue 20): what lets a node serve its API beyond loopback.
//!
//! The API submits and cancels jobs with the node's identity and credits, so by default it
//! listens on loopback only. An operator who wants it reachable from other machines first
//! creates a token (`distributeai api-token`), 32 random bytes in hex kept in
//! `<data dir>/api-token` with mode 0600 like the identity; a node refuses to bind its API to
//! a non-loopback address without one. Once the file exists, every route but `/healthz`,
//! `/metrics` and the page's static files needs it, as `Authorization: Bearer <token>` (the
//! CLI and TUI: `--api-token` or `DISTRIBUTEAI_API_TOKEN`, else the file in the default data
//! directory) or, for the page in a browser, the `distributeai_token` cookie the page sets
//! from the `#token=` part of its address (SameSite=Strict, so other sites cannot use it).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// File name of the token inside the data directory.
pub const TOKEN_FILE: &str = "api-token";

/// Name of the cookie the page keeps the token in.
pub const TOKEN_COOKIE: &str = "distributeai_token";

/// Why the token could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file could not be read or written.
    #[error("cannot access the API token file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Others may read it.
    #[error(
        "the API token file {path} is readable by others (mode {mode:o}): chmod 600 it, or \
         delete it and create a new token"
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// It does not hold a token of the expected shape.
    #[error(
        "the API token file {path} does not hold 64 hex digits: delete it and create a new token"
    )]
    Corrupted {
        /// The file.
        path: PathBuf,
    },
    /// The system's random number generator failed.
    #[error("cannot generate a token: {0}")]
    Random(String),
}

/// The token in `data_dir`, if one was created.
pub fn load(data_dir: &Path) -> Result<Option<String>, TokenError> {
    let path = data_dir.join(TOKEN_FILE);
    let io_err = |source| TokenError::Io {
        path: path.clone(),
        source,
    };
    let metadata = match fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TokenError::InsecurePermissions { path, mode });
    }
    let text = fs::read_to_string(&path).map_err(io_err)?;
    let token = text.trim();
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TokenError::Corrupted { path });
    }
    Ok(Some(token.to_string()))
}

/// The token in `data_dir`, created (mode 0600) if there is none; and whether it was created.
pub fn load_or_create(data_dir: &Path) -> Result<(String, bool), TokenError> {
    if let Some(token) = load(data_dir)? {
        return Ok((token, false));
    }
    let path = data_dir.join(TOKEN_FILE);
    let io_err = |source| TokenError::Io {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(data_dir).map_err(io_err)?;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| TokenError::Random(e.to_string()))?;
    let token = hex::encode(secret);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_err)?;
    file.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_err)?;
    Ok((token, true))
}

/// Whether `given` is `token`, in time independent of where they differ.
pub fn matches(token: &str, given: &str) -> bool {
    token.len() == given.len()
        && token
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(dir.path()).expect("no token"), None);
        let (token, created) = load_or_create(dir.path()).expect("create");
        assert!(created);
        assert_eq!(token.len(), 64);
        let mode = fs::metadata(dir.path().join(TOKEN_FILE))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            load_or_create(dir.path()).expect("again"),
            (token.clone(), false)
        );
        assert!(matches(&token, &token));
        assert!(!matches(&token, &token[1..]));
        assert!(!matches(&token, &"0".repeat(64)));

        fs::set_permissions(
            dir.path().join(TOKEN_FILE),
            fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        let err = load(dir.path()).expect_err("insecure");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        fs::set_permissions(
            dir.path().join(TOKEN_FILE),
            fs::Permissions::from_mode(0o600),
        )
        .expect("chmod");
        fs::write(dir.path().join(TOKEN_FILE), "short").expect("write");
        assert!(matches!(
            load(dir.path()),
            Err(TokenError::Corrupted { .. })
        ));
    }
}
