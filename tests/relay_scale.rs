//! What an idle registration costs the relay: many routers (simulated in
//! this process with the library's own QUIC configuration, one UDP socket
//! for all) register with a real `edgegate-relay`; its resident memory is
//! read before and after, and the cost per router printed and bounded.

#[path = "tunnel_support/harness.rs"]
mod harness;

use edgegate::tlsid::{self, Identity};
use edgegate::transport::{relay_msg, Connection, QuicConn};
use edgegate_proto::relay::{RelayMsg, RELAY_ALPN};
use harness::relay::*;
use harness::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Routers registered (`EDGEGATE_SCALE_ROUTERS` for more).
fn routers() -> usize {
    std::env::var("EDGEGATE_SCALE_ROUTERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500)
}

/// The relay's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn an_idle_registration_costs_the_relay_little() {
    let relay = start_relay(
        &key(1),
        "127.0.0.1",
        None,
        "[limits]\naccept_rate = 100000\nmax_handshakes = 1024\n",
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Keys, enrollments and client configurations first: the relay's cost
    // is measured, not this process's.
    let count = routers();
    let routers: Vec<(Vec<u8>, quinn::ClientConfig)> = (0..count)
        .map(|i| {
            let device = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
            let enrollment = enrollment_bytes(&format!("sim-{i}"), public(&device), &key(1));
            let id = Identity::new(&device).unwrap();
            let pin = tlsid::PinWatch::default();
            let mut config =
                tlsid::quic_client_config_alpn(&id, relay.key, &pin, RELAY_ALPN).unwrap();
            let mut t = quinn::TransportConfig::default();
            t.keep_alive_interval(Some(Duration::from_secs(10)));
            config.transport_config(Arc::new(t));
            (enrollment, config)
        })
        .collect();
    let before = rss_kib(relay.child.id());
    let started = Instant::now();
    let addr = relay.quic;
    let held = rt.block_on(async move {
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut held = Vec::new();
        for batch in routers.chunks(32) {
            let mut tasks = Vec::new();
            for (enrollment, config) in batch.iter().cloned() {
                let endpoint = endpoint.clone();
                tasks.push(tokio::spawn(async move {
                    let conn = endpoint
                        .connect_with(config, addr, tlsid::SERVER_NAME)
                        .unwrap()
                        .await
                        .unwrap();
                    let conn = QuicConn::new(conn, None);
                    let mut ctl = conn.open_bi().await.unwrap().into_raw();
                    relay_msg::write(&mut ctl, &RelayMsg::Register { enrollment })
                        .await
                        .unwrap();
                    let answer = relay_msg::read(&mut ctl).await.unwrap();
                    assert_eq!(answer, RelayMsg::Registered);
                    (conn, ctl)
                }));
            }
            for t in tasks {
                held.push(t.await.unwrap());
            }
        }
        (endpoint, held)
    });
    let took = started.elapsed();
    assert_eq!(relay.status()["routers"].as_array().unwrap().len(), count);
    // Wait until the handshakes' buffers are freed and trimmed (the relay
    // trims 1 s after registrations pause): RSS unchanged across a span
    // longer than that.
    let pid = relay.child.id();
    let mut last = rss_kib(pid);
    let after = wait_until(Duration::from_secs(15), || {
        std::thread::sleep(Duration::from_millis(1200));
        let now = rss_kib(pid);
        let settled = now == last;
        last = now;
        settled.then_some(now)
    })
    .expect("the relay's memory settles");
    let per = (after.saturating_sub(before)) as f64 / count as f64;
    println!(
        "{count} routers registered in {} ms; relay RSS {before} KiB -> {after} KiB: {per:.1} KiB per idle router",
        took.as_millis()
    );
    assert!(per < 64.0, "{per:.1} KiB per idle router");
    drop(held);
}
