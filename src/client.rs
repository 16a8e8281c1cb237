//! The engineer's side of a tunnel: open a session (QUIC, or TLS over TCP
//! with `--tls`), read the daemon's per-service decisions, and open one
//! stream per forwarded connection. Local listeners (`-L`, SOCKS5) live in
//! `client/forward.rs` and `client/socks.rs`; bundle push in `client/push.rs`;
//! the TLS transport's connection handling in `client/tls.rs`.

mod forward;
mod push;
pub(crate) mod socks;
mod tls;

pub use forward::{forward, Forward};
pub use push::push_bundle;
pub use socks::socks5;

use crate::tlsid::{self, Identity};
use crate::transport::{self, expect_frame, read_frame, write_frame, PipeReader, PipeWriter};
use crate::PublicKey;
use edgegate_proto::frame::{Frame, SessionEnd, Welcome, MAX_FRAME};
use edgegate_proto::DenyReason;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tls::TlsLink;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

/// How long connecting and each handshake step may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to connect.
pub struct Target {
    /// The daemon's address.
    pub gateway: SocketAddr,
    /// The pinned device key.
    pub device_key: PublicKey,
    /// This client's identity.
    pub identity: Identity,
    /// Use TLS over TCP instead of QUIC.
    pub tls: bool,
    /// The QUIC endpoint (UDP socket and its driver) every session to this
    /// target shares, made at first use: one socket however many sessions,
    /// and ~0.2 ms less set-up for each after the first.
    quic: Mutex<Option<quinn::Endpoint>>,
}

/// Why a session or stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon refused (session or stream) with a policy reason.
    #[error("{0}")]
    Denied(DenyReason),
    /// The stream was allowed but the daemon could not reach the target.
    #[error("{0}")]
    Failed(String),
    /// Network, TLS or protocol failure.
    #[error("{0}")]
    Link(String),
}

fn link(e: impl std::fmt::Display) -> ClientError {
    ClientError::Link(e.to_string())
}

/// A failed handshake, worded for the engineer: the one failure they can
/// fix themselves is a `--gateway-key` that is not this gateway's.
fn handshake_error(e: impl std::fmt::Display) -> ClientError {
    let text = e.to_string();
    if text.contains("invalid peer certificate") {
        return ClientError::Link(
            "the gateway's key is not the pinned --gateway-key (wrong key, or another gateway)"
                .into(),
        );
    }
    ClientError::Link(text)
}

enum Link {
    Quic {
        conn: quinn::Connection,
        endpoint: quinn::Endpoint,
    },
    Tls(Box<TlsLink>),
}

/// An open session.
pub struct Session {
    link: Link,
    /// What the daemon answered to `Hello`.
    pub welcome: Welcome,
    /// Stream id → service, for `StreamClosed` notices.
    streams: Arc<Mutex<HashMap<u64, String>>>,
    /// Streams whose cut was already reported (a QUIC cut is seen twice).
    reported: Arc<Mutex<HashSet<u64>>>,
    /// Next local id of a TLS stream (TLS has no stream ids on the wire).
    next_tls_id: AtomicU64,
    /// Session-ending events (TLS: seen on a stream's connection; the
    /// sender also keeps the channel open while the session lives).
    events: mpsc::UnboundedSender<SessionEvent>,
}

/// Events that end or mark a session, for the command's main loop.
#[derive(Debug)]
pub enum SessionEvent {
    /// The daemon closed the session; the text says why.
    Ended(String),
}

impl Target {
    /// A target: the daemon at `gateway`, pinned to `device_key`.
    pub fn new(
        gateway: SocketAddr,
        device_key: PublicKey,
        identity: Identity,
        tls: bool,
    ) -> Target {
        Target {
            gateway,
            device_key,
            identity,
            tls,
            quic: Mutex::new(None),
        }
    }

    fn tls_connector(&self) -> Result<TlsConnector, ClientError> {
        let config = tlsid::client_config(&self.identity, self.device_key).map_err(link)?;
        Ok(TlsConnector::from(Arc::new(config)))
    }

    /// Give closed QUIC connections a moment (bounded) to tell the daemon:
    /// a one-shot command calls this before its runtime ends, since nothing
    /// is sent once it is gone.
    pub async fn drain(&self) {
        let endpoint = lock(&self.quic).clone();
        if let Some(endpoint) = endpoint {
            let _ = timeout(Duration::from_millis(200), endpoint.wait_idle()).await;
        }
    }

    fn quic_endpoint(&self) -> Result<quinn::Endpoint, ClientError> {
        let mut quic = lock(&self.quic);
        if let Some(endpoint) = &*quic {
            return Ok(endpoint.clone());
        }
        let endpoint =
            transport::quic::client(self.gateway, &self.identity, self.device_key).map_err(link)?;
        *quic = Some(endpoint.clone());
        Ok(endpoint)
    }

    async fn quic_connect(&self) -> Result<(quinn::Endpoint, quinn::Connection), ClientError> {
        let endpoint = self.quic_endpoint()?;
        let connecting = endpoint
            .connect(self.gateway, tlsid::SERVER_NAME)
            .map_err(link)?;
        let conn = timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| ClientError::Link("timed out connecting".into()))?
            .map_err(handshake_error)?;
        Ok((endpoint, conn))
    }

    /// Send one first frame on a fresh connection and read one answer
    /// (bundle push).
    pub(crate) async fn exchange(&self, first: Frame, cap: usize) -> Result<Frame, ClientError> {
        if self.tls {
            let mut tls = tls::dial(&self.tls_connector()?, self.gateway).await?;
            write_frame(&mut tls, &first).await.map_err(link)?;
            expect_frame(&mut tls, cap).await.map_err(link)
        } else {
            let (endpoint, conn) = self.quic_connect().await?;
            let (mut send, mut recv) = conn.open_bi().await.map_err(link)?;
            write_frame(&mut send, &first).await.map_err(link)?;
            let answer = expect_frame(&mut recv, cap).await.map_err(link);
            conn.close(0u32.into(), b"done");
            drop(endpoint);
            answer
        }
    }
}

fn welcome_of(frame: Frame) -> Result<Welcome, ClientError> {
    match frame {
        Frame::Welcome(w) => Ok(w),
        Frame::Refused { reason } => Err(ClientError::Denied(reason)),
        _ => Err(ClientError::Link("unexpected answer to Hello".into())),
    }
}

/// Open a session: `Hello` with the ticket, `Welcome` or `Refused` back.
/// Session-ending events arrive on the returned receiver.
pub async fn open_session(
    target: &Target,
    ticket: Vec<u8>,
) -> Result<(Session, mpsc::UnboundedReceiver<SessionEvent>), ClientError> {
    let (events, events_rx) = mpsc::unbounded_channel();
    let streams = Arc::new(Mutex::new(HashMap::new()));
    let reported = Arc::new(Mutex::new(HashSet::new()));
    if target.tls {
        let (link, welcome, held) =
            TlsLink::open(target.tls_connector()?, target.gateway, ticket).await?;
        let (s, r, e) = (streams.clone(), reported.clone(), events.clone());
        link.watch(held, move |ending| match ending {
            tls::Ending::Closed(end) => session_ended(&s, &r, &e, end),
            tls::Ending::Lost(why) => {
                let _ = e.send(SessionEvent::Ended(why));
            }
        });
        let session = Session {
            link: Link::Tls(Box::new(link)),
            welcome,
            streams,
            reported,
            next_tls_id: AtomicU64::new(1),
            events,
        };
        return Ok((session, events_rx));
    }
    let (endpoint, conn) = target.quic_connect().await?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(link)?;
    write_frame(&mut send, &Frame::Hello { ticket })
        .await
        .map_err(link)?;
    let welcome = welcome_of(expect_frame(&mut recv, MAX_FRAME).await.map_err(link)?)?;
    let session = Session {
        link: Link::Quic {
            conn: conn.clone(),
            endpoint,
        },
        welcome,
        streams: streams.clone(),
        reported: reported.clone(),
        next_tls_id: AtomicU64::new(1),
        events: events.clone(),
    };
    tokio::spawn(watch_control(conn, send, recv, streams, reported, events));
    Ok((session, events_rx))
}

/// Read `StreamClosed` notices until the connection ends.
async fn watch_control(
    conn: quinn::Connection,
    _send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    streams: Arc<Mutex<HashMap<u64, String>>>,
    reported: Arc<Mutex<HashSet<u64>>>,
    events: mpsc::UnboundedSender<SessionEvent>,
) {
    let mut said = None;
    loop {
        match read_frame(&mut recv, MAX_FRAME).await {
            Ok(Some(Frame::StreamClosed { stream, reason })) => {
                let service = lock(&streams).get(&stream).cloned();
                if let Some(service) = service {
                    report_cut(&reported, stream, &service, reason);
                }
            }
            Ok(Some(Frame::SessionClosed { reason })) => {
                // The streams' own notices came first on this stream; any
                // stream still open was cut by the session's end. Then
                // close: the daemon waits for that (bounded) before closing
                // itself, so no stream sees a lost connection first.
                if let SessionEnd::Denied(r) = reason {
                    report_open_streams(&streams, &reported, r);
                }
                said = Some(reason);
                conn.close(reason.conn_code().into(), b"session closed");
                break;
            }
            _ => break,
        }
    }
    let why = match conn.closed().await {
        quinn::ConnectionError::ApplicationClosed(c) => {
            match said.or(SessionEnd::from_conn_code(c.error_code.into_inner())) {
                Some(end) => describe(end),
                None => String::from_utf8_lossy(&c.reason).into_owned(),
            }
        }
        e => match said {
            Some(end) => describe(end),
            None => e.to_string(),
        },
    };
    let _ = events.send(SessionEvent::Ended(why));
}

/// How `closed: session: …` words a session end: the deny reason's stable
/// name, or a phrase for the others.
fn describe(end: SessionEnd) -> String {
    match end {
        SessionEnd::Denied(r) => r.to_string(),
        SessionEnd::Killed => "session killed".into(),
        SessionEnd::IdleTimeout => "idle timeout".into(),
        SessionEnd::Shutdown => "gateway shutting down".into(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The daemon ended the whole session: a denied session's open streams
/// were cut by it; the command's main loop is told.
fn session_ended(
    streams: &Mutex<HashMap<u64, String>>,
    reported: &Mutex<HashSet<u64>>,
    events: &mpsc::UnboundedSender<SessionEvent>,
    end: SessionEnd,
) {
    if let SessionEnd::Denied(reason) = end {
        report_open_streams(streams, reported, reason);
    }
    let _ = events.send(SessionEvent::Ended(describe(end)));
}

/// The session ended for `reason`: every stream still open was cut by it.
fn report_open_streams(
    streams: &Mutex<HashMap<u64, String>>,
    reported: &Mutex<HashSet<u64>>,
    reason: DenyReason,
) {
    let open: Vec<(u64, String)> = lock(streams)
        .iter()
        .map(|(id, s)| (*id, s.clone()))
        .collect();
    for (id, service) in open {
        report_cut(reported, id, &service, reason);
    }
}

fn report_cut(reported: &Mutex<HashSet<u64>>, stream: u64, service: &str, reason: DenyReason) {
    if lock(reported).insert(stream) {
        eprintln!("closed: {service}: {reason}");
    }
}

/// One opened tunnel stream.
pub struct Stream {
    /// Id used in `StreamClosed` notices.
    pub id: u64,
    /// Bytes from the daemon.
    pub reader: PipeReader,
    /// Bytes to the daemon.
    pub writer: PipeWriter,
}

impl Session {
    /// Open a stream to `service` (`destination` for vpn).
    pub async fn open(
        &self,
        service: &str,
        destination: Option<String>,
    ) -> Result<Stream, ClientError> {
        let open = Frame::Open {
            service: service.to_string(),
            destination,
        };
        let (id, reader, writer, answer) = match &self.link {
            Link::Quic { conn, .. } => {
                let (mut send, mut recv) = conn.open_bi().await.map_err(link)?;
                let id = u64::from(send.id());
                lock(&self.streams).insert(id, service.to_string());
                write_frame(&mut send, &open).await.map_err(link)?;
                let answer = expect_frame(&mut recv, MAX_FRAME).await.map_err(link);
                (id, PipeReader::Quic(recv), PipeWriter::Quic(send), answer)
            }
            Link::Tls(tls) => {
                let (conn, answer) = tls.stream(self, &open).await?;
                let id = self.next_tls_id.fetch_add(1, Ordering::Relaxed);
                lock(&self.streams).insert(id, service.to_string());
                let (r, w) = tokio::io::split(conn);
                (
                    id,
                    PipeReader::Framed(Box::new(r)),
                    PipeWriter::Framed(Box::new(w)),
                    answer,
                )
            }
        };
        let refused = match answer {
            Ok(Frame::Opened { .. }) => return Ok(Stream { id, reader, writer }),
            Ok(Frame::Denied { reason }) => ClientError::Denied(reason),
            Ok(Frame::Failed { message }) => ClientError::Failed(message),
            Ok(_) => ClientError::Link("unexpected answer to Open".into()),
            Err(e) => e,
        };
        // Never opened: no cut or session end may be reported for it.
        self.forget(id);
        Err(refused)
    }

    /// Report a cut seen on the stream itself (TLS `Close`, QUIC reset).
    pub(crate) fn report_cut(&self, stream: u64, service: &str, reason: DenyReason) {
        report_cut(&self.reported, stream, service, reason);
    }

    /// The daemon ended the whole session (seen on a TLS stream).
    pub(crate) fn ended(&self, end: SessionEnd) {
        session_ended(&self.streams, &self.reported, &self.events, end);
    }

    /// Drop the bookkeeping of a finished stream.
    pub(crate) fn forget(&self, stream: u64) {
        lock(&self.streams).remove(&stream);
        lock(&self.reported).remove(&stream);
    }

    /// Give a closed QUIC connection a moment (bounded) to tell the daemon,
    /// so it forgets the session at once rather than after a timeout.
    pub async fn drain(&self) {
        match &self.link {
            Link::Quic { endpoint, .. } => {
                let _ = timeout(Duration::from_millis(200), endpoint.wait_idle()).await;
            }
            // Closing the holding connection is what ends a TLS session.
            Link::Tls(tls) => tls.release().await,
        }
    }

    /// Close the session politely (TLS: [`Session::drain`] does it).
    pub fn close(&self) {
        if let Link::Quic { conn, .. } = &self.link {
            conn.close(0u32.into(), b"bye");
        }
    }
}
