//! Golden bytes of the key statement and of a keys delivery (`README.md`
//! §4a walks through them). Any change to field order, types or variant
//! indices fails here.

use ed25519_dalek::SigningKey;
use edgegate_proto::authority::*;
use edgegate_proto::{envelope, PublicKey, TrustPolicy};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn one(n: u8) -> RoleKeys {
    RoleKeys {
        keys: vec![PublicKey::from(key(n).verifying_key())],
        threshold: 1,
    }
}

/// Root is the golden authority (secret 32 × `01`); bundle, ticket and
/// enroll keys have secrets 32 × `02`, `03`, `04`.
fn sample() -> KeyStatement {
    KeyStatement {
        version: 3,
        issued_at: 1_700_000_000,
        expires_at: 1_731_536_000,
        root: one(1),
        bundle: one(2),
        ticket: one(3),
        enroll: one(4),
        recovery: Some(Recovery {
            serial: Some(0),
            time_floor: Some(1_700_000_000),
        }),
    }
}

const BODY_HEX: &str = "000380e2cfaa0680c9d4b906018a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c01018139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b3940101ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d10101ca93ac1705187071d67b83c7ff0efe8108e8ec4530575d7726879333dbdabe7c010101000180e2cfaa06";
const SIGNATURE_HEX: &str = "3e1b8f7f8e5209ff5166c0b9465515af1748cf92630a2461f897a221930af6d526ce958dc443f8d0acca799fa56984592aeee31a70b5b3cf4ff5ddd5fe127508";

#[test]
fn key_statement_body_bytes_are_pinned() {
    let body = encode_body(&sample());
    assert_eq!(hex(&body), BODY_HEX);
    assert_eq!(decode_body(&body).unwrap(), sample());
}

#[test]
fn key_statement_signature_is_pinned_and_verifies() {
    let env = seal(&sample(), &[&key(1)]);
    let (body, sigs) = envelope::parse(envelope::Purpose::Keys, &env).unwrap();
    assert_eq!(hex(&body), BODY_HEX);
    assert_eq!(hex(&sigs[0].signature), SIGNATURE_HEX);
    let root = TrustPolicy::new(vec![PublicKey::from(key(1).verifying_key())], 1).unwrap();
    let clock = StatementClock {
        wall: 1_700_000_100,
        floor: 0,
    };
    let vs = Authority::legacy(root).advance(&env, clock).unwrap();
    assert_eq!(vs.authority().version(), 3);
}

#[test]
fn a_keys_delivery_is_tag_one_then_statement_then_optional_bundle() {
    let d = encode_keys_delivery(&[0xaa, 0xbb], Some(&[0xcc]));
    assert_eq!(hex(&d), "0102aabb0101cc");
    assert_eq!(hex(&encode_keys_delivery(&[0xaa], None)), "0101aa00");
}
