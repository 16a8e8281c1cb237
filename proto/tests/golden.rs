//! Golden bytes: the encoding of a fixed bundle and ticket is pinned here, so
//! any change to field order, types or variant indices fails loudly. A cloud
//! implementation in another language can use these vectors as its tests
//! (`README.md` walks through the bundle bytes).

use ed25519_dalek::SigningKey;
use edgegate_proto::bundle::*;
use edgegate_proto::reason::Level;
use edgegate_proto::ticket::{self, Ticket};
use edgegate_proto::{envelope, PublicKey, TrustPolicy, VerifiedBundle, VerifiedTicket};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn authority() -> SigningKey {
    SigningKey::from_bytes(&[1u8; 32])
}

fn sample_bundle() -> Bundle {
    Bundle {
        device_id: "r1".into(),
        serial: 7,
        issued_at: 1_700_000_000,
        not_after: 1_702_592_000,
        company: Company {
            id: "acme".into(),
            name: "ACME".into(),
        },
        organizations: vec![Organization {
            id: "acme".into(),
            name: "ACME".into(),
        }],
        categories: vec![Category {
            id: "vnc".into(),
            name: "VNC".into(),
        }],
        groups: vec![Group {
            id: "ca".into(),
            name: "Customer A".into(),
            kind: "customer".into(),
            parent: None,
            status: Status::Active,
        }],
        roles: vec![Role {
            id: "op".into(),
            name: "Operator".into(),
            scope: Scope::Group,
            grants: vec![Grant {
                category: "vnc".into(),
                level: Level::Read,
            }],
            mfa: false,
            site_consent: true,
        }],
        users: vec![User {
            id: "bert".into(),
            name: "Bert".into(),
            org: "acme".into(),
            status: Status::Active,
            roles: vec![],
            memberships: vec![Membership {
                group: "ca".into(),
                role: "op".into(),
            }],
            mfa: true,
            logout_period: 43_200,
        }],
        device: Device {
            id: "r1".into(),
            name: "Router 1".into(),
            groups: vec!["ca".into()],
            services: vec![
                Service {
                    id: "hmi".into(),
                    name: "HMI".into(),
                    kind: ServiceKind::Vnc,
                    target: Target::Endpoint {
                        host: "10.0.0.2".into(),
                        port: 5900,
                    },
                    category: "vnc".into(),
                },
                Service {
                    id: "lan".into(),
                    name: "LAN".into(),
                    kind: ServiceKind::Vpn,
                    target: Target::Networks {
                        networks: vec![Network {
                            addr: "10.0.0.0".parse().unwrap(),
                            prefix: 24,
                        }],
                        ports: vec![PortRange {
                            start: 502,
                            end: 502,
                        }],
                    },
                    category: "vnc".into(),
                },
            ],
        },
        revoked_tickets: vec![[0xab; 16]],
    }
}

const BUNDLE_BODY_HEX: &str = "000272310780e2cfaa0680fcedab060461636d650441434d45010461636d650441434d450103766e6303564e43010263610a437573746f6d6572204108637573746f6d6572000001026f70084f70657261746f72010103766e6300000101046265727404426572740461636d65000001026361026f7001c0d10202723108526f757465722031010263610203686d6903484d4901000831302e302e302e328c2e03766e63036c616e034c414e000101000a0000001801f603f60303766e6301abababababababababababababababab";

#[test]
fn bundle_body_bytes_are_pinned() {
    let body = encode_body(&sample_bundle());
    assert_eq!(
        hex(&body),
        BUNDLE_BODY_HEX,
        "bundle encoding changed: update README.md and the cloud"
    );
    assert_eq!(decode_body(&body).unwrap(), sample_bundle());
}

#[test]
fn sealed_bundle_is_deterministic_and_verifies() {
    // ed25519 signatures are deterministic, so the whole envelope is pinned too.
    let env = seal(&sample_bundle(), &[&authority()]);
    let body = encode_body(&sample_bundle());
    // envelope = variant 0, varint(len body), body, varint(1 signature), key(32), sig(64)
    assert_eq!(env[0], 0);
    assert_eq!(env.len(), 1 + 2 + body.len() + 1 + 32 + 64);
    let trust = TrustPolicy::new(vec![PublicKey::from(authority().verifying_key())], 1).unwrap();
    let v = VerifiedBundle::verify(&env, &trust).unwrap();
    assert_eq!(v.bundle(), &sample_bundle());
    assert_eq!(v.raw(), &env[..]);
    assert_eq!(hex(&env[env.len() - 64..]), SIGNATURE_HEX);
}

const SIGNATURE_HEX: &str = "3c185f85a3085c96f701691f8f44bd12b770bf28627ea30d0704a8f38eda51adf9471404449853afe4eb2898921866cfa2dd6fc430de33cdc2e21b396a2ae40b";

#[test]
fn ticket_bytes_are_pinned() {
    let t = Ticket {
        id: [0x11; 16],
        user: "bert".into(),
        device: "r1".into(),
        client_key: PublicKey([0x22; 32]),
        issued_at: 1_700_000_000,
        expires_at: 1_700_028_800,
        auth_time: 1_699_999_000,
        mfa: true,
    };
    let env = ticket::seal(&t, &[&authority()]);
    let (body, _) = envelope::parse(envelope::Purpose::Ticket, &env).unwrap();
    assert_eq!(hex(&body), TICKET_BODY_HEX);
    let trust = TrustPolicy::new(vec![PublicKey::from(authority().verifying_key())], 1).unwrap();
    assert_eq!(VerifiedTicket::verify(&env, &trust).unwrap().ticket(), &t);
}

const TICKET_BODY_HEX: &str = "00111111111111111111111111111111110462657274027231222222222222222222222222222222222222222222222222222222222222222280e2cfaa0680c3d1aa0698dacfaa0601";

#[test]
fn unknown_body_version_is_reported_as_such() {
    let mut body = encode_body(&sample_bundle());
    body[0] = 1;
    assert!(matches!(
        decode_body(&body),
        Err(BundleError::Body(
            edgegate_proto::codec::DecodeError::UnknownVersion(1)
        ))
    ));
}

#[test]
fn a_bundle_issued_after_its_not_after_is_malformed() {
    let mut b = sample_bundle();
    b.issued_at = b.not_after + 1;
    let env = seal(&b, &[&authority()]);
    let trust = TrustPolicy::new(vec![PublicKey::from(authority().verifying_key())], 1).unwrap();
    let err = VerifiedBundle::verify(&env, &trust).unwrap_err();
    assert_eq!(err.code(), "malformed");
    assert!(err.to_string().contains("after its not_after"), "{err}");
    // Equal is a bundle valid for one instant: allowed.
    b.issued_at = b.not_after;
    let env = seal(&b, &[&authority()]);
    assert!(VerifiedBundle::verify_owned(env, &trust).is_ok());
}

#[test]
fn verify_owned_keeps_the_bytes_it_was_given() {
    let env = seal(&sample_bundle(), &[&authority()]);
    let trust = TrustPolicy::new(vec![PublicKey::from(authority().verifying_key())], 1).unwrap();
    let ptr = env.as_ptr();
    let v = VerifiedBundle::verify_owned(env, &trust).unwrap();
    assert_eq!(v.raw().as_ptr(), ptr, "the envelope was copied");
}

#[test]
fn each_trusted_key_is_tried_once() {
    use edgegate_proto::envelope::{SignatureEntry, SignedEnvelope};
    // 16 broken signatures by the one trusted key: one verification, one
    // `broken`, not sixteen.
    let body = encode_body(&sample_bundle());
    let key = PublicKey::from(authority().verifying_key());
    let signatures = vec![
        SignatureEntry {
            key,
            signature: [7; 64],
        };
        16
    ];
    let env = edgegate_proto::codec::encode(&SignedEnvelope::V1 { body, signatures });
    let trust = TrustPolicy::new(vec![key], 1).unwrap();
    let err = VerifiedBundle::verify(&env, &trust).unwrap_err();
    assert_eq!(
        err,
        edgegate_proto::bundle::BundleError::Envelope(
            edgegate_proto::EnvelopeError::BelowThreshold {
                valid: 0,
                required: 1,
                broken: 1,
                untrusted: 0,
            }
        )
    );
}
