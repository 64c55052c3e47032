//! The canonical result hash, and the commitment that hides it until all workers have answered.
//!
//! # The rule
//!
//! Every worker and the submitter compute the result hash of an execution identically:
//!
//! ```text
//! result_hash = blake3(
//!     "distributeai/result/v2\0"
//!     end                           u8 tag: 0 exited, 1 timed out, 2 out of memory,
//!                                   3 output too large, 4 cannot start, 5 image unavailable
//!     exit_code                     i64, little-endian (0 unless exited)
//!     image_len image               u64 LE, the image id that ran (`sha256:…`, or empty)
//!     stdout.size  stdout.hash      u64 LE, blake3 of the captured stdout (32 bytes)
//!     file_count                    u64 LE
//!     for each regular file under /out, sorted by path bytewise:
//!         path_len path             u64 LE, UTF-8 path relative to /out, '/'-separated
//!         size hash                 u64 LE, blake3 of the file's bytes
//! )
//! ```
//!
//! **How the job ended counts**, so k workers agreeing that a job timed out decide it as
//! surely as k agreeing on its output; a job that did not exit has no output (empty stdout,
//! no files), since how far it got differs between honest runs. **The image id counts**, so
//! a worker that ran another image under the same reference never agrees.
//!
//! **stderr does not count.** It carries diagnostics (progress bars, timings, warnings, pids)
//! that differ between honest runs of the same deterministic job; the answer a job computes
//! belongs in stdout and `/out`. stderr is still captured and shown in the logs.
//!
//! Only regular files count: directories are implied by paths, and symlinks or device nodes
//! are not outputs. File metadata (times, modes, owners) does not count, since it differs
//! between hosts. Each file is hashed separately so that a fetched output can be checked file
//! by file against the manifest, and the manifest against the agreed hash.

use crate::digest::{Digest, JobId, PublicKey, ResultHash};
use crate::messages::{ContentEntry, JobEnd, OutputFile, OutputManifest};

const RESULT_DOMAIN: &[u8] = b"distributeai/result/v2\0";
const COMMITMENT_DOMAIN: &[u8] = b"distributeai/commitment/v1\0";

/// Why a manifest cannot be hashed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// A job that did not exit lists output.
    #[error("a job that ended as {0} has no output, yet the manifest lists some")]
    OutputWithoutExit(String),
    /// Paths are not strictly increasing (unsorted or duplicated).
    #[error("output files are not sorted by path with each path once (at {0:?})")]
    Unsorted(String),
    /// A path is empty, absolute, or has `.`/`..`/empty components.
    #[error("invalid output path {0:?}")]
    InvalidPath(String),
}

impl ContentEntry {
    /// The size and blake3 hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            size: bytes.len() as u64,
            hash: Digest::of(bytes),
        }
    }
}

/// Whether `path` is a canonical relative output path: non-empty components separated by `/`,
/// none of them `.` or `..`, no leading or trailing `/`, no NUL.
pub fn is_canonical_output_path(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\0')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

impl OutputManifest {
    /// Length in bytes of the output bundle a worker serves: stdout, then each file of the
    /// manifest in order, with no framing.
    pub fn bundle_len(&self) -> u64 {
        self.files.iter().fold(self.stdout.size, |total, f| {
            total.saturating_add(f.content.size)
        })
    }

    /// The manifest of a job that ended without exiting (timed out, ran out of memory...):
    /// no output.
    pub fn without_output(end: JobEnd, image: impl Into<String>) -> Self {
        Self {
            end,
            image: image.into(),
            stdout: ContentEntry::of(&[]),
            files: Vec::new(),
        }
    }

    /// Builds the manifest of a job that exited from its raw outputs: sorts the files and
    /// hashes every blob.
    pub fn from_outputs(
        exit_code: i64,
        image: impl Into<String>,
        stdout: &[u8],
        files: &[(String, Vec<u8>)],
    ) -> Result<Self, ManifestError> {
        let mut entries: Vec<OutputFile> = files
            .iter()
            .map(|(path, bytes)| OutputFile {
                path: path.clone(),
                content: ContentEntry::of(bytes),
            })
            .collect();
        entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        let manifest = Self {
            end: JobEnd::Exited { code: exit_code },
            image: image.into(),
            stdout: ContentEntry::of(stdout),
            files: entries,
        };
        manifest.check()?;
        Ok(manifest)
    }

    /// Checks the ordering and path rules the hash depends on, and that only a job that
    /// exited has output.
    pub fn check(&self) -> Result<(), ManifestError> {
        if !self.end.is_exit() && (self.stdout != ContentEntry::of(&[]) || !self.files.is_empty()) {
            return Err(ManifestError::OutputWithoutExit(self.end.describe()));
        }
        let mut previous: Option<&str> = None;
        for file in &self.files {
            if !is_canonical_output_path(&file.path) {
                return Err(ManifestError::InvalidPath(file.path.clone()));
            }
            if previous.is_some_and(|prev| prev.as_bytes() >= file.path.as_bytes()) {
                return Err(ManifestError::Unsorted(file.path.clone()));
            }
            previous = Some(&file.path);
        }
        Ok(())
    }

    /// The canonical result hash (see the module documentation for the rule).
    pub fn result_hash(&self) -> Result<ResultHash, ManifestError> {
        self.check()?;
        let mut h = blake3::Hasher::new();
        h.update(RESULT_DOMAIN);
        let (tag, code): (u8, i64) = match self.end {
            JobEnd::Exited { code } => (0, code),
            JobEnd::TimedOut => (1, 0),
            JobEnd::OutOfMemory => (2, 0),
            JobEnd::OutputTooLarge => (3, 0),
            JobEnd::CannotStart => (4, 0),
            JobEnd::ImageUnavailable => (5, 0),
        };
        h.update(&[tag]);
        h.update(&code.to_le_bytes());
        h.update(&(self.image.len() as u64).to_le_bytes());
        h.update(self.image.as_bytes());
        update_entry(&mut h, &self.stdout);
        h.update(&(self.files.len() as u64).to_le_bytes());
        for file in &self.files {
            h.update(&(file.path.len() as u64).to_le_bytes());
            h.update(file.path.as_bytes());
            update_entry(&mut h, &file.content);
        }
        Ok(ResultHash(*h.finalize().as_bytes()))
    }
}

fn update_entry(h: &mut blake3::Hasher, entry: &ContentEntry) {
    h.update(&entry.size.to_le_bytes());
    h.update(entry.hash.as_bytes());
}

/// The hiding commitment a worker sends before results are revealed.
///
/// It binds the worker's own key, the job and the attempt, so it cannot be replayed for another
/// job or opened by a worker who copied it; the random salt keeps the result hash hidden from
/// anyone who might guess likely outputs.
pub fn commitment(
    worker: &PublicKey,
    job_id: &JobId,
    attempt: u32,
    result_hash: &ResultHash,
    salt: &Digest,
) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(COMMITMENT_DOMAIN);
    h.update(worker.as_bytes());
    h.update(job_id.as_bytes());
    h.update(&attempt.to_le_bytes());
    h.update(result_hash.as_bytes());
    h.update(salt.as_bytes());
    Digest(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
        list.iter()
            .map(|(p, b)| (p.to_string(), b.to_vec()))
            .collect()
    }

    const IMAGE: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn hash(exit: i64, stdout: &[u8], f: &[(&str, &[u8])]) -> ResultHash {
        OutputManifest::from_outputs(exit, IMAGE, stdout, &files(f))
            .and_then(|m| m.result_hash())
            .expect("hash")
    }

    #[test]
    fn file_order_does_not_matter() {
        assert_eq!(
            hash(0, b"out", &[("b", b"2"), ("a", b"1")]),
            hash(0, b"out", &[("a", b"1"), ("b", b"2")])
        );
    }

    #[test]
    fn every_input_changes_the_hash() {
        let base = hash(0, b"out", &[("a", b"1")]);
        assert_ne!(base, hash(1, b"out", &[("a", b"1")]));
        assert_ne!(base, hash(0, b"out!", &[("a", b"1")]));
        assert_ne!(base, hash(0, b"out", &[("a", b"2")]));
        assert_ne!(base, hash(0, b"out", &[("b", b"1")]));
        assert_ne!(base, hash(0, b"out", &[]));
        assert_ne!(base, hash(0, b"out", &[("a", b"1"), ("c", b"")]));
        // Moving bytes between stdout and a file, or between path and content, is not a collision.
        assert_ne!(hash(0, b"ab", &[("x", b"")]), hash(0, b"a", &[("x", b"b")]));
        assert_ne!(hash(0, b"", &[("ab", b"c")]), hash(0, b"", &[("a", b"bc")]));
    }

    #[test]
    fn the_image_and_the_kind_of_end_change_the_hash() {
        let exited = |image: &str| {
            OutputManifest::from_outputs(0, image, b"out", &[])
                .and_then(|m| m.result_hash())
                .expect("hash")
        };
        assert_ne!(exited(IMAGE), exited(&IMAGE.replace('1', "2")));
        let ends = [
            JobEnd::Exited { code: 0 },
            JobEnd::TimedOut,
            JobEnd::OutOfMemory,
            JobEnd::OutputTooLarge,
            JobEnd::CannotStart,
            JobEnd::ImageUnavailable,
        ];
        let hashes: std::collections::HashSet<ResultHash> = ends
            .iter()
            .map(|end| {
                OutputManifest::without_output(*end, IMAGE)
                    .result_hash()
                    .expect("hash")
            })
            .collect();
        assert_eq!(hashes.len(), ends.len());
    }

    #[test]
    fn a_job_that_did_not_exit_has_no_output() {
        let mut m = OutputManifest::without_output(JobEnd::TimedOut, IMAGE);
        assert!(m.result_hash().is_ok());
        m.stdout = ContentEntry::of(b"partial");
        assert!(matches!(
            m.result_hash(),
            Err(ManifestError::OutputWithoutExit(_))
        ));
    }

    #[test]
    fn non_canonical_paths_are_refused() {
        for bad in ["", "/abs", "a/../b", "./a", "a//b", "a/", "nul\0"] {
            assert!(
                OutputManifest::from_outputs(0, IMAGE, b"", &files(&[(bad, b"")])).is_err(),
                "{bad:?}"
            );
        }
        assert!(matches!(
            OutputManifest::from_outputs(0, IMAGE, b"", &files(&[("a", b"1"), ("a", b"2")])),
            Err(ManifestError::Unsorted(_))
        ));
    }

    #[test]
    fn commitment_binds_worker_job_attempt_and_salt() {
        let (w1, w2) = (PublicKey([1; 32]), PublicKey([2; 32]));
        let job = JobId([3; 32]);
        let result = ResultHash([4; 32]);
        let salt = Digest([5; 32]);
        let c = commitment(&w1, &job, 0, &result, &salt);
        assert_ne!(c, commitment(&w2, &job, 0, &result, &salt));
        assert_ne!(c, commitment(&w1, &JobId([9; 32]), 0, &result, &salt));
        assert_ne!(c, commitment(&w1, &job, 1, &result, &salt));
        assert_ne!(c, commitment(&w1, &job, 0, &ResultHash([6; 32]), &salt));
        assert_ne!(c, commitment(&w1, &job, 0, &result, &Digest([7; 32])));
    }
}
