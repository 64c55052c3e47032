//! `Signed<T>`: the envelope every protocol message travels in.
//!
//! The envelope holds the CBOR encoding of the body exactly as signed, the signer's public key
//! and an ed25519 signature over a domain-separation tag plus the body. The tag names the
//! protocol version and the message type, so a signature made for one type never verifies as
//! another, and a body is decoded only after its signature checks out.

use std::fmt;
use std::marker::PhantomData;

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::codec::{self, EncodeError};
use crate::digest::{Digest, PublicKey, SignatureBytes};
use crate::identity::NodeIdentity;
use crate::validate::{Validate, ValidationContext, ValidationError};

/// The wire protocol version signed into every envelope.
pub const PROTOCOL_VERSION: u16 = 3;

/// The type of a signed message; part of what is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// [`crate::NodeAnnouncement`]
    NodeAnnouncement,
    /// [`crate::JobAnnouncement`]
    JobAnnouncement,
    /// [`crate::JobCancel`]
    JobCancel,
    /// [`crate::Bid`]
    Bid,
    /// [`crate::Assignment`]
    Assignment,
    /// [`crate::AssignmentAck`]
    AssignmentAck,
    /// [`crate::ResultCommitment`]
    ResultCommitment,
    /// [`crate::ResultReveal`]
    ResultReveal,
    /// [`crate::Verdict`]
    Verdict,
}

impl MessageKind {
    /// Every kind, for exhaustive tests.
    pub const ALL: [MessageKind; 9] = [
        MessageKind::NodeAnnouncement,
        MessageKind::JobAnnouncement,
        MessageKind::JobCancel,
        MessageKind::Bid,
        MessageKind::Assignment,
        MessageKind::AssignmentAck,
        MessageKind::ResultCommitment,
        MessageKind::ResultReveal,
        MessageKind::Verdict,
    ];

    /// Stable name used in the domain-separation tag and in logs.
    pub const fn name(self) -> &'static str {
        match self {
            MessageKind::NodeAnnouncement => "node-announcement",
            MessageKind::JobAnnouncement => "job-announcement",
            MessageKind::JobCancel => "job-cancel",
            MessageKind::Bid => "bid",
            MessageKind::Assignment => "assignment",
            MessageKind::AssignmentAck => "assignment-ack",
            MessageKind::ResultCommitment => "result-commitment",
            MessageKind::ResultReveal => "result-reveal",
            MessageKind::Verdict => "verdict",
        }
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A message type that travels signed.
pub trait SignedMessage: Serialize + serde::de::DeserializeOwned + Validate {
    /// Its kind, signed into the envelope.
    const KIND: MessageKind;
}

/// The bytes an ed25519 signature covers: `"distributeai/v<version>/<kind>\0" || body`.
fn signing_input(kind: MessageKind, body: &[u8]) -> Vec<u8> {
    let tag = format!("distributeai/v{PROTOCOL_VERSION}/{}\0", kind.name());
    let mut input = Vec::with_capacity(tag.len() + body.len());
    input.extend_from_slice(tag.as_bytes());
    input.extend_from_slice(body);
    input
}

/// A message of type `T`, signed by `signer`.
#[derive(Serialize, Deserialize)]
#[serde(bound = "", deny_unknown_fields)]
pub struct Signed<T> {
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
    signer: PublicKey,
    signature: SignatureBytes,
    #[serde(skip)]
    _type: PhantomData<fn() -> T>,
}

// Manual impls: derives would demand `T: Clone` etc. although only bytes are stored.
impl<T> Clone for Signed<T> {
    fn clone(&self) -> Self {
        Self {
            body: self.body.clone(),
            signer: self.signer,
            signature: self.signature,
            _type: PhantomData,
        }
    }
}

impl<T> PartialEq for Signed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.body == other.body && self.signer == other.signer && self.signature == other.signature
    }
}

impl<T> Eq for Signed<T> {}

impl<T: SignedMessage> fmt::Debug for Signed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signed")
            .field("kind", &T::KIND)
            .field("signer", &self.signer)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// A signed message whose signature and contents have been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<T: SignedMessage> {
    /// Who signed it.
    pub signer: PublicKey,
    /// The decoded, validated message.
    pub message: T,
    /// The envelope as received, for relaying or embedding in other messages.
    pub envelope: Signed<T>,
}

impl<T: SignedMessage> Signed<T> {
    /// Encodes and signs `message` with `identity`.
    pub fn sign(identity: &NodeIdentity, message: &T) -> Result<Self, EncodeError> {
        let body = codec::encode(message)?;
        let signature = identity.sign_raw(&signing_input(T::KIND, &body));
        Ok(Self {
            body,
            signer: identity.public_key(),
            signature,
            _type: PhantomData,
        })
    }

    /// An envelope from its parts as they travel; nothing is checked until [`Signed::open`].
    pub fn from_parts(body: Vec<u8>, signer: PublicKey, signature: SignatureBytes) -> Self {
        Self {
            body,
            signer,
            signature,
            _type: PhantomData,
        }
    }

    /// The claimed signature.
    pub fn signature(&self) -> SignatureBytes {
        self.signature
    }

    /// Who claims to have signed it (verified only by [`Signed::open`]).
    pub fn signer(&self) -> PublicKey {
        self.signer
    }

    /// The signed body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// A content id of the whole signed message: blake3 over its kind, signer, body and
    /// signature. Used as the job id of a job announcement and to recognise replays.
    pub fn content_id(&self) -> Digest {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&signing_input(T::KIND, &[]));
        hasher.update(self.signer.as_bytes());
        hasher.update(&(self.body.len() as u64).to_le_bytes());
        hasher.update(&self.body);
        hasher.update(self.signature.as_bytes());
        Digest(*hasher.finalize().as_bytes())
    }

    /// Checks the signature only (no decoding).
    pub fn verify_signature(&self) -> Result<(), ValidationError> {
        let key = VerifyingKey::from_bytes(self.signer.as_bytes())
            .map_err(|_| ValidationError::BadSignature)?;
        let signature = Signature::from_bytes(self.signature.as_bytes());
        // Strict verification rejects weak keys and malleable signatures, so one message has
        // exactly one valid signature and `content_id` is stable.
        key.verify_strict(&signing_input(T::KIND, &self.body), &signature)
            .map_err(|_| ValidationError::BadSignature)
    }

    /// Verifies the signature, decodes the body and validates it: the one check every received
    /// message goes through before anything acts on it.
    pub fn open(&self, ctx: &ValidationContext) -> Result<Verified<T>, ValidationError> {
        self.verify_signature()?;
        let message: T = codec::decode(&self.body).map_err(ValidationError::from)?;
        message.validate(&self.signer, ctx)?;
        Ok(Verified {
            signer: self.signer,
            message,
            envelope: self.clone(),
        })
    }

    /// Decodes the body without validating it. Only for messages this node signed itself.
    pub fn decode_unchecked(&self) -> Result<T, ValidationError> {
        codec::decode(&self.body).map_err(ValidationError::from)
    }
}
