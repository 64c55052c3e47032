//! Fixed-size byte values (hashes, keys, signatures) and their two encodings.
//!
//! On the wire (CBOR) they are byte strings; in human-readable formats (the JSON API) they are
//! lowercase hex, so the same types serve both without wrappers.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Serialises a fixed-size byte array as bytes (binary formats) or hex (human-readable).
fn serialize_bytes<S: Serializer, const N: usize>(
    bytes: &[u8; N],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        serializer.serialize_str(&hex::encode(bytes))
    } else {
        serializer.serialize_bytes(bytes)
    }
}

/// The inverse of [`serialize_bytes`]; rejects any length other than `N`.
fn deserialize_bytes<'de, D: Deserializer<'de>, const N: usize>(
    deserializer: D,
) -> Result<[u8; N], D::Error> {
    struct FixedBytes<const N: usize>;

    impl<'de, const N: usize> Visitor<'de> for FixedBytes<N> {
        type Value = [u8; N];

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{N} bytes, or {} hex digits", 2 * N)
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
            v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let mut out = [0u8; N];
            hex::decode_to_slice(v, &mut out)
                .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))?;
            Ok(out)
        }
    }

    if deserializer.is_human_readable() {
        deserializer.deserialize_str(FixedBytes::<N>)
    } else {
        deserializer.deserialize_bytes(FixedBytes::<N>)
    }
}

/// Defines a newtype over `[u8; N]` with hex display/parsing and the dual serde encoding.
macro_rules! fixed_bytes {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Lowercase hex.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 12 hex digits, for logs and tables.
            pub fn short(&self) -> String {
                let mut s = self.to_hex();
                s.truncate(12);
                s
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl std::str::FromStr for $name {
            type Err = hex::FromHexError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(s, &mut out)?;
                Ok(Self(out))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serialize_bytes(&self.0, serializer)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserialize_bytes(deserializer).map(Self)
            }
        }
    };
}

fixed_bytes!(
    /// A job's content id: the blake3 hash of its signed announcement.
    JobId,
    32
);
fixed_bytes!(
    /// The canonical blake3 hash of an execution outcome (see [`crate::result_hash`]).
    ResultHash,
    32
);
fixed_bytes!(
    /// A generic blake3 digest (commitments, ledger summaries, file hashes).
    Digest,
    32
);
fixed_bytes!(
    /// An ed25519 public key: the identity of a node, and the key its PeerId is derived from.
    PublicKey,
    32
);
fixed_bytes!(
    /// An ed25519 signature.
    SignatureBytes,
    64
);

impl PublicKey {
    /// The libp2p `PeerId` of the node owning this key.
    ///
    /// Fails only for byte strings that are not a valid ed25519 point, which a verified
    /// signer key never is.
    pub fn peer_id(&self) -> Result<libp2p_identity::PeerId, crate::identity::IdentityError> {
        let key = libp2p_identity::ed25519::PublicKey::try_from_bytes(&self.0)
            .map_err(|_| crate::identity::IdentityError::InvalidPublicKey)?;
        Ok(libp2p_identity::PublicKey::from(key).to_peer_id())
    }

    /// The key a `PeerId` was derived from, the inverse of [`PublicKey::peer_id`].
    ///
    /// # Errors
    /// [`IdentityError::InvalidPublicKey`](crate::identity::IdentityError::InvalidPublicKey)
    /// when the PeerId does not embed an ed25519 key (every DistributeAI node's does: ed25519
    /// PeerIds are the key itself under the identity multihash, code 0x00).
    pub fn from_peer_id(
        peer: &libp2p_identity::PeerId,
    ) -> Result<Self, crate::identity::IdentityError> {
        let multihash = peer.as_ref();
        if multihash.code() != 0x00 {
            return Err(crate::identity::IdentityError::InvalidPublicKey);
        }
        libp2p_identity::PublicKey::try_decode_protobuf(multihash.digest())
            .ok()
            .and_then(|key| key.try_into_ed25519().ok())
            .map(|key| Self(key.to_bytes()))
            .ok_or(crate::identity::IdentityError::InvalidPublicKey)
    }
}

impl Digest {
    /// blake3 of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_hex_and_cbor_is_bytes() {
        let id = JobId([0xab; 32]);
        let json = serde_json::to_string(&id).expect("json");
        assert_eq!(json, format!("\"{}\"", "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<JobId>(&json).expect("parse"), id);

        let mut cbor = Vec::new();
        ciborium::into_writer(&id, &mut cbor).expect("cbor");
        // Major type 2 (bytes), one-byte length 32, then the bytes.
        assert_eq!(&cbor[..2], &[0x58, 32]);
        assert_eq!(cbor.len(), 34);
        let back: JobId = ciborium::from_reader(cbor.as_slice()).expect("decode");
        assert_eq!(back, id);
    }

    #[test]
    fn wrong_length_is_rejected() {
        let mut cbor = Vec::new();
        ciborium::into_writer(&serde_bytes::Bytes::new(&[1, 2, 3]), &mut cbor).expect("cbor");
        assert!(ciborium::from_reader::<JobId, _>(cbor.as_slice()).is_err());
        assert!(serde_json::from_str::<JobId>("\"abcd\"").is_err());
        assert!("zz".parse::<PublicKey>().is_err());
    }
}
