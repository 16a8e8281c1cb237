use super::*;
use ed25519_dalek::SigningKey;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn pk(k: &SigningKey) -> PublicKey {
    PublicKey::from(k.verifying_key())
}

fn one(k: &SigningKey) -> RoleKeys {
    RoleKeys {
        keys: vec![pk(k)],
        threshold: 1,
    }
}

fn legacy(root: &SigningKey) -> Authority {
    Authority::legacy(TrustPolicy::new(vec![pk(root)], 1).unwrap())
}

/// Root 1, bundle 2, ticket 3, enroll 4, version `v`.
fn statement(v: u64) -> KeyStatement {
    KeyStatement {
        version: v,
        issued_at: 1_000,
        expires_at: 2_000,
        root: one(&key(1)),
        bundle: one(&key(2)),
        ticket: one(&key(3)),
        enroll: one(&key(4)),
        recovery: None,
    }
}

const AT: StatementClock = StatementClock {
    wall: 1_500,
    floor: 0,
};

#[test]
fn roles_come_from_the_statement() {
    let a = legacy(&key(1));
    assert_eq!(a.role(KeyRole::Ticket).keys(), &[pk(&key(1))]);
    let vs = a.advance(&seal(&statement(1), &[&key(1)]), AT).unwrap();
    let b = vs.authority();
    assert_eq!(b.version(), 1);
    assert_eq!(b.role(KeyRole::Bundle).keys(), &[pk(&key(2))]);
    assert_eq!(b.role(KeyRole::Ticket).keys(), &[pk(&key(3))]);
    assert_eq!(b.role(KeyRole::Enroll).keys(), &[pk(&key(4))]);
    assert!(!vs.root_rotated());
}

#[test]
fn only_root_signs_statements() {
    let a = legacy(&key(1))
        .advance(&seal(&statement(1), &[&key(1)]), AT)
        .unwrap()
        .authority()
        .clone();
    let by_bundle_key = seal(&statement(2), &[&key(2)]);
    let err = a.advance(&by_bundle_key, AT).unwrap_err();
    assert_eq!(err.code(), "bad-signature");
}

#[test]
fn versions_only_go_up() {
    let a = legacy(&key(1))
        .advance(&seal(&statement(5), &[&key(1)]), AT)
        .unwrap()
        .authority()
        .clone();
    for v in [1, 5] {
        let err = a.advance(&seal(&statement(v), &[&key(1)]), AT).unwrap_err();
        assert_eq!(err.code(), "stale-key-statement", "{v}");
    }
    assert!(a.advance(&seal(&statement(6), &[&key(1)]), AT).is_ok());
}

#[test]
fn expiry_is_judged_against_the_floor_unless_the_floor_is_repaired() {
    let a = legacy(&key(1));
    let late = StatementClock {
        wall: 1_500,
        floor: 9_999,
    };
    let err = a
        .advance(&seal(&statement(1), &[&key(1)]), late)
        .unwrap_err();
    assert_eq!(err.code(), "expired");
    let mut repair = statement(1);
    repair.recovery = Some(Recovery {
        serial: None,
        time_floor: Some(1_200),
    });
    assert!(a.advance(&seal(&repair, &[&key(1)]), late).is_ok());
    let past = StatementClock {
        wall: 2_000,
        floor: 0,
    };
    assert_eq!(
        a.advance(&seal(&repair, &[&key(1)]), past)
            .unwrap_err()
            .code(),
        "expired"
    );
}

#[test]
fn a_root_rotation_needs_old_and_new_root() {
    let a = legacy(&key(1));
    let mut s = statement(1);
    s.root = one(&key(9));
    let only_new = seal(&s, &[&key(9)]);
    assert_eq!(
        a.advance(&only_new, AT).unwrap_err().code(),
        "bad-signature"
    );
    let only_old = seal(&s, &[&key(1)]);
    assert_eq!(
        a.advance(&only_old, AT).unwrap_err().code(),
        "root-rotation-unsigned"
    );
    let both = seal(&s, &[&key(1), &key(9)]);
    let vs = a.advance(&both, AT).unwrap();
    assert!(vs.root_rotated());
    assert_eq!(vs.authority().role(KeyRole::Root).keys(), &[pk(&key(9))]);
}

#[test]
fn nonsense_roles_are_refused() {
    let a = legacy(&key(1));
    let mut s = statement(1);
    s.ticket.threshold = 2;
    let err = a.advance(&seal(&s, &[&key(1)]), AT).unwrap_err();
    assert_eq!(err.code(), "invalid-key-statement");
    assert!(err.to_string().contains("role ticket"), "{err}");
    let mut s = statement(1);
    s.bundle.keys.push(pk(&key(2)));
    s.bundle.threshold = 1;
    assert_eq!(
        a.advance(&seal(&s, &[&key(1)]), AT).unwrap_err().code(),
        "invalid-key-statement"
    );
    let mut s = statement(1);
    s.enroll.threshold = 0;
    assert_eq!(
        a.advance(&seal(&s, &[&key(1)]), AT).unwrap_err().code(),
        "invalid-key-statement"
    );
}

#[test]
fn a_bundle_signature_is_no_statement_signature() {
    let a = legacy(&key(1));
    let body = encode_body(&statement(1));
    let as_bundle = envelope::seal(Purpose::Bundle, body, &[&key(1)]);
    assert_eq!(
        a.advance(&as_bundle, AT).unwrap_err().code(),
        "bad-signature"
    );
}

#[test]
fn deliveries_classify() {
    let bundle = envelope::seal(Purpose::Bundle, b"b".to_vec(), &[&key(1)]);
    assert_eq!(
        Delivery::classify(&bundle).unwrap(),
        Delivery::Bundle(&bundle)
    );
    let st = seal(&statement(1), &[&key(1)]);
    let d = encode_keys_delivery(&st, Some(&bundle));
    assert_eq!(
        Delivery::classify(&d).unwrap(),
        Delivery::Keys {
            statement: &st,
            bundle: Some(&bundle)
        }
    );
    let d = encode_keys_delivery(&st, None);
    assert_eq!(d[0], 1);
    assert_eq!(*d.last().unwrap(), 0);
    let mut long = d.clone();
    long.push(0);
    assert!(matches!(
        Delivery::classify(&long),
        Err(DecodeError::TrailingBytes(1))
    ));
    assert!(matches!(
        Delivery::classify(&[7, 0]),
        Err(DecodeError::UnknownVersion(7))
    ));
}
