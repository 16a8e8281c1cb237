//! The signed envelope around a bundle, a ticket, a key statement or an
//! enrollment.
//!
//! Wire form (postcard): `SignedEnvelope::V1 { body: bytes, signatures: [ {key, sig} ] }`.
//! Each signature is ed25519 over `domain(purpose) || body`, the exact body
//! bytes as received, so nothing is decoded before it is authenticated. The
//! domain string keeps a bundle signature from ever verifying as a ticket.
//!
//! What this module decides: size, envelope shape, and whether enough
//! distinct trusted keys signed. It does not decode the body.

use crate::codec::{self, DecodeError};
use crate::keys::PublicKey;
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};

/// Most signatures an envelope may carry; more is rejected before checking any.
pub const MAX_SIGNATURES: usize = 16;

/// What a signed body is for; each purpose has its own signing domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A permission bundle for one device.
    Bundle,
    /// A ticket admitting one client key to one device.
    Ticket,
    /// A key statement: which keys hold each role (`authority.rs`).
    Keys,
    /// A relay enrollment: device D has key K (`enrollment.rs`).
    Enroll,
}

impl Purpose {
    /// The domain-separation prefix signed before the body.
    pub fn domain(self) -> &'static [u8] {
        match self {
            Purpose::Bundle => b"edgegate bundle v1\0",
            Purpose::Ticket => b"edgegate ticket v1\0",
            Purpose::Keys => b"edgegate keys v1\0",
            Purpose::Enroll => b"edgegate enroll v1\0",
        }
    }

    /// Largest envelope accepted for this purpose, in bytes.
    pub fn max_size(self) -> usize {
        match self {
            Purpose::Bundle => 32 << 20,
            Purpose::Ticket => 4 << 10,
            Purpose::Keys => 64 << 10,
            Purpose::Enroll => 4 << 10,
        }
    }
}

/// One signature inside an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureEntry {
    /// The signer's public key.
    pub key: PublicKey,
    /// ed25519 signature over `domain || body`.
    #[serde(with = "codec::array64")]
    pub signature: [u8; 64],
}

/// The envelope as it travels. Versioned: new versions are added as new
/// variants at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignedEnvelope {
    /// Version 1.
    V1 {
        /// The exact body bytes that were signed.
        #[serde(with = "crate::codec::bytes")]
        body: Vec<u8>,
        /// One or more signatures.
        signatures: Vec<SignatureEntry>,
    },
}

/// Which keys are trusted and how many of them must sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustPolicy {
    keys: Vec<PublicKey>,
    threshold: usize,
}

impl TrustPolicy {
    /// A policy trusting `keys`, requiring `threshold` distinct signers.
    /// Duplicate keys are folded; a threshold of 0 is raised to 1 and one
    /// above the key count can never be met (and is refused here).
    pub fn new(mut keys: Vec<PublicKey>, threshold: usize) -> Result<Self, EnvelopeError> {
        keys.sort();
        keys.dedup();
        let threshold = threshold.max(1);
        if keys.is_empty() || threshold > keys.len() {
            return Err(EnvelopeError::UnsatisfiableThreshold {
                threshold,
                keys: keys.len(),
            });
        }
        Ok(TrustPolicy { keys, threshold })
    }

    /// The trusted keys, sorted and distinct.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// Distinct trusted signers required.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    fn trusts(&self, key: &PublicKey) -> bool {
        self.keys.binary_search(key).is_ok()
    }
}

/// Why an envelope was rejected. Each variant has a stable name for audit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The envelope exceeds the size cap for its purpose.
    #[error("too large: {size} bytes, limit {max}")]
    TooLarge {
        /// Size received.
        size: usize,
        /// Limit for this purpose.
        max: usize,
    },
    /// The envelope itself could not be decoded.
    #[error("malformed envelope: {0}")]
    Malformed(DecodeError),
    /// More signatures than `MAX_SIGNATURES`.
    #[error("too many signatures: {0}")]
    TooManySignatures(usize),
    /// Fewer distinct trusted keys signed validly than the threshold.
    #[error("signed by {valid} trusted key(s), {required} required{}", why_not(*.broken, *.untrusted))]
    BelowThreshold {
        /// Distinct trusted keys whose signature verified.
        valid: usize,
        /// The threshold.
        required: usize,
        /// Signatures by trusted keys that do not verify (the bytes were
        /// altered, or signed for another purpose).
        broken: usize,
        /// Signatures by keys this policy does not trust.
        untrusted: usize,
    },
    /// A trust policy that no envelope could ever satisfy.
    #[error("threshold {threshold} cannot be met by {keys} trusted key(s)")]
    UnsatisfiableThreshold {
        /// Requested threshold.
        threshold: usize,
        /// Distinct trusted keys.
        keys: usize,
    },
}

/// The tail of a `BelowThreshold` message: what the other signatures were.
fn why_not(broken: usize, untrusted: usize) -> String {
    let mut out = String::new();
    if broken > 0 {
        out += &format!(
            "; {broken} signature(s) by a trusted key do not verify (altered or damaged bytes)"
        );
    }
    if untrusted > 0 {
        out += &format!("; {untrusted} signature(s) by keys not trusted here");
    }
    out
}

impl EnvelopeError {
    /// Stable short name for audit records and wire answers.
    pub fn code(&self) -> &'static str {
        match self {
            EnvelopeError::TooLarge { .. } => "too-large",
            EnvelopeError::Malformed(_) => "malformed",
            EnvelopeError::TooManySignatures(_) => "too-many-signatures",
            EnvelopeError::BelowThreshold { .. } => "bad-signature",
            EnvelopeError::UnsatisfiableThreshold { .. } => "bad-trust-policy",
        }
    }
}

/// The result of opening an envelope: the body bytes and who validly signed.
#[derive(Debug, Clone)]
pub struct Opened<'a> {
    /// The authenticated body bytes.
    pub body: &'a [u8],
    /// Distinct trusted keys with a valid signature, sorted.
    pub trusted_signers: Vec<PublicKey>,
}

/// Sign `body` for `purpose` with each key and return the envelope bytes.
pub fn seal(purpose: Purpose, body: Vec<u8>, keys: &[&SigningKey]) -> Vec<u8> {
    let signatures = keys
        .iter()
        .map(|k| SignatureEntry {
            key: PublicKey::from(k.verifying_key()),
            signature: k.sign(&signed_message(purpose, &body)).to_bytes(),
        })
        .collect();
    codec::encode(&SignedEnvelope::V1 { body, signatures })
}

fn signed_message(purpose: Purpose, body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(purpose.domain().len() + body.len());
    msg.extend_from_slice(purpose.domain());
    msg.extend_from_slice(body);
    msg
}

/// The envelope as it is read: the body borrowed from the received bytes,
/// so opening a 32 MiB bundle does not copy it. Same encoding as
/// [`SignedEnvelope`].
#[derive(Deserialize)]
enum SignedEnvelopeRef<'a> {
    V1 {
        #[serde(borrow)]
        body: &'a [u8],
        signatures: Vec<SignatureEntry>,
    },
}

/// Decode the envelope shape only (no signature check): for inspection.
pub fn parse(
    purpose: Purpose,
    bytes: &[u8],
) -> Result<(Vec<u8>, Vec<SignatureEntry>), EnvelopeError> {
    let (body, signatures) = parse_borrowed(purpose, bytes)?;
    Ok((body.to_vec(), signatures))
}

/// [`parse`] without copying the body out of `bytes`.
fn parse_borrowed(
    purpose: Purpose,
    bytes: &[u8],
) -> Result<(&[u8], Vec<SignatureEntry>), EnvelopeError> {
    if bytes.len() > purpose.max_size() {
        return Err(EnvelopeError::TooLarge {
            size: bytes.len(),
            max: purpose.max_size(),
        });
    }
    let version = codec::peek_version(bytes).map_err(EnvelopeError::Malformed)?;
    if version != 0 {
        return Err(EnvelopeError::Malformed(DecodeError::UnknownVersion(
            version,
        )));
    }
    let SignedEnvelopeRef::V1 { body, signatures } =
        codec::decode_exact_borrowed(bytes).map_err(EnvelopeError::Malformed)?;
    if signatures.len() > MAX_SIGNATURES {
        return Err(EnvelopeError::TooManySignatures(signatures.len()));
    }
    Ok((body, signatures))
}

/// Open an envelope: check its size and shape, then count distinct trusted
/// keys whose strict ed25519 signature over `domain || body` verifies.
/// Untrusted or invalid signatures are ignored, not fatal: only the count of
/// good ones decides. Each trusted key is tried once: a second entry by a
/// key already tried (good or broken) costs nothing, so an envelope of 16
/// entries by one trusted key costs one verification, not 16. The body is
/// borrowed from `bytes`; the only copy is the signed message
/// (`domain || body`), which `verify_strict` needs contiguous (dalek's
/// streaming verifier does not make the strict checks).
pub fn open<'a>(
    purpose: Purpose,
    bytes: &'a [u8],
    trust: &TrustPolicy,
) -> Result<Opened<'a>, EnvelopeError> {
    let (body, signatures) = parse_borrowed(purpose, bytes)?;
    let msg = signed_message(purpose, body);
    let mut good: Vec<PublicKey> = Vec::new();
    let mut tried: Vec<PublicKey> = Vec::new();
    let (mut broken, mut untrusted) = (0, 0);
    for entry in &signatures {
        if !trust.trusts(&entry.key) {
            untrusted += 1;
            continue;
        }
        if tried.contains(&entry.key) {
            continue;
        }
        tried.push(entry.key);
        let sig = ed25519_dalek::Signature::from_bytes(&entry.signature);
        match entry.key.verifying_key() {
            Ok(vk) if vk.verify_strict(&msg, &sig).is_ok() => good.push(entry.key),
            _ => broken += 1,
        }
    }
    drop(msg);
    good.sort();
    if good.len() < trust.threshold() {
        return Err(EnvelopeError::BelowThreshold {
            valid: good.len(),
            required: trust.threshold(),
            broken,
            untrusted,
        });
    }
    Ok(Opened {
        body,
        trusted_signers: good,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn trust(keys: &[&SigningKey], threshold: usize) -> TrustPolicy {
        TrustPolicy::new(
            keys.iter()
                .map(|k| PublicKey::from(k.verifying_key()))
                .collect(),
            threshold,
        )
        .unwrap()
    }

    #[test]
    fn seal_then_open() {
        let a = key(1);
        let env = seal(Purpose::Bundle, b"hello".to_vec(), &[&a]);
        let opened = open(Purpose::Bundle, &env, &trust(&[&a], 1)).unwrap();
        assert_eq!(opened.body, b"hello");
        assert_eq!(
            opened.trusted_signers,
            vec![PublicKey::from(a.verifying_key())]
        );
    }

    #[test]
    fn domain_separates_purposes() {
        let a = key(1);
        let env = seal(Purpose::Ticket, b"x".to_vec(), &[&a]);
        assert!(matches!(
            open(Purpose::Bundle, &env, &trust(&[&a], 1)),
            Err(EnvelopeError::BelowThreshold {
                valid: 0,
                required: 1,
                broken: 1,
                untrusted: 0,
            })
        ));
    }

    #[test]
    fn same_key_twice_counts_once() {
        let a = key(1);
        let b = key(2);
        let env = seal(Purpose::Bundle, b"x".to_vec(), &[&a, &a]);
        assert!(matches!(
            open(Purpose::Bundle, &env, &trust(&[&a, &b], 2)),
            Err(EnvelopeError::BelowThreshold {
                valid: 1,
                required: 2,
                broken: 0,
                untrusted: 0,
            })
        ));
        let env = seal(Purpose::Bundle, b"x".to_vec(), &[&a, &b]);
        assert!(open(Purpose::Bundle, &env, &trust(&[&a, &b], 2)).is_ok());
    }

    #[test]
    fn untrusted_signer_and_tampering_rejected() {
        let a = key(1);
        let mallory = key(9);
        let env = seal(Purpose::Bundle, b"x".to_vec(), &[&mallory]);
        let err = open(Purpose::Bundle, &env, &trust(&[&a], 1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "signed by 0 trusted key(s), 1 required; 1 signature(s) by keys not trusted here"
        );
        let mut env = seal(Purpose::Bundle, b"payload".to_vec(), &[&a]);
        env[3] ^= 1; // inside the body
        let err = open(Purpose::Bundle, &env, &trust(&[&a], 1)).unwrap_err();
        assert!(matches!(
            err,
            EnvelopeError::BelowThreshold { broken: 1, .. }
        ));
        assert_eq!(err.code(), "bad-signature");
        assert!(err
            .to_string()
            .ends_with("do not verify (altered or damaged bytes)"));
    }

    #[test]
    fn trailing_bytes_and_size_rejected() {
        let a = key(1);
        let mut env = seal(Purpose::Ticket, b"x".to_vec(), &[&a]);
        env.push(0);
        assert!(matches!(
            open(Purpose::Ticket, &env, &trust(&[&a], 1)),
            Err(EnvelopeError::Malformed(DecodeError::TrailingBytes(1)))
        ));
        let big = seal(Purpose::Ticket, vec![0; 5000], &[&a]);
        assert!(matches!(
            open(Purpose::Ticket, &big, &trust(&[&a], 1)),
            Err(EnvelopeError::TooLarge { .. })
        ));
    }

    #[test]
    fn unknown_envelope_version_is_named() {
        let a = key(1);
        assert_eq!(
            open(Purpose::Ticket, &[5, 0, 0], &trust(&[&a], 1)).unwrap_err(),
            EnvelopeError::Malformed(DecodeError::UnknownVersion(5))
        );
    }

    #[test]
    fn threshold_must_be_satisfiable() {
        let a = key(1);
        assert!(TrustPolicy::new(vec![PublicKey::from(a.verifying_key())], 2).is_err());
        assert!(TrustPolicy::new(vec![], 1).is_err());
    }
}
