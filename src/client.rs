//! The engineer's side of a tunnel: open a session (QUIC, or TLS over TCP
//! with `--tls`), read the daemon's per-service decisions, and open one
//! stream per forwarded connection. The session sees only the transport's
//! `Connection`: QUIC, or TLS over TCP with its streams multiplexed on the
//! one connection (`client/tls.rs` dials it). Local listeners (`-L`,
//! SOCKS5) live in `client/forward.rs` and `client/socks.rs`; the VPN
//! (`--vpn`) in `client/vpn.rs`; bundle push in `client/push.rs`.

mod forward;
mod push;
mod relayed;
pub(crate) mod socks;
mod tls;
pub mod vpn;

pub use forward::{forward, Forward};
pub use push::push_bundle;
pub use relayed::{Refusal, RelayHop, RelayPush};
pub use socks::socks5;

use crate::tlsid::{self, Identity};
use crate::transport::{
    self, expect_frame, read_frame, write_frame, Closed, Connection, PipeReader, PipeWriter,
    QuicConn,
};
use crate::PublicKey;
use edgegate_proto::frame::{Frame, SessionEnd, Welcome, MAX_FRAME};
use edgegate_proto::DenyReason;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
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
    /// Set when the gateway presents a key other than `device_key`.
    pin: tlsid::PinWatch,
    /// Relays to reach the gateway through, tried in order (empty: dial
    /// `gateway` directly).
    relays: Vec<RelayHop>,
}

/// Why a session or stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon refused (session or stream) with a policy reason.
    #[error("{0}")]
    Denied(DenyReason),
    /// The daemon refused the session, with a line saying more than the
    /// reason word (empty when it had nothing to add).
    #[error("{reason}")]
    Refused {
        /// The stable reason.
        reason: DenyReason,
        /// One line from the daemon, or empty.
        detail: String,
    },
    /// The stream was allowed but the daemon could not reach the target.
    #[error("{0}")]
    Failed(String),
    /// Network, TLS or protocol failure.
    #[error("{0}")]
    Link(String),
    /// A relay refused to carry the session.
    #[error("{0}")]
    RelayRefused(Refusal),
}

fn link(e: impl std::fmt::Display) -> ClientError {
    ClientError::Link(e.to_string())
}

/// A failed handshake, worded for the engineer: the one failure they can
/// fix themselves is a `--gateway-key` that is not this gateway's, which
/// the pinning verifier reports to `watch`.
fn handshake_error(watch: &tlsid::PinWatch, e: impl std::fmt::Display) -> ClientError {
    if watch.take() {
        return ClientError::Link(
            "the gateway's key is not the pinned --gateway-key (wrong key, or another gateway)"
                .into(),
        );
    }
    ClientError::Link(e.to_string())
}

/// An open session.
pub struct Session {
    conn: Arc<dyn Connection>,
    /// What the daemon answered to `Hello`.
    pub welcome: Welcome,
    /// Stream id → service, for `StreamClosed` notices.
    streams: Arc<Mutex<HashMap<u64, String>>>,
    /// Streams whose cut was already reported (a cut is seen on the stream
    /// and in a notice).
    reported: Arc<Mutex<HashSet<u64>>>,
    /// Session-ending events (also seen on a stream; the sender keeps the
    /// channel open while the session lives).
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
            pin: tlsid::PinWatch::default(),
            relays: Vec::new(),
        }
    }

    /// A target reached through `relays` (tried in order, at least one),
    /// pinned to `device_key` end to end.
    pub fn via_relays(
        relays: Vec<RelayHop>,
        device_key: PublicKey,
        identity: Identity,
        tls: bool,
    ) -> Target {
        let first = relays
            .first()
            .map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), |hop| hop.address);
        Target {
            relays,
            ..Target::new(first, device_key, identity, tls)
        }
    }

    /// Whether sessions go through relays.
    pub fn relayed(&self) -> bool {
        !self.relays.is_empty()
    }

    fn tls_connector(&self) -> Result<TlsConnector, ClientError> {
        let config = tlsid::client_config_watched(&self.identity, self.device_key, &self.pin)
            .map_err(link)?;
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
            transport::quic::client(self.gateway, &self.identity, self.device_key, &self.pin)
                .map_err(link)?;
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
            .map_err(|e| handshake_error(&self.pin, e))?;
        Ok((endpoint, conn))
    }

    /// A new connection to the gateway, over QUIC or TLS, or through a
    /// relay (which wants the session's ticket).
    async fn connect(&self, ticket: Option<&[u8]>) -> Result<Arc<dyn Connection>, ClientError> {
        if self.relayed() {
            let ticket = ticket.ok_or_else(|| {
                ClientError::Link("only sessions go through relays, not bundle pushes".into())
            })?;
            return Ok(Arc::new(self.through_relays(ticket).await?));
        }
        if self.tls {
            let conn = tls::dial(&self.tls_connector()?, self.gateway, &self.pin).await?;
            return Ok(Arc::new(conn));
        }
        let (endpoint, conn) = self.quic_connect().await?;
        Ok(Arc::new(QuicConn::new(conn, Some(endpoint))))
    }

    /// Send one first frame on a fresh connection and read one answer
    /// (bundle push).
    pub(crate) async fn exchange(&self, first: Frame, cap: usize) -> Result<Frame, ClientError> {
        let conn = self.connect(None).await?;
        let stream = conn.open_bi().await.map_err(link)?;
        let (mut send, mut recv) = (stream.send, stream.recv);
        // Read while writing: the daemon may answer before it has read
        // everything (a push while another is received is answered `busy`
        // at once and its body never read).
        let reading = expect_frame(&mut recv, cap);
        tokio::pin!(reading);
        let answer = tokio::select! {
            answer = &mut reading => answer,
            written = write_frame(&mut send, &first) => match written {
                Ok(()) => reading.await,
                // The answer may be on its way still.
                Err(e) => match timeout(Duration::from_secs(2), reading).await {
                    Ok(Ok(answer)) => Ok(answer),
                    _ => Err(transport::TransportError::Io(e)),
                },
            },
        };
        conn.close(0, "done");
        answer.map_err(link)
    }
}

fn welcome_of(frame: Frame) -> Result<Welcome, ClientError> {
    match frame {
        Frame::Welcome(w) => Ok(w),
        Frame::Refused { reason } => Err(ClientError::Refused {
            reason,
            detail: String::new(),
        }),
        Frame::RefusedWithDetail { reason, detail } => Err(ClientError::Refused { reason, detail }),
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
    let conn = target.connect(Some(&ticket)).await?;
    let mut control = conn.open_bi().await.map_err(link)?;
    write_frame(&mut control.send, &Frame::Hello { ticket })
        .await
        .map_err(link)?;
    let answer = expect_frame(&mut control.recv, MAX_FRAME).await;
    let welcome = match answer.map_err(link).and_then(welcome_of) {
        Ok(welcome) => welcome,
        Err(e) => {
            conn.close(0, "refused");
            return Err(e);
        }
    };
    let session = Session {
        conn: conn.clone(),
        welcome,
        streams: streams.clone(),
        reported: reported.clone(),
        events: events.clone(),
    };
    tokio::spawn(watch_control(conn, control, streams, reported, events));
    Ok((session, events_rx))
}

/// Read `StreamClosed` notices until the connection ends.
async fn watch_control(
    conn: Arc<dyn Connection>,
    mut control: transport::BiStream,
    streams: Arc<Mutex<HashMap<u64, String>>>,
    reported: Arc<Mutex<HashSet<u64>>>,
    events: mpsc::UnboundedSender<SessionEvent>,
) {
    let mut said = None;
    loop {
        match read_frame(&mut control.recv, MAX_FRAME).await {
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
                conn.close(reason.conn_code(), "session closed");
                break;
            }
            _ => break,
        }
    }
    let why = match (said, conn.closed().await) {
        (Some(end), _) => describe(end),
        (None, Closed::App { code, reason }) => match SessionEnd::from_conn_code(code) {
            Some(end) => describe(end),
            None => reason,
        },
        (None, Closed::Lost(why)) => why,
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
    _entry: Entry,
}

/// A stream's place in the session's bookkeeping, taken out when dropped:
/// only a stream someone still holds can be reported cut, however its task
/// ended (finished, failed, timed out or cancelled).
struct Entry {
    id: u64,
    streams: Arc<Mutex<HashMap<u64, String>>>,
    reported: Arc<Mutex<HashSet<u64>>>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        lock(&self.streams).remove(&self.id);
        lock(&self.reported).remove(&self.id);
    }
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
        let mut stream = self.conn.open_bi().await.map_err(link)?;
        let entry = self.register(stream.id, service);
        write_frame(&mut stream.send, &open).await.map_err(link)?;
        let answer = expect_frame(&mut stream.recv, MAX_FRAME)
            .await
            .map_err(link);
        let (reader, writer) = (stream.recv, stream.send);
        // Refused or failed: the entry goes with this frame, so no cut or
        // session end is ever reported for a stream that never opened.
        match answer {
            Ok(Frame::Opened { .. }) => Ok(Stream {
                id: entry.id,
                reader,
                writer,
                _entry: entry,
            }),
            Ok(Frame::Denied { reason }) => Err(ClientError::Denied(reason)),
            Ok(Frame::Failed { message }) => Err(ClientError::Failed(message)),
            Ok(_) => Err(ClientError::Link("unexpected answer to Open".into())),
            Err(e) => Err(e),
        }
    }

    /// Enter stream `id` of `service` in the bookkeeping, until the entry
    /// is dropped.
    fn register(&self, id: u64, service: &str) -> Entry {
        lock(&self.streams).insert(id, service.to_string());
        Entry {
            id,
            streams: self.streams.clone(),
            reported: self.reported.clone(),
        }
    }

    /// Report a cut seen on the stream itself (TLS `Close`, QUIC reset).
    pub(crate) fn report_cut(&self, stream: u64, service: &str, reason: DenyReason) {
        report_cut(&self.reported, stream, service, reason);
    }

    /// The daemon ended the whole session (seen on a TLS stream).
    pub(crate) fn ended(&self, end: SessionEnd) {
        session_ended(&self.streams, &self.reported, &self.events, end);
    }

    /// Close the session (if not yet) and give the close a moment
    /// (bounded) to reach the daemon, so it forgets the session at once
    /// rather than after a timeout.
    pub async fn drain(&self) {
        self.conn.close(0, "bye");
        let _ = timeout(Duration::from_millis(200), self.conn.drain()).await;
    }

    /// Close the session politely.
    pub fn close(&self) {
        self.conn.close(0, "bye");
    }

    /// The session's connection, for a caller that speaks on it directly
    /// (the router's VPN tests bring a client of their own).
    #[doc(hidden)]
    pub fn connection(&self) -> Arc<dyn Connection> {
        self.conn.clone()
    }
}
