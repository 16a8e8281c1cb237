//! Who may use a relay (DESIGN §8): routers with an enrollment signed by
//! the relay's trusted keys, proving the enrolled key; engineers with an
//! unexpired ticket signed by them, bound to the key they prove, for a
//! registered device. Each refusal has a clear reason; garbage on both
//! ports leaves the relay serving.

#[path = "tunnel_support/harness.rs"]
mod harness;

use ed25519_dalek::SigningKey;
use edgegate::tlsid::{self, Identity};
use edgegate::transport::{relay_msg, Connection, QuicConn};
use edgegate_proto::enrollment::{self, Enrollment};
use edgegate_proto::relay::{RelayMsg, RelayRefusal};
use harness::relay::*;
use harness::*;
use std::io::Write;
use std::time::Duration;

/// Register with `relay` over QUIC as `device` (the handshake proves it)
/// presenting `enrollment`; the relay's answer.
fn register_as(relay: &Relay, device: &SigningKey, enrollment: Vec<u8>) -> RelayMsg {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let id = Identity::new(device).unwrap();
        let pin = tlsid::PinWatch::default();
        let endpoint = edgegate::transport::quic::uplink(
            relay.quic,
            &id,
            relay.key,
            &pin,
            4,
            Duration::from_secs(25),
        )
        .unwrap();
        let conn = endpoint
            .connect(relay.quic, tlsid::SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        let conn = QuicConn::new(conn, Some(endpoint));
        let mut raw = conn.open_bi().await.unwrap().into_raw();
        relay_msg::write(&mut raw, &RelayMsg::Register { enrollment })
            .await
            .unwrap();
        relay_msg::read(&mut raw).await.unwrap()
    })
}

fn refused(answer: RelayMsg) -> RelayRefusal {
    match answer {
        RelayMsg::Refused { reason, .. } => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn routers_register_only_with_a_trusted_enrollment_of_the_key_they_prove() {
    let relay = start_relay(&key(1), "127.0.0.1", None, "");
    let (device, other) = (key(20), key(21));
    let good = enrollment_bytes("r-adm", public(&device), &key(1));
    // Unenrolled key: the enrollment names another key than the one proved.
    assert_eq!(
        refused(register_as(&relay, &other, good.clone())),
        RelayRefusal::KeyMismatch
    );
    // Signed by an authority the relay does not trust.
    let untrusted = enrollment_bytes("r-adm", public(&device), &key(9));
    assert_eq!(
        refused(register_as(&relay, &device, untrusted)),
        RelayRefusal::BadEnrollment
    );
    // Expired.
    let expired = enrollment::seal(
        &Enrollment {
            device_id: "r-adm".into(),
            device_key: public(&device),
            serial: 1,
            issued_at: now() - 7200,
            expires_at: now() - 3600,
        },
        &[&key(1)],
    );
    assert_eq!(
        refused(register_as(&relay, &device, expired)),
        RelayRefusal::EnrollmentExpired
    );
    assert_eq!(register_as(&relay, &device, good), RelayMsg::Registered);
}

#[test]
fn a_router_enrolled_by_an_untrusted_authority_is_told_why() {
    let relay = start_relay(&key(1), "127.0.0.1", None, "");
    let address = relay.quic.to_string();
    let device = SigningKey::generate(&mut rand::rngs::OsRng);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.enroll");
    std::fs::write(&path, enrollment_bytes(DEVICE, public(&device), &key(9))).unwrap();
    let extra = relay_config(&path, "2s", &[(address.clone(), relay.key)]);
    let mut d = start_daemon_keyed(DEVICE, device, &extra, None, None);
    let line = d
        .stderr
        .wait_for(Duration::from_secs(20), |l| {
            l.contains(&format!("relay {address}: refused: bad-enrollment"))
        })
        .unwrap_or_else(|| panic!("router stderr {:?}", d.stderr.seen));
    assert!(line.contains("not trusted here"), "{line}");
}

/// Run `edgegate connect` through `relay` with `ticket`; its one stderr line.
fn refused_line(
    d: &Daemon,
    relay: &Relay,
    key: &std::path::Path,
    ticket: &std::path::Path,
    tls: bool,
) -> String {
    let mut c = d.connect_relayed(None, &[(relay.quic, relay.key)], key, ticket, tls, &[]);
    let status = c.exit(Duration::from_secs(20)).expect("exits");
    assert!(!status.success());
    let err = c.stderr.rest(Duration::from_millis(500));
    assert_eq!(err.len(), 1, "one line: {err:?}");
    err[0].clone()
}

#[test]
fn engineers_need_a_trusted_unexpired_bound_ticket_for_a_registered_device() {
    let http = http_backend();
    let echo = echo_backend();
    let relay = start_relay(&key(1), "127.0.0.1", None, "");
    let address = relay.quic.to_string();
    let mut d = start_relayed_router(&[(address.clone(), relay.key)], None);
    assert!(wait_registered(&mut d, &address, Duration::from_secs(20)).is_some());
    d.install_local(http.addr, echo);
    let prefix = format!("denied: relay {} refused: ", relay.quic);

    // Over QUIC and over TLS: the client's TLS handshake with the router
    // goes out behind `Connect`, and the refusal still reaches it whole.
    let (k, t) = d.client_with("other-device", "alice", |t| t.device = "router-2".into());
    for tls in [false, true] {
        let line = refused_line(&d, &relay, &k, &t, tls);
        assert!(
            line.starts_with(&format!("{prefix}router-offline")),
            "tls {tls}: {line}"
        );
        assert!(line.contains("router-2"), "{line}");
    }

    let (k, t) = d.client_with("expired", "alice", |t| {
        t.issued_at = now() - 7200;
        t.expires_at = now() - 3600;
    });
    let line = refused_line(&d, &relay, &k, &t, false);
    assert!(
        line.starts_with(&format!("{prefix}ticket-expired")),
        "{line}"
    );

    let (k, _) = d.client("untrusted", "alice");
    let engineer = edgegate::keyfile::load_signing_key(&k).unwrap();
    let t = d.write(
        "untrusted.ticket",
        &ticket_bytes("alice", DEVICE, &public(&engineer), &key(9)),
    );
    let line = refused_line(&d, &relay, &k, &t, false);
    assert!(line.starts_with(&format!("{prefix}bad-ticket")), "{line}");
    assert!(line.contains("signer not trusted"), "{line}");

    let (k, _) = d.client("unbound", "alice");
    let t = d.write(
        "unbound.ticket",
        &ticket_bytes("alice", DEVICE, &public(&key(33)), &key(1)),
    );
    let line = refused_line(&d, &relay, &k, &t, false);
    assert!(line.starts_with(&format!("{prefix}not-bound")), "{line}");

    // And the right ticket goes through.
    let (k, t) = d.client("alice", "alice");
    let mut c = d.connect_relayed(
        None,
        &[(relay.quic, relay.key)],
        &k,
        &t,
        false,
        &forwards(&["hmi"]),
    );
    c.ready();
    drop(echo_through(c.forwarded("hmi")));
}

#[test]
fn garbage_on_both_relay_ports_leaves_it_serving() {
    let http = http_backend();
    let echo = echo_backend();
    let mut relay = start_relay(&key(1), "127.0.0.1", None, "");
    let address = relay.quic.to_string();
    let mut d = start_relayed_router(&[(address.clone(), relay.key)], None);
    assert!(wait_registered(&mut d, &address, Duration::from_secs(20)).is_some());
    d.install_local(http.addr, echo);

    use rand::Rng;
    let mut rng = rand::thread_rng();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut held = Vec::new();
    for i in 0..300 {
        let len = rng.gen_range(1..1400);
        let junk: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let _ = udp.send_to(&junk, relay.quic);
        if i % 3 == 0 {
            // Half-open TCP: some say nothing, some send junk, some a
            // TLS-looking record header and then nothing.
            if let Ok(mut s) = std::net::TcpStream::connect(relay.tls) {
                match i % 9 {
                    0 => {}
                    3 => drop(s.write_all(&junk)),
                    _ => drop(s.write_all(&[0x16, 0x03, 0x01, 0x40, 0x00])),
                }
                held.push(s);
            }
        }
    }
    assert!(
        relay.child.try_wait().unwrap().is_none(),
        "relay still runs"
    );
    let (k, t) = d.client("alice", "alice");
    for tls in [false, true] {
        let mut c = d.connect_relayed(
            None,
            &[(relay.quic, relay.key)],
            &k,
            &t,
            tls,
            &forwards(&["hmi"]),
        );
        c.ready();
        drop(echo_through(c.forwarded("hmi")));
    }
    drop(held);
    assert!(
        relay.child.try_wait().unwrap().is_none(),
        "relay still runs"
    );
    assert!(
        relay.terminate(Duration::from_secs(10)).is_some(),
        "the relay stops on SIGTERM"
    );
}
