//! The TLS-over-TCP side of a session: one connection per stream, each
//! starting with `Hello` (the ticket) and then one `Open`, plus one that
//! holds the session.
//!
//! The session opens on two connections dialled at once: one the client
//! sends `Hold` on, which keeps the session alive on the daemon while no
//! stream is open and brings its `SessionClosed`; and a spare, sent its
//! `Hello` once the session is admitted, that carries the first stream,
//! saving a TCP and TLS handshake when that stream follows soon. The daemon waits `first_frame_timeout` for the spare's `Open` (10 s
//! by default), so a spare older than [`SPARE_MAX_AGE`] is dropped, and one
//! the daemon closed anyway is replaced by a fresh connection: nothing has
//! been opened on it, so trying again is safe.

use super::{link, welcome_of, ClientError, Session};
use crate::tlsid;
use crate::transport::{expect_frame, read_frame, write_frame};
use edgegate_proto::frame::{Frame, SessionEnd, Welcome, MAX_FRAME};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// One TLS connection to the daemon.
pub(crate) type Conn = TlsStream<BufReader<TcpStream>>;

/// Oldest spare connection used for a stream.
const SPARE_MAX_AGE: Duration = Duration::from_secs(5);

/// How a TLS session reaches the daemon again for each stream.
pub(crate) struct TlsLink {
    connector: TlsConnector,
    /// Told by the connector's verifier when the key is not the pinned one.
    pin: tlsid::PinWatch,
    gateway: SocketAddr,
    ticket: Vec<u8>,
    /// A connection with its `Hello` answered, until a stream uses it.
    spare: Mutex<Option<(Instant, Conn)>>,
    /// The holding connection's watcher, and how to tell it to let go.
    holder: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
}

/// Dial the daemon: TCP, then the TLS handshake, bounded in time.
pub(crate) async fn dial(
    connector: &TlsConnector,
    gateway: SocketAddr,
    pin: &tlsid::PinWatch,
) -> Result<Conn, ClientError> {
    let dial = async {
        let tcp = TcpStream::connect(gateway).await.map_err(link)?;
        let _ = tcp.set_nodelay(true);
        // rustls reads the socket 4 KiB at a time; a read-ahead buffer turns
        // four or five system calls per 16 KiB record into one per 64 KiB.
        let tcp = BufReader::with_capacity(64 << 10, tcp);
        connector
            .connect(tlsid::server_name(), tcp)
            .await
            .map_err(|e| super::handshake_error(pin, e))
    };
    timeout(super::CONNECT_TIMEOUT, dial)
        .await
        .map_err(|_| ClientError::Link("timed out connecting".into()))?
}

impl TlsLink {
    /// Start a session: `Hello` on a new connection that then holds the
    /// session (`Hold`), while a second connection is dialled alongside. The
    /// spare's own `Hello` is sent only once the session is admitted (so a
    /// refusal is one refusal) and its `Welcome` is read with the first
    /// stream's answer. The holding connection is handed back for
    /// [`TlsLink::watch`].
    pub(crate) async fn open(
        connector: TlsConnector,
        pin: tlsid::PinWatch,
        gateway: SocketAddr,
        ticket: Vec<u8>,
    ) -> Result<(TlsLink, Welcome, Conn), ClientError> {
        let welcomed = async {
            let mut conn = dial(&connector, gateway, &pin).await?;
            write_frame(&mut conn, &hello(&ticket))
                .await
                .map_err(link)?;
            let welcome = welcome_of(expect_frame(&mut conn, MAX_FRAME).await.map_err(link)?)?;
            Ok::<_, ClientError>((conn, welcome))
        };
        let (held, spare) = tokio::join!(welcomed, dial(&connector, gateway, &pin));
        let (mut held, welcome) = held?;
        write_frame(&mut held, &Frame::Hold).await.map_err(link)?;
        // A spare that failed is no loss: the first stream dials afresh.
        let spare = match spare {
            Ok(mut conn) => write_frame(&mut conn, &hello(&ticket))
                .await
                .ok()
                .map(|()| (Instant::now(), conn)),
            Err(_) => None,
        };
        let link = TlsLink {
            pin,
            connector,
            gateway,
            ticket,
            spare: Mutex::new(spare),
            holder: Mutex::new(None),
        };
        Ok((link, welcome, held))
    }

    /// Watch the holding connection: the daemon's `SessionClosed`, or the
    /// connection lost, ends the session (`ended`). [`TlsLink::release`]
    /// closes it instead, which ends the session on the daemon.
    pub(crate) fn watch(&self, mut held: Conn, ended: impl FnOnce(Ending) + Send + 'static) {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            tokio::select! {
                frame = read_frame(&mut held, MAX_FRAME) => match frame {
                    Ok(Some(Frame::SessionClosed { reason })) => ended(Ending::Closed(reason)),
                    Ok(_) => ended(Ending::Lost("the gateway closed the session's connection".into())),
                    Err(e) => ended(Ending::Lost(format!("connection to the gateway lost: {e}"))),
                },
                _ = &mut stopped => {
                    // close_notify, then FIN: the daemon ends the session now.
                    let _ = timeout(Duration::from_millis(200), held.shutdown()).await;
                }
            }
        });
        *super::lock(&self.holder) = Some((stop, task));
    }

    /// Let go of the session (close the holding connection), waiting a
    /// bounded moment for the daemon to be told.
    pub(crate) async fn release(&self) {
        let holder = super::lock(&self.holder).take();
        if let Some((stop, task)) = holder {
            let _ = stop.send(());
            let _ = timeout(Duration::from_millis(300), task).await;
        }
    }

    /// A connection with `open` sent on it, and the daemon's answer.
    pub(crate) async fn stream(
        &self,
        session: &Session,
        open: &Frame,
    ) -> Result<(Conn, Result<Frame, ClientError>), ClientError> {
        if let Some(mut conn) = self.take_spare() {
            if write_frame(&mut conn, open).await.is_ok() {
                match answers(&mut conn, session).await {
                    Ok(answer) => return Ok((conn, Ok(answer))),
                    Err(Refusal::Session(e)) => return Err(e),
                    // Closed by the daemon while it waited: dial afresh.
                    Err(Refusal::Link(_)) => {}
                }
            }
        }
        let mut conn = dial(&self.connector, self.gateway, &self.pin).await?;
        write_frame(&mut conn, &hello(&self.ticket))
            .await
            .map_err(link)?;
        write_frame(&mut conn, open).await.map_err(link)?;
        match answers(&mut conn, session).await {
            Ok(answer) => Ok((conn, Ok(answer))),
            Err(Refusal::Session(e)) => Err(e),
            Err(Refusal::Link(e)) => Ok((conn, Err(e))),
        }
    }

    fn take_spare(&self) -> Option<Conn> {
        let spare = super::lock(&self.spare).take()?;
        (spare.0.elapsed() < SPARE_MAX_AGE).then_some(spare.1)
    }
}

/// The first frame of every connection of the session.
fn hello(ticket: &[u8]) -> Frame {
    Frame::Hello {
        ticket: ticket.to_vec(),
    }
}

/// Why `answers` got no answer to `Open`.
enum Refusal {
    /// The session is over (`Refused`, or `SessionClosed` while the
    /// connection waited): reported to the session; never retried.
    Session(ClientError),
    /// The connection failed: a spare may be replaced by a fresh one.
    Link(ClientError),
}

/// On a connection with `Hello` and `Open` sent: the `Welcome`, then the
/// answer to `Open`.
async fn answers(conn: &mut Conn, session: &Session) -> Result<Frame, Refusal> {
    let first = expect_frame(conn, MAX_FRAME)
        .await
        .map_err(|e| Refusal::Link(link(e)))?;
    match first {
        Frame::Welcome(_) => {}
        Frame::Refused { reason } | Frame::RefusedWithDetail { reason, .. } => {
            // Over TLS a session no longer admitted shows here.
            session.ended(SessionEnd::Denied(reason));
            return Err(Refusal::Session(ClientError::Denied(reason)));
        }
        Frame::SessionClosed { reason } => {
            session.ended(reason);
            return Err(Refusal::Session(ClientError::Link(
                "the session was closed".into(),
            )));
        }
        _ => {
            return Err(Refusal::Link(ClientError::Link(
                "unexpected answer to Hello".into(),
            )))
        }
    }
    expect_frame(conn, MAX_FRAME)
        .await
        .map_err(|e| Refusal::Link(link(e)))
}

/// How a holding connection ended.
pub(crate) enum Ending {
    /// The daemon said why.
    Closed(SessionEnd),
    /// The connection ended without a word.
    Lost(String),
}
