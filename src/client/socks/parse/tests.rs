use super::*;

fn done<T>(value: T, len: usize) -> Parsed<T> {
    Parsed::Done { value, len }
}

/// Every proper prefix of a whole message asks for more, and never for more
/// than the message still lacks.
fn prefixes_need_more<T: std::fmt::Debug>(msg: &[u8], parse: fn(&[u8]) -> Parsed<T>) {
    for cut in 0..msg.len() {
        match parse(&msg[..cut]) {
            Parsed::NeedMore(n) => assert!(n >= 1 && cut + n <= msg.len(), "cut {cut}: {n}"),
            other => panic!("cut {cut}: {other:?}"),
        }
    }
}

#[test]
fn greeting_with_no_auth_is_accepted() {
    let msg = [5, 2, 2, 0];
    assert_eq!(parse_greeting(&msg), done((), 4));
    prefixes_need_more(&msg, parse_greeting);
}

#[test]
fn greeting_bad_version_is_refused_without_answer() {
    let r = parse_greeting(&[4, 1, 0]);
    assert_eq!(r, Parsed::Refused(Refusal::BadVersion(4)));
    assert_eq!(Refusal::BadVersion(4).answer(), None);
}

#[test]
fn greeting_without_no_auth_gets_no_acceptable_method() {
    for msg in [&[5, 1, 2][..], &[5, 0][..]] {
        assert_eq!(
            parse_greeting(msg),
            Parsed::Refused(Refusal::NoAcceptableMethod)
        );
    }
    assert_eq!(Refusal::NoAcceptableMethod.answer(), Some(&[5, 0xff][..]));
}

#[test]
fn request_ipv4() {
    let msg = [5, 1, 0, 1, 10, 0, 0, 5, 0x01, 0xf6];
    let want = Destination::Ip("10.0.0.5:502".parse().unwrap());
    assert_eq!(parse_request(&msg), done(want.clone(), 10));
    assert_eq!(want.to_string(), "10.0.0.5:502");
    prefixes_need_more(&msg, parse_request);
}

#[test]
fn request_ipv6() {
    let mut msg = vec![5, 1, 0, 4];
    msg.extend_from_slice(&"fd00::7".parse::<Ipv6Addr>().unwrap().octets());
    msg.extend_from_slice(&8080u16.to_be_bytes());
    let want = Destination::Ip("[fd00::7]:8080".parse().unwrap());
    assert_eq!(parse_request(&msg), done(want.clone(), 22));
    assert_eq!(want.to_string(), "[fd00::7]:8080");
    prefixes_need_more(&msg, parse_request);
}

#[test]
fn request_domain() {
    let mut msg = vec![5, 1, 0, 3, 7];
    msg.extend_from_slice(b"plc.lan");
    msg.extend_from_slice(&80u16.to_be_bytes());
    let want = Destination::Domain("plc.lan".into(), 80);
    assert_eq!(parse_request(&msg), done(want.clone(), 14));
    assert_eq!(want.to_string(), "plc.lan:80");
    prefixes_need_more(&msg, parse_request);
}

#[test]
fn request_takes_only_its_own_bytes() {
    let msg = [5, 1, 0, 1, 127, 0, 0, 1, 0, 80, b'G', b'E', b'T'];
    let want = Destination::Ip("127.0.0.1:80".parse().unwrap());
    assert_eq!(parse_request(&msg), done(want, 10));
}

#[test]
fn request_bad_version() {
    assert_eq!(
        parse_request(&[4, 1, 0, 1]),
        Parsed::Refused(Refusal::BadVersion(4))
    );
}

#[test]
fn request_other_commands_are_unsupported() {
    for cmd in [2, 3, 0, 0xff] {
        let r = parse_request(&[5, cmd, 0, 1, 1, 2, 3, 4, 0, 80]);
        assert_eq!(r, Parsed::Refused(Refusal::CommandUnsupported(cmd)));
    }
    assert_eq!(
        Refusal::CommandUnsupported(2).answer(),
        Some(&reply(REP_CMD_UNSUPPORTED)[..])
    );
}

#[test]
fn request_unknown_address_type_is_unsupported() {
    for atyp in [0, 2, 5, 0xff] {
        let r = parse_request(&[5, 1, 0, atyp]);
        assert_eq!(r, Parsed::Refused(Refusal::AddressTypeUnsupported(atyp)));
    }
    assert_eq!(
        Refusal::AddressTypeUnsupported(2).answer(),
        Some(&reply(REP_ATYP_UNSUPPORTED)[..])
    );
}

#[test]
fn truncated_input_asks_for_exactly_what_is_missing() {
    assert_eq!(parse_greeting(&[]), Parsed::NeedMore(2));
    assert_eq!(parse_greeting(&[5, 3, 1]), Parsed::NeedMore(2));
    assert_eq!(parse_request(&[5, 1]), Parsed::NeedMore(2));
    assert_eq!(parse_request(&[5, 1, 0, 3]), Parsed::NeedMore(1));
    assert_eq!(parse_request(&[5, 1, 0, 3, 4, b'a']), Parsed::NeedMore(5));
    assert_eq!(parse_request(&[5, 1, 0, 4, 0]), Parsed::NeedMore(17));
}

#[test]
fn domain_bytes_that_are_not_utf8_are_replaced() {
    let msg = [5, 1, 0, 3, 2, 0xff, b'a', 0, 22];
    let want = Destination::Domain("\u{fffd}a".into(), 22);
    assert_eq!(parse_request(&msg), done(want, 9));
}
