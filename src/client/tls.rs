//! The TLS-over-TCP side of a session: one TCP connection, the TLS 1.3
//! handshake (pinned to the device key), and the session's streams
//! multiplexed over it (`transport::MuxConn`), exactly as QUIC carries them.
//! The handshake runs over any byte stream: a relayed stream carries the
//! very same session (`client/relayed.rs`).

use super::{link, ClientError};
use crate::tlsid;
use crate::transport::mux::{self, Growth, MuxConn, Side, MAX_STREAMS};
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

/// Dial the daemon: TCP, then the TLS handshake, bounded in time.
pub(crate) async fn dial(
    connector: &TlsConnector,
    gateway: SocketAddr,
    pin: &tlsid::PinWatch,
) -> Result<MuxConn, ClientError> {
    dial_with(connector, gateway, |e| super::handshake_error(pin, e)).await
}

/// [`dial`], a failed handshake worded by `failed` (which knows whose key
/// was pinned).
pub(crate) async fn dial_with(
    connector: &TlsConnector,
    addr: SocketAddr,
    failed: impl Fn(std::io::Error) -> ClientError,
) -> Result<MuxConn, ClientError> {
    let dial = async {
        let tcp = TcpStream::connect(addr).await.map_err(link)?;
        let _ = tcp.set_nodelay(true);
        mux::keep_alive(&tcp);
        // rustls reads the socket 4 KiB at a time; a read-ahead buffer turns
        // four or five system calls per 16 KiB record into one per 64 KiB.
        let tcp = BufReader::with_capacity(64 << 10, tcp);
        connector
            .connect(tlsid::server_name(), tcp)
            .await
            .map_err(failed)
    };
    let tls = timeout(super::CONNECT_TIMEOUT, dial)
        .await
        .map_err(|_| ClientError::Link("timed out connecting".into()))??;
    Ok(session_conn(tls, addr))
}

/// The TLS handshake with the daemon over `io` (a relayed stream), bounded
/// in time, then the session's streams multiplexed over it.
pub(crate) async fn over<IO>(
    connector: &TlsConnector,
    io: IO,
    remote: SocketAddr,
    pin: &tlsid::PinWatch,
) -> Result<MuxConn, ClientError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = BufReader::with_capacity(64 << 10, io);
    let tls = timeout(
        super::CONNECT_TIMEOUT,
        connector.connect(tlsid::server_name(), io),
    )
    .await
    .map_err(|_| ClientError::Link("timed out in the TLS handshake".into()))?
    .map_err(|e| super::handshake_error(pin, e))?;
    Ok(session_conn(tls, remote))
}

/// A session's TLS connection to the daemon at `remote`, multiplexed as an
/// engineer's end: streams are opened here, and a download's windows may
/// grow (`Growth::CLIENT`).
fn session_conn<T>(tls: T, remote: SocketAddr) -> MuxConn
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    MuxConn::new(tls, Side::Client, MAX_STREAMS, Growth::CLIENT, None, remote)
}
