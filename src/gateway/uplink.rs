//! The router's side of its relays (DESIGN §8): dial out to every relay
//! the config lists, register with the enrollment, keep the registration
//! alive, and serve each stream the relay opens as one engineer's TLS
//! session, exactly as a TLS connection on the router's own port
//! (`tls.rs`): the engineer's handshake is checked here, end to end.
//!
//! QUIC first; when it has not registered within [`QUIC_WAIT`] (UDP
//! blocked), TLS over TCP. A lost link is dialled again after a full-jitter
//! exponential back-off from [`BACKOFF_MIN`] to [`BACKOFF_MAX`]; a relay
//! that says `GoingAway` is dialled again at once. This module decides
//! nothing about access: relayed sessions go through `serve_connection`
//! and `authorize` like any other.

use super::pending::{Pending, Phase};
use super::Gateway;
use crate::config::RelayPeer;
use crate::tlsid;
use crate::transport::mux::{self, Growth, MuxConn, Side};
use crate::transport::{relay_msg, BiStream, Connection, QuicConn, RawStream};
use edgegate_proto::relay::{RelayMsg, DELIVER_TAG, RELAY_ALPN};
use rand::Rng;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::BufReader;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How long QUIC may take to register before TLS over TCP is tried: a
/// router whose UDP is dropped is registered over TLS within 5 s.
const QUIC_WAIT: Duration = Duration::from_secs(3);

/// How long TLS over TCP may take to register.
const TLS_WAIT: Duration = Duration::from_secs(10);

/// Over TLS the router pings every `TLS_PING_FACTOR` × `relay_keepalive`
/// (150 s by default). `relay_keepalive` is sized for UDP mappings, which
/// NATs drop after ~30 s; TCP mappings live for minutes to hours (RFC 5382:
/// at least 2 h 4 min; cloud NATs 4–6 min), and one ping and its answer
/// over TLS and yamux cost ~630 bytes in ~9 packets (yamux adds its own
/// RTT pings), so a 25 s ping was 59 MB a month where QUIC's keep-alives
/// are 13 MB. 150 s: ~12 MB.
const TLS_PING_FACTOR: u32 = 6;

/// Longest wait for a relay's `Pong`.
const PONG_WAIT: Duration = Duration::from_secs(10);

/// First back-off ceiling after a lost link.
const BACKOFF_MIN: Duration = Duration::from_secs(1);

/// Back-off ceiling.
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Read-ahead under rustls on a relayed stream (a full TLS record).
const READ_AHEAD: usize = 17 << 10;

/// How a registration ended.
enum LinkEnd {
    /// The relay is shutting down: register again at once.
    GoingAway,
    /// Lost, refused or never made; why, in one line.
    Lost(String),
}

/// The full-jitter back-off before attempt `attempt` (0-based): uniform in
/// `[0, min(BACKOFF_MAX, BACKOFF_MIN * 2^attempt)]`, so routers that lost
/// one relay together do not return together. Public for the benches'
/// simulated routers (`benches/compare`), which must spread as routers do.
pub fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_MIN
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_MAX);
    let ms = rand::thread_rng().gen_range(0..=ceiling.as_millis() as u64);
    Duration::from_millis(ms)
}

impl Gateway {
    /// Keep a registration with `relay` until shutdown.
    pub(crate) async fn uplink(self: Arc<Self>, relay: RelayPeer, enrollment: Arc<Vec<u8>>) {
        let acceptor = match tlsid::server_config(&self.identity) {
            Ok(c) => TlsAcceptor::from(Arc::new(c)),
            Err(e) => {
                tracing::error!("relay {}: tls: {e}", relay.address);
                return;
            }
        };
        let mut shutdown = self.shutdown_signal();
        let mut attempt = 0u32;
        loop {
            let link = self
                .clone()
                .link(&relay, &enrollment, &acceptor, &mut attempt);
            let end = tokio::select! {
                end = link => end,
                _ = shutdown.changed() => return,
            };
            match end {
                LinkEnd::GoingAway => {
                    tracing::info!("relay {} is going away; registering again", relay.address);
                    attempt = 0;
                    continue;
                }
                LinkEnd::Lost(why) => tracing::warn!("relay {}: {why}", relay.address),
            }
            let wait = backoff(attempt);
            attempt = attempt.saturating_add(1);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One registration: dial, register, serve until it ends.
    async fn link(
        self: Arc<Self>,
        relay: &RelayPeer,
        enrollment: &[u8],
        acceptor: &TlsAcceptor,
        attempt: &mut u32,
    ) -> LinkEnd {
        let (conn, ctl, over) = match self.dial_relay(relay, enrollment).await {
            Ok(dialled) => dialled,
            Err(why) => return LinkEnd::Lost(why),
        };
        *attempt = 0;
        tracing::info!("registered with relay {} over {over}", relay.address);
        self.serve_link(conn, ctl, acceptor).await
    }

    /// Register over QUIC, or over TLS when QUIC does not make it in time.
    async fn dial_relay(
        &self,
        relay: &RelayPeer,
        enrollment: &[u8],
    ) -> Result<(Arc<dyn Connection>, RawStream, &'static str), String> {
        let addr = tokio::net::lookup_host(&relay.address)
            .await
            .map_err(|e| format!("resolving: {e}"))?
            .next()
            .ok_or("resolving: no address")?;
        let pin = tlsid::PinWatch::default();
        let quic = timeout(QUIC_WAIT, self.quic_link(addr, relay, &pin)).await;
        let quic_err = match quic {
            Ok(Ok(conn)) => match register(conn.clone(), enrollment, &pin).await {
                Ok(ctl) => return Ok((conn, ctl, "quic")),
                // Refused by a relay that answered: TLS would hear the same.
                Err(Registration::Refused(why)) => return Err(why),
                Err(Registration::Failed(why)) => why,
            },
            Ok(Err(why)) => why,
            Err(_) => "no answer over QUIC".to_string(),
        };
        tracing::debug!("relay {}: quic: {quic_err}; trying tls", relay.address);
        let tls = async {
            let conn = self.tls_link(addr, relay, &pin).await?;
            register(conn.clone(), enrollment, &pin)
                .await
                .map(|ctl| (conn, ctl, "tls"))
                .map_err(|e| match e {
                    Registration::Refused(why) | Registration::Failed(why) => why,
                })
        };
        match timeout(TLS_WAIT, tls).await {
            Ok(result) => result,
            Err(_) => Err(format!("quic: {quic_err}; tls: timed out")),
        }
    }

    /// Streams the relay may open on this router's link at once.
    fn relay_streams(&self) -> usize {
        let limits = &self.config().limits;
        (limits.max_sessions + limits.max_handshakes).min(mux::MAX_STREAMS)
    }

    async fn quic_link(
        &self,
        addr: SocketAddr,
        relay: &RelayPeer,
        pin: &tlsid::PinWatch,
    ) -> Result<Arc<dyn Connection>, String> {
        let keep_alive = self.config().relay_keepalive;
        let streams = self.relay_streams() as u32;
        let endpoint = crate::transport::quic::uplink(
            addr,
            &self.identity,
            relay.key,
            pin,
            streams,
            keep_alive,
        )
        .map_err(|e| e.to_string())?;
        let connecting = endpoint
            .connect(addr, tlsid::SERVER_NAME)
            .map_err(|e| e.to_string())?;
        let conn = connecting.await.map_err(|e| pinned(pin, e))?;
        Ok(Arc::new(QuicConn::new(conn, Some(endpoint))))
    }

    async fn tls_link(
        &self,
        addr: SocketAddr,
        relay: &RelayPeer,
        pin: &tlsid::PinWatch,
    ) -> Result<Arc<dyn Connection>, String> {
        let config = tlsid::client_config_alpn(&self.identity, relay.key, pin, RELAY_ALPN)
            .map_err(|e| e.to_string())?;
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("tls: {e}"))?;
        let _ = tcp.set_nodelay(true);
        // No probe between two pings: they are the link's liveness check.
        let ping = self.config().relay_keepalive * TLS_PING_FACTOR;
        let idle = ping + PONG_WAIT + Duration::from_secs(15);
        mux::keep_alive_after(&tcp, idle.as_secs().try_into().unwrap_or(u32::MAX));
        let tcp = BufReader::with_capacity(READ_AHEAD, tcp);
        let tls = TlsConnector::from(Arc::new(config))
            .connect(tlsid::server_name(), tcp)
            .await
            .map_err(|e| pinned(pin, e))?;
        let conn = MuxConn::new(
            tls,
            Side::Client,
            self.relay_streams(),
            Growth::ROUTER,
            None,
            addr,
        );
        Ok(Arc::new(conn))
    }

    /// Serve a registered link: relayed streams, pings, the relay's words.
    async fn serve_link(
        self: Arc<Self>,
        conn: Arc<dyn Connection>,
        ctl: RawStream,
        acceptor: &TlsAcceptor,
    ) -> LinkEnd {
        let (mut r, mut w) = tokio::io::split(ctl);
        // Reads are not cancel-safe: one task reads, the loop selects on it.
        let (tx, mut rx) = mpsc::channel(4);
        let reader = tokio::spawn(async move {
            loop {
                let msg = relay_msg::read(&mut r).await;
                let failed = msg.is_err();
                if tx.send(msg).await.is_err() || failed {
                    break;
                }
            }
        });
        // QUIC's own keep-alives (and idle timeout) hold the NAT mapping and
        // notice a dead relay; relay pings would double the idle traffic.
        // TLS over TCP has only TCP keep-alive, which NATs do not all see
        // as traffic: there the relay is pinged, when nothing else came
        // from it for a whole interval.
        let pinging = conn.transport() == edgegate_proto::audit::Transport::Tls;
        let every = self.config().relay_keepalive * TLS_PING_FACTOR;
        let mut ping = tokio::time::interval_at(Instant::now() + every, every);
        let mut deadline: Option<Instant> = None;
        let mut pending = Pending::new(self.config().limits.max_handshakes);
        let source = conn.remote().ip();
        let mut n = 0u64;
        let end = loop {
            let waiting = deadline.unwrap_or_else(|| Instant::now() + every);
            tokio::select! {
                stream = conn.accept_bi() => match stream {
                    Ok(stream) => {
                        ping.reset();
                        let (gw, acceptor) = (self.clone(), acceptor.clone());
                        pending.spawn(source, move |phase| gw.relayed(stream, acceptor, phase));
                    }
                    Err(e) => break LinkEnd::Lost(format!("link lost: {e}")),
                },
                msg = rx.recv() => match msg {
                    Some(Ok(RelayMsg::Pong(_))) => {
                        deadline = None;
                        ping.reset();
                    }
                    Some(Ok(RelayMsg::GoingAway)) => break LinkEnd::GoingAway,
                    Some(Ok(RelayMsg::Refused { reason, detail })) => {
                        break LinkEnd::Lost(format!("refused: {reason}: {detail}"))
                    }
                    Some(Ok(_)) => break LinkEnd::Lost("unexpected message".into()),
                    Some(Err(e)) => break LinkEnd::Lost(format!("link lost: {e}")),
                    None => break LinkEnd::Lost("link lost".into()),
                },
                _ = ping.tick(), if pinging => {
                    n += 1;
                    if let Err(e) = relay_msg::write(&mut w, &RelayMsg::Ping(n)).await {
                        break LinkEnd::Lost(format!("link lost: {e}"));
                    }
                    deadline.get_or_insert(Instant::now() + PONG_WAIT.min(every));
                }
                () = tokio::time::sleep_until(waiting), if deadline.is_some() => {
                    break LinkEnd::Lost("no answer to a keep-alive".into());
                }
            }
        };
        reader.abort();
        // The sessions it carried end with it (at once, not at a timeout).
        conn.close(0, "bye");
        end
    }

    /// One stream the relay opened: its `Incoming` header, then the
    /// engineer's TLS session, served as on the router's own TLS port; or
    /// a spooled bundle (`Deliver`), applied by the router's own rules as
    /// any push, and answered.
    async fn relayed(self: Arc<Self>, stream: BiStream, acceptor: TlsAcceptor, phase: Phase) {
        let mut raw = stream.into_raw();
        let limits = self.config().limits.clone();
        let large = Some((DELIVER_TAG, limits.max_bundle_size + 64));
        let first = relay_msg::read_allowing(&mut raw, large);
        let remote = match timeout(limits.handshake_timeout, first).await {
            Ok(Ok(RelayMsg::Incoming(incoming))) => incoming.remote,
            Ok(Ok(RelayMsg::Deliver { bundle })) => {
                drop(phase);
                let result = self.push_bundle(bundle).await;
                tracing::info!("bundle from a relay: {result:?}");
                let _ = relay_msg::write(&mut raw, &RelayMsg::Delivered(result)).await;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut raw).await;
                return;
            }
            _ => return,
        };
        let raw = BufReader::with_capacity(READ_AHEAD, raw);
        self.tls_session(raw, remote, acceptor, phase).await;
    }
}

/// Why a registration did not happen.
enum Registration {
    /// The relay answered `Refused`.
    Refused(String),
    /// The link failed before an answer.
    Failed(String),
}

/// Open the control stream, present the enrollment, read the answer.
async fn register(
    conn: Arc<dyn Connection>,
    enrollment: &[u8],
    pin: &tlsid::PinWatch,
) -> Result<RawStream, Registration> {
    let failed = |e: std::io::Error| Registration::Failed(pinned(pin, e));
    let mut ctl = conn.open_bi().await.map_err(failed)?.into_raw();
    let register = RelayMsg::Register {
        enrollment: enrollment.to_vec(),
    };
    relay_msg::write(&mut ctl, &register)
        .await
        .map_err(failed)?;
    match relay_msg::read(&mut ctl).await.map_err(failed)? {
        RelayMsg::Registered => Ok(ctl),
        RelayMsg::Refused { reason, detail } => {
            conn.close(0, "refused");
            Err(Registration::Refused(format!(
                "refused: {reason}: {detail}"
            )))
        }
        _ => Err(Registration::Failed("unexpected answer to Register".into())),
    }
}

/// A failed handshake, saying so when the relay's key was not the pinned one.
fn pinned(pin: &tlsid::PinWatch, e: impl std::fmt::Display) -> String {
    if pin.take() {
        return "the relay's key is not the pinned [[relay]] key".into();
    }
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_ceiling() {
        for attempt in 0..20 {
            let ceiling = BACKOFF_MIN
                .saturating_mul(1 << attempt.min(16))
                .min(BACKOFF_MAX);
            let waits: Vec<Duration> = (0..200).map(|_| backoff(attempt)).collect();
            assert!(waits.iter().all(|w| *w <= ceiling), "attempt {attempt}");
            // Spread, not one value: the point of the jitter.
            let distinct: std::collections::HashSet<_> = waits.iter().collect();
            assert!(distinct.len() > 50, "attempt {attempt}: {}", distinct.len());
        }
        assert_eq!(
            BACKOFF_MIN.saturating_mul(1 << 16).min(BACKOFF_MAX),
            BACKOFF_MAX
        );
    }
}
