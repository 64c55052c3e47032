//! The top-level wire messages: what goes over gossipsub, and what goes over the direct
//! request-response protocol between two peers.
//!
//! Both are CBOR, at most [`MAX_MESSAGE_BYTES`] each. Decoding checks the bounds of the outer
//! structure; each signed part is then opened (signature, decoding, validation) on its own.

use serde::{Deserialize, Serialize};

use crate::codec::{self, EncodeError};
use crate::digest::{Digest, JobId};
use crate::envelope::{Signed, Verified};
use crate::limits::{MAX_MESSAGE_BYTES, MAX_OUTPUT_CHUNK_BYTES};
use crate::messages::*;
use crate::validate::{ValidationContext, ValidationError};

/// A message published on the mesh's gossipsub topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GossipMessage {
    /// A node's capabilities.
    Node(Signed<NodeAnnouncement>),
    /// A job looking for workers.
    Job(Signed<JobAnnouncement>),
    /// A job withdrawn by its submitter.
    Cancel(Signed<JobCancel>),
    /// A verdict: a ledger entry.
    Verdict(Signed<Verdict>),
}

/// A gossip message whose signed part has been opened and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifiedGossip {
    /// A node's capabilities.
    Node(Verified<NodeAnnouncement>),
    /// A job looking for workers.
    Job(Verified<JobAnnouncement>),
    /// A job withdrawn by its submitter.
    Cancel(Verified<JobCancel>),
    /// A verdict.
    Verdict(Verified<Verdict>),
}

impl GossipMessage {
    /// CBOR encoding.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        codec::encode(self)
    }

    /// Decodes, verifies and validates gossip bytes from the network. Live freshness rules
    /// apply to announcements and cancels; a verdict may be relayed long after the job ran, so
    /// only its signature and consistency are checked against the clock's upper bound.
    pub fn decode_verified(
        bytes: &[u8],
        ctx: &ValidationContext,
    ) -> Result<VerifiedGossip, ValidationError> {
        Self::decode(bytes)?.verify(ctx)
    }

    /// Decodes gossip bytes within the wire bounds, checking no signature: what a receiver
    /// needs to recognise a message it already holds or saw ([`GossipMessage::content_id`])
    /// before spending signature checks on it. Act on it only after [`GossipMessage::verify`].
    pub fn decode(bytes: &[u8]) -> Result<Self, ValidationError> {
        Ok(codec::decode(bytes)?)
    }

    /// The content id of the signed message inside (see `Signed::content_id`).
    pub fn content_id(&self) -> Digest {
        match self {
            GossipMessage::Node(m) => m.content_id(),
            GossipMessage::Job(m) => m.content_id(),
            GossipMessage::Cancel(m) => m.content_id(),
            GossipMessage::Verdict(m) => m.content_id(),
        }
    }

    /// Verifies and validates a decoded message, as [`GossipMessage::decode_verified`] does.
    pub fn verify(self, ctx: &ValidationContext) -> Result<VerifiedGossip, ValidationError> {
        Ok(match self {
            GossipMessage::Node(m) => VerifiedGossip::Node(m.open(ctx)?),
            GossipMessage::Job(m) => VerifiedGossip::Job(m.open(ctx)?),
            GossipMessage::Cancel(m) => VerifiedGossip::Cancel(m.open(ctx)?),
            GossipMessage::Verdict(m) => VerifiedGossip::Verdict(m.open(&ctx.archived())?),
        })
    }
}

/// A direct request from one peer to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Worker to submitter: an offer to run the job.
    Bid(Signed<Bid>),
    /// Submitter to worker: run the job.
    Assign(Signed<Assignment>),
    /// Worker to submitter: the hiding commitment to its result, or its failure.
    Commit(Signed<ResultCommitment>),
    /// Submitter to worker, once all commitments are in: open your commitment.
    Reveal {
        /// The job.
        job_id: JobId,
        /// The attempt the commitment answered.
        attempt: u32,
    },
    /// Submitter to worker: send the output bundle from `offset`.
    FetchOutput {
        /// The job.
        job_id: JobId,
        /// Byte offset into the bundle.
        offset: u64,
        /// Most bytes wanted in this piece; the worker sends at most this and at most
        /// [`MAX_OUTPUT_CHUNK_BYTES`]. Small over relayed connections, whose circuits carry a
        /// limited number of bytes each (issue 10).
        max_bytes: u32,
    },
    /// Any peer: ledger entries after a cursor.
    LedgerSync(LedgerSyncRequest),
    /// Submitter to a worker that has not bid, once no reserve is left: the job's signed
    /// announcement, inviting a bid (bidding re-opened; the worker may have joined after the
    /// job was gossiped).
    Invite(Signed<JobAnnouncement>),
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Received and accepted.
    Ack,
    /// Worker to submitter: the assignment is accepted, signed (the proof a verdict needs to
    /// call the worker silent later).
    Accepted(Signed<AssignmentAck>),
    /// Received and refused, with the reason.
    Refused(String),
    /// Not now: every slot of the worker is running a job. The assignment stands; the
    /// submitter sends it again later (issue 12).
    Busy,
    /// The worker's signed reveal, with the manifest it opens to.
    Reveal(RevealedResult),
    /// A piece of the output bundle.
    Output(OutputChunk),
    /// A batch of ledger entries.
    Ledger(LedgerSyncResponse),
}

/// A piece of a job's output bundle: its stdout followed by each file of the manifest, in
/// manifest order, with no framing; the manifest's sizes split it and its hashes check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputChunk {
    /// Where this piece starts in the bundle.
    pub offset: u64,
    /// Length of the whole bundle.
    pub total: u64,
    /// The bytes.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

impl Request {
    /// CBOR encoding.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        codec::encode(self)
    }

    /// Decodes a request from untrusted bytes and checks its unsigned bounds; signed parts are
    /// opened by the handler with [`Signed::open`].
    pub fn decode(bytes: &[u8]) -> Result<Self, ValidationError> {
        let request: Request = codec::decode(bytes)?;
        if let Request::LedgerSync(sync) = &request {
            sync.check()?;
        }
        Ok(request)
    }
}

impl Response {
    /// CBOR encoding.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        codec::encode(self)
    }

    /// Decodes a response from untrusted bytes and checks its unsigned bounds.
    pub fn decode(bytes: &[u8]) -> Result<Self, ValidationError> {
        let response: Response = codec::decode(bytes)?;
        match &response {
            Response::Ledger(batch) => batch.check()?,
            Response::Output(chunk) => chunk.check()?,
            Response::Refused(reason) if reason.len() > crate::limits::MAX_SHORT_TEXT_LEN => {
                return Err(ValidationError::TooLong {
                    field: "reason",
                    len: reason.len(),
                    max: crate::limits::MAX_SHORT_TEXT_LEN,
                });
            }
            _ => {}
        }
        Ok(response)
    }
}

impl OutputChunk {
    /// Checks that the chunk is within its size bound and inside the bundle.
    pub fn check(&self) -> Result<(), ValidationError> {
        if self.data.len() > MAX_OUTPUT_CHUNK_BYTES {
            return Err(ValidationError::TooLong {
                field: "data",
                len: self.data.len(),
                max: MAX_OUTPUT_CHUNK_BYTES,
            });
        }
        let end = self.offset.checked_add(self.data.len() as u64);
        if end.is_none_or(|end| end > self.total) {
            return Err(ValidationError::Invalid {
                field: "offset",
                reason: "chunk extends past the end of the bundle".into(),
            });
        }
        Ok(())
    }
}

// An output chunk must fit in a message together with its framing.
const _: () = assert!(MAX_OUTPUT_CHUNK_BYTES + 1024 < MAX_MESSAGE_BYTES);
