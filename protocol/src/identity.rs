//! A node's identity: one ed25519 keypair that signs every message the node sends and is also
//! its libp2p identity, so the `PeerId` a message arrives from and the key that signed it can
//! be tied together.
//!
//! The secret lives in `<data dir>/identity.key` (mode 0600), created on first start. The file
//! carries a magic header and a blake3 checksum, so a damaged file is reported as damaged
//! instead of silently becoming a different identity.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};

use crate::digest::{PublicKey, SignatureBytes};

/// File name of the identity inside a node's data directory.
pub const IDENTITY_FILE: &str = "identity.key";

const MAGIC: &[u8; 8] = b"DAIKEY01";
const SECRET_LEN: usize = 32;
const CHECKSUM_LEN: usize = 32;
const FILE_LEN: usize = MAGIC.len() + SECRET_LEN + CHECKSUM_LEN;

/// Why an identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key file or its directory could not be read or written.
    #[error("cannot access identity file {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The key file exists but is not a valid identity.
    #[error(
        "identity file {path} is corrupted ({reason}); refusing to create a new identity over it: \
         restore it from a backup, or move it away to start as a new node"
    )]
    Corrupted {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The key file can be read by other users.
    #[error(
        "identity file {path} is readable by other users (mode {mode:o}); run: chmod 600 {path}"
    )]
    InsecurePermissions {
        /// The file concerned.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The system's random number generator failed.
    #[error("cannot generate a key: {0}")]
    Random(String),
    /// A 32-byte string is not a valid ed25519 public key.
    #[error("not a valid ed25519 public key")]
    InvalidPublicKey,
}

/// A node's signing keypair.
#[derive(Clone)]
pub struct NodeIdentity {
    signing_key: SigningKey,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("NodeIdentity")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

impl NodeIdentity {
    /// A fresh random identity (not stored anywhere).
    pub fn generate() -> Result<Self, IdentityError> {
        let mut secret = [0u8; SECRET_LEN];
        getrandom::fill(&mut secret).map_err(|e| IdentityError::Random(e.to_string()))?;
        Ok(Self::from_secret(secret))
    }

    /// The identity with this 32-byte ed25519 secret.
    pub fn from_secret(secret: [u8; SECRET_LEN]) -> Self {
        Self {
            signing_key: SigningKey::from_bytes(&secret),
        }
    }

    /// Loads the identity from `data_dir`, creating it (and the directory) on first start.
    ///
    /// Returns the identity and whether it was newly created.
    pub fn load_or_create(data_dir: &Path) -> Result<(Self, bool), IdentityError> {
        let path = data_dir.join(IDENTITY_FILE);
        match fs::symlink_metadata(&path) {
            Ok(_) => return Self::load(&path).map(|id| (id, false)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(IdentityError::Io { path, source }),
        }
        create_private_dir(data_dir)?;
        let identity = Self::generate()?;
        match identity.write_new(&path) {
            Ok(()) => Ok((identity, true)),
            // Another process created it between our check and our write: use theirs.
            Err(IdentityError::Io { source, .. })
                if source.kind() == io::ErrorKind::AlreadyExists =>
            {
                Self::load(&path).map(|id| (id, false))
            }
            Err(e) => Err(e),
        }
    }

    /// Loads an existing identity file.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let io_err = |source| IdentityError::Io {
            path: path.to_path_buf(),
            source,
        };
        let metadata = fs::metadata(path).map_err(io_err)?;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::InsecurePermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let bytes = fs::read(path).map_err(io_err)?;
        let corrupted = |reason| IdentityError::Corrupted {
            path: path.to_path_buf(),
            reason,
        };
        if bytes.len() != FILE_LEN {
            return Err(corrupted("wrong length"));
        }
        let (magic, rest) = bytes.split_at(MAGIC.len());
        let (secret, checksum) = rest.split_at(SECRET_LEN);
        if magic != MAGIC {
            return Err(corrupted("not a distributeai identity file"));
        }
        if checksum != file_checksum(secret) {
            return Err(corrupted("checksum mismatch"));
        }
        let secret: [u8; SECRET_LEN] = secret.try_into().map_err(|_| corrupted("wrong length"))?;
        Ok(Self::from_secret(secret))
    }

    /// Writes the identity to a file that must not exist yet, with mode 0600.
    fn write_new(&self, path: &Path) -> Result<(), IdentityError> {
        let io_err = |source| IdentityError::Io {
            path: path.to_path_buf(),
            source,
        };
        let secret = self.signing_key.to_bytes();
        let mut contents = Vec::with_capacity(FILE_LEN);
        contents.extend_from_slice(MAGIC);
        contents.extend_from_slice(&secret);
        contents.extend_from_slice(&file_checksum(&secret));

        // Write beside the target and rename, so a crash never leaves a half-written key that
        // would later read as corrupted; create_new on the final name keeps two concurrent
        // starts from each writing a different key.
        let tmp = path.with_extension("key.tmp");
        let _ = fs::remove_file(&tmp);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err)?;
        file.write_all(&contents).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        drop(file);
        fs::hard_link(&tmp, path).map_err(io_err)?;
        fs::remove_file(&tmp).map_err(io_err)?;
        Ok(())
    }

    /// The public half, which identifies this node in every signed message.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.signing_key.verifying_key().to_bytes())
    }

    /// The libp2p `PeerId`, derived from the same public key.
    pub fn peer_id(&self) -> libp2p_identity::PeerId {
        self.libp2p_keypair().public().to_peer_id()
    }

    /// The same key as a libp2p keypair, for building the swarm.
    pub fn libp2p_keypair(&self) -> libp2p_identity::Keypair {
        // A 32-byte ed25519 secret is always accepted.
        libp2p_identity::Keypair::ed25519_from_bytes(self.signing_key.to_bytes())
            .expect("a 32-byte ed25519 secret is always a valid libp2p key")
    }

    /// Signs raw bytes. Callers sign through [`crate::Signed`], which adds domain separation.
    pub(crate) fn sign_raw(&self, message: &[u8]) -> SignatureBytes {
        SignatureBytes(self.signing_key.sign(message).to_bytes())
    }
}

fn file_checksum(secret: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(MAGIC);
    hasher.update(secret);
    *hasher.finalize().as_bytes()
}

fn create_private_dir(dir: &Path) -> Result<(), IdentityError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| IdentityError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reloaded_identical() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("node");
        let (first, created) = NodeIdentity::load_or_create(&data).expect("create");
        assert!(created);
        let mode = fs::metadata(data.join(IDENTITY_FILE))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (second, created) = NodeIdentity::load_or_create(&data).expect("reload");
        assert!(!created);
        assert_eq!(first.public_key(), second.public_key());
        assert_eq!(first.peer_id(), second.peer_id());
        assert!(!data.join("identity.key.tmp").exists());
    }

    #[test]
    fn every_corruption_is_refused_and_the_file_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, _) = NodeIdentity::load_or_create(dir.path()).expect("create");
        let path = dir.path().join(IDENTITY_FILE);
        let good = fs::read(&path).expect("read");
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            fs::write(&path, &bad).expect("write");
            let err = NodeIdentity::load_or_create(dir.path()).expect_err("corrupted byte {i}");
            assert!(matches!(err, IdentityError::Corrupted { .. }), "{err}");
            // The damaged file is left for the user to inspect, never replaced.
            assert_eq!(fs::read(&path).expect("read"), bad);
        }
        fs::write(&path, &good[..good.len() - 1]).expect("write");
        assert!(matches!(
            NodeIdentity::load(&path),
            Err(IdentityError::Corrupted {
                reason: "wrong length",
                ..
            })
        ));
        fs::write(&path, b"").expect("write");
        assert!(matches!(
            NodeIdentity::load(&path),
            Err(IdentityError::Corrupted { .. })
        ));
    }

    #[test]
    fn group_readable_key_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        NodeIdentity::load_or_create(dir.path()).expect("create");
        let path = dir.path().join(IDENTITY_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = NodeIdentity::load(&path).expect_err("insecure");
        assert!(matches!(
            err,
            IdentityError::InsecurePermissions { mode: 0o644, .. }
        ));
        assert!(err.to_string().contains("chmod 600"));
    }

    #[test]
    fn peer_id_matches_libp2p_derivation() {
        let identity = NodeIdentity::from_secret([7u8; 32]);
        // Derive independently through libp2p's own ed25519 types from the public key alone.
        let libp2p_public =
            libp2p_identity::ed25519::PublicKey::try_from_bytes(identity.public_key().as_bytes())
                .expect("valid key");
        let expected = libp2p_identity::PublicKey::from(libp2p_public).to_peer_id();
        assert_eq!(identity.peer_id(), expected);
        assert_eq!(identity.public_key().peer_id().expect("peer id"), expected);
        // And a signature made by the libp2p keypair verifies with our public key: one key.
        let sig = identity.libp2p_keypair().sign(b"hello").expect("sign");
        let ours =
            ed25519_dalek::VerifyingKey::from_bytes(identity.public_key().as_bytes()).expect("key");
        let sig = ed25519_dalek::Signature::from_slice(&sig).expect("sig");
        ours.verify_strict(b"hello", &sig).expect("verifies");
        // The PeerId gives the key back; one that embeds no ed25519 key does not.
        assert_eq!(
            crate::PublicKey::from_peer_id(&identity.peer_id()).expect("ed25519 peer id"),
            identity.public_key()
        );
        // A sha2-256 multihash (code 0x12, 32 bytes), as PeerIds of larger keys are.
        let mut sha2 = vec![0x12, 0x20];
        sha2.extend([1u8; 32]);
        let other = libp2p_identity::PeerId::from_bytes(&sha2).expect("peer id");
        assert!(crate::PublicKey::from_peer_id(&other).is_err());
    }
}
