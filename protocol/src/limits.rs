//! Upper bounds on everything a peer can send us.
//!
//! Every bound is checked at the edge, before a message is acted on or relayed. They are sized
//! so that the largest legal message of any type still fits in [`MAX_MESSAGE_BYTES`].

/// A whole encoded message (gossip or direct request/response), envelope included.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Largest job spec, encoded (bytes): half a message, so that the job's signed announcement
/// and the verdict that carries it (with up to [`MAX_VERDICT_WORKERS`] signed bids and
/// commitments) each fit in one message (issue 12).
pub const MAX_SPEC_BYTES: usize = MAX_MESSAGE_BYTES / 2;
/// Largest redundancy a job may ask for. Sixteen workers already cost a submitter 16x the
/// compute; beyond that a verdict carrying every worker's signed bid grows past what gossip
/// should carry.
pub const MAX_REDUNDANCY: u8 = 16;
/// Container image reference, e.g. `registry.example/org/name:tag`.
pub const MAX_IMAGE_LEN: usize = 256;
/// Number of command arguments (program included).
pub const MAX_COMMAND_ARGS: usize = 256;
/// Length of one command argument.
pub const MAX_ARG_LEN: usize = 4096;
/// Number of environment entries.
pub const MAX_ENV_ENTRIES: usize = 64;
/// Length of an environment variable name.
pub const MAX_ENV_KEY_LEN: usize = 128;
/// Length of an environment variable value.
pub const MAX_ENV_VALUE_LEN: usize = 4096;
/// CPUs a job may ask for or a node may advertise.
pub const MAX_CPUS: u32 = 1024;
/// Memory a job may ask for or a node may advertise, in MiB (16 TiB).
pub const MAX_MEMORY_MB: u64 = 16 * 1024 * 1024;
/// Smallest memory limit a container can run with, in MiB.
pub const MIN_JOB_MEMORY_MB: u64 = 16;
/// GPUs a job may ask for or a node may advertise.
pub const MAX_GPUS: u32 = 64;
/// Longest job timeout: one day.
pub const MAX_TIMEOUT_S: u32 = 24 * 60 * 60;
/// Longest time a job announcement stays open for bids and work: two days.
pub const MAX_JOB_LIFETIME_MS: u64 = 2 * 24 * 60 * 60 * 1000;
/// Allowed difference between a message's timestamp and our clock.
pub const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;
/// Short free-text fields (region, version, reasons).
pub const MAX_SHORT_TEXT_LEN: usize = 256;
/// Smallest CPU share a job may ask for, in thousandths of a CPU: Docker refuses less than
/// 0.01 CPUs.
pub const MIN_CPU_MILLIS: u32 = 10;
/// Reasons and engine messages (a worker's fault, a job's end): long enough for a whole
/// engine error, which is never cut mid-word (issue 12).
pub const MAX_REASON_LEN: usize = 2048;
/// Bytes of stdout and of stderr a worker keeps from the end of a job's output, to show how
/// far a job that failed got.
pub const MAX_TAIL_BYTES: usize = 4096;
/// Images a node may list as held locally.
pub const MAX_LOCAL_IMAGES: usize = 256;
/// GPU descriptions a node may list.
pub const MAX_GPU_ENTRIES: usize = MAX_GPUS as usize;
/// Listen addresses a node may advertise.
pub const MAX_LISTEN_ADDRS: usize = 32;
/// Length of one advertised multiaddr.
pub const MAX_ADDR_LEN: usize = 512;
/// Connected peers a node names in its announcement (issue 13: the mesh picture). A node with
/// more names only this many; the picture is of the mesh, not a census.
pub const MAX_ANNOUNCED_LINKS: usize = 64;
/// Length of a PeerId as text (an ed25519 PeerId is 52 characters).
pub const MAX_PEER_ID_LEN: usize = 128;
/// Files in a job's output manifest.
pub const MAX_OUTPUT_FILES: usize = 4096;
/// Length of an output file's path relative to `/out`.
pub const MAX_OUTPUT_PATH_LEN: usize = 1024;
/// Ledger entries in one sync response.
pub const MAX_LEDGER_BATCH: usize = 32;
/// Bytes of output carried in one output-fetch response chunk.
pub const MAX_OUTPUT_CHUNK_BYTES: usize = 512 * 1024;
/// Workers one verdict may list: the first n plus replacements for silent or failed ones.
pub const MAX_VERDICT_WORKERS: usize = 4 * MAX_REDUNDANCY as usize;

/// How long after its job expired a verdict may still be signed (ms): a submitter that was
/// down when the job expired signs its verdict on restart, within a day. A verdict later than
/// that is about work nobody can still check was done (issue 19).
pub const MAX_VERDICT_DELAY_MS: u64 = 24 * 60 * 60 * 1000;
