//! Public keys and their text form `ed25519:<base64>`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An ed25519 public key: 32 bytes on the wire, `ed25519:<base64>` as text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PublicKey(pub [u8; 32]);

/// Why a text key could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyParseError {
    /// The text does not start with `ed25519:`.
    #[error("a public key must look like ed25519:<base64>")]
    MissingPrefix,
    /// The part after the prefix is not valid base64.
    #[error("public key is not valid base64")]
    BadBase64,
    /// The decoded key is not 32 bytes long.
    #[error("public key must be 32 bytes, got {0}")]
    BadLength(usize),
    /// The bytes are not a point on the curve.
    #[error("public key is not a valid ed25519 point")]
    NotAPoint,
}

impl PublicKey {
    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The dalek verifying key, if the bytes are a valid point.
    pub fn verifying_key(&self) -> Result<ed25519_dalek::VerifyingKey, KeyParseError> {
        ed25519_dalek::VerifyingKey::from_bytes(&self.0).map_err(|_| KeyParseError::NotAPoint)
    }
}

impl From<ed25519_dalek::VerifyingKey> for PublicKey {
    fn from(k: ed25519_dalek::VerifyingKey) -> Self {
        PublicKey(k.to_bytes())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ed25519:{}", STANDARD.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for PublicKey {
    type Err = KeyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b64 = s
            .trim()
            .strip_prefix("ed25519:")
            .ok_or(KeyParseError::MissingPrefix)?;
        let raw = STANDARD.decode(b64).map_err(|_| KeyParseError::BadBase64)?;
        let arr: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| KeyParseError::BadLength(raw.len()))?;
        let key = PublicKey(arr);
        key.verifying_key()?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip() {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let pk = PublicKey::from(sk.verifying_key());
        let text = pk.to_string();
        assert!(text.starts_with("ed25519:"));
        assert_eq!(text.parse::<PublicKey>().unwrap(), pk);
    }

    #[test]
    fn rejects_bad_text() {
        assert_eq!(
            "abc".parse::<PublicKey>(),
            Err(KeyParseError::MissingPrefix)
        );
        assert_eq!(
            "ed25519:!!".parse::<PublicKey>(),
            Err(KeyParseError::BadBase64)
        );
        assert_eq!(
            "ed25519:AAAA".parse::<PublicKey>(),
            Err(KeyParseError::BadLength(3))
        );
    }
}
