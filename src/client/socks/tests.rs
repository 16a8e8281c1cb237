//! The SOCKS server over in-memory streams on paused time: the handshake is
//! bounded, an open stream is not.

use super::parse::{reply, REP_CMD_UNSUPPORTED, REP_NOT_ALLOWED, REP_OK};
use super::{connection, Upstream, HANDSHAKE_TIMEOUT};
use crate::client::ClientError;
use std::sync::{Arc, Mutex};
use tokio::io::{duplex, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::time::{sleep, Duration, Instant};

/// A gateway whose every stream is an echo server; records destinations.
#[derive(Default)]
struct Echo {
    services: Vec<String>,
    opened: Mutex<Vec<(String, String)>>,
}

impl Echo {
    fn with_vpn() -> Arc<Echo> {
        Arc::new(Echo {
            services: vec!["vpn".into()],
            ..Echo::default()
        })
    }
}

impl Upstream for Echo {
    type Stream = DuplexStream;

    fn vpn_services(&self) -> Vec<String> {
        self.services.clone()
    }

    async fn open(&self, service: &str, destination: String) -> Result<DuplexStream, ClientError> {
        self.opened
            .lock()
            .unwrap()
            .push((service.into(), destination));
        let (ours, mut theirs) = duplex(1024);
        tokio::spawn(async move {
            let (mut r, mut w) = tokio::io::split(&mut theirs);
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
        Ok(ours)
    }

    async fn splice<C>(&self, mut client: C, mut stream: DuplexStream, _: &str)
    where
        C: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut stream).await;
    }
}

/// A client connected to a served SOCKS connection.
fn serve(upstream: Arc<Echo>) -> DuplexStream {
    let (client, server) = duplex(1024);
    tokio::spawn(connection(upstream, server));
    client
}

const CONNECT_V4: [u8; 10] = [5, 1, 0, 1, 10, 0, 0, 5, 0x01, 0xf6];

async fn handshake(client: &mut DuplexStream, request: &[u8]) -> [u8; 10] {
    client.write_all(&[5, 1, 0]).await.unwrap();
    let mut method = [0u8; 2];
    client.read_exact(&mut method).await.unwrap();
    assert_eq!(method, [5, 0]);
    client.write_all(request).await.unwrap();
    let mut answer = [0u8; 10];
    client.read_exact(&mut answer).await.unwrap();
    answer
}

async fn echo_round(client: &mut DuplexStream, text: &[u8]) {
    client.write_all(text).await.unwrap();
    let mut back = vec![0u8; text.len()];
    client.read_exact(&mut back).await.unwrap();
    assert_eq!(back, text);
}

#[tokio::test(start_paused = true)]
async fn an_open_stream_outlives_the_handshake_timeout() {
    let upstream = Echo::with_vpn();
    let mut client = serve(upstream.clone());
    assert_eq!(handshake(&mut client, &CONNECT_V4).await, reply(REP_OK));
    echo_round(&mut client, b"first").await;
    // Idle past the handshake timeout, then busy for as long again.
    sleep(HANDSHAKE_TIMEOUT + Duration::from_secs(1)).await;
    echo_round(&mut client, b"after an idle 31 s").await;
    for _ in 0..40 {
        sleep(Duration::from_secs(1)).await;
        echo_round(&mut client, b"busy").await;
    }
    let opened = upstream.opened.lock().unwrap().clone();
    assert_eq!(opened, [("vpn".to_string(), "10.0.0.5:502".to_string())]);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stalls_its_handshake_is_dropped_at_the_timeout() {
    for sent in [&[][..], &[5][..], &[5, 1, 0, 5, 1, 0, 3, 9, b'p']] {
        let upstream = Echo::with_vpn();
        let mut client = serve(upstream.clone());
        let start = Instant::now();
        client.write_all(sent).await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert_eq!(start.elapsed(), HANDSHAKE_TIMEOUT, "after {sent:?}");
        assert!(upstream.opened.lock().unwrap().is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_but_finished_handshake_is_served() {
    let mut client = serve(Echo::with_vpn());
    sleep(HANDSHAKE_TIMEOUT - Duration::from_secs(1)).await;
    assert_eq!(handshake(&mut client, &CONNECT_V4).await, reply(REP_OK));
    sleep(Duration::from_secs(5)).await;
    echo_round(&mut client, b"still here").await;
}

#[tokio::test(start_paused = true)]
async fn refusals_are_answered_and_closed() {
    let mut client = serve(Echo::with_vpn());
    let bind = [5, 2, 0, 1, 10, 0, 0, 5, 0, 80];
    assert_eq!(
        handshake(&mut client, &bind).await,
        reply(REP_CMD_UNSUPPORTED)
    );
    assert_eq!(client.read(&mut [0u8; 1]).await.unwrap(), 0);

    let mut client = serve(Arc::new(Echo::default()));
    assert_eq!(
        handshake(&mut client, &CONNECT_V4).await,
        reply(REP_NOT_ALLOWED)
    );
    assert_eq!(client.read(&mut [0u8; 1]).await.unwrap(), 0);
}
