//! Reaching a router through relays (DESIGN §8): dial a relay (QUIC, or TLS
//! over TCP with `--tls` or when QUIC gets no answer), pinned to the
//! relay's key; present the ticket (`Connect`); then run the ordinary TLS
//! session with the router over the relayed stream (`tls::over`), pinned
//! to the device key, so the router's own handshake proves it and the
//! relay only ever copies ciphertext. Relays are tried in order.

use super::{link, tls, ClientError, Target};
use crate::tlsid;
use crate::transport::{relay_msg, Connection, MuxConn, QuicConn, RawStream};
use crate::PublicKey;
use edgegate_proto::relay::{RelayMsg, RelayRefusal, RELAY_ALPN};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

/// How long QUIC may take to reach a relay before TLS over TCP is tried
/// (short: a dead relay's UDP port answers nothing, and the next relay
/// should be tried within seconds).
const QUIC_WAIT: Duration = Duration::from_secs(3);

/// One relay to try: its address and pinned key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayHop {
    /// `HOST:PORT`, resolved.
    pub address: SocketAddr,
    /// The relay's public key.
    pub key: PublicKey,
}

/// A relay's refusal, for the engineer's one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The relay that refused.
    pub relay: SocketAddr,
    /// Why, as a stable code.
    pub reason: RelayRefusal,
    /// The relay's line, or empty.
    pub detail: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "relay {} refused: {}", self.relay, self.reason)?;
        let detail: String = self
            .detail
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if !detail.is_empty() {
            write!(f, " ({detail})")?;
        }
        Ok(())
    }
}

/// The relayed stream, holding the connection to the relay that carries
/// it: the session's multiplexer owns this, so the relay connection lives
/// exactly as long as the session.
///
/// The engineer's TLS handshake starts right after `Connect`, without
/// waiting for the relay's answer (one round trip to the relay less before
/// the session is ready): the first read takes the answer off the stream,
/// exactly its bytes, before any of the router's. `Connected` lets the
/// reads go on; any other answer is kept in `answer` for the caller and
/// fails the handshake.
struct Carried {
    io: RawStream,
    _relay: Arc<dyn Connection>,
    /// The answer's bytes so far (length prefix, then body), until it is
    /// `Connected`; `None` from then on.
    pending: Option<Vec<u8>>,
    /// The relay's answer, once read.
    answer: Arc<std::sync::Mutex<Option<RelayMsg>>>,
}

impl Carried {
    fn new(io: RawStream, relay: Arc<dyn Connection>) -> Carried {
        Carried {
            io,
            _relay: relay,
            pending: Some(Vec::with_capacity(64)),
            answer: Arc::default(),
        }
    }

    /// Read the relay's answer, no byte past it.
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(got) = &mut self.pending {
            let want = if got.len() < 4 {
                4
            } else {
                let prefix = [got[0], got[1], got[2], got[3]];
                4 + edgegate_proto::relay::check_len_capped(
                    prefix,
                    edgegate_proto::relay::MAX_RELAY_MSG,
                )
                .map_err(relay_msg::invalid)?
            };
            if got.len() >= 4 && got.len() == want {
                let msg = edgegate_proto::relay::decode(&got[4..]).map_err(relay_msg::invalid)?;
                let connected = msg == RelayMsg::Connected;
                *self.answer.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg);
                if connected {
                    self.pending = None;
                    return Poll::Ready(Ok(()));
                }
                return Poll::Ready(Err(io::Error::other("the relay did not connect")));
            }
            let mut chunk = [0u8; 256];
            let room = (want - got.len()).min(chunk.len());
            let mut buf = ReadBuf::new(&mut chunk[..room]);
            std::task::ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
            if buf.filled().is_empty() {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            got.extend_from_slice(buf.filled());
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Carried {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_answer(cx))?;
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Carried {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Target {
    /// A session's connection through the first relay that carries it.
    pub(super) async fn through_relays(&self, ticket: &[u8]) -> Result<MuxConn, ClientError> {
        let mut last = None;
        for hop in &self.relays {
            match self.through(hop, ticket).await {
                Ok(conn) => return Ok(conn),
                Err(e) => {
                    tracing::debug!("relay {}: {e}", hop.address);
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Link("no relay given".into())))
    }

    async fn through(&self, hop: &RelayHop, ticket: &[u8]) -> Result<MuxConn, ClientError> {
        let pin = tlsid::PinWatch::default();
        let relay = self.reach(hop, &pin).await?;
        let mut raw = relay
            .open_bi()
            .await
            .map_err(|e| relay_link(hop, e))?
            .into_raw();
        let connect = RelayMsg::Connect {
            ticket: ticket.to_vec(),
        };
        timeout(super::CONNECT_TIMEOUT, relay_msg::write(&mut raw, &connect))
            .await
            .map_err(|_| relay_link(hop, "no room to send Connect"))?
            .map_err(|e| relay_link(hop, e))?;
        // The TLS handshake goes out behind `Connect`; `Carried` reads the
        // relay's answer before the router's first byte.
        let carried = Carried::new(raw, relay.clone());
        let answer = carried.answer.clone();
        let session = tls::over(&self.tls_connector()?, carried, hop.address, &self.pin).await;
        let answer = answer.lock().unwrap_or_else(|p| p.into_inner()).take();
        match (session, answer) {
            (Ok(conn), _) => Ok(conn),
            // Connected: what failed is the router's handshake.
            (Err(e), Some(RelayMsg::Connected)) => Err(e),
            (Err(_), Some(RelayMsg::Refused { reason, detail })) => {
                relay.close(0, "refused");
                Err(ClientError::RelayRefused(Refusal {
                    relay: hop.address,
                    reason,
                    detail,
                }))
            }
            (Err(_), Some(_)) => Err(relay_link(hop, "unexpected answer to Connect")),
            (Err(_), None) => Err(relay_link(hop, "no answer")),
        }
    }

    /// A connection to the relay: QUIC unless `--tls`, TLS when QUIC gets
    /// no answer in time.
    async fn reach(
        &self,
        hop: &RelayHop,
        pin: &tlsid::PinWatch,
    ) -> Result<Arc<dyn Connection>, ClientError> {
        if !self.tls {
            match timeout(QUIC_WAIT, self.reach_quic(hop, pin)).await {
                Ok(Ok(conn)) => return Ok(conn),
                // The relay answered with the wrong key: TLS would too.
                Ok(Err(e @ ClientError::Link(_))) if pin_failed(&e) => return Err(e),
                Ok(Err(e)) => tracing::debug!("relay {}: quic: {e}", hop.address),
                Err(_) => tracing::debug!("relay {}: quic: no answer", hop.address),
            }
        }
        let config =
            tlsid::client_config_alpn(&self.identity, hop.key, pin, RELAY_ALPN).map_err(link)?;
        let connector = TlsConnector::from(Arc::new(config));
        let conn = tls::dial_with(&connector, hop.address, |e| relay_handshake(hop, pin, e)).await;
        let conn = conn.map_err(|e| match e {
            ClientError::Link(why) if !why.starts_with("relay ") => relay_link(hop, why),
            e => e,
        })?;
        Ok(Arc::new(conn))
    }

    async fn reach_quic(
        &self,
        hop: &RelayHop,
        pin: &tlsid::PinWatch,
    ) -> Result<Arc<dyn Connection>, ClientError> {
        let endpoint =
            crate::transport::quic::relay_client(hop.address, &self.identity, hop.key, pin)
                .map_err(link)?;
        let conn = endpoint
            .connect(hop.address, tlsid::SERVER_NAME)
            .map_err(link)?
            .await
            .map_err(|e| relay_handshake(hop, pin, e))?;
        Ok(Arc::new(QuicConn::new(conn, Some(endpoint))))
    }
}

/// The wording of a relay whose key is not the pinned one.
const WRONG_RELAY_KEY: &str = "the relay's key is not the pinned --relay-key";

fn pin_failed(e: &ClientError) -> bool {
    matches!(e, ClientError::Link(why) if why.contains(WRONG_RELAY_KEY))
}

fn relay_handshake(
    hop: &RelayHop,
    pin: &tlsid::PinWatch,
    e: impl std::fmt::Display,
) -> ClientError {
    if pin.take() {
        return ClientError::Link(format!(
            "relay {}: {WRONG_RELAY_KEY} (wrong key, or another relay)",
            hop.address
        ));
    }
    relay_link(hop, e)
}

fn relay_link(hop: &RelayHop, e: impl std::fmt::Display) -> ClientError {
    ClientError::Link(format!("relay {}: {e}", hop.address))
}

/// What a bundle pushed through a relay became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayPush {
    /// Kept by the relay; the router's answer was not asked for.
    Queued {
        /// The bundle's device.
        device: String,
        /// Its serial.
        serial: u64,
    },
    /// The router's answer.
    Answered(edgegate_proto::frame::PushResult),
    /// Kept by the relay; the router did not answer within the wait.
    NoAnswer {
        /// The bundle's device.
        device: String,
        /// Its serial.
        serial: u64,
    },
}

/// How long the relay may take to check and keep a bundle.
const QUEUE_WAIT: Duration = Duration::from_secs(30);

impl Target {
    /// Push a signed bundle through the first relay (`edgegate bundle push
    /// --relay`); with `wait`, wait that long for the router's answer.
    pub async fn push_via_relay(
        &self,
        bundle: Vec<u8>,
        wait: Option<Duration>,
    ) -> Result<RelayPush, ClientError> {
        let hop = self
            .relays
            .first()
            .ok_or_else(|| ClientError::Link("no relay given".into()))?;
        let pin = tlsid::PinWatch::default();
        let relay = self.reach(hop, &pin).await?;
        let outcome = push_on(&*relay, hop, bundle, wait).await;
        relay.close(0, "done");
        let _ = timeout(Duration::from_millis(200), relay.drain()).await;
        outcome
    }
}

async fn push_on(
    relay: &dyn Connection,
    hop: &RelayHop,
    bundle: Vec<u8>,
    wait: Option<Duration>,
) -> Result<RelayPush, ClientError> {
    let mut raw = relay
        .open_bi()
        .await
        .map_err(|e| relay_link(hop, e))?
        .into_raw();
    let push = RelayMsg::PushBundle {
        bundle,
        wait: wait.is_some(),
    };
    let queued = async {
        relay_msg::write(&mut raw, &push).await?;
        relay_msg::read(&mut raw).await
    };
    let queued = timeout(QUEUE_WAIT, queued)
        .await
        .map_err(|_| relay_link(hop, "no answer"))?
        .map_err(|e| relay_link(hop, e))?;
    let (device, serial) = match queued {
        RelayMsg::Queued { device, serial } => (device, serial),
        RelayMsg::Refused { reason, detail } => {
            return Err(ClientError::RelayRefused(Refusal {
                relay: hop.address,
                reason,
                detail,
            }))
        }
        _ => return Err(relay_link(hop, "unexpected answer to PushBundle")),
    };
    let Some(wait) = wait else {
        return Ok(RelayPush::Queued { device, serial });
    };
    match timeout(wait, relay_msg::read(&mut raw)).await {
        Ok(Ok(RelayMsg::Delivered(result))) => Ok(RelayPush::Answered(result)),
        Ok(Ok(_)) => Err(relay_link(hop, "unexpected answer while waiting")),
        Ok(Err(e)) => Err(relay_link(hop, e)),
        Err(_) => Ok(RelayPush::NoAnswer { device, serial }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::mux::{Growth, Side};
    use crate::transport::{PipeReader, PipeWriter};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A `Carried` over one end of a pipe, and the other end (the relay).
    fn carried() -> (Carried, tokio::io::DuplexStream) {
        let (near, far) = tokio::io::duplex(1 << 16);
        let (r, w) = tokio::io::split(near);
        let r: Box<dyn AsyncRead + Send + Unpin> = Box::new(r);
        let w: Box<dyn AsyncWrite + Send + Unpin> = Box::new(w);
        let (link, _) = tokio::io::duplex(64);
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let relay: Arc<dyn Connection> = Arc::new(MuxConn::new(
            link,
            Side::Client,
            1,
            Growth::CLIENT,
            None,
            addr,
        ));
        (
            Carried::new(
                tokio::io::join(PipeReader::Framed(r), PipeWriter::Framed(w)),
                relay,
            ),
            far,
        )
    }

    /// `Connected` and the router's first bytes in one write: the reads
    /// give the router's bytes, none of the answer's, and writes pass
    /// before it came.
    #[tokio::test]
    async fn the_answer_is_taken_off_the_stream_exactly() {
        let (mut c, mut relay) = carried();
        c.write_all(b"hello").await.unwrap();
        let mut sent = [0u8; 5];
        relay.read_exact(&mut sent).await.unwrap();
        assert_eq!(&sent, b"hello");
        let mut bytes = edgegate_proto::relay::encode(&RelayMsg::Connected);
        bytes.extend_from_slice(b"router");
        relay.write_all(&bytes).await.unwrap();
        let mut got = [0u8; 6];
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"router");
        assert_eq!(*c.answer.lock().unwrap(), Some(RelayMsg::Connected));
    }

    /// A refusal fails the reads and is kept for the caller's line.
    #[tokio::test]
    async fn a_refusal_fails_the_reads_and_is_kept() {
        let (mut c, mut relay) = carried();
        let refused = RelayMsg::Refused {
            reason: RelayRefusal::RouterOffline,
            detail: "no router".into(),
        };
        relay
            .write_all(&edgegate_proto::relay::encode(&refused))
            .await
            .unwrap();
        let mut got = [0u8; 1];
        assert!(c.read(&mut got).await.is_err());
        assert_eq!(*c.answer.lock().unwrap(), Some(refused));
    }

    /// An empty or oversized answer is malformed, and a stream that ends
    /// before its answer is cut short: errors, never bytes.
    #[tokio::test]
    async fn a_malformed_or_missing_answer_is_an_error() {
        for bytes in [
            vec![0, 0, 0, 0],
            (edgegate_proto::relay::MAX_RELAY_MSG as u32 + 1)
                .to_be_bytes()
                .to_vec(),
            vec![0, 0],
        ] {
            let (mut c, mut relay) = carried();
            relay.write_all(&bytes).await.unwrap();
            drop(relay);
            let mut got = [0u8; 1];
            let e = c.read(&mut got).await.unwrap_err();
            assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                ),
                "{bytes:?}: {e}"
            );
            assert_eq!(*c.answer.lock().unwrap(), None);
        }
    }
}
