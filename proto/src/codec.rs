//! Strict postcard decoding shared by every decoder in this crate.
//!
//! postcard has no field names and no framing, so a decoder that ignored
//! trailing bytes would accept two different byte strings for one value.
//! Everything here rejects them.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why bytes could not be decoded into a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not a valid postcard encoding of the expected type.
    #[error("malformed encoding: {0}")]
    Malformed(String),
    /// A valid value was followed by bytes that belong to nothing.
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
    /// The version tag names a format this build does not know. The field is
    /// the tag as encoded (the enum variant index: 0 is format version 1).
    #[error("unknown format version {} (this build reads version 1: a newer edgegate wrote it, or it is not an edgegate file)", u64::from(*.0) + 1)]
    UnknownVersion(u32),
}

/// Decode exactly one value from `bytes`, rejecting trailing bytes.
pub fn decode_exact<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (value, rest) =
        postcard::take_from_bytes(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(value)
}

/// [`decode_exact`] for a value that borrows from `bytes` (no copy of the
/// byte strings it holds).
pub fn decode_exact_borrowed<'a, T: serde::Deserialize<'a>>(
    bytes: &'a [u8],
) -> Result<T, DecodeError> {
    let (value, rest) =
        postcard::take_from_bytes(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(value)
}

/// Encode a value with postcard.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising our own types into a Vec cannot fail: there are no maps
    // with unknown lengths and no custom serialisers that error.
    postcard::to_stdvec(value).expect("postcard encoding of an edgegate type")
}

/// Encode a value as one length-prefixed frame: a `u32` big-endian body
/// length, then the postcard body. Both wire protocols (control socket and
/// tunnel) frame this way.
pub fn encode_prefixed<T: Serialize>(value: &T) -> Vec<u8> {
    let body = encode(value);
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Read a frame's `u32` big-endian length prefix and check it against `cap`
/// before anything is allocated. `Err` carries the announced length; each
/// protocol turns it into its own error.
pub fn prefixed_len(prefix: [u8; 4], cap: usize) -> Result<usize, usize> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > cap {
        return Err(len);
    }
    Ok(len)
}

/// Read the leading varint version tag of a versioned enum without decoding
/// the rest, so an unknown version is reported as such and not as garbage.
pub fn peek_version(bytes: &[u8]) -> Result<u32, DecodeError> {
    let (tag, _) = postcard::take_from_bytes::<u32>(bytes)
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    Ok(tag)
}

/// serde helper for `[u8; 64]` (serde derives arrays only up to 32).
/// Encoded as a 64-tuple, i.e. 64 raw bytes in postcard.
pub mod array64 {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::ser::SerializeTuple;
    use serde::{Deserializer, Serializer};

    /// Serialize 64 bytes as a fixed tuple.
    pub fn serialize<S: Serializer>(v: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(64)?;
        for b in v {
            t.serialize_element(b)?;
        }
        t.end()
    }

    /// Deserialize 64 bytes from a fixed tuple.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = [u8; 64];
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("64 bytes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; 64], A::Error> {
                let mut out = [0u8; 64];
                for (i, slot) in out.iter_mut().enumerate() {
                    *slot = seq
                        .next_element()?
                        .ok_or_else(|| A::Error::invalid_length(i, &self))?;
                }
                Ok(out)
            }
        }
        d.deserialize_tuple(64, V)
    }
}

/// serde helper for a `Vec<u8>` field carried as serde bytes.
///
/// serde treats `Vec<u8>` as a sequence and postcard then moves it one
/// element at a time; as bytes it is one length and one copy. postcard
/// encodes both as a varint length followed by the raw bytes, so switching a
/// field to this helper does not change the wire (pinned by the golden
/// tests).
pub mod bytes {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    /// Serialize a byte vector as serde bytes.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    /// Deserialize a byte vector from serde bytes (or, for self-describing
    /// formats, from a sequence of `u8`).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                // Only self-describing formats get here; the hint is capped so
                // an announced length cannot force a large allocation.
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// postcard accepts a varint written with more bytes than needed (as
    /// proto/README.md §1 says): harmless, since signatures cover the exact
    /// bytes received, but producers must write the minimal form.
    #[test]
    fn non_minimal_varints_decode_and_reencode_minimal() {
        assert_eq!(decode_exact::<u32>(&[0x05]), Ok(5));
        assert_eq!(decode_exact::<u32>(&[0x85, 0x00]), Ok(5));
        assert_eq!(encode(&5u32), vec![0x05]);
        // Past the type's width is malformed, not wrapped.
        assert!(decode_exact::<u32>(&[0xff, 0xff, 0xff, 0xff, 0x7f]).is_err());
        assert_eq!(
            decode_exact::<u32>(&[0x05, 0x00]),
            Err(DecodeError::TrailingBytes(1))
        );
    }
}
