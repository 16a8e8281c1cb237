//! What a push carries: a bundle envelope, as always, or a key statement
//! (optionally with a bundle to install right after it under the new keys).
//!
//! Wire form (postcard), chosen so that every bundle envelope ever written
//! is a valid delivery unchanged:
//!
//! ```text
//! Delivery = enum {
//!   0: Bundle   -- the bytes are a bundle's SignedEnvelope::V1 (whose own tag is 00)
//!   1: Keys { statement: bytes, bundle: Option<bytes> }
//! }
//! ```
//!
//! Classifying reads the leading tag only; nothing is authenticated here:
//! the statement's and the bundle's own signatures decide.

use crate::codec::{self, DecodeError};
use serde::{Deserialize, Serialize};

/// A push's bytes, classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery<'a> {
    /// A bundle envelope (the whole bytes).
    Bundle(&'a [u8]),
    /// A key statement envelope, and a bundle envelope to install after it.
    Keys {
        /// The statement's envelope bytes.
        statement: &'a [u8],
        /// A bundle's envelope bytes, if one rides along.
        bundle: Option<&'a [u8]>,
    },
}

/// Tag of the `Keys` variant.
const KEYS_TAG: u8 = 1;

#[derive(Serialize)]
struct KeysOut<'a> {
    #[serde(serialize_with = "crate::codec::bytes::serialize")]
    statement: &'a [u8],
    /// serde writes a `&[u8]` as a sequence of `u8`, which postcard
    /// encodes exactly as bytes (varint length, raw bytes).
    bundle: Option<&'a [u8]>,
}

#[derive(Deserialize)]
struct KeysIn<'a> {
    #[serde(borrow)]
    statement: &'a [u8],
    #[serde(borrow)]
    bundle: Option<&'a [u8]>,
}

impl<'a> Delivery<'a> {
    /// Classify a push by its leading tag; `UnknownVersion` for a tag this
    /// build does not know, `Malformed`/`TrailingBytes` for a `Keys`
    /// delivery that does not decode exactly.
    pub fn classify(bytes: &'a [u8]) -> Result<Delivery<'a>, DecodeError> {
        match codec::peek_version(bytes)? {
            0 => Ok(Delivery::Bundle(bytes)),
            1 => {
                let k: KeysIn<'a> = codec::decode_exact_borrowed(&bytes[1..])?;
                Ok(Delivery::Keys {
                    statement: k.statement,
                    bundle: k.bundle,
                })
            }
            n => Err(DecodeError::UnknownVersion(n)),
        }
    }
}

/// Encode a `Keys` delivery: what `edgegate keys init|rotate` write and
/// `edgegate bundle push --keys` sends.
pub fn encode_keys_delivery(statement: &[u8], bundle: Option<&[u8]>) -> Vec<u8> {
    let mut out = vec![KEYS_TAG];
    out.extend(codec::encode(&KeysOut { statement, bundle }));
    out
}
