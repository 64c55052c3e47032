//! Collecting what a job wrote to `/out`, safely, into a manifest.
//!
//! The folder was writable by the job, so nothing in it is trusted: symlinks are never
//! followed (a link to `/etc/shadow` must not leak the host's file), only regular files count,
//! and the number and total size of files are capped.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use distributeai_protocol::limits::MAX_OUTPUT_PATH_LEN;
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

/// Hashes every regular file under `dir` into the manifest's file list, sorted by path, and
/// copies each into `copy_to` as it is hashed when given (the output leaves the run's sized
/// filesystem, which is then deleted: one read of each file).
///
/// What the job made that cannot be part of a manifest ends the job's own way, as
/// [`CollectError::TooLarge`] (the same on every worker): a path longer than
/// [`MAX_OUTPUT_PATH_LEN`] bytes (issue 20: a tree deeper than `PATH_MAX` made the walk fail,
/// which was then the worker's fault), or a folder or file the job made unreadable.
pub fn collect(
    dir: &Path,
    caps: OutputCaps,
    copy_to: Option<&Path>,
) -> Result<Vec<OutputFile>, CollectError> {
    let unreadable = |path: &Path, e: io::Error| match e.kind() {
        io::ErrorKind::PermissionDenied => CollectError::TooLarge(format!(
            "{} cannot be read",
            path.strip_prefix(dir).unwrap_or(path).display()
        )),
        _ => CollectError::Io(e),
    };
    if let Some(copy_to) = copy_to {
        fs::create_dir_all(copy_to)?;
    }
    let mut files = Vec::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in fs::read_dir(&current).map_err(|e| unreadable(&current, e))? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?; // does not follow symlinks
            let relative = path.strip_prefix(dir).unwrap_or(&path);
            if relative.as_os_str().len() > MAX_OUTPUT_PATH_LEN {
                return Err(CollectError::TooLarge(format!(
                    "a path longer than {MAX_OUTPUT_PATH_LEN} bytes"
                )));
            }
            if kind.is_dir() {
                if let Some(copy_to) = copy_to {
                    fs::create_dir_all(copy_to.join(relative))?;
                }
                stack.push(path);
                continue;
            }
            if !kind.is_file() {
                continue; // symlinks, fifos, sockets, devices are not outputs
            }
            let relative = relative
                .to_str()
                .filter(|p| is_canonical_output_path(p))
                .ok_or_else(|| CollectError::InvalidName(path.clone()))?
                .to_owned();
            if files.len() >= caps.max_files {
                return Err(CollectError::TooLarge(format!(
                    "more than {} files",
                    caps.max_files
                )));
            }
            let copy = copy_to.map(|to| to.join(&relative));
            let content = hash_file(&path, copy.as_deref()).map_err(|e| unreadable(&path, e))?;
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

/// Hashes a file, copying it to `copy` as it is read when given.
fn hash_file(path: &Path, copy: Option<&Path>) -> io::Result<ContentEntry> {
    let mut hasher = blake3::Hasher::new();
    let mut file = io::BufReader::new(fs::File::open(path)?);
    let size = match copy {
        None => io::copy(&mut file, &mut hasher)?,
        Some(copy) => {
            let mut both = Tee(&mut hasher, io::BufWriter::new(fs::File::create(copy)?));
            let size = io::copy(&mut file, &mut both)?;
            io::Write::flush(&mut both.1)?;
            size
        }
    };
    Ok(ContentEntry {
        size,
        hash: Digest(*hasher.finalize().as_bytes()),
    })
}

/// Writes to a hasher and a file at once.
struct Tee<'a, W>(&'a mut blake3::Hasher, W);

impl<W: io::Write> io::Write for Tee<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.1.write(buf)?;
        self.0.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.1.flush()
    }
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
        let files = collect(dir.path(), CAPS, None).expect("collect");
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
            collect(dir.path(), CAPS, None),
            Err(CollectError::TooLarge(_))
        ));
        let dir = tempfile::tempdir().expect("tempdir");
        for i in 0..5 {
            fs::write(dir.path().join(format!("f{i}")), b"x").expect("write");
        }
        assert!(matches!(
            collect(dir.path(), CAPS, None),
            Err(CollectError::TooLarge(_))
        ));
    }

    #[test]
    fn a_copy_is_what_was_hashed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let copy = tempfile::tempdir().expect("tempdir");
        let copy = copy.path().join("kept");
        fs::create_dir_all(dir.path().join("a/b")).expect("mkdir");
        fs::write(dir.path().join("a/b/c.txt"), b"ccc").expect("write");
        fs::write(dir.path().join("top"), vec![7u8; 300]).expect("write");
        let files = collect(dir.path(), CAPS, Some(&copy)).expect("collect");
        let again = collect(&copy, CAPS, None).expect("collect the copy");
        assert_eq!(files, again);
        assert_eq!(fs::read(copy.join("a/b/c.txt")).expect("read"), b"ccc");
    }

    /// Issue 20: a tree deeper than `PATH_MAX` made the walk fail, which a worker reported as
    /// its own fault. A path past the manifest's limit is now the job's: too large.
    #[test]
    fn a_path_past_the_manifest_limit_is_too_large() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut deep = dir.path().to_path_buf();
        for _ in 0..MAX_OUTPUT_PATH_LEN / 4 + 1 {
            deep.push("abc");
        }
        fs::create_dir_all(&deep).expect("mkdir");
        fs::write(deep.join("f"), b"x").expect("write");
        match collect(dir.path(), CAPS, None) {
            Err(CollectError::TooLarge(why)) => assert!(why.contains("longer"), "{why}"),
            other => panic!("a deep tree: {other:?}"),
        }
    }

    #[test]
    fn non_utf8_names_are_refused() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let name = std::ffi::OsStr::from_bytes(b"bad\xff");
        fs::write(dir.path().join(name), b"x").expect("write");
        assert!(matches!(
            collect(dir.path(), CAPS, None),
            Err(CollectError::InvalidName(_))
        ));
    }
}
