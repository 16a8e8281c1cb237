use super::*;
use crate::authority::{self, KeyStatement, RoleKeys, StatementClock};
use ed25519_dalek::SigningKey;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn pk(k: &SigningKey) -> PublicKey {
    PublicKey::from(k.verifying_key())
}

fn role(keys: &[u8], threshold: u8) -> RoleKeys {
    RoleKeys {
        keys: keys.iter().map(|&n| pk(&key(n))).collect(),
        threshold,
    }
}

/// Root 1 and no statement: key 1 acts for every role.
fn legacy() -> Authority {
    Authority::legacy(TrustPolicy::new(vec![pk(&key(1))], 1).unwrap())
}

/// Roles separated by a statement: root 1, bundle 2, ticket 3, and the
/// enroll role as given.
fn separated(enroll: RoleKeys) -> Authority {
    let s = KeyStatement {
        version: 1,
        issued_at: 1_000,
        expires_at: 100_000,
        root: role(&[1], 1),
        bundle: role(&[2], 1),
        ticket: role(&[3], 1),
        enroll,
        recovery: None,
    };
    let clock = StatementClock {
        wall: 1_500,
        floor: 0,
    };
    legacy()
        .advance(&authority::seal(&s, &[&key(1)]), clock)
        .unwrap()
        .authority()
        .clone()
}

/// Device key 9, serial 2, valid [1_000, 5_000).
fn sample() -> Enrollment {
    Enrollment {
        device_id: "router-7".into(),
        device_key: pk(&key(9)),
        serial: 2,
        issued_at: 1_000,
        expires_at: 5_000,
    }
}

const NOW: UnixTime = 2_000;

fn verify(bytes: &[u8], a: &Authority) -> Result<VerifiedEnrollment, EnrollmentError> {
    VerifiedEnrollment::verify(bytes, a, NOW)
}

#[test]
fn signed_by_the_enroll_key_is_accepted() {
    let a = separated(role(&[4], 1));
    let v = verify(&seal(&sample(), &[&key(4)]), &a).unwrap();
    assert_eq!(v.enrollment(), &sample());
    assert_eq!(v.signers(), &[pk(&key(4))]);
}

#[test]
fn other_roles_keys_are_refused_once_roles_are_separated() {
    let a = separated(role(&[4], 1));
    for (n, who) in [(1, "root"), (2, "bundle"), (3, "ticket")] {
        let err = verify(&seal(&sample(), &[&key(n)]), &a).unwrap_err();
        assert_eq!(err.code(), "bad-signature", "{who}: {err}");
    }
}

#[test]
fn legacy_flat_keys_act_as_the_enroll_role() {
    assert!(verify(&seal(&sample(), &[&key(1)]), &legacy()).is_ok());
    assert_eq!(
        verify(&seal(&sample(), &[&key(4)]), &legacy())
            .unwrap_err()
            .code(),
        "bad-signature"
    );
}

#[test]
fn another_purposes_signature_does_not_verify_as_an_enrollment() {
    // The same body bytes signed as a ticket by the enroll key.
    let forged = envelope::seal(Purpose::Ticket, encode_body(&sample()), &[&key(4)]);
    let err = verify(&forged, &separated(role(&[4], 1))).unwrap_err();
    assert!(matches!(
        err,
        EnrollmentError::Envelope(EnvelopeError::BelowThreshold { broken: 1, .. })
    ));
}

#[test]
fn expiry_is_exclusive_and_a_future_date_is_refused() {
    let a = legacy();
    let bytes = seal(&sample(), &[&key(1)]);
    assert!(VerifiedEnrollment::verify(&bytes, &a, 4_999).is_ok());
    let err = VerifiedEnrollment::verify(&bytes, &a, 5_000).unwrap_err();
    assert_eq!(err.code(), "expired");
    assert_eq!(
        err,
        EnrollmentError::Expired {
            expires_at: 5_000,
            now: 5_000
        }
    );
    // Within the skew of its issue time: accepted; beyond: not yet valid.
    assert!(VerifiedEnrollment::verify(&bytes, &a, 1_000 - MAX_SKEW).is_ok());
    let err = VerifiedEnrollment::verify(&bytes, &a, 1_000 - MAX_SKEW - 1).unwrap_err();
    assert_eq!(err.code(), "not-yet-valid");
    // A live registration re-checks the same rule.
    let v = VerifiedEnrollment::verify(&bytes, &a, NOW).unwrap();
    assert_eq!(v.check_at(5_000).unwrap_err().code(), "expired");
}

#[test]
fn a_device_key_that_is_not_a_curve_point_is_invalid() {
    // Found by search, not assumed: the first y coordinate with no point.
    let bad = (2u8..=255)
        .map(|b| PublicKey([b; 32]))
        .find(|k| k.verifying_key().is_err())
        .expect("a 32-byte string that is no ed25519 point");
    let e = Enrollment {
        device_key: bad,
        ..sample()
    };
    let err = verify(&seal(&e, &[&key(1)]), &legacy()).unwrap_err();
    assert_eq!(err.code(), "invalid-enrollment", "{err}");
}

#[test]
fn invalid_bodies_are_refused_by_rule() {
    let cases = [
        Enrollment {
            device_id: String::new(),
            ..sample()
        },
        Enrollment {
            device_id: "x".repeat(MAX_DEVICE_ID + 1),
            ..sample()
        },
        Enrollment {
            device_id: "r\n7".into(),
            ..sample()
        },
        Enrollment {
            issued_at: 5_000,
            ..sample()
        },
    ];
    for e in cases {
        let err = verify(&seal(&e, &[&key(1)]), &legacy()).unwrap_err();
        assert_eq!(err.code(), "invalid-enrollment", "{e:?}: {err}");
        assert!(validate(&e).is_err());
    }
}

#[test]
fn tampered_bytes_are_refused() {
    let mut bytes = seal(&sample(), &[&key(1)]);
    // Inside the body: the device id's first byte ("r" of router-7).
    bytes[4] ^= 0x01;
    let err = verify(&bytes, &legacy()).unwrap_err();
    assert!(matches!(
        err,
        EnrollmentError::Envelope(EnvelopeError::BelowThreshold { broken: 1, .. })
    ));
}

#[test]
fn trailing_bytes_are_refused_in_envelope_and_body() {
    let mut bytes = seal(&sample(), &[&key(1)]);
    bytes.push(0);
    assert_eq!(verify(&bytes, &legacy()).unwrap_err().code(), "malformed");
    let mut body = encode_body(&sample());
    body.push(0);
    let signed = envelope::seal(Purpose::Enroll, body, &[&key(1)]);
    assert_eq!(
        verify(&signed, &legacy()).unwrap_err(),
        EnrollmentError::Body(DecodeError::TrailingBytes(1))
    );
}

#[test]
fn unknown_format_and_size_are_named() {
    let signed = envelope::seal(Purpose::Enroll, vec![1, 0], &[&key(1)]);
    assert_eq!(
        verify(&signed, &legacy()).unwrap_err().code(),
        "unknown-format"
    );
    let big = envelope::seal(Purpose::Enroll, vec![0; 5_000], &[&key(1)]);
    assert_eq!(verify(&big, &legacy()).unwrap_err().code(), "too-large");
}

#[test]
fn threshold_two_of_three_counts_distinct_keys() {
    let a = separated(role(&[5, 6, 7], 2));
    let one = verify(&seal(&sample(), &[&key(5)]), &a).unwrap_err();
    assert!(matches!(
        one,
        EnrollmentError::Envelope(EnvelopeError::BelowThreshold {
            valid: 1,
            required: 2,
            ..
        })
    ));
    // The same key twice is one signer.
    let twice = verify(&seal(&sample(), &[&key(5), &key(5)]), &a).unwrap_err();
    assert_eq!(twice.code(), "bad-signature");
    // An untrusted key does not make up the difference.
    let stranger = verify(&seal(&sample(), &[&key(5), &key(8)]), &a).unwrap_err();
    assert_eq!(stranger.code(), "bad-signature");
    let v = verify(&seal(&sample(), &[&key(7), &key(5)]), &a).unwrap();
    assert_eq!(v.signers(), {
        let mut s = vec![pk(&key(5)), pk(&key(7))];
        s.sort();
        s
    });
}

#[test]
fn the_registered_peer_must_prove_the_enrolled_key() {
    let v = verify(&seal(&sample(), &[&key(1)]), &legacy()).unwrap();
    assert!(v.bound_to(&pk(&key(9))).is_ok());
    assert_eq!(v.bound_to(&pk(&key(8))).unwrap_err().code(), "key-mismatch");
}

#[test]
fn a_higher_serial_replaces_and_the_same_enrollment_reconnects() {
    let a = legacy();
    let at = |e: Enrollment| verify(&seal(&e, &[&key(1)]), &a).unwrap();
    let current = at(sample());
    let newer = at(Enrollment {
        serial: 3,
        device_key: pk(&key(8)),
        ..sample()
    });
    let older = at(Enrollment {
        serial: 1,
        ..sample()
    });
    let conflict = at(Enrollment {
        device_key: pk(&key(8)),
        ..sample()
    });
    let other_device = at(Enrollment {
        device_id: "router-8".into(),
        serial: 9,
        ..sample()
    });
    assert_eq!(newer.precedence(&current), Precedence::Newer);
    assert_eq!(at(sample()).precedence(&current), Precedence::Same);
    assert_eq!(older.precedence(&current), Precedence::Older);
    assert_eq!(conflict.precedence(&current), Precedence::Conflict);
    assert_eq!(other_device.precedence(&current), Precedence::Conflict);
}
