//! The TLS-over-TCP side of a session: one connection per stream, each
//! starting with `Hello` (the ticket) and then one `Open`.
//!
//! The connection that carried the session's first `Hello` is kept as a
//! spare and carries the first stream, saving a TCP and TLS handshake when
//! that stream follows soon. The daemon waits `first_frame_timeout` for the
//! `Open` (10 s by default), so a spare older than [`SPARE_MAX_AGE`] is
//! dropped, and one the daemon closed anyway is replaced by a fresh
//! connection: nothing has been opened on it, so trying again is safe.

use super::{link, welcome_of, ClientError, Session};
use crate::tlsid;
use crate::transport::{expect_frame, write_frame};
use edgegate_proto::frame::{Frame, SessionEnd, Welcome, MAX_FRAME};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::BufReader;
use tokio::net::TcpStream;
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
    gateway: SocketAddr,
    ticket: Vec<u8>,
    /// The session's first connection, until a stream uses it.
    spare: Mutex<Option<(Instant, Conn)>>,
}

/// Dial the daemon: TCP, then the TLS handshake, bounded in time.
pub(crate) async fn dial(
    connector: &TlsConnector,
    gateway: SocketAddr,
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
            .map_err(super::handshake_error)
    };
    timeout(super::CONNECT_TIMEOUT, dial)
        .await
        .map_err(|_| ClientError::Link("timed out connecting".into()))?
}

impl TlsLink {
    /// Start a session: `Hello` on a new connection, kept as the spare.
    pub(crate) async fn open(
        connector: TlsConnector,
        gateway: SocketAddr,
        ticket: Vec<u8>,
    ) -> Result<(TlsLink, Welcome), ClientError> {
        let mut conn = dial(&connector, gateway).await?;
        let hello = Frame::Hello {
            ticket: ticket.clone(),
        };
        write_frame(&mut conn, &hello).await.map_err(link)?;
        let welcome = welcome_of(expect_frame(&mut conn, MAX_FRAME).await.map_err(link)?)?;
        let link = TlsLink {
            connector,
            gateway,
            ticket,
            spare: Mutex::new(Some((Instant::now(), conn))),
        };
        Ok((link, welcome))
    }

    /// A connection with `open` sent on it, and the daemon's answer.
    pub(crate) async fn stream(
        &self,
        session: &Session,
        open: &Frame,
    ) -> Result<(Conn, Result<Frame, ClientError>), ClientError> {
        if let Some(mut conn) = self.take_spare() {
            if write_frame(&mut conn, open).await.is_ok() {
                match expect_frame(&mut conn, MAX_FRAME).await {
                    Ok(Frame::SessionClosed { reason }) => {
                        session.ended(reason);
                        return Err(ClientError::Link("the session was closed".into()));
                    }
                    Ok(answer) => return Ok((conn, Ok(answer))),
                    // Closed by the daemon while it waited: dial afresh.
                    Err(_) => {}
                }
            }
        }
        let mut conn = dial(&self.connector, self.gateway).await?;
        let hello = Frame::Hello {
            ticket: self.ticket.clone(),
        };
        write_frame(&mut conn, &hello).await.map_err(link)?;
        write_frame(&mut conn, open).await.map_err(link)?;
        let welcome = welcome_of(expect_frame(&mut conn, MAX_FRAME).await.map_err(link)?);
        if let Err(ClientError::Denied(reason)) = &welcome {
            // Over TLS a session no longer admitted shows here.
            session.ended(SessionEnd::Denied(*reason));
        }
        welcome?;
        let answer = expect_frame(&mut conn, MAX_FRAME).await.map_err(link);
        Ok((conn, answer))
    }

    fn take_spare(&self) -> Option<Conn> {
        let spare = super::lock(&self.spare).take()?;
        (spare.0.elapsed() < SPARE_MAX_AGE).then_some(spare.1)
    }
}
