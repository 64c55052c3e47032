//! The DistributeAI wire protocol: everything two nodes must agree on, and nothing else.
//!
//! - [`identity`]: a node's ed25519 keypair, stored in its data directory, which is also its
//!   libp2p identity.
//! - [`messages`]: the typed messages of the job flow, from [`NodeAnnouncement`] to
//!   [`Verdict`].
//! - [`Signed`]: the envelope every message travels in, signed with a domain-separation tag.
//! - [`codec`]: bounded CBOR (ciborium) encoding and decoding.
//! - [`result_hash`]: the canonical result hash and the commitment that hides it.
//! - [`validate`]: bounds and consistency checks, with typed errors.
//! - [`wire`]: what goes over gossipsub and the direct request-response protocol.
//!
//! The crate does no I/O beyond reading and writing the identity file; networking lives in the
//! node crate.

pub mod codec;
pub mod digest;
pub mod envelope;
pub mod identity;
pub mod limits;
pub mod messages;
pub mod result_hash;
pub mod time;
pub mod validate;
pub mod wire;

pub use codec::{DecodeError, EncodeError};
pub use digest::{Digest, JobId, PublicKey, ResultHash, SignatureBytes};
pub use envelope::{MessageKind, PROTOCOL_VERSION, Signed, SignedMessage, Verified};
pub use identity::{IdentityError, NodeIdentity};
pub use messages::*;
pub use validate::{Freshness, Validate, ValidationContext, ValidationError};
pub use wire::{GossipMessage, OutputChunk, Request, Response, VerifiedGossip};
