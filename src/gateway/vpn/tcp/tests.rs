//! A lost window update, on simulated time: two smoltcp stacks joined by
//! an in-memory link that can drop packets. The sender (the router's side)
//! fills the receiver's (the engineer's) window; the receiver's application
//! then reads everything, and the window update that says so is lost.
//! smoltcp 0.12 had no zero-window probe and such a flow stalled for good
//! (the flows then sent keep-alives as probes); 0.13 probes by itself.

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp::{Socket, SocketBuffer, State};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};
use std::collections::VecDeque;

/// One end of the link: packets in, packets out.
#[derive(Default)]
struct Link {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut Vec<Vec<u8>>);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl Device for Link {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        let p = self.rx.pop_front()?;
        Some((Rx(p), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = 1500;
        caps
    }
}

struct End {
    iface: Interface,
    link: Link,
    sockets: SocketSet<'static>,
    handle: SocketHandle,
}

fn end(addr: [u8; 4], rx: usize, tx: usize, now: Instant) -> End {
    let mut link = Link::default();
    let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut link, now);
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(
            IpAddress::v4(addr[0], addr[1], addr[2], addr[3]),
            24,
        ));
    });
    let mut sockets = SocketSet::new(Vec::new());
    let socket = Socket::new(
        SocketBuffer::new(vec![0; rx]),
        SocketBuffer::new(vec![0; tx]),
    );
    let handle = sockets.add(socket);
    End {
        iface,
        link,
        sockets,
        handle,
    }
}

const TOTAL: usize = 64 << 10;

/// Bytes the engineer's application received within 10 simulated seconds
/// after its one window update was lost.
fn transfer() -> usize {
    let mut now = Instant::from_millis(0);
    let step = Duration::from_millis(5);
    let mut router = end([10, 0, 0, 1], 4096, TOTAL, now);
    let mut engineer = end([10, 0, 0, 2], 4096, 4096, now);
    engineer
        .sockets
        .get_mut::<Socket>(engineer.handle)
        .listen(80)
        .unwrap();
    let cx = router.iface.context();
    router
        .sockets
        .get_mut::<Socket>(router.handle)
        .connect(cx, (IpAddress::v4(10, 0, 0, 2), 80), 40000)
        .unwrap();
    let mut sent = 0;
    let mut received = 0;
    let mut buf = vec![0; TOTAL];
    // Phase 0: fill the window, the application not reading; 1: the
    // application reads, every engineer → router packet lost for 50 ms;
    // 2: it keeps reading, nothing lost.
    let mut phase = 0;
    let mut lost_until = now;
    let mut full_at = None;
    for _ in 0..2400 {
        now += step;
        let s = router.sockets.get_mut::<Socket>(router.handle);
        if s.may_send() && sent < TOTAL {
            sent += s.send_slice(&[7; TOTAL][..TOTAL - sent]).unwrap();
        }
        router
            .iface
            .poll(now, &mut router.link, &mut router.sockets);
        engineer.link.rx.extend(router.link.tx.drain(..));
        let e = engineer.sockets.get_mut::<Socket>(engineer.handle);
        // The window closed and the router heard so (its zero-window ACK
        // had 200 ms to arrive): the application starts reading.
        if phase == 0 && e.state() == State::Established && e.recv_queue() == 4096 {
            full_at.get_or_insert(now);
        }
        if phase == 0 && full_at.is_some_and(|t| now >= t + Duration::from_millis(200)) {
            phase = 1;
            lost_until = now + Duration::from_millis(50);
        }
        if phase >= 1 {
            while let Ok(n) = e.recv_slice(&mut buf) {
                if n == 0 {
                    break;
                }
                received += n;
            }
        }
        engineer
            .iface
            .poll(now, &mut engineer.link, &mut engineer.sockets);
        let back: Vec<_> = engineer.link.tx.drain(..).collect();
        if phase == 1 && now < lost_until {
            continue;
        }
        if phase == 1 {
            phase = 2;
        }
        router.link.rx.extend(back);
    }
    received
}

#[test]
fn a_flow_recovers_from_a_lost_window_update() {
    assert_eq!(transfer(), TOTAL);
}
