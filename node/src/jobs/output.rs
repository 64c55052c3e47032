//! A job's output bundle: the worker serves it, the submitter fetches, checks and keeps it.
//!
//! The bundle is the job's stdout followed by each file of the manifest in manifest order, with
//! no framing: the manifest's sizes split it and its hashes check every piece, and the
//! manifest's own canonical hash must equal the agreed result hash.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use distributeai_protocol::result_hash::is_canonical_output_path;
use distributeai_protocol::{ContentEntry, OutputManifest, ResultHash};

/// File holding a job's stdout inside its folder.
pub const STDOUT_FILE: &str = "stdout";
/// Folder holding a job's `/out` files inside its folder.
pub const OUT_DIR: &str = "out";

/// The pieces of a bundle, in order, as paths inside a job folder.
fn pieces(dir: &Path, manifest: &OutputManifest) -> Vec<(PathBuf, u64)> {
    std::iter::once((dir.join(STDOUT_FILE), manifest.stdout.size))
        .chain(
            manifest
                .files
                .iter()
                .map(|f| (dir.join(OUT_DIR).join(&f.path), f.content.size)),
        )
        .collect()
}

/// Reads up to `max` bytes of the bundle from `offset` (worker side).
pub fn read_bundle(
    dir: &Path,
    manifest: &OutputManifest,
    offset: u64,
    max: usize,
) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut start = 0u64;
    for (path, size) in pieces(dir, manifest) {
        let end = start + size;
        if offset < end && out.len() < max {
            let within = offset.max(start) - start;
            let mut file = fs::File::open(&path)?;
            file.seek(SeekFrom::Start(within))?;
            let want = ((size - within) as usize).min(max - out.len());
            let mut buf = vec![0u8; want];
            file.read_exact(&mut buf)?;
            out.extend_from_slice(&buf);
        }
        start = end;
    }
    Ok(out)
}

/// Why a fetched bundle was refused.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The manifest does not hash to the agreed result.
    #[error("the manifest does not match the agreed result hash")]
    ManifestMismatch,
    /// A piece's bytes do not match the manifest.
    #[error("{0} does not match its hash in the manifest")]
    PieceMismatch(String),
    /// The bundle's length is not the manifest's.
    #[error("the output is {got} bytes, the manifest says {expected}")]
    Length {
        /// Bytes received.
        got: u64,
        /// Bytes expected.
        expected: u64,
    },
    /// A path in the manifest is not a safe relative path.
    #[error("unsafe output path {0:?}")]
    UnsafePath(String),
    /// Writing failed.
    #[error("writing the output: {0}")]
    Io(#[from] io::Error),
}

/// Splits a fetched bundle into `dir` (stdout + out/...) after checking every piece and the
/// manifest against `agreed`. Writes into a temporary folder first and renames it, so `dir`
/// only ever holds verified output.
pub fn store_verified(
    bundle: &[u8],
    manifest: &OutputManifest,
    agreed: &ResultHash,
    dir: &Path,
) -> Result<(), BundleError> {
    if manifest.result_hash().ok() != Some(*agreed) {
        return Err(BundleError::ManifestMismatch);
    }
    let expected = manifest.bundle_len();
    if bundle.len() as u64 != expected {
        return Err(BundleError::Length {
            got: bundle.len() as u64,
            expected,
        });
    }
    let tmp = dir.with_extension("partial");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(tmp.join(OUT_DIR))?;
    let mut at = 0usize;
    let check = |name: &str, bytes: &[u8], entry: &ContentEntry| {
        if ContentEntry::of(bytes) == *entry {
            Ok(())
        } else {
            Err(BundleError::PieceMismatch(name.to_string()))
        }
    };
    let stdout_len = manifest.stdout.size as usize;
    let stdout = &bundle[..stdout_len];
    check("stdout", stdout, &manifest.stdout)?;
    fs::write(tmp.join(STDOUT_FILE), stdout)?;
    at += stdout_len;
    for file in &manifest.files {
        if !is_canonical_output_path(&file.path) {
            return Err(BundleError::UnsafePath(file.path.clone()));
        }
        let len = file.content.size as usize;
        let bytes = &bundle[at..at + len];
        check(&file.path, bytes, &file.content)?;
        let path = tmp.join(OUT_DIR).join(&file.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut f = fs::File::create(&path)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        at += len;
    }
    let _ = fs::remove_dir_all(dir);
    fs::rename(&tmp, dir)?;
    Ok(())
}

/// A tar archive of the `out/` files of a stored output.
pub fn tar_of_outputs(dir: &Path) -> io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    let out = dir.join(OUT_DIR);
    if out.exists() {
        builder.append_dir_all(".", &out)?;
    }
    builder.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> OutputManifest {
        fs::create_dir_all(dir.join(OUT_DIR).join("d")).expect("mkdir");
        fs::write(dir.join(STDOUT_FILE), b"hello\n").expect("write");
        fs::write(dir.join(OUT_DIR).join("a.txt"), b"A").expect("write");
        fs::write(dir.join(OUT_DIR).join("d/b.bin"), vec![7u8; 3000]).expect("write");
        OutputManifest::from_outputs(
            0,
            "sha256:1212121212121212121212121212121212121212121212121212121212121212",
            b"hello\n",
            &[
                ("a.txt".into(), b"A".to_vec()),
                ("d/b.bin".into(), vec![7u8; 3000]),
            ],
        )
        .expect("manifest")
    }

    #[test]
    fn a_bundle_read_in_chunks_verifies_and_unpacks() {
        let worker = tempfile::tempdir().expect("tempdir");
        let manifest = sample(worker.path());
        let total = manifest.bundle_len();
        let mut bundle = Vec::new();
        while (bundle.len() as u64) < total {
            bundle.extend(
                read_bundle(worker.path(), &manifest, bundle.len() as u64, 1000).expect("read"),
            );
        }
        let agreed = manifest.result_hash().expect("hash");
        let submitter = tempfile::tempdir().expect("tempdir");
        let dest = submitter.path().join("job");
        store_verified(&bundle, &manifest, &agreed, &dest).expect("verified");
        assert_eq!(fs::read(dest.join(STDOUT_FILE)).expect("read"), b"hello\n");
        assert_eq!(
            fs::read(dest.join("out/d/b.bin")).expect("read").len(),
            3000
        );
        let tar = tar_of_outputs(&dest).expect("tar");
        let names: Vec<String> = tar::Archive::new(tar.as_slice())
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert!(names.iter().any(|n| n.ends_with("d/b.bin")), "{names:?}");

        // One flipped byte, a wrong agreed hash, or a short bundle are all refused.
        let mut tampered = bundle.clone();
        tampered[7] ^= 1;
        assert!(matches!(
            store_verified(&tampered, &manifest, &agreed, &dest),
            Err(BundleError::PieceMismatch(_))
        ));
        assert!(matches!(
            store_verified(&bundle, &manifest, &ResultHash([0; 32]), &dest),
            Err(BundleError::ManifestMismatch)
        ));
        assert!(matches!(
            store_verified(&bundle[1..], &manifest, &agreed, &dest),
            Err(BundleError::Length { .. })
        ));
    }
}
