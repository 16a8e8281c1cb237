//! A minimal SOCKS5 server (RFC 1928: no authentication, CONNECT only) for
//! `vpn` services: a CONNECT to `host:port` becomes a stream on the first
//! allowed vpn service that accepts that destination.

use super::forward::{report_open_error, splice};
use super::{ClientError, Session};
use edgegate_proto::frame::Verdict;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Duration};

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0;
const NO_ACCEPTABLE: u8 = 0xff;
const CMD_CONNECT: u8 = 1;
const REP_OK: u8 = 0;
const REP_FAILURE: u8 = 1;
const REP_NOT_ALLOWED: u8 = 2;
const REP_REFUSED: u8 = 5;
const REP_CMD_UNSUPPORTED: u8 = 7;
const REP_ATYP_UNSUPPORTED: u8 = 8;

/// Serve SOCKS5 on a bound listener until the session ends.
pub async fn socks5(session: Arc<Session>, listener: TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let session = session.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let _ = serve(session, tcp).await;
        });
    }
}

async fn reply(tcp: &mut TcpStream, code: u8) -> std::io::Result<()> {
    // Bound address 0.0.0.0:0: clients ignore it for CONNECT.
    tcp.write_all(&[VERSION, code, 0, 1, 0, 0, 0, 0, 0, 0])
        .await
}

/// Read the greeting and the request; `Ok(None)` when already answered.
async fn handshake(tcp: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).await?;
    if head[0] != VERSION {
        return Ok(None);
    }
    let mut methods = vec![0u8; usize::from(head[1])];
    tcp.read_exact(&mut methods).await?;
    if !methods.contains(&NO_AUTH) {
        tcp.write_all(&[VERSION, NO_ACCEPTABLE]).await?;
        return Ok(None);
    }
    tcp.write_all(&[VERSION, NO_AUTH]).await?;
    let mut req = [0u8; 4];
    tcp.read_exact(&mut req).await?;
    if req[0] != VERSION {
        return Ok(None);
    }
    if req[1] != CMD_CONNECT {
        reply(tcp, REP_CMD_UNSUPPORTED).await?;
        return Ok(None);
    }
    let host = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            tcp.read_exact(&mut a).await?;
            Ipv4Addr::from(a).to_string()
        }
        4 => {
            let mut a = [0u8; 16];
            tcp.read_exact(&mut a).await?;
            format!("[{}]", Ipv6Addr::from(a))
        }
        3 => {
            let len = tcp.read_u8().await?;
            let mut name = vec![0u8; usize::from(len)];
            tcp.read_exact(&mut name).await?;
            String::from_utf8_lossy(&name).into_owned()
        }
        _ => {
            reply(tcp, REP_ATYP_UNSUPPORTED).await?;
            return Ok(None);
        }
    };
    let port = tcp.read_u16().await?;
    Ok(Some(format!("{host}:{port}")))
}

/// How long a SOCKS client may take over its greeting and request. It
/// wraps that phase only: the stream that follows lives as long as it is used.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

async fn serve(session: Arc<Session>, mut tcp: TcpStream) -> std::io::Result<()> {
    let Ok(asked) = timeout(HANDSHAKE_TIMEOUT, handshake(&mut tcp)).await else {
        return Ok(());
    };
    let Some(destination) = asked? else {
        return Ok(());
    };
    let vpns: Vec<String> = session
        .welcome
        .services
        .iter()
        .filter(|s| matches!(s.decision, Verdict::Allow(_)))
        .filter(|s| s.kind == edgegate_proto::bundle::ServiceKind::Vpn)
        .map(|s| s.id.clone())
        .collect();
    let mut last = None;
    for service in &vpns {
        match session.open(service, Some(destination.clone())).await {
            Ok(stream) => {
                reply(&mut tcp, REP_OK).await?;
                splice(&session, tcp, stream, service).await;
                return Ok(());
            }
            Err(e) => last = Some(e),
        }
    }
    let code = match &last {
        Some(ClientError::Failed(_)) => REP_REFUSED,
        Some(ClientError::Link(_)) => REP_FAILURE,
        Some(ClientError::Denied(_) | ClientError::Refused { .. }) | None => REP_NOT_ALLOWED,
    };
    let what = format!("socks {destination}");
    match &last {
        Some(e) => report_open_error(&what, e),
        None => eprintln!("denied: {what}: no vpn service allowed"),
    }
    reply(&mut tcp, code).await
}
