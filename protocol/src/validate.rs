//! Validation of everything a peer or a user sends, with typed errors.
//!
//! [`crate::Signed::open`] runs [`Validate::validate`] after the signature and decoding checks,
//! so every message is checked once, at the edge, before anything acts on it. The errors name
//! the offending field, which the API passes on to users, and carry a short [`reason`] label
//! used to count drops by cause.
//!
//! [`reason`]: ValidationError::reason

use crate::codec::DecodeError;
use crate::digest::ResultHash;
use crate::digest::{JobId, PublicKey};
use crate::envelope::Signed;
use crate::envelope::{SignedMessage, Verified};
use crate::limits::*;
use crate::messages::*;
use crate::time::{TimestampMs, now_ms};
use distributeai_verifier::{Decision, Report, Tally};

/// Why a message or spec was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The bytes could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The signature does not verify for the claimed signer and message type.
    #[error("invalid signature")]
    BadSignature,
    /// A text field is longer than allowed.
    #[error("{field} is {len} bytes long, the limit is {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A list has more entries than allowed.
    #[error("{field} has {count} entries, the limit is {max}")]
    TooMany {
        /// The field.
        field: &'static str,
        /// Its count.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A number is outside its allowed range.
    #[error("{field} is {value}, it must be between {min} and {max}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// A field has a value of the wrong form.
    #[error("{field} is invalid: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Redundancy and consensus do not satisfy `1 <= k <= n <= MAX_REDUNDANCY`.
    #[error("consensus (k = {k}) must be between 1 and redundancy (n = {n}), and n at most {max}")]
    Consensus {
        /// Consensus asked for.
        k: u8,
        /// Redundancy asked for.
        n: u8,
        /// Largest redundancy.
        max: u8,
    },
    /// The message claims to be from the future, beyond the allowed clock skew.
    #[error(
        "clock skew: issued at {issued_at} by the sender's clock, {now} by ours: the sender is \
         ahead by more than the allowed {} s",
        crate::limits::MAX_CLOCK_SKEW_MS / 1000
    )]
    FromFuture {
        /// The message's timestamp.
        issued_at: TimestampMs,
        /// Our clock.
        now: TimestampMs,
    },
    /// The message is older than the allowed clock skew: a delayed or replayed message.
    #[error(
        "clock skew or a late message: issued at {issued_at} by the sender's clock, {now} by \
         ours: older than the allowed {} s",
        crate::limits::MAX_CLOCK_SKEW_MS / 1000
    )]
    Stale {
        /// The message's timestamp.
        issued_at: TimestampMs,
        /// Our clock.
        now: TimestampMs,
    },
    /// The job has expired.
    #[error("expired at {expires_at} (now {now})")]
    Expired {
        /// When it expired.
        expires_at: TimestampMs,
        /// Our clock.
        now: TimestampMs,
    },
    /// A message embeds or names a message from someone it should not.
    #[error("{0}")]
    WrongSigner(&'static str),
    /// A message refers to a different job than the one it embeds.
    #[error("{field} refers to job {found}, expected {expected}")]
    JobIdMismatch {
        /// The field.
        field: &'static str,
        /// The job it should name.
        expected: JobId,
        /// The job it names.
        found: JobId,
    },
    /// A message embedded in this one is invalid.
    #[error("{field}: {source}")]
    Nested {
        /// Where it is embedded.
        field: &'static str,
        /// What is wrong with it.
        source: Box<ValidationError>,
    },
}

impl ValidationError {
    /// The field at fault, as the error names it (`resources.cpus`, `consensus`...), when one
    /// field is: forms use it to mark the field.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            ValidationError::TooLong { field, .. }
            | ValidationError::TooMany { field, .. }
            | ValidationError::OutOfRange { field, .. }
            | ValidationError::Invalid { field, .. } => Some(field),
            ValidationError::Consensus { .. } => Some("consensus"),
            _ => None,
        }
    }

    /// A short stable label of the cause, for counting dropped messages.
    pub fn reason(&self) -> &'static str {
        match self {
            ValidationError::Decode(DecodeError::TooLarge { .. }) => "oversized",
            ValidationError::Decode(_) => "undecodable",
            ValidationError::BadSignature => "bad_signature",
            ValidationError::TooLong { .. }
            | ValidationError::TooMany { .. }
            | ValidationError::OutOfRange { .. }
            | ValidationError::Invalid { .. }
            | ValidationError::Consensus { .. } => "invalid_field",
            ValidationError::FromFuture { .. } => "from_future",
            ValidationError::Stale { .. } => "stale",
            ValidationError::Expired { .. } => "expired",
            ValidationError::WrongSigner(_) | ValidationError::JobIdMismatch { .. } => {
                "inconsistent"
            }
            ValidationError::Nested { source, .. } => source.reason(),
        }
    }

    fn nested(field: &'static str) -> impl FnOnce(ValidationError) -> ValidationError {
        move |source| ValidationError::Nested {
            field,
            source: Box::new(source),
        }
    }
}

/// How strictly timestamps are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// A message arriving now must have been issued now (within the clock skew) and, for jobs,
    /// not be expired: stops replays of old messages.
    Live,
    /// A message stored or embedded earlier (a ledger entry, the job inside a verdict) may be
    /// old, but never from the future.
    Archived,
}

/// The clock and strictness a message is validated against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidationContext {
    /// Our clock.
    pub now_ms: TimestampMs,
    /// Allowed difference between a sender's clock and ours.
    pub max_clock_skew_ms: u64,
    /// How timestamps are judged.
    pub freshness: Freshness,
}

impl ValidationContext {
    /// For messages arriving now.
    pub fn live() -> Self {
        Self::live_at(now_ms())
    }

    /// For messages arriving at `now_ms`.
    pub fn live_at(now_ms: TimestampMs) -> Self {
        Self {
            now_ms,
            max_clock_skew_ms: MAX_CLOCK_SKEW_MS,
            freshness: Freshness::Live,
        }
    }

    /// The same clock, for stored or embedded messages.
    pub fn archived(self) -> Self {
        Self {
            freshness: Freshness::Archived,
            ..self
        }
    }

    /// Checks a message's `issued_at`.
    pub fn check_issued_at(&self, issued_at: TimestampMs) -> Result<(), ValidationError> {
        let now = self.now_ms;
        if issued_at > now.saturating_add(self.max_clock_skew_ms) {
            return Err(ValidationError::FromFuture { issued_at, now });
        }
        if self.freshness == Freshness::Live
            && issued_at.saturating_add(self.max_clock_skew_ms) < now
        {
            return Err(ValidationError::Stale { issued_at, now });
        }
        Ok(())
    }

    /// Checks an expiry time (live messages only).
    pub fn check_not_expired(&self, expires_at: TimestampMs) -> Result<(), ValidationError> {
        if self.freshness == Freshness::Live && expires_at <= self.now_ms {
            return Err(ValidationError::Expired {
                expires_at,
                now: self.now_ms,
            });
        }
        Ok(())
    }
}

/// A message that can check itself, given who signed it.
pub trait Validate {
    /// Checks every bound and consistency rule; `signer` is the verified envelope signer.
    fn validate(&self, signer: &PublicKey, ctx: &ValidationContext) -> Result<(), ValidationError>;
}

/// `text` whole if it has at most [`MAX_SHORT_TEXT_LEN`] bytes, else cut at a word to fit
/// with `…` (see [`fit_text`]).
pub fn short_text(text: &str) -> String {
    fit_text(text, MAX_SHORT_TEXT_LEN)
}

/// `text` whole if it has at most [`MAX_REASON_LEN`] bytes, else cut at a word to fit with
/// `…`: for reasons and engine messages, which users read whole (issue 12).
pub fn reason_text(text: &str) -> String {
    fit_text(text, MAX_REASON_LEN)
}

/// `text` whole if it has at most `max` bytes; else cut before the last whitespace that lets
/// it fit with a closing `…` (3 bytes), so a message is never cut mid-word, or on a character
/// boundary when one word alone is too long.
pub fn fit_text(text: &str, max: usize) -> String {
    const ELLIPSIS: &str = "…";
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(ELLIPSIS.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = match text[..end].rfind(char::is_whitespace) {
        Some(space) if space > 0 => text[..space].trim_end(),
        _ => &text[..end],
    };
    format!("{cut}{ELLIPSIS}")
}

fn check_len(field: &'static str, text: &str, max: usize) -> Result<(), ValidationError> {
    if text.len() > max {
        return Err(ValidationError::TooLong {
            field,
            len: text.len(),
            max,
        });
    }
    Ok(())
}

fn check_count(field: &'static str, count: usize, max: usize) -> Result<(), ValidationError> {
    if count > max {
        return Err(ValidationError::TooMany { field, count, max });
    }
    Ok(())
}

fn check_range(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), ValidationError> {
    if value < min || value > max {
        return Err(ValidationError::OutOfRange {
            field,
            value,
            min,
            max,
        });
    }
    Ok(())
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ValidationError {
    ValidationError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Checks a container image reference: the characters Docker allows in a name, tag and digest.
pub fn check_image_reference(field: &'static str, image: &str) -> Result<(), ValidationError> {
    check_len(field, image, MAX_IMAGE_LEN)?;
    if image.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    let allowed =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@');
    if let Some(c) = image.chars().find(|c| !allowed(*c)) {
        return Err(invalid(
            field,
            format!("character {c:?} is not allowed in an image reference"),
        ));
    }
    if image.starts_with(['-', '.', '/', ':', '@']) {
        return Err(invalid(field, "must start with a letter or digit"));
    }
    Ok(())
}

/// Checks an image digest of the form `sha256:<64 lowercase hex digits>`.
pub fn check_image_digest(field: &'static str, digest: &str) -> Result<(), ValidationError> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| invalid(field, "must start with sha256:"))?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(invalid(
            field,
            "must be sha256: followed by 64 lowercase hex digits",
        ));
    }
    Ok(())
}

fn check_failure(failure: &WorkerFault) -> Result<(), ValidationError> {
    check_len("failure reason", &failure.reason, MAX_REASON_LEN)
}

/// An image id as a worker reports it: a digest, or empty when the image was unavailable.
fn check_image_id(field: &'static str, image: &str) -> Result<(), ValidationError> {
    if image.is_empty() {
        Ok(())
    } else {
        check_image_digest(field, image)
    }
}

impl Diagnostics {
    /// Checks the bounds of what a worker says about a job's end.
    pub fn check(&self) -> Result<(), ValidationError> {
        check_len("diagnostics.detail", &self.detail, MAX_REASON_LEN)?;
        check_count(
            "diagnostics.stdout_tail",
            self.stdout_tail.len(),
            MAX_TAIL_BYTES,
        )?;
        check_count(
            "diagnostics.stderr_tail",
            self.stderr_tail.len(),
            MAX_TAIL_BYTES,
        )
    }
}

impl Capabilities {
    /// Checks the advertised capabilities against their bounds.
    pub fn check(&self) -> Result<(), ValidationError> {
        check_range("cpus", self.cpus.into(), 0, MAX_CPUS.into())?;
        check_range("memory_mb", self.memory_mb, 0, MAX_MEMORY_MB)?;
        check_count("gpus", self.gpus.len(), MAX_GPU_ENTRIES)?;
        for gpu in &self.gpus {
            check_len("gpu vendor", &gpu.vendor, MAX_SHORT_TEXT_LEN)?;
            check_len("gpu model", &gpu.model, MAX_SHORT_TEXT_LEN)?;
        }
        check_len("region", &self.region, MAX_SHORT_TEXT_LEN)?;
        check_len("version", &self.version, MAX_SHORT_TEXT_LEN)?;
        check_count("images", self.images.len(), MAX_LOCAL_IMAGES)?;
        for image in &self.images {
            check_image_reference("images", &image.reference)?;
            if let Some(digest) = &image.digest {
                check_image_digest("images", digest)?;
            }
        }
        Ok(())
    }
}

impl JobSpec {
    /// Checks a job spec as a user wrote it; the error names the offending field.
    pub fn check(&self) -> Result<(), ValidationError> {
        check_image_reference("image", &self.image)?;
        if let Some(digest) = &self.image_digest {
            check_image_digest("image_digest", digest)?;
        }
        check_count("command", self.command.len(), MAX_COMMAND_ARGS)?;
        for arg in &self.command {
            check_len("command", arg, MAX_ARG_LEN)?;
            if arg.contains('\0') {
                return Err(invalid("command", "arguments must not contain NUL"));
            }
        }
        check_count("env", self.env.len(), MAX_ENV_ENTRIES)?;
        for (key, value) in &self.env {
            check_len("env", key, MAX_ENV_KEY_LEN)?;
            check_len("env", value, MAX_ENV_VALUE_LEN)?;
            let mut chars = key.chars();
            let valid_name = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_name {
                return Err(invalid(
                    "env",
                    format!("{key:?} is not a valid variable name"),
                ));
            }
            if value.contains('\0') {
                return Err(invalid("env", format!("value of {key} contains NUL")));
            }
        }
        let cpus = self.resources.cpus;
        // Docker takes no less than a hundredth of a CPU.
        if cpus < Cpus::from_millis(MIN_CPU_MILLIS) || cpus > Cpus::whole(MAX_CPUS) {
            return Err(invalid(
                "resources.cpus",
                format!("{cpus} is out of range: from 0.01 to {MAX_CPUS}"),
            ));
        }
        check_range(
            "resources.memory_mb",
            self.resources.memory_mb,
            MIN_JOB_MEMORY_MB,
            MAX_MEMORY_MB,
        )?;
        check_range(
            "resources.gpus",
            self.resources.gpus.into(),
            0,
            MAX_GPUS.into(),
        )?;
        check_range("timeout_s", self.timeout_s.into(), 1, MAX_TIMEOUT_S.into())?;
        let (n, k) = (self.redundancy, self.consensus);
        // n first: with n out of range, any k would be blamed for it.
        check_range("redundancy", n.into(), 1, MAX_REDUNDANCY.into())?;
        if k < 1 || k > n || n > MAX_REDUNDANCY {
            return Err(ValidationError::Consensus {
                k,
                n,
                max: MAX_REDUNDANCY,
            });
        }
        if self.reward.checked_mul(n.into()).is_none() {
            return Err(invalid("reward", "reward x redundancy overflows"));
        }
        let len = crate::codec::encode_local(self)
            .map_err(|e| invalid("spec", e.to_string()))?
            .len();
        if len > MAX_SPEC_BYTES {
            return Err(invalid(
                "spec",
                format!(
                    "it is {len} bytes encoded, over the limit of {MAX_SPEC_BYTES} bytes \
                     (command, env and image together), which keeps its announcement and \
                     verdict within one message"
                ),
            ));
        }
        Ok(())
    }
}

impl OutputManifest {
    /// Checks the manifest's bounds and canonical form.
    pub fn check_bounds(&self) -> Result<(), ValidationError> {
        check_count("manifest.files", self.files.len(), MAX_OUTPUT_FILES)?;
        check_image_id("manifest.image", &self.image)?;
        if self.image.is_empty() != (self.end == JobEnd::ImageUnavailable) {
            return Err(invalid(
                "manifest.image",
                "required unless the image was unavailable, and empty then",
            ));
        }
        for file in &self.files {
            check_len("manifest.files", &file.path, MAX_OUTPUT_PATH_LEN)?;
        }
        self.check().map_err(|e| invalid("manifest", e.to_string()))
    }
}

impl Validate for NodeAnnouncement {
    fn validate(
        &self,
        _signer: &PublicKey,
        ctx: &ValidationContext,
    ) -> Result<(), ValidationError> {
        self.capabilities.check()?;
        check_count("listen_addrs", self.listen_addrs.len(), MAX_LISTEN_ADDRS)?;
        for addr in &self.listen_addrs {
            check_len("listen_addrs", addr, MAX_ADDR_LEN)?;
        }
        if self.started_at > self.issued_at {
            return Err(invalid("started_at", "must not be after issued_at"));
        }
        check_count("links", self.links.len(), MAX_ANNOUNCED_LINKS)?;
        for link in &self.links {
            check_len("links", &link.peer, MAX_PEER_ID_LEN)?;
            if link.peer.parse::<libp2p_identity::PeerId>().is_err() {
                return Err(invalid("links", format!("{:?} is not a PeerId", link.peer)));
            }
        }
        ctx.check_issued_at(self.issued_at)
    }
}

impl Validate for JobAnnouncement {
    fn validate(
        &self,
        _signer: &PublicKey,
        ctx: &ValidationContext,
    ) -> Result<(), ValidationError> {
        self.spec.check()?;
        ctx.check_issued_at(self.issued_at)?;
        if self.expires_at <= self.issued_at {
            return Err(invalid("expires_at", "must be after issued_at"));
        }
        check_range(
            "expires_at",
            self.expires_at - self.issued_at,
            1,
            MAX_JOB_LIFETIME_MS,
        )?;
        ctx.check_not_expired(self.expires_at)
    }
}

impl Validate for JobCancel {
    fn validate(
        &self,
        _signer: &PublicKey,
        ctx: &ValidationContext,
    ) -> Result<(), ValidationError> {
        check_len("reason", &self.reason, MAX_SHORT_TEXT_LEN)?;
        ctx.check_issued_at(self.issued_at)
    }
}

impl Validate for Bid {
    fn validate(
        &self,
        _signer: &PublicKey,
        ctx: &ValidationContext,
    ) -> Result<(), ValidationError> {
        if let Some(image) = &self.image {
            check_image_digest("image", image)?;
        }
        ctx.check_issued_at(self.issued_at)
    }
}

impl Validate for Assignment {
    fn validate(
        &self,
        _signer: &PublicKey,
        ctx: &ValidationContext,
    ) -> Result<(), ValidationError> {
        ctx.check_issued_at(self.issued_at)?;
        if self.deadline <= self.issued_at {
            return Err(invalid("deadline", "must be after issued_at"));
        }
        // The deadline is a duration from `issued_at`, both in the submitter's clock: the
        // worker counts it from receipt on its own clock, so clocks that differ within the
        // skew bound change nothing (issue 12). Not compared with our clock here.
        check_range(
            "deadline",
            self.deadline - self.issued_at,
            1,
            MAX_JOB_LIFETIME_MS,
        )
    }
}

impl Validate for ResultCommitment {
    fn validate(
        &self,
        _signer: &PublicKey,
        ctx: &ValidationContext,
    ) -> Result<(), ValidationError> {
        if let CommittedOutcome::Failed(failure) = &self.outcome {
            check_failure(failure)?;
        }
        ctx.check_issued_at(self.issued_at)
    }
}

impl Validate for AssignmentAck {
    fn validate(
        &self,
        _signer: &PublicKey,
        ctx: &ValidationContext,
    ) -> Result<(), ValidationError> {
        check_range("deadline_ms", self.deadline_ms, 1, MAX_JOB_LIFETIME_MS)?;
        ctx.check_issued_at(self.issued_at)
    }
}

impl Validate for ResultReveal {
    fn validate(
        &self,
        _signer: &PublicKey,
        ctx: &ValidationContext,
    ) -> Result<(), ValidationError> {
        check_image_id("image", &self.image)?;
        if self.image.is_empty() != (self.end == JobEnd::ImageUnavailable) {
            return Err(invalid(
                "image",
                "required unless the image was unavailable, and empty then",
            ));
        }
        ctx.check_issued_at(self.issued_at)
    }
}

impl RevealedResult {
    /// Opens the signed reveal and checks that the manifest beside it is the one it names
    /// (same canonical hash, end and image) and within its bounds: the submitter's edge check
    /// of a reveal answer.
    pub fn open(&self, ctx: &ValidationContext) -> Result<Verified<ResultReveal>, ValidationError> {
        let reveal = self.reveal.open(ctx)?;
        self.manifest.check_bounds()?;
        self.diagnostics.check()?;
        let computed = self
            .manifest
            .result_hash()
            .map_err(|e| invalid("manifest", e.to_string()))?;
        if computed != reveal.message.result_hash {
            return Err(invalid("result_hash", "does not match the manifest"));
        }
        if self.manifest.end != reveal.message.end || self.manifest.image != reveal.message.image {
            return Err(invalid(
                "manifest",
                "its end or image differs from the signed reveal",
            ));
        }
        Ok(reveal)
    }
}

impl Signed<JobAnnouncement> {
    /// The job's content id: the hash of its signed announcement.
    pub fn job_id(&self) -> JobId {
        JobId(self.content_id().0)
    }
}

/// One worker record's evidence, opened and checked against the job.
struct OpenedRecord<'a> {
    worker: PublicKey,
    record: &'a WorkerRecord,
    /// The assignment attempt its evidence is about.
    attempt: u32,
    /// The revealed result, for [`Evidence::Revealed`].
    reveal: Option<ResultReveal>,
}

/// Opens a piece of a worker's evidence and checks that the worker signed it.
fn open_evidence<T: SignedMessage>(
    field: &'static str,
    signed: &Signed<T>,
    worker: &PublicKey,
    ctx: &ValidationContext,
) -> Result<Verified<T>, ValidationError> {
    let opened = signed.open(ctx).map_err(ValidationError::nested(field))?;
    if opened.signer != *worker {
        return Err(ValidationError::WrongSigner(
            "a worker's evidence must be signed by that worker",
        ));
    }
    Ok(opened)
}

/// Checks that a message of the job flow was signed within the job's life, as far as clocks
/// that differ by up to the skew bound can tell: not before the job was announced, not after
/// the verdict. A verdict about work outside that window proves nothing about this job.
fn check_within(
    field: &'static str,
    issued_at: TimestampMs,
    (from, to): (TimestampMs, TimestampMs),
) -> Result<(), ValidationError> {
    let skew = MAX_CLOCK_SKEW_MS;
    if issued_at.saturating_add(skew) < from || issued_at > to.saturating_add(skew) {
        return Err(invalid(
            field,
            format!(
                "signed at {issued_at}, outside the job's life ({from} to {to}, with {} s of \
                 clock skew)",
                skew / 1000
            ),
        ));
    }
    Ok(())
}

fn check_job_id(field: &'static str, expected: JobId, found: JobId) -> Result<(), ValidationError> {
    if expected != found {
        return Err(ValidationError::JobIdMismatch {
            field,
            expected,
            found,
        });
    }
    Ok(())
}

impl Validate for Verdict {
    /// Re-checks the verdict from its evidence alone (issue 19): every worker's result follows
    /// from messages that worker signed, and the outcome, the agreeing and disagreeing sets
    /// and the payments follow from the revealed results by the same k-of-n rule the
    /// submitter used ([`distributeai_verifier::Tally`]).
    fn validate(&self, signer: &PublicKey, ctx: &ValidationContext) -> Result<(), ValidationError> {
        ctx.check_issued_at(self.issued_at)?;
        // The embedded job and evidence were signed earlier: check them as archived messages.
        let archived = ctx.archived();
        let job = self
            .job
            .open(&archived)
            .map_err(ValidationError::nested("job"))?;
        if job.signer != *signer {
            return Err(ValidationError::WrongSigner(
                "verdict must be issued by the job's submitter",
            ));
        }
        let job_id = self.job.job_id();
        let spec = &job.message.spec;
        if self.issued_at.saturating_add(MAX_CLOCK_SKEW_MS) < job.message.issued_at
            || self.issued_at > job.message.expires_at.saturating_add(MAX_VERDICT_DELAY_MS)
        {
            return Err(invalid(
                "issued_at",
                "a verdict is signed during its job's life, or soon after it expires",
            ));
        }
        let window = (job.message.issued_at, self.issued_at);
        if self.workers.is_empty() {
            return Err(invalid(
                "workers",
                "a job that no worker took leaves no ledger entry",
            ));
        }
        check_count("workers", self.workers.len(), MAX_VERDICT_WORKERS)?;

        let mut opened: Vec<OpenedRecord<'_>> = Vec::with_capacity(self.workers.len());
        for record in &self.workers {
            let bid = record
                .bid
                .open(&archived)
                .map_err(ValidationError::nested("workers.bid"))?;
            check_job_id("workers.bid", job_id, bid.message.job_id)?;
            check_within("workers.bid", bid.message.issued_at, window)?;
            let worker = bid.signer;
            if worker == *signer {
                return Err(invalid("workers", "a submitter cannot judge itself"));
            }
            if opened.iter().any(|o| o.worker == worker) {
                return Err(invalid("workers", "a worker is listed twice"));
            }
            let (attempt, reveal) = open_record(record, &worker, job_id, window, &archived)?;
            opened.push(OpenedRecord {
                worker,
                record,
                attempt,
                reveal,
            });
        }
        recheck_draw(&self.draw, job_id, spec, window, &opened, &archived)?;
        recheck_outcome(self, spec, &opened)
    }
}

/// Opens one record's evidence and checks that its kind fits the result; returns the
/// assignment attempt the evidence is about, and the reveal of a revealed result.
fn open_record(
    record: &WorkerRecord,
    worker: &PublicKey,
    job_id: JobId,
    window: (TimestampMs, TimestampMs),
    archived: &ValidationContext,
) -> Result<(u32, Option<ResultReveal>), ValidationError> {
    const FIELD: &str = "workers.evidence";
    match (&record.evidence, &record.result) {
        (
            Evidence::Revealed { commitment, reveal },
            WorkerResult::Agreed | WorkerResult::OutputRejected | WorkerResult::Disagreed(_),
        ) => {
            let commitment = open_evidence(FIELD, commitment, worker, archived)?;
            let reveal = open_evidence(FIELD, reveal, worker, archived)?;
            let (c, r) = (&commitment.message, reveal.message);
            check_job_id(FIELD, job_id, c.job_id)?;
            check_job_id(FIELD, job_id, r.job_id)?;
            check_within(FIELD, c.issued_at, window)?;
            check_within(FIELD, r.issued_at, window)?;
            let CommittedOutcome::Committed(digest) = c.outcome else {
                return Err(invalid(
                    FIELD,
                    "a revealed result needs a commitment to one",
                ));
            };
            let opens = c.attempt == r.attempt && r.opens(worker, &digest);
            if !opens {
                return Err(invalid(FIELD, "the reveal does not open the commitment"));
            }
            if let WorkerResult::Disagreed(hash) = &record.result
                && *hash != r.result_hash
            {
                return Err(invalid(
                    "workers.result",
                    "a disagreement must name the hash the worker revealed",
                ));
            }
            Ok((r.attempt, Some(r)))
        }
        (Evidence::Failed { commitment }, WorkerResult::Failed(fault)) => {
            check_failure(fault)?;
            let commitment = open_evidence(FIELD, commitment, worker, archived)?;
            check_job_id(FIELD, job_id, commitment.message.job_id)?;
            check_within(FIELD, commitment.message.issued_at, window)?;
            if commitment.message.outcome != CommittedOutcome::Failed(fault.clone()) {
                return Err(invalid(
                    "workers.result",
                    "a failure must be the one the worker signed",
                ));
            }
            Ok((commitment.message.attempt, None))
        }
        (Evidence::Accepted { acceptance }, WorkerResult::Silent) => {
            let ack = open_evidence(FIELD, acceptance, worker, archived)?;
            check_job_id(FIELD, job_id, ack.message.job_id)?;
            check_within(FIELD, ack.message.issued_at, window)?;
            // Silent means its deadline passed before the verdict: the deadline it accepted,
            // counted from its acceptance, give or take the clocks' skew.
            let deadline = ack
                .message
                .issued_at
                .saturating_add(ack.message.deadline_ms);
            if window.1.saturating_add(MAX_CLOCK_SKEW_MS) < deadline {
                return Err(invalid(
                    "workers.result",
                    "silent before the deadline the worker accepted had passed",
                ));
            }
            Ok((ack.message.attempt, None))
        }
        (_, WorkerResult::Silent) => Err(invalid(
            "workers.evidence",
            "silence needs the worker's signed acceptance of its assignment",
        )),
        (_, WorkerResult::Failed(_)) => Err(invalid(
            "workers.evidence",
            "a failure needs the worker's signed failure report",
        )),
        (_, _) => Err(invalid(
            "workers.evidence",
            "a result needs the worker's signed commitment and the reveal that opens it",
        )),
    }
}

/// Replays the draw of the first workers from its record (issue 19): every candidate bid is
/// its worker's own, for this job, once each; and every worker whose evidence is about one of
/// the first attempts (those the draw filled; later ones are replacements) is one the draw
/// picks. The weights and groups are the submitter's view and are taken as recorded.
fn recheck_draw(
    draw: &Draw,
    job_id: JobId,
    spec: &JobSpec,
    window: (TimestampMs, TimestampMs),
    opened: &[OpenedRecord<'_>],
    archived: &ValidationContext,
) -> Result<(), ValidationError> {
    let count = draw.candidates.len();
    check_count("draw.candidates", count, MAX_VERDICT_WORKERS)?;
    if draw.weights.len() != count || draw.groups.len() != count {
        return Err(invalid(
            "draw",
            "needs one weight and one group per candidate",
        ));
    }
    let mut seen = Vec::with_capacity(count);
    for bid in &draw.candidates {
        let bid = bid
            .open(archived)
            .map_err(ValidationError::nested("draw.candidates"))?;
        check_job_id("draw.candidates", job_id, bid.message.job_id)?;
        check_within("draw.candidates", bid.message.issued_at, window)?;
        if seen.contains(&bid.signer) {
            return Err(invalid("draw.candidates", "a worker bid twice"));
        }
        seen.push(bid.signer);
    }
    if count == 0 && !opened.is_empty() {
        return Err(invalid("draw", "the workers were drawn from no candidates"));
    }
    let drawn = usize::from(spec.redundancy).min(count);
    let chosen = draw.chosen(&job_id, drawn);
    for o in opened {
        if (o.attempt as usize) < drawn && !chosen.contains(&o.worker) {
            return Err(invalid(
                "draw",
                format!(
                    "attempt {} went to a worker the draw did not pick",
                    o.attempt
                ),
            ));
        }
    }
    Ok(())
}

/// Recomputes the k-of-n decision from the revealed results, in the verdict's order (the
/// order the submitter counted them), and checks the outcome, each worker's result and the
/// payments against it.
fn recheck_outcome(
    verdict: &Verdict,
    spec: &JobSpec,
    opened: &[OpenedRecord<'_>],
) -> Result<(), ValidationError> {
    let k = usize::from(spec.consensus);
    let revealed: Vec<(PublicKey, ResultHash)> = opened
        .iter()
        .filter_map(|o| o.reveal.as_ref().map(|r| (o.worker, r.result_hash)))
        .collect();
    let decided = if revealed.len() >= k {
        let mut tally: Tally<PublicKey, ResultHash> =
            Tally::new(k, revealed.iter().map(|(w, _)| *w))
                .map_err(|e| invalid("workers", e.to_string()))?;
        for (worker, hash) in &revealed {
            tally
                .record(worker, Report::Result(*hash))
                .map_err(|e| invalid("workers", e.to_string()))?;
        }
        match tally.decision() {
            Decision::Accepted { hash, .. } => Some(hash),
            Decision::Pending | Decision::Impossible => None,
        }
    } else {
        None
    };
    let accepted = match (&verdict.outcome, decided) {
        (VerdictOutcome::Accepted(agreed), Some(hash)) if agreed.hash == hash => {
            check_image_id("outcome.image", &agreed.image)?;
            Some(agreed)
        }
        (VerdictOutcome::Accepted(_), Some(_)) => {
            return Err(invalid(
                "outcome",
                "the accepted hash is not the one the revealed results decide",
            ));
        }
        (VerdictOutcome::Accepted(_), None) => {
            return Err(invalid(
                "outcome",
                format!(
                    "accepted, but no hash is revealed by {k} workers (consensus k = {k}) \
                     among the {} revealed results",
                    revealed.len()
                ),
            ));
        }
        (VerdictOutcome::Failed(reason), None) => {
            check_len("outcome", reason, MAX_REASON_LEN)?;
            if !revealed.is_empty() {
                return Err(invalid(
                    "workers",
                    "a failed verdict blames no revealed result: with no agreed hash there is \
                     no evidence of who was wrong",
                ));
            }
            None
        }
        (VerdictOutcome::Failed(_), Some(_)) => {
            return Err(invalid(
                "outcome",
                "failed, but the revealed results reach consensus: it must be accepted",
            ));
        }
    };
    let mut delivered = 0usize;
    for o in opened {
        let agrees = match (accepted, &o.reveal) {
            (Some(agreed), Some(reveal)) => {
                let agrees = reveal.result_hash == agreed.hash;
                if agrees && (reveal.end != agreed.end || reveal.image != agreed.image) {
                    return Err(invalid(
                        "outcome",
                        "its end and image must be those the agreeing workers revealed",
                    ));
                }
                Some(agrees)
            }
            _ => None,
        };
        let fits = match (&o.record.result, agrees) {
            (WorkerResult::Agreed, Some(true)) => {
                delivered += 1;
                true
            }
            (WorkerResult::OutputRejected, Some(true)) => true,
            (WorkerResult::Disagreed(_), Some(false)) => true,
            (WorkerResult::Failed(_) | WorkerResult::Silent, None) => true,
            _ => false,
        };
        if !fits {
            return Err(invalid(
                "workers.result",
                "does not follow from the worker's revealed result and the accepted hash",
            ));
        }
        let expected_pay = match o.record.result {
            // Paid for a run that agreed, whether the job exited or timed out: the workers
            // did what was asked.
            WorkerResult::Agreed => spec.reward,
            _ => 0,
        };
        if o.record.paid != expected_pay {
            return Err(invalid(
                "workers.paid",
                "must be the reward for agreeing workers, else 0",
            ));
        }
    }
    if let Some(agreed) = accepted
        && agreed.end.is_exit()
        && delivered == 0
    {
        return Err(invalid(
            "workers",
            "an accepted job that exited needs a worker whose output was delivered",
        ));
    }
    Ok(())
}

impl LedgerSyncRequest {
    /// Checks the request's bounds.
    pub fn check(&self) -> Result<(), ValidationError> {
        check_range("limit", self.limit.into(), 1, MAX_LEDGER_BATCH as u64)
    }
}

impl LedgerSyncResponse {
    /// Checks the batch size; each entry is then opened on its own.
    pub fn check(&self) -> Result<(), ValidationError> {
        check_count("entries", self.entries.len(), MAX_LEDGER_BATCH)
    }
}
