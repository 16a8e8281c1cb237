//! A plain UDP socket for quinn, for systems where quinn-udp's socket set-up
//! fails: one datagram per call, no ECN, no segmentation offload, no
//! packet info. quinn-udp insists on options some Windows network stacks
//! lack (Wine 8.0 answers `getsockopt(IPV6_V6ONLY)` on an IPv4 socket with
//! WSAEOPNOTSUPP and has no `IP_RECVECN`); a client there still reaches the
//! gateway over QUIC, at some CPU cost per byte (and with 1200-byte
//! datagrams: without a don't-fragment bit quinn does no path MTU
//! discovery). Used only when
//! `quinn::Runtime::wrap_udp_socket` refuses the socket (`super::endpoint_on`).

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// A tokio UDP socket speaking quinn's `AsyncUdpSocket`, one datagram at a time.
#[derive(Debug)]
pub(super) struct PlainUdp(Arc<tokio::net::UdpSocket>);

impl PlainUdp {
    /// Wrap a bound socket (inside a tokio runtime).
    pub(super) fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        Ok(PlainUdp(Arc::new(tokio::net::UdpSocket::from_std(socket)?)))
    }
}

/// Ready when the socket can take a datagram.
#[derive(Debug)]
struct Writable(Arc<tokio::net::UdpSocket>);

impl UdpPoller for Writable {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        self.0.poll_send_ready(cx)
    }
}

impl AsyncUdpSocket for PlainUdp {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Writable(self.0.clone()))
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        match self.0.try_send_to(transmit.contents, transmit.destination) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(e),
            // As quinn-udp does: a datagram that could not leave is lost,
            // which QUIC recovers from; only WouldBlock goes back to quinn.
            Err(e) => {
                tracing::debug!(error = %e, "udp send failed");
                Ok(())
            }
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let (Some(buf), Some(meta)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        loop {
            ready!(self.0.poll_recv_ready(cx))?;
            match self.0.try_recv_from(buf) {
                Ok((len, addr)) => {
                    *meta = RecvMeta {
                        addr,
                        len,
                        stride: len,
                        ecn: None,
                        dst_ip: None,
                    };
                    return Poll::Ready(Ok(1));
                }
                // Windows reports an ICMP port-unreachable for an earlier
                // send as a reset on the next receive: not this datagram's.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionReset
                    ) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlsid::{self, Identity};
    use crate::PublicKey;

    /// A client on the plain socket opens a connection to the daemon's kind
    /// of endpoint and moves a few MiB both ways.
    #[tokio::test]
    async fn a_client_on_plain_udp_moves_bytes_both_ways() {
        let (dk, ck) = (crate::testkit::key(1), crate::testkit::key(2));
        let (did, cid) = (Identity::new(&dk).unwrap(), Identity::new(&ck).unwrap());
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let server = super::super::server(udp, &did).unwrap();
        let addr = server.local_addr().unwrap();
        let total = 4usize << 20;
        let serve = tokio::spawn(async move {
            let conn = server.accept().await.unwrap().await.unwrap();
            let (mut send, mut recv) = conn.accept_bi().await.unwrap();
            let got = recv.read_to_end(total + 1).await.unwrap();
            send.write_all(&got).await.unwrap();
            send.finish().unwrap();
            let _ = send.stopped().await;
        });
        let plain = PlainUdp::new(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
        let mut client = quinn::Endpoint::new_with_abstract_socket(
            quinn::EndpointConfig::default(),
            None,
            Arc::new(plain),
            Arc::new(quinn::TokioRuntime),
        )
        .unwrap();
        let watch = tlsid::PinWatch::default();
        let device = PublicKey::from(dk.verifying_key());
        client.set_default_client_config(tlsid::quic_client_config(&cid, device, &watch).unwrap());
        let conn = client
            .connect(addr, tlsid::SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let data: Vec<u8> = (0..total).map(|i| i as u8).collect();
        let (sent, got) = tokio::join!(
            async {
                send.write_all(&data).await.unwrap();
                send.finish().unwrap();
            },
            recv.read_to_end(total + 1)
        );
        let () = sent;
        assert!(got.unwrap() == data);
        serve.await.unwrap();
    }
}
