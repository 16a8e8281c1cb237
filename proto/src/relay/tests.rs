use super::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every variant's encoding, pinned: a changed field order or variant
/// index fails here before it reaches a relay of another version.
#[test]
fn golden_bytes() {
    let remote: SocketAddr = "192.0.2.7:4433".parse().unwrap();
    let cases: Vec<(RelayMsg, &str)> = vec![
        (
            RelayMsg::Register {
                enrollment: vec![1, 2, 3],
            },
            "0000000500030102 03",
        ),
        (RelayMsg::Registered, "0000000101"),
        (
            RelayMsg::Refused {
                reason: RelayRefusal::RouterOffline,
                detail: "no".into(),
            },
            "000000050207026e6f",
        ),
        (RelayMsg::Ping(300), "0000000303ac02"),
        (RelayMsg::Pong(1), "000000020401"),
        (RelayMsg::GoingAway, "0000000105"),
        (RelayMsg::Connect { ticket: vec![9] }, "00000003060109"),
        (RelayMsg::Connected, "0000000107"),
        (
            RelayMsg::Incoming(Incoming {
                engineer: PublicKey([0xab; 32]),
                remote,
            }),
            "00000028 08 abababababababababababababababababababababababababababababababab \
             00 c0000207 d122",
        ),
        (
            RelayMsg::PushBundle {
                bundle: vec![7, 7],
                wait: true,
            },
            "00000005 09 020707 01",
        ),
        (
            RelayMsg::Queued {
                device: "r1".into(),
                serial: 5,
            },
            "00000005 0a 027231 05",
        ),
        (RelayMsg::Deliver { bundle: vec![1] }, "00000003 0b 0101"),
        (
            RelayMsg::Delivered(crate::frame::PushResult::Accepted { serial: 2 }),
            "00000003 0c 00 02",
        ),
    ];
    for (msg, want) in cases {
        let want: String = want.chars().filter(|c| !c.is_whitespace()).collect();
        let got = encode(&msg);
        assert_eq!(hex(&got), want, "{msg:?}");
        assert_eq!(check_len(got[..4].try_into().unwrap()), Ok(got.len() - 4));
        assert_eq!(decode(&got[4..]), Ok(msg));
    }
}

#[test]
fn refusal_names_are_stable_and_follow_wire_order() {
    let names: Vec<&str> = RelayRefusal::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        names,
        [
            "bad-enrollment",
            "enrollment-expired",
            "key-mismatch",
            "superseded",
            "bad-ticket",
            "ticket-expired",
            "not-bound",
            "router-offline",
            "limit-exceeded",
            "protocol",
            "bad-bundle",
            "rollback",
        ]
    );
    for (i, r) in RelayRefusal::ALL.iter().enumerate() {
        let bytes = codec::encode(r);
        assert_eq!(bytes, [i as u8]);
    }
}

#[test]
fn trailing_bytes_oversize_and_unknown_variants_are_refused() {
    assert!(matches!(
        decode(&[1, 0]),
        Err(RelayMsgError::Decode(DecodeError::TrailingBytes(1)))
    ));
    assert!(decode(&[13]).is_err(), "no variant 13 yet");
    assert!(decode(&[]).is_err());
    assert_eq!(
        check_len((MAX_RELAY_MSG as u32 + 1).to_be_bytes()),
        Err(RelayMsgError::TooLarge(MAX_RELAY_MSG + 1))
    );
    assert_eq!(check_len_capped(1000u32.to_be_bytes(), 1000), Ok(1000));
    let push = encode(&RelayMsg::PushBundle {
        bundle: vec![],
        wait: false,
    });
    assert_eq!(push[4], PUSH_TAG);
    let deliver = encode(&RelayMsg::Deliver { bundle: vec![] });
    assert_eq!(deliver[4], DELIVER_TAG);
}

#[test]
fn arbitrary_bytes_never_panic_and_round_trip_when_accepted() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for _ in 0..20_000 {
        let len = rng.gen_range(0..48);
        let mut body: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        if let Some(first) = body.first_mut() {
            *first %= 14;
        }
        if let Ok(msg) = decode(&body) {
            // The same message again (not always the same bytes: postcard
            // accepts a non-minimal varint, proto/README.md §1).
            assert_eq!(decode(&encode(&msg)[4..]).as_ref(), Ok(&msg));
        }
    }
}

#[test]
fn control_golden_bytes() {
    assert_eq!(codec::encode(&RelayControlRequest::Status), [0]);
    let status = RelayControlResponse::Status(RelayStatus {
        key: PublicKey([1; 32]),
        routers: vec![RegisteredRouter {
            device: "r1".into(),
            key: PublicKey([2; 32]),
            serial: 3,
            since: 1_700_000_000,
            transport: crate::audit::Transport::Tls,
            remote: "192.0.2.7:4433".parse().unwrap(),
            sessions: 1,
            bytes_to_router: 300,
            bytes_from_router: 5,
        }],
        bundles: vec![SpooledBundle {
            device: "r1".into(),
            serial: 4,
            answer: Some(crate::frame::PushResult::Accepted { serial: 4 }),
        }],
    });
    let want = format!(
        "00{}01 027231 {} 03 80e2cfaa06 01 00c0000207d122 01 ac02 05 01 027231 04 01 00 04",
        "01".repeat(32),
        "02".repeat(32)
    );
    let want: String = want.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = codec::encode(&status);
    assert_eq!(hex(&bytes), want);
    assert_eq!(
        codec::decode_exact::<RelayControlResponse>(&bytes),
        Ok(status)
    );
    let err = RelayControlResponse::Error("no".into());
    assert_eq!(hex(&codec::encode(&err)), "01026e6f");
}
