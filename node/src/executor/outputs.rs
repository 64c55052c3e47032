//! Collecting what a job wrote to `/out`, safely, into a manifest.
//!
//! The folder was writable by the job, so nothing in it is trusted: symlinks are never
//! followed (a link to `/etc/shadow` must not leak the host's file), only regular files count,
//! and the number and total size of files are capped.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use distributeai_protocol::result_hash::is_canonical_output_path;
use distributeai_protocol::{ContentEntry, Digest, JobEnd, OutputFile, OutputManifest};

/// Why outputs could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// More bytes or files than allowed.
    #[error("output too large: {0}")]
    TooLarge(String),
    /// A file name that cannot be part of a canonical manifest.
    #[error("invalid output file name {0:?}")]
    InvalidName(PathBuf),
    /// Reading the folder failed.
    #[error("reading outputs: {0}")]
    Io(#[from] io::Error),
}

/// Caps on a job's outputs.
#[derive(Debug, Clone, Copy)]
pub struct OutputCaps {
    /// Total bytes of all files.
    pub max_bytes: u64,
    /// Number of files.
    pub max_files: usize,
}

/// Size and number of entries under `dir`, without following symlinks: every file, folder
/// and other entry counts as one (issue 20: folders were not counted, so a million `mkdir`s
/// could exhaust the disk's inodes under the cap), and files and folders count their size.
/// Used while the job runs, to stop one that writes past the cap. An entry that vanishes
/// while it is walked (the job deleted it) is skipped; any other error is returned, and the
/// caller treats an output it cannot measure as over the cap.
pub fn usage(dir: &Path) -> io::Result<(u64, usize)> {
    let vanished = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
    let mut bytes = 0u64;
    let mut entries = 0usize;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let listing = match fs::read_dir(&current) {
            Ok(listing) => listing,
            Err(e) if vanished(&e) && current != dir => continue,
            Err(e) => return Err(e),
        };
        for entry in listing {
            let entry = entry?;
            let meta = match entry.metadata() {
                Ok(meta) => meta, // does not follow symlinks
                Err(e) if vanished(&e) => continue,
                Err(e) => return Err(e),
            };
            entries += 1;
            if meta.is_dir() {
                stack.push(entry.path());
            }
            if meta.is_dir() || meta.is_file() {
                bytes = bytes.saturating_add(meta.len());
            }
        }
    }
    Ok((bytes, entries))
}

/// Hashes every regular file under `dir` into the manifest's file list, sorted by path.
pub fn collect(dir: &Path, caps: OutputCaps) -> Result<Vec<OutputFile>, CollectError> {
    let mut files = Vec::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in fs::read_dir(&current)? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?; // does not follow symlinks
            if kind.is_dir() {
                stack.push(path);
                continue;
            }
            if !kind.is_file() {
                continue; // symlinks, fifos, sockets, devices are not outputs
            }
            let relative = path
                .strip_prefix(dir)
                .ok()
                .and_then(|p| p.to_str())
                .filter(|p| is_canonical_output_path(p))
                .ok_or_else(|| CollectError::InvalidName(path.clone()))?
                .to_owned();
            if files.len() >= caps.max_files {
                return Err(CollectError::TooLarge(format!(
                    "more than {} files",
                    caps.max_files
                )));
            }
            let content = hash_file(&path)?;
            total = total.saturating_add(content.size);
            if total > caps.max_bytes {
                return Err(CollectError::TooLarge(format!(
                    "more than {} bytes",
                    caps.max_bytes
                )));
            }
            files.push(OutputFile {
                path: relative,
                content,
            });
        }
    }
    files.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    Ok(files)
}

fn hash_file(path: &Path) -> io::Result<ContentEntry> {
    let mut hasher = blake3::Hasher::new();
    let file = fs::File::open(path)?;
    let size = io::copy(&mut io::BufReader::new(file), &mut hasher)?;
    Ok(ContentEntry {
        size,
        hash: Digest(*hasher.finalize().as_bytes()),
    })
}

/// Builds the manifest of a job that exited from its exit code, the image id that ran, the
/// captured stdout and the collected files.
pub fn manifest(
    exit_code: i64,
    image: &str,
    stdout: &[u8],
    files: Vec<OutputFile>,
) -> OutputManifest {
    OutputManifest {
        end: JobEnd::Exited { code: exit_code },
        image: image.to_string(),
        stdout: ContentEntry::of(stdout),
        files,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: OutputCaps = OutputCaps {
        max_bytes: 1024,
        max_files: 4,
    };

    #[test]
    fn collects_regular_files_sorted_and_ignores_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("sub")).expect("mkdir");
        fs::write(dir.path().join("sub/b.txt"), b"bb").expect("write");
        fs::write(dir.path().join("a.txt"), b"a").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("leak")).expect("symlink");
        let files = collect(dir.path(), CAPS).expect("collect");
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a.txt", "sub/b.txt"]);
        assert_eq!(files[1].content, ContentEntry::of(b"bb"));
        // The watchdog counts every entry (the folder and the link too) and the sizes of
        // files and folders, never what a link points to.
        let folder = fs::metadata(dir.path().join("sub")).expect("folder").len();
        assert_eq!(usage(dir.path()).expect("usage"), (3 + folder, 4));
    }

    #[test]
    fn usage_counts_folders_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        for i in 0..50 {
            fs::create_dir(dir.path().join(format!("d{i}"))).expect("mkdir");
        }
        fs::write(dir.path().join("d0/f"), b"abc").expect("write");
        let (bytes, entries) = usage(dir.path()).expect("usage");
        assert_eq!(entries, 51, "50 folders and a file");
        assert!(bytes >= 3, "{bytes}");
        assert!(
            usage(&dir.path().join("missing")).is_err(),
            "a missing /out is an error"
        );
    }

    #[test]
    fn caps_are_enforced() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("big"), vec![0u8; 2048]).expect("write");
        assert!(matches!(
            collect(dir.path(), CAPS),
            Err(CollectError::TooLarge(_))
        ));
        let dir = tempfile::tempdir().expect("tempdir");
        for i in 0..5 {
            fs::write(dir.path().join(format!("f{i}")), b"x").expect("write");
        }
        assert!(matches!(
            collect(dir.path(), CAPS),
            Err(CollectError::TooLarge(_))
        ));
    }

    #[test]
    fn non_utf8_names_are_refused() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let name = std::ffi::OsStr::from_bytes(b"bad\xff");
        fs::write(dir.path().join(name), b"x").expect("write");
        assert!(matches!(
            collect(dir.path(), CAPS),
            Err(CollectError::InvalidName(_))
        ));
    }
}
