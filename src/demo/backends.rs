//! The demo's machine network on loopback: a small HTTP page, a WebSocket
//! echo (hand-written RFC 6455, enough for a browser or `websocat`), and a
//! TCP echo standing in for a VNC server. The loopback tests use them too.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const PAGE: &str = "<!doctype html><title>PLC</title><h1>Filling line PLC</h1>\
<p>Speed: 1200 bottles/h. Temperature: 71&deg;C.</p>\n";

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Bind `addr` and serve with `handler` for each connection.
async fn serve<F, Fut>(addr: SocketAddr, handler: F) -> std::io::Result<SocketAddr>
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(handler(tcp));
        }
    });
    Ok(addr)
}

/// Read an HTTP request head; returns the request line and the headers.
async fn read_head(
    r: &mut BufReader<TcpStream>,
) -> std::io::Result<Option<(String, Vec<(String, String)>)>> {
    let mut line = String::new();
    if r.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).await? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if headers.len() < 100 {
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
    }
    Ok(Some((line.trim_end().to_string(), headers)))
}

/// The PLC page on `addr`: answers every request, keep-alive.
pub async fn http(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    serve(addr, |tcp| async move {
        let mut r = BufReader::new(tcp);
        while let Some((line, headers)) = read_head(&mut r).await? {
            let close = headers
                .iter()
                .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"));
            let method = line.split(' ').next().unwrap_or("");
            let (status, body) = match method {
                "GET" | "HEAD" => ("200 OK", PAGE.to_string()),
                _ => (
                    "200 OK",
                    format!("<p>{method} accepted: setpoint changed</p>\n"),
                ),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            r.get_mut().write_all(head.as_bytes()).await?;
            if method != "HEAD" {
                r.get_mut().write_all(body.as_bytes()).await?;
            }
            if close {
                break;
            }
        }
        Ok(())
    })
    .await
}

/// A TCP echo on `addr` (the VNC stand-in).
pub async fn echo(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    serve(addr, |mut tcp| async move {
        let (mut r, mut w) = tcp.split();
        tokio::io::copy(&mut r, &mut w).await?;
        Ok(())
    })
    .await
}

/// A WebSocket echo on `addr`: text and binary frames come back, ping
/// gets pong.
pub async fn websocket(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    serve(addr, |tcp| async move {
        let mut r = BufReader::new(tcp);
        let Some((_, headers)) = read_head(&mut r).await? else {
            return Ok(());
        };
        let key = headers
            .iter()
            .find(|(k, _)| k == "sec-websocket-key")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let digest = ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            format!("{key}{WS_GUID}").as_bytes(),
        );
        let accept = STANDARD.encode(digest.as_ref());
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
        );
        r.get_mut().write_all(head.as_bytes()).await?;
        ws_echo(&mut r).await
    })
    .await
}

async fn ws_echo(r: &mut BufReader<TcpStream>) -> std::io::Result<()> {
    loop {
        let mut h = [0u8; 2];
        r.read_exact(&mut h).await?;
        let opcode = h[0] & 0x0f;
        let masked = h[1] & 0x80 != 0;
        let len = match h[1] & 0x7f {
            126 => u64::from(r.read_u16().await?),
            127 => r.read_u64().await?,
            n => u64::from(n),
        };
        if len > 1 << 20 {
            return Ok(());
        }
        let mut mask = [0u8; 4];
        if masked {
            r.read_exact(&mut mask).await?;
        }
        let mut payload = vec![0u8; len as usize];
        r.read_exact(&mut payload).await?;
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        let reply_op = match opcode {
            0x9 => 0xa,
            0xa => continue,
            op => op,
        };
        let mut frame = vec![0x80 | reply_op];
        match payload.len() {
            n if n < 126 => frame.push(n as u8),
            n if n < 65536 => {
                frame.push(126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&payload);
        r.get_mut().write_all(&frame).await?;
        if opcode == 0x8 {
            return Ok(());
        }
    }
}
