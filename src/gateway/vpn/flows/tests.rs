use super::*;

fn dst(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 10), port)
}

#[tokio::test(start_paused = true)]
async fn the_flow_count_is_bounded_and_a_removed_flow_frees_its_place() {
    let mut t = Table::new(3, usize::MAX);
    let now = Instant::now();
    let ids: Vec<FlowId> = (0..3)
        .map(|i| {
            t.insert(Key::Udp(1000 + i, dst(53)), 0, now, |_| ())
                .unwrap()
        })
        .collect();
    assert_eq!(
        t.insert(Key::Echo(Ipv4Addr::LOCALHOST), 0, now, |_| ()),
        Err(Full::Flows)
    );
    assert_eq!(t.id(&Key::Udp(1001, dst(53))), Some(ids[1]));
    assert_eq!(
        t.remove(ids[1]).map(|(k, _)| k),
        Some(Key::Udp(1001, dst(53)))
    );
    assert_eq!(t.id(&Key::Udp(1001, dst(53))), None);
    assert!(t
        .insert(Key::Echo(Ipv4Addr::LOCALHOST), 0, now, |_| ())
        .is_ok());
    assert_eq!(t.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn buffered_bytes_are_bounded_across_flows() {
    let mut t = Table::new(100, 200 << 10);
    let now = Instant::now();
    let a = t
        .insert(Key::Tcp(1, dst(80)), 128 << 10, now, |_| ())
        .unwrap();
    assert_eq!(
        t.insert(Key::Tcp(2, dst(80)), 128 << 10, now, |_| ()),
        Err(Full::Bytes)
    );
    // A flow that buffers nothing of its own still fits.
    assert!(t.insert(Key::Udp(3, dst(53)), 0, now, |_| ()).is_ok());
    t.remove(a);
    assert_eq!(t.bytes(), 0);
    assert!(t
        .insert(Key::Tcp(2, dst(80)), 128 << 10, now, |_| ())
        .is_ok());
}

#[tokio::test(start_paused = true)]
async fn udp_and_echo_flows_expire_when_idle_tcp_does_not() {
    let mut t = Table::new(10, usize::MAX);
    let start = Instant::now();
    let udp = t
        .insert(Key::Udp(5000, dst(161)), 0, start, |_| ())
        .unwrap();
    let echo = t
        .insert(Key::Echo(Ipv4Addr::new(10, 0, 0, 1)), 0, start, |_| ())
        .unwrap();
    t.insert(Key::Tcp(6000, dst(502)), 0, start, |_| ())
        .unwrap();
    assert_eq!(t.next_idle(), Some(start + IDLE));

    tokio::time::advance(IDLE / 2).await;
    // A packet on the echo flow keeps it.
    t.touch(echo, Instant::now());
    assert!(t.idle(Instant::now()).is_empty());

    tokio::time::advance(IDLE / 2).await;
    assert_eq!(t.idle(Instant::now()), vec![udp]);
    t.remove(udp);
    assert_eq!(t.next_idle(), Some(start + IDLE / 2 + IDLE));

    tokio::time::advance(IDLE).await;
    assert_eq!(t.idle(Instant::now()), vec![echo]);
    t.remove(echo);
    assert_eq!(t.next_idle(), None);
    assert!(t.idle(Instant::now() + IDLE * 100).is_empty());
}

/// The default budget with the TCP buffers' two sizes: one bulk flow, then
/// ten small ones; closing the bulk flow lets the next one be bulk again
/// once the small ones leave half the budget free.
#[tokio::test(start_paused = true)]
async fn bulk_buffers_go_to_flows_while_half_the_budget_is_free() {
    use crate::gateway::vpn::tcp::{Buffers, BULK};
    let mut t = Table::new(128, 2 << 20);
    let now = Instant::now();
    let mut sizes = Vec::new();
    let mut ids = Vec::new();
    for port in 1.. {
        let b = Buffers::for_next(&t);
        match t.insert(Key::Tcp(port, dst(80)), b.cost(), now, |_| ()) {
            Ok(id) => ids.push(id),
            Err(full) => {
                assert_eq!(full, Full::Bytes);
                break;
            }
        }
        sizes.push(b == BULK);
    }
    assert_eq!(sizes.iter().filter(|b| **b).count(), 1, "{sizes:?}");
    assert_eq!(sizes.len(), 11, "{sizes:?}");
    assert!(sizes[0] && !sizes[1]);
    // Ten small flows held (1,440 KiB): a new bulk flow would pass half.
    t.remove(ids[0]);
    assert!(!t.under_half(BULK.cost()));
    // Three small ones (432 KiB) and a bulk one (608 KiB) pass half too...
    for id in &ids[1..8] {
        t.remove(*id);
    }
    assert!(!t.under_half(BULK.cost()));
    // ...two (288 KiB) leave room.
    t.remove(ids[8]);
    assert!(t.under_half(BULK.cost()));
}
