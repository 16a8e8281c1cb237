use super::*;

const ENGINEER: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 7);
const PLC: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);

#[test]
fn a_built_udp_datagram_parses_back() {
    let src = SocketAddrV4::new(ENGINEER, 40_000);
    let dst = SocketAddrV4::new(PLC, 161);
    let p = udp(src, dst, b"get");
    assert_eq!(
        parse(&p),
        Ok((
            ENGINEER,
            Flow::Udp {
                src_port: 40_000,
                dst,
                payload: b"get"
            }
        ))
    );
}

#[test]
fn an_echo_request_parses_and_a_corrupt_one_does_not() {
    let req = Icmpv4Repr::EchoRequest {
        ident: 7,
        seq_no: 3,
        data: b"ping",
    };
    let mut p = icmp_packet(ENGINEER, PLC, &req);
    assert_eq!(
        parse(&p),
        Ok((
            ENGINEER,
            Flow::Echo {
                dst: PLC,
                ident: 7,
                seq: 3,
                data: b"ping"
            }
        ))
    );
    let last = p.len() - 1;
    p[last] ^= 1;
    assert_eq!(parse(&p), Err(Malformed));
    assert_eq!(parse(&p[..10]), Err(Malformed));
}

#[test]
fn unreachable_quotes_the_original_and_goes_back_to_its_source() {
    let original = udp(
        SocketAddrV4::new(ENGINEER, 5000),
        SocketAddrV4::new(PLC, 53),
        b"query",
    );
    let answer = unreachable(&original, Icmpv4DstUnreachable::CommProhibited).unwrap();
    let ip = Ipv4Packet::new_checked(&answer[..]).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (PLC, ENGINEER));
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!(icmp.msg_type(), Icmpv4Message::DstUnreachable);
    assert_eq!(icmp.msg_code(), 13);
    // The original header and the first 8 bytes of its payload.
    assert_eq!(&icmp.data()[..28], &original[..28]);
}

#[test]
fn echo_reply_reads_what_a_socket_receives() {
    let reply = icmp(&Icmpv4Repr::EchoReply {
        ident: 9,
        seq_no: 4,
        data: b"pong",
    });
    assert_eq!(echo_reply(&reply), Some((9, 4, &b"pong"[..])));
    assert_eq!(echo_reply(b"\x08\x00"), None);
}
