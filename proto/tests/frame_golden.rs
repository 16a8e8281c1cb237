//! Golden bytes of one frame of each variant, length prefix included. A
//! client written in another language can use these vectors as its tests;
//! `TUNNEL.md` explains the layout.

use edgegate_proto::bundle::{Network, ServiceKind};
use edgegate_proto::frame::{
    self, FlowClosed, FlowProtocol, Frame, PushResult, ServiceDecision, SessionEnd, Verdict,
    VpnConfig, Welcome,
};
use edgegate_proto::{DenyReason, Level};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn samples() -> Vec<(Frame, &'static str)> {
    vec![
        (
            Frame::Hello {
                ticket: vec![1, 2, 3],
            },
            "000000050003010203",
        ),
        (
            Frame::Welcome(Welcome {
                session_id: 300,
                user: "bert".into(),
                user_name: "Bert".into(),
                session_end: 1_700_000_000,
                services: vec![
                    ServiceDecision {
                        id: "hmi".into(),
                        kind: ServiceKind::Vnc,
                        decision: Verdict::Allow(Level::Read),
                    },
                    ServiceDecision {
                        id: "lan".into(),
                        kind: ServiceKind::Vpn,
                        decision: Verdict::Deny(DenyReason::NoGrant),
                    },
                ],
            }),
            "0000002101ac020462657274044265727480e2cfaa060203686d69010000036c616e00010d",
        ),
        (
            Frame::Refused {
                reason: DenyReason::UserInactive,
            },
            "000000020207",
        ),
        (
            Frame::Open {
                service: "lan".into(),
                destination: Some("10.0.0.1:80".into()),
            },
            "0000001203036c616e010b31302e302e302e313a3830",
        ),
        (
            Frame::Opened {
                level: Level::Manage,
            },
            "000000020401",
        ),
        (
            Frame::Denied {
                reason: DenyReason::NoGrant,
            },
            "00000002050d",
        ),
        (
            Frame::StreamClosed {
                stream: 4,
                reason: DenyReason::UserInactive,
            },
            "00000003060407",
        ),
        (Frame::Data(vec![0xaa, 0xbb]), "000000040702aabb"),
        (Frame::Close { reason: None }, "000000020800"),
        (
            Frame::Close {
                reason: Some(DenyReason::SessionExpired),
            },
            "00000003080108",
        ),
        (Frame::PushBundle { bundle: vec![9] }, "00000003090109"),
        (
            Frame::PushResult(PushResult::Accepted { serial: 8 }),
            "000000030a0008",
        ),
        (
            Frame::PushResult(PushResult::Unchanged { serial: 8 }),
            "000000030a0108",
        ),
        (
            Frame::PushResult(PushResult::Rejected {
                code: "rollback".into(),
                message: "x".into(),
            }),
            "0000000d0a0208726f6c6c6261636b0178",
        ),
        (
            Frame::PushResult(PushResult::Keys {
                version: 4,
                changed: true,
                bundle: Some(Box::new(PushResult::Accepted { serial: 1 })),
            }),
            "000000070a030401010001",
        ),
        (
            Frame::Failed {
                message: "no".into(),
            },
            "000000040b026e6f",
        ),
        (Frame::ReadOnlyViolation, "000000010c"),
        (
            Frame::SessionClosed {
                reason: SessionEnd::Denied(DenyReason::UserInactive),
            },
            "000000030d0007",
        ),
        (
            Frame::SessionClosed {
                reason: SessionEnd::Killed,
            },
            "000000020d01",
        ),
        (Frame::Hold, "000000010e"),
        (
            Frame::RefusedWithDetail {
                reason: DenyReason::WrongDevice,
                detail: "r-2".into(),
            },
            "000000060f0203722d32",
        ),
        (
            Frame::RefusedWithDetail {
                reason: DenyReason::UserInactive,
                detail: String::new(),
            },
            "000000030f0700",
        ),
        (Frame::VpnOpen { datagrams: true }, "000000021001"),
        (
            Frame::VpnReady(VpnConfig {
                address: std::net::Ipv4Addr::new(100, 64, 0, 2),
                mtu: 1200,
                routes: vec![Network {
                    addr: "10.1.2.0".parse().unwrap(),
                    prefix: 24,
                }],
                datagrams: false,
            }),
            "0000000f1164400002b00901000a0102001800",
        ),
        (Frame::Packet(vec![0x45, 0]), "0000000412024500"),
        (
            Frame::FlowClosed(FlowClosed {
                service: "plc".into(),
                protocol: FlowProtocol::Udp,
                destination: "10.1.2.3:161".into(),
                reason: DenyReason::DestinationNotAllowed,
                cut: true,
            }),
            "000000151303706c63010c31302e312e322e333a3136310b01",
        ),
    ]
}

#[test]
fn frames_encode_to_golden_bytes() {
    let mut failures = Vec::new();
    for (frame, golden) in samples() {
        let bytes = frame::encode(&frame);
        if hex(&bytes) != golden {
            failures.push(format!(
                "{frame:?}\n  got    {}\n  golden {golden}",
                hex(&bytes)
            ));
        }
        assert_eq!(frame::decode(&bytes[4..]).unwrap(), frame);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
