//! The kernel's bound on a run's `/out`: a sized filesystem the job cannot switch off.
//!
//! Issue 20: a watchdog that walks `/out` every 200 ms can be outrun (a job writes fast
//! between two walks) and made to fail (an unreadable folder, a tree deeper than `PATH_MAX`,
//! create-delete churn). So where the node may mount (it runs as root, as a worker that talks to
//! the Docker engine usually can), each run's `/out` is its own ext4 filesystem in a sparse
//! image file, loop-mounted over the run's folder: the kernel refuses writes past its size and
//! entries past its inode count, whatever the job does. The filesystem is on disk, not in
//! memory, so a job's output does not count against its memory limit (it would on a tmpfs,
//! which would make workers that bound `/out` differently disagree about the same job).
//!
//! After the run the output is copied out (hashed as it is copied) and the filesystem is
//! unmounted and deleted, so mounts live only while jobs run. A node that may not mount falls
//! back to the watchdog's walk alone, and says so in its budgets.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;
use tracing::{debug, warn};

/// Bytes the filesystem adds to the output cap: ext4's own tables (about 1 MiB of inode
/// table for 4,096 inodes) and a block for every file and folder, since a 1-byte file takes a
/// 4 KiB block. Measured on `mkfs.ext4` 1.47 with the options below.
const BLOCK_BYTES: u64 = 4096;
const METADATA_SLACK_BYTES: u64 = 2 * 1024 * 1024;
/// Blocks in use on the filesystem before the job writes (20 KiB measured), with room.
const EMPTY_FILESYSTEM_BYTES: u64 = 64 * 1024;
/// Inodes ext4 reserves for itself (1–10), the root and `lost+found`.
const RESERVED_INODES: u64 = 12;

/// How a run's `/out` is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputQuota {
    /// A loop-mounted filesystem sized to the caps: the kernel enforces them.
    Filesystem,
    /// The node may not mount: the watchdog's walk alone (fails closed).
    Watchdog,
}

/// Why a sized filesystem could not be made.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {detail}")]
pub struct QuotaError {
    step: &'static str,
    detail: String,
}

/// Size of the image file for these caps, in bytes: the caps' bytes, a block per entry and
/// ext4's tables. The kernel refuses writes past it.
pub fn image_bytes(max_bytes: u64, max_entries: usize) -> u64 {
    max_bytes
        .saturating_add(BLOCK_BYTES.saturating_mul(max_entries as u64 + 1))
        .saturating_add(METADATA_SLACK_BYTES)
}

async fn run(step: &'static str, command: &mut Command) -> Result<(), QuotaError> {
    let output = command
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| QuotaError {
            step,
            detail: e.to_string(),
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(QuotaError {
            step,
            detail: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// Makes an ext4 filesystem of [`image_bytes`] in `image` (sparse: it takes disk only as the
/// job writes) and mounts it on `mount_point` (no setuid, no devices, no executables).
/// `max_entries` inodes are left for the job, a few more by ext4's rounding.
pub async fn mount_sized(
    image: &Path,
    mount_point: &Path,
    max_bytes: u64,
    max_entries: usize,
) -> Result<(), QuotaError> {
    let file = std::fs::File::create(image).map_err(|e| QuotaError {
        step: "creating the image",
        detail: e.to_string(),
    })?;
    file.set_len(image_bytes(max_bytes, max_entries))
        .map_err(|e| QuotaError {
            step: "sizing the image",
            detail: e.to_string(),
        })?;
    drop(file);
    let inodes = (max_entries as u64 + RESERVED_INODES).to_string();
    run(
        "mkfs.ext4",
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096", "-m", "0", "-N", &inodes])
            // No journal (a run's output needs no crash safety: it is redone) and no room to
            // grow; no discard pass over the sparse file.
            .args(["-O", "^has_journal,^resize_inode", "-E", "nodiscard"])
            .arg(image),
    )
    .await?;
    run(
        "mount",
        Command::new("mount")
            .args(["-t", "ext4", "-o", "loop,nosuid,nodev,noexec"])
            .arg(image)
            .arg(mount_point),
    )
    .await?;
    // The job's `/out` starts empty, as on a node without the quota.
    if let Err(e) = std::fs::remove_dir(mount_point.join("lost+found")) {
        debug!(error = %e, "lost+found stays");
    }
    Ok(())
}

/// Detaches the filesystem mounted on `mount_point` (its loop device is released with it).
/// Blocking: one system call.
pub fn unmount(mount_point: &Path) -> io::Result<()> {
    nix::mount::umount2(mount_point, nix::mount::MntFlags::MNT_DETACH).map_err(io::Error::from)
}

/// Whether the filesystem on `mount_point` is over the caps or full, from the kernel's own
/// counts (one `statvfs`, which the job cannot make fail or slow). Full means the job tried
/// to write past the size or make more entries than allowed; over means more blocks in use
/// than `max_bytes` of data could take (each file and folder may round up to a block).
pub fn over(mount_point: &Path, max_bytes: u64, max_entries: usize) -> io::Result<bool> {
    let stats = nix::sys::statvfs::statvfs(mount_point).map_err(io::Error::from)?;
    let used_bytes = stats
        .blocks()
        .saturating_sub(stats.blocks_free())
        .saturating_mul(stats.fragment_size());
    let used_inodes = stats.files().saturating_sub(stats.files_free());
    let allowed_bytes = max_bytes
        .saturating_add(BLOCK_BYTES.saturating_mul(used_inodes))
        .saturating_add(EMPTY_FILESYSTEM_BYTES);
    Ok(stats.blocks_available() == 0
        || stats.files_free() == 0
        || used_bytes > allowed_bytes
        || used_inodes > max_entries as u64 + RESERVED_INODES)
}

/// Whether this node may make sized filesystems: tries one in `work_dir`.
pub async fn probe(work_dir: &Path) -> OutputQuota {
    let dir = work_dir.join(".quota-probe");
    let image = work_dir.join(".quota-probe.img");
    let _ = std::fs::create_dir_all(&dir);
    let quota = match mount_sized(&image, &dir, 1024 * 1024, 16).await {
        Ok(()) => {
            let _ = unmount(&dir);
            OutputQuota::Filesystem
        }
        Err(e) => {
            warn!(
                error = %e,
                "cannot mount a sized filesystem for job outputs (needs root, mkfs.ext4 and loop \
                 devices): /out is bounded by the watchdog alone"
            );
            OutputQuota::Watchdog
        }
    };
    let _ = std::fs::remove_dir(&dir);
    let _ = std::fs::remove_file(&image);
    quota
}

/// Unmounts filesystems left mounted under `work_dir` by a node that was killed while jobs
/// ran (mounts outlive their process); returns the mount points.
pub fn unmount_leftovers(work_dir: &Path) -> Vec<PathBuf> {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut left = Vec::new();
    for line in mounts.lines() {
        // Field 5 is the mount point, with spaces and the like escaped as octal.
        let Some(point) = line.split(' ').nth(4) else {
            continue;
        };
        let point = PathBuf::from(point);
        if point.starts_with(work_dir) && point != work_dir {
            match unmount(&point) {
                Ok(()) => left.push(point),
                Err(e) => warn!(point = %point.display(), error = %e, "cannot unmount"),
            }
        }
    }
    left
}
