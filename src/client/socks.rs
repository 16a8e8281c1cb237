//! A minimal SOCKS5 server (RFC 1928: no authentication, CONNECT only) for
//! `vpn` services: a CONNECT to `host:port` becomes a stream on the first
//! allowed vpn service that accepts that destination.
//!
//! The parsing is `socks/parse.rs` (pure, fuzzed); this file owns the
//! socket side: reading what the parser asks for, the handshake timeout,
//! opening the tunnel stream and carrying bytes.

pub mod parse;
#[cfg(test)]
mod tests;

use super::forward::{report_open_error, splice};
use super::{ClientError, Session, Stream};
use edgegate_proto::bundle::ServiceKind;
use edgegate_proto::frame::Verdict;
use parse::{Destination, Parsed};
use std::future::Future;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::{timeout, Duration};

/// How long a client may take for its greeting and request together. It
/// bounds the handshake only: a stream, once open, lives as long as both
/// ends and the daemon's decision do.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Serve SOCKS5 on a bound listener until the session ends.
pub async fn socks5(session: Arc<Session>, listener: TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(connection(session.clone(), tcp));
    }
}

/// What the SOCKS server needs from a session: which services may carry a
/// destination, opening a stream on one, and carrying bytes over it. The
/// seam lets tests serve SOCKS over in-memory streams on paused time.
pub(crate) trait Upstream: Send + Sync + 'static {
    /// An open tunnel stream.
    type Stream: Send;

    /// The allowed `vpn` services, in the order to try them.
    fn vpn_services(&self) -> Vec<String>;

    /// Open a stream to `destination` on `service`.
    fn open(
        &self,
        service: &str,
        destination: String,
    ) -> impl Future<Output = Result<Self::Stream, ClientError>> + Send;

    /// Carry bytes between the local client and the stream until both end.
    fn splice<C>(
        &self,
        client: C,
        stream: Self::Stream,
        service: &str,
    ) -> impl Future<Output = ()> + Send
    where
        C: AsyncRead + AsyncWrite + Unpin + Send;
}

impl Upstream for Session {
    type Stream = Stream;

    fn vpn_services(&self) -> Vec<String> {
        self.welcome
            .services
            .iter()
            .filter(|s| matches!(s.decision, Verdict::Allow(_)))
            .filter(|s| s.kind == ServiceKind::Vpn)
            .map(|s| s.id.clone())
            .collect()
    }

    async fn open(&self, service: &str, destination: String) -> Result<Stream, ClientError> {
        Session::open(self, service, Some(destination)).await
    }

    async fn splice<C>(&self, client: C, stream: Stream, service: &str)
    where
        C: AsyncRead + AsyncWrite + Unpin + Send,
    {
        splice(self, client, stream, service).await
    }
}

/// One client connection: the handshake, bounded by [`HANDSHAKE_TIMEOUT`],
/// then the stream, not bounded by any timer here (DESIGN: a timeout wraps
/// a phase, never a lifetime).
pub(crate) async fn connection<U, C>(upstream: Arc<U>, mut client: C)
where
    U: Upstream,
    C: AsyncRead + AsyncWrite + Unpin + Send,
{
    let destination = match timeout(HANDSHAKE_TIMEOUT, handshake(&mut client)).await {
        Ok(Ok(Some(destination))) => destination,
        // Refused and answered, or the client left mid-handshake.
        Ok(Ok(None)) | Ok(Err(_)) => return,
        Err(_) => {
            let secs = HANDSHAKE_TIMEOUT.as_secs();
            eprintln!("error: socks: the client did not finish its handshake in {secs} s; closed");
            return;
        }
    };
    let _ = open_and_carry(&*upstream, client, destination).await;
}

/// Read messages of `parse` until one is whole; exactly the bytes asked
/// for are read, so nothing after the message is taken from the client.
async fn read_message<C, T>(
    client: &mut C,
    parse: fn(&[u8]) -> Parsed<T>,
) -> std::io::Result<Result<T, parse::Refusal>>
where
    C: AsyncRead + Unpin,
{
    let mut buf = Vec::new();
    loop {
        match parse(&buf) {
            Parsed::NeedMore(n) => {
                let start = buf.len();
                buf.resize(start + n, 0);
                client.read_exact(&mut buf[start..]).await?;
            }
            Parsed::Done { value, .. } => return Ok(Ok(value)),
            Parsed::Refused(refusal) => return Ok(Err(refusal)),
        }
    }
}

/// Read the greeting and the request; `Ok(None)` when refused (and
/// answered, when SOCKS has an answer for it).
async fn handshake<C>(client: &mut C) -> std::io::Result<Option<Destination>>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let refusal = match read_message(client, parse::parse_greeting).await? {
        Ok(()) => {
            client.write_all(&parse::GREETING_ACCEPTED).await?;
            match read_message(client, parse::parse_request).await? {
                Ok(destination) => return Ok(Some(destination)),
                Err(refusal) => refusal,
            }
        }
        Err(refusal) => refusal,
    };
    eprintln!("error: socks: {refusal}");
    if let Some(answer) = refusal.answer() {
        client.write_all(answer).await?;
    }
    Ok(None)
}

/// Open a stream on the first vpn service that takes `destination`, answer
/// the client, and carry bytes; on failure answer why.
async fn open_and_carry<U, C>(
    upstream: &U,
    mut client: C,
    destination: Destination,
) -> std::io::Result<()>
where
    U: Upstream,
    C: AsyncRead + AsyncWrite + Unpin + Send,
{
    let destination = destination.to_string();
    let mut last = None;
    for service in upstream.vpn_services() {
        match upstream.open(&service, destination.clone()).await {
            Ok(stream) => {
                client.write_all(&parse::reply(parse::REP_OK)).await?;
                upstream.splice(client, stream, &service).await;
                return Ok(());
            }
            Err(e) => last = Some(e),
        }
    }
    let code = match &last {
        Some(ClientError::Failed(_)) => parse::REP_REFUSED,
        Some(ClientError::Link(_) | ClientError::RelayRefused(_)) => parse::REP_FAILURE,
        Some(ClientError::Denied(_) | ClientError::Refused { .. }) | None => parse::REP_NOT_ALLOWED,
    };
    let what = format!("socks {destination}");
    match &last {
        Some(e) => report_open_error(&what, e),
        None => eprintln!("denied: {what}: no vpn service allowed"),
    }
    client.write_all(&parse::reply(code)).await
}
