//! Local port forwarding (`-L [ADDR:]PORT=SERVICE`): every connection
//! accepted on the local listener becomes one tunnel stream.

use super::{ClientError, Session, Stream};
use crate::transport::{pipe_to_socket, socket_to_pipe, PumpEnd};
use edgegate_proto::frame::SessionEnd;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

/// Copy buffer per direction: large reads keep per-frame overhead low.
const BUF: usize = 64 * 1024;

/// One `-L` forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Local address to listen on.
    pub listen: SocketAddr,
    /// Service id to reach.
    pub service: String,
}

/// Serve a bound listener: each accepted connection becomes one stream.
pub async fn forward(session: Arc<Session>, listener: TcpListener, service: String) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                eprintln!("error: accepting on {service}'s listener: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (session, service) = (session.clone(), service.clone());
        tokio::spawn(async move {
            match session.open(&service, None).await {
                Ok(stream) => splice_tcp(&session, tcp, stream, &service).await,
                Err(e) => report_open_error(&service, &e),
            }
        });
    }
}

/// Print why a stream could not be opened.
pub(crate) fn report_open_error(service: &str, e: &ClientError) {
    match e {
        ClientError::Denied(reason) | ClientError::Refused { reason, .. } => {
            eprintln!("denied: {service}: {reason}")
        }
        ClientError::Failed(m) | ClientError::Link(m) => eprintln!("error: {service}: {m}"),
        ClientError::RelayRefused(r) => eprintln!("error: {service}: {r}"),
    }
}

/// Copy between a local connection and a tunnel stream until both
/// directions end, or the daemon cuts the stream.
pub(crate) async fn splice<C>(session: &Session, local: C, stream: Stream, service: &str)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let (local_r, local_w) = tokio::io::split(local);
    splice_halves(session, local_r, local_w, stream, service).await
}

/// [`splice`] for a TCP connection, split without a lock (the `-L` path,
/// where the bytes of a bulk transfer go).
pub(crate) async fn splice_tcp(
    session: &Session,
    mut tcp: TcpStream,
    stream: Stream,
    service: &str,
) {
    let (local_r, local_w) = tcp.split();
    splice_halves(session, local_r, local_w, stream, service).await
}

async fn splice_halves<R, W>(
    session: &Session,
    mut local_r: R,
    mut local_w: W,
    mut stream: Stream,
    service: &str,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let stream_id = stream.id;
    let (up_count, down_count) = (AtomicU64::new(0), AtomicU64::new(0));
    let up = socket_to_pipe(&mut local_r, &mut stream.writer, BUF, &up_count, |_| {});
    let down = pipe_to_socket(&mut stream.reader, &mut local_w, BUF, &down_count, None);
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    let mut cut = None;
    let mut ended = None;
    while !(up_done && down_done) {
        tokio::select! {
            end = &mut up, if !up_done => match end {
                Ok(_) => up_done = true,
                // The daemon reset the stream: the reason arrives on the read side.
                Err(_) => up_done = true,
            },
            end = &mut down, if !down_done => match end {
                Ok(PumpEnd::Cut(reason)) => { cut = Some(reason); break; }
                Ok(PumpEnd::SessionClosed(end)) => {
                    if let SessionEnd::Denied(reason) = end {
                        cut = Some(reason);
                    }
                    ended = Some(end);
                    break;
                }
                Ok(PumpEnd::Refused) => {
                    eprintln!("closed: {service}: read-only-violation");
                    break;
                }
                Ok(_) => down_done = true,
                Err(_) => break,
            },
        }
    }
    if let Some(reason) = cut {
        session.report_cut(stream_id, service, reason);
    }
    if let Some(end) = ended {
        session.ended(end);
    }
    // Dropping `stream` takes it out of the session's bookkeeping: a notice
    // still in flight for it finds nothing (the cut was reported above,
    // from the stream's own reset), nor does a later session end. Dropping
    // the local socket closes it; an unfinished tunnel stream is reset by
    // quinn when its handles drop.
}
