//! The engineer's side of the VPN (`connect --vpn`; DESIGN §9, `TUNNEL.md`
//! "The VPN"): open the session's VPN stream, and carry IPv4 packets between
//! a local packet device and the session, as QUIC datagrams or as `Packet`
//! frames on the stream. The daemon's `FlowClosed` notices become one line
//! each on stderr (new flows refused: rate-limited).
//!
//! This file decides nothing: every flow is decided on the router, and the
//! client passes what the device gives it (a spoofed source included: the
//! router drops it). It only keeps to the protocol: IPv4 only, no packet
//! larger than the MTU the daemon set. The TUN interface and its routes are
//! Linux's (`vpn/tun.rs`, `vpn/route.rs`).

#[cfg(target_os = "linux")]
mod route;
#[cfg(target_os = "linux")]
mod tun;
#[cfg(target_os = "linux")]
pub use tun::{check_privilege, Interface};

use super::{link, ClientError, Entry, Session, CONNECT_TIMEOUT};
use crate::transport::{expect_frame, read_frame, Connection, PipeReader, PipeWriter};
use edgegate_proto::frame::{FlowClosed, Frame, VpnConfig, MAX_FRAME};
use edgegate_proto::DenyReason;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::{timeout, Instant};

/// The smallest MTU accepted from the daemon (IPv4's minimum datagram every
/// host must take whole).
const MIN_MTU: u16 = 576;

/// The largest: a `Packet` frame of this size still fits under
/// [`MAX_FRAME`] with room for its header.
const MAX_MTU: u16 = (MAX_FRAME - 64) as u16;

/// Notices of refused flows printed at once before rate limiting starts.
const DENIED_BURST: u32 = 10;

/// Notices of cut flows printed at once (a revocation cuts every live flow).
const CUT_BURST: u32 = 50;

/// After a burst, one more notice per this interval.
const NOTICE_INTERVAL: Duration = Duration::from_secs(1);

/// A packet device: what the pump reads packets from and writes them to
/// (the TUN interface). Both directions move batches: a device with
/// segmentation offload hands over one large TCP segment as several
/// packets, and coalesces the packets of a batch into fewer writes.
pub trait PacketDevice: Sync {
    /// Wait for packets and put them in `packets` (emptied first): one or
    /// more.
    fn recv(&self, packets: &mut Vec<Vec<u8>>) -> impl Future<Output = io::Result<()>> + Send;
    /// Write the packets in `packets`, in order (it is left empty).
    fn send(&self, packets: &mut Vec<Vec<u8>>) -> impl Future<Output = io::Result<()>> + Send;
}

/// Most packets gathered for one write to the device.
const SEND_BATCH: usize = 64;

/// A future's output if it is ready at once (a datagram already received).
fn ready_now<F: Future>(f: F) -> Option<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(f).poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

/// An open VPN stream, its settings as the daemon gave them.
pub struct Vpn {
    /// What the daemon set: address, MTU, routes, datagrams or frames.
    pub config: VpnConfig,
    reader: PipeReader,
    writer: PipeWriter,
    conn: Arc<dyn Connection>,
    _entry: Entry,
}

/// Packets the pump did not carry, by cause.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Larger than the MTU, or than the path's datagram size.
    pub too_large: u64,
    /// Not IPv4 (IPv6 neighbour discovery, for one).
    pub not_ipv4: u64,
}

/// Why the VPN ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VpnEnd {
    /// The daemon cut the VPN stream for this reason.
    Cut(DenyReason),
    /// The daemon ended the whole session (reported through the session's
    /// events, as for any stream).
    SessionEnded,
    /// The stream or connection was lost, or the device failed.
    Lost(String),
}

impl Session {
    /// Open the VPN stream: `VpnOpen`, then `VpnReady` or `Denied`. Packets
    /// ride datagrams when this is a QUIC session.
    pub async fn open_vpn(&self) -> Result<Vpn, ClientError> {
        let datagrams = self.conn.max_datagram_size().is_some();
        let mut stream = self.conn.open_bi().await.map_err(link)?;
        let entry = self.register(stream.id, "vpn");
        crate::transport::write_frame(&mut stream.send, &Frame::VpnOpen { datagrams })
            .await
            .map_err(link)?;
        let answer = timeout(CONNECT_TIMEOUT, expect_frame(&mut stream.recv, MAX_FRAME)).await;
        let config =
            match answer {
                Ok(Ok(Frame::VpnReady(config))) => config,
                Ok(Ok(Frame::Denied { reason })) => return Err(ClientError::Denied(reason)),
                Ok(Ok(_)) => return Err(ClientError::Link("unexpected answer to VpnOpen".into())),
                Ok(Err(_)) => return Err(ClientError::Link(
                    "the gateway closed the VPN stream without an answer (does it offer the VPN?)"
                        .into(),
                )),
                Err(_) => return Err(ClientError::Link("timed out waiting for the VPN".into())),
            };
        check_config(&config, datagrams).map_err(ClientError::Link)?;
        Ok(Vpn {
            config,
            reader: stream.recv,
            writer: stream.send,
            conn: self.conn.clone(),
            _entry: entry,
        })
    }
}

/// What the client needs of a `VpnReady` to keep to the protocol.
fn check_config(config: &VpnConfig, datagrams: bool) -> Result<(), String> {
    if !(MIN_MTU..=MAX_MTU).contains(&config.mtu) {
        return Err(format!(
            "the gateway set a VPN MTU of {}, outside {MIN_MTU}..={MAX_MTU}",
            config.mtu
        ));
    }
    if config.datagrams && !datagrams {
        return Err("the gateway chose datagrams on a session without them".into());
    }
    Ok(())
}

impl Vpn {
    /// Carry packets both ways until the stream, the connection or the
    /// device ends; `dropped` counts what was not carried.
    pub async fn pump<D: PacketDevice>(
        self,
        session: &Session,
        device: &D,
        dropped: &mut Dropped,
    ) -> VpnEnd {
        let Vpn {
            config,
            reader,
            mut writer,
            conn,
            _entry,
        } = self;
        let mut notices = Notices::new(Instant::now());
        let up = device_to_session(device, &conn, &mut writer, &config, dropped);
        let down = stream_to_device(reader, device, session, &mut notices);
        let datagrams = async {
            if !config.datagrams {
                return std::future::pending().await;
            }
            let mut batch = Vec::with_capacity(SEND_BATCH);
            loop {
                match conn.read_datagram().await {
                    Ok(p) => batch.push(p.to_vec()),
                    Err(e) => return VpnEnd::Lost(e.to_string()),
                };
                // With those that arrived meanwhile: one write for many.
                while batch.len() < SEND_BATCH {
                    match ready_now(conn.read_datagram()) {
                        Some(Ok(p)) => batch.push(p.to_vec()),
                        _ => break,
                    }
                }
                if let Err(e) = device.send(&mut batch).await {
                    return VpnEnd::Lost(format!("writing to the interface: {e}"));
                }
            }
        };
        let end = tokio::select! {
            end = up => end,
            end = down => end,
            end = datagrams => end,
        };
        if config.datagrams {
            // The datagrams that arrived with the stream's end (a cut
            // flow's RST, most often) still reach the interface: the
            // stream ending first must not swallow them.
            let mut batch = Vec::new();
            while let Some(Ok(p)) = ready_now(conn.read_datagram()) {
                batch.push(p.to_vec());
            }
            let _ = device.send(&mut batch).await;
        }
        notices.flush();
        end
    }
}

/// Packets from the device to the session, until one side fails.
async fn device_to_session<D: PacketDevice>(
    device: &D,
    conn: &Arc<dyn Connection>,
    writer: &mut PipeWriter,
    config: &VpnConfig,
    dropped: &mut Dropped,
) -> VpnEnd {
    let mtu = usize::from(config.mtu);
    let mut packets = Vec::new();
    let mut frames = Vec::new();
    loop {
        if let Err(e) = device.recv(&mut packets).await {
            return VpnEnd::Lost(format!("reading the interface: {e}"));
        }
        frames.clear();
        for packet in packets.drain(..) {
            let n = packet.len();
            if packet.first().map(|b| b >> 4) != Some(4) {
                dropped.not_ipv4 += 1;
                continue;
            }
            if n > mtu {
                dropped.too_large += 1;
                continue;
            }
            if !config.datagrams {
                frames.extend_from_slice(&edgegate_proto::frame::encode(&Frame::Packet(packet)));
                continue;
            }
            // Waits while QUIC's send buffer is full, so the interface is
            // read no faster than the path takes packets (the kernel's
            // queue in front of it then makes TCP slow down), and nothing
            // older is pushed out.
            if let Err(e) = conn.send_datagram_wait(bytes::Bytes::from(packet)).await {
                match conn.max_datagram_size() {
                    Some(max) if n > max => dropped.too_large += 1,
                    _ => return VpnEnd::Lost(e.to_string()),
                }
            }
        }
        if frames.is_empty() {
            continue;
        }
        // The batch's frames in one write and flush.
        let written = async {
            writer.write_all(&frames).await?;
            writer.flush().await
        };
        if let Err(e) = written.await {
            return VpnEnd::Lost(e.to_string());
        }
    }
}

/// Frames from the VPN stream: packets to the device, notices to stderr,
/// until the stream ends.
async fn stream_to_device<D: PacketDevice>(
    mut reader: PipeReader,
    device: &D,
    session: &Session,
    notices: &mut Notices,
) -> VpnEnd {
    loop {
        let frame = match read_frame(&mut reader, MAX_FRAME).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return VpnEnd::Lost("the gateway closed the VPN stream".into()),
            Err(e) => return stream_error(e),
        };
        match frame {
            Frame::Packet(packet) => {
                if let Err(e) = device.send(&mut vec![packet]).await {
                    return VpnEnd::Lost(format!("writing to the interface: {e}"));
                }
            }
            Frame::FlowClosed(flow) => {
                for line in notices.flow_closed(Instant::now(), &flow) {
                    eprintln!("{line}");
                }
            }
            Frame::Close {
                reason: Some(reason),
            } => return VpnEnd::Cut(reason),
            Frame::Close { reason: None } => {
                return VpnEnd::Lost("the gateway closed the VPN stream".into())
            }
            Frame::SessionClosed { reason } => {
                session.ended(reason);
                return VpnEnd::SessionEnded;
            }
            _ => return VpnEnd::Lost("unexpected frame on the VPN stream".into()),
        }
    }
}

/// A failed read of the VPN stream: a QUIC reset carries the cut's reason.
fn stream_error(e: crate::transport::TransportError) -> VpnEnd {
    if let crate::transport::TransportError::Io(io) = &e {
        let reset = io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<quinn::ReadError>());
        if let Some(quinn::ReadError::Reset(code)) = reset {
            if let Some(reason) = DenyReason::from_stream_code(code.into_inner()) {
                return VpnEnd::Cut(reason);
            }
        }
    }
    VpnEnd::Lost(e.to_string())
}

/// The lines `FlowClosed` notices print, rate-limited: a port scan is
/// refused flow by flow, and must not become a line each.
struct Notices {
    denied: Bucket,
    cut: Bucket,
}

impl Notices {
    fn new(now: Instant) -> Notices {
        Notices {
            denied: Bucket::new(DENIED_BURST, now),
            cut: Bucket::new(CUT_BURST, now),
        }
    }

    /// The lines for one notice: none while its kind is over its rate,
    /// else the notice's line, after a count of those left out before it.
    fn flow_closed(&mut self, now: Instant, flow: &FlowClosed) -> Vec<String> {
        let service = if flow.service.is_empty() {
            "vpn"
        } else {
            &flow.service
        };
        let (word, bucket) = if flow.cut {
            ("closed", &mut self.cut)
        } else {
            ("denied", &mut self.denied)
        };
        let mut lines = Vec::new();
        if let Some(left_out) = bucket.take(now) {
            if left_out > 0 {
                lines.push(format!("{word}: {left_out} more flows not shown"));
            }
            lines.push(format!(
                "{word}: {service}: {} ({} {})",
                flow.reason,
                flow.protocol.as_str(),
                flow.destination
            ));
        }
        lines
    }

    /// Say how many notices were left out since the last line.
    fn flush(&mut self) {
        for (word, bucket) in [("denied", &mut self.denied), ("closed", &mut self.cut)] {
            if bucket.left_out > 0 {
                eprintln!("{word}: {} more flows not shown", bucket.left_out);
                bucket.left_out = 0;
            }
        }
    }
}

/// A token bucket: `burst` at once, then one per [`NOTICE_INTERVAL`].
struct Bucket {
    burst: u32,
    tokens: u32,
    refilled: Instant,
    left_out: u64,
}

impl Bucket {
    fn new(burst: u32, now: Instant) -> Bucket {
        Bucket {
            burst,
            tokens: burst,
            refilled: now,
            left_out: 0,
        }
    }

    /// Take a token: `Some(left out before this one)`, or `None` (counted).
    fn take(&mut self, now: Instant) -> Option<u64> {
        let elapsed = now.saturating_duration_since(self.refilled);
        let earned = elapsed.as_nanos() / NOTICE_INTERVAL.as_nanos();
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(earned).min(self.burst);
            self.refilled += NOTICE_INTERVAL * earned;
        }
        if self.tokens == 0 {
            self.left_out += 1;
            return None;
        }
        self.tokens -= 1;
        Some(std::mem::take(&mut self.left_out))
    }
}

/// `ADDRESS/PREFIX` of a network.
pub fn cidr(n: &edgegate_proto::bundle::Network) -> String {
    format!("{}/{}", n.addr, n.prefix)
}

/// A session's end as the VPN saw it, for `closed: vpn: …`.
impl std::fmt::Display for VpnEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VpnEnd::Cut(reason) => write!(f, "{reason}"),
            VpnEnd::SessionEnded => f.write_str("session ended"),
            VpnEnd::Lost(why) => f.write_str(why),
        }
    }
}

#[cfg(test)]
mod tests;
