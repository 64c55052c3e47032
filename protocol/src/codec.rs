//! Bounded CBOR encoding and decoding (ciborium).
//!
//! Decoding refuses input over [`MAX_MESSAGE_BYTES`] before parsing, so allocation is bounded
//! by the input size (ciborium grows byte and text strings chunk by chunk as it reads them, and
//! serde caps pre-allocation of sequences), and refuses trailing bytes so that one encoding
//! has one meaning.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::limits::MAX_MESSAGE_BYTES;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input is larger than any legal message.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The input is not CBOR of the expected shape.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A complete value was followed by more bytes.
    #[error("{0} unexpected bytes after the message")]
    TrailingBytes(usize),
}

/// Why a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The serialiser failed (cannot happen for our types; kept typed rather than panicking).
    #[error("cannot encode message: {0}")]
    Cbor(String),
    /// The encoding is larger than any peer would accept.
    #[error("encoded message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Encodes `value` as CBOR, refusing results that peers would reject as too large.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EncodeError> {
    let out = encode_local(value)?;
    if out.len() > MAX_MESSAGE_BYTES {
        return Err(EncodeError::TooLarge {
            len: out.len(),
            max: MAX_MESSAGE_BYTES,
        });
    }
    Ok(out)
}

/// Encodes `value` as CBOR with no size limit: for records a node keeps for itself (its store),
/// which may hold several messages' worth (a job record holds its announcement and its
/// verdict), never for the wire.
pub fn encode_local<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).map_err(|e| EncodeError::Cbor(e.to_string()))?;
    Ok(out)
}

/// Decodes a record written by [`encode_local`]: no size limit, otherwise as [`decode`].
/// Never panics.
pub fn decode_local<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let mut reader = bytes;
    let value =
        ciborium::from_reader(&mut reader).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !reader.is_empty() {
        return Err(DecodeError::TrailingBytes(reader.len()));
    }
    Ok(value)
}

/// Decodes one CBOR value from untrusted bytes. Never panics.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: MAX_MESSAGE_BYTES,
        });
    }
    decode_local(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let big = vec![0u8; MAX_MESSAGE_BYTES + 1];
        assert_eq!(
            decode::<u8>(&big),
            Err(DecodeError::TooLarge {
                len: MAX_MESSAGE_BYTES + 1,
                max: MAX_MESSAGE_BYTES
            })
        );
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode(&7u32).expect("encode");
        bytes.push(0);
        assert_eq!(decode::<u32>(&bytes), Err(DecodeError::TrailingBytes(1)));
    }

    #[test]
    fn huge_declared_lengths_do_not_allocate() {
        // A byte string claiming 2^63 bytes, and an array claiming 2^63 elements: both must fail
        // on the short input instead of reserving memory for the claimed size.
        let bytes_header = [0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00];
        assert!(decode::<serde_bytes::ByteBuf>(&bytes_header).is_err());
        let array_header = [0x9b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00];
        assert!(decode::<Vec<u64>>(&array_header).is_err());
        // Deep nesting stops at ciborium's recursion limit instead of overflowing the stack.
        let deep = vec![0x81u8; 100_000];
        assert!(decode::<ciborium::Value>(&deep).is_err());
    }
}
