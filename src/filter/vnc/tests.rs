use super::*;
use crate::filter::tests::{run_all_splits, run_cut, run_whole, Ev, Mk};
use proptest::prelude::*;

const MK: Mk = || Box::new(VncReadFilter::new());

const V33: &[u8] = b"RFB 003.003\n";
const V37: &[u8] = b"RFB 003.007\n";
const V38: &[u8] = b"RFB 003.008\n";
const OK: &[u8] = &[0, 0, 0, 0];
const CHALLENGE: &[u8] = &[0xc4; 16];
const RESPONSE: &[u8] = &[0x5a; 16];

fn set_pixel_format() -> Vec<u8> {
    let mut m = vec![0, 0, 0, 0];
    m.extend_from_slice(&[32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]);
    m
}
fn set_encodings(encs: &[i32]) -> Vec<u8> {
    let mut m = vec![2, 0];
    m.extend_from_slice(&u16::try_from(encs.len()).expect("count").to_be_bytes());
    encs.iter()
        .for_each(|e| m.extend_from_slice(&e.to_be_bytes()));
    m
}
fn update_request(incremental: bool) -> Vec<u8> {
    vec![3, u8::from(incremental), 0, 0, 0, 0, 3, 32, 2, 88]
}
fn key(down: bool) -> Vec<u8> {
    vec![4, u8::from(down), 0, 0, 0, 0, 0xff, 0x0d]
}
fn pointer() -> Vec<u8> {
    vec![5, 1, 0, 100, 0, 200]
}
fn cut_text(text: &[u8]) -> Vec<u8> {
    let mut m = vec![6, 0, 0, 0];
    m.extend_from_slice(&u32::try_from(text.len()).expect("len").to_be_bytes());
    m.extend_from_slice(text);
    m
}

/// Client messages after ClientInit, and what of them passes.
fn mixed_messages() -> (Vec<u8>, Vec<u8>) {
    let pass = [
        set_pixel_format(),
        set_encodings(&[16, 5, 1, 0, -239, -223]),
        update_request(false),
        update_request(true),
    ];
    let sent = [
        pass[0].clone(),
        key(true),
        pass[1].clone(),
        pointer(),
        pass[2].clone(),
        cut_text(b"rm -rf /"),
        key(false),
        cut_text(b""),
        pass[3].clone(),
        pointer(),
    ];
    (sent.concat(), pass.concat())
}

#[test]
fn rfb38_none_passes_view_requests_and_drops_input() {
    let (msgs, passed) = mixed_messages();
    let client = [&[0u8][..], &msgs].concat(); // ClientInit exclusive, then messages
    let events = [
        Ev::S(V38),
        Ev::C(V38),
        Ev::S(&[2, 1, 2]),
        Ev::C(&[1]),
        Ev::S(OK),
        Ev::C(&client),
    ];
    let want = [V38, &[1, 1], &passed].concat(); // shared flag forced to 1
    assert_eq!(run_all_splits(MK, &events), (want, Ok(())));
}

#[test]
fn rfb38_vnc_auth_then_messages() {
    let (msgs, passed) = mixed_messages();
    let client = [&[1u8][..], &msgs].concat();
    let events = [
        Ev::S(V38),
        Ev::C(V38),
        Ev::S(&[2, 1, 2]),
        Ev::C(&[2]),
        Ev::S(CHALLENGE),
        Ev::C(RESPONSE),
        Ev::S(OK),
        Ev::S(b"\x03\x20\x02\x58 ServerInit and updates are ignored"),
        Ev::C(&client),
    ];
    let want = [V38, &[2], RESPONSE, &[1], &passed].concat();
    assert_eq!(run_all_splits(MK, &events), (want, Ok(())));
}

#[test]
fn rfb37_none_has_no_security_result() {
    let client = [&[1u8, 1][..], &update_request(true), &key(true)].concat();
    let events = [Ev::S(V38), Ev::C(V37), Ev::S(&[1, 1]), Ev::C(&client)];
    let want = [V37, &[1, 1], &update_request(true)].concat();
    assert_eq!(run_all_splits(MK, &events), (want, Ok(())));
}

#[test]
fn rfb33_learns_the_security_type_from_the_server() {
    let (msgs, passed) = mixed_messages();
    let tail = [&[0u8][..], &msgs].concat();
    let auth = [
        Ev::S(V33),
        Ev::C(V33),
        Ev::S(&[0, 0, 0, 2]),
        Ev::S(CHALLENGE),
        Ev::C(RESPONSE),
        Ev::S(OK),
        Ev::C(&tail),
    ];
    let want = [V33, RESPONSE, &[1], &passed].concat();
    assert_eq!(run_all_splits(MK, &auth), (want, Ok(())));
    let none = [Ev::S(V33), Ev::C(V33), Ev::S(&[0, 0, 0, 1]), Ev::C(&tail)];
    assert_eq!(
        run_all_splits(MK, &none),
        ([V33, &[1], &passed].concat(), Ok(()))
    );
    // A 3.8 server talking to a 3.3 client uses the 3.3 handshake.
    let mixed = [Ev::S(V38), Ev::C(V33), Ev::S(&[0, 0, 0, 1]), Ev::C(&tail)];
    assert_eq!(
        run_all_splits(MK, &mixed),
        ([V33, &[1], &passed].concat(), Ok(()))
    );
}

#[test]
fn client_bytes_ahead_of_the_server_are_refused() {
    let early = Malformed("client data before the server's version");
    assert_eq!(run_whole(MK, &[Ev::C(V38)]), (vec![], Err(early)));
    let before_type = [Ev::S(V33), Ev::C(V33), Ev::C(RESPONSE)];
    let want = Malformed("client data before the server's security type");
    assert_eq!(run_all_splits(MK, &before_type), (V33.to_vec(), Err(want)));
    let before_list = [Ev::S(V38), Ev::C(&[V38, &[1]].concat())];
    let want = Malformed("client data before the server's security types");
    assert_eq!(run_all_splits(MK, &before_list), (V38.to_vec(), Err(want)));
    let before_challenge = [Ev::S(V38), Ev::C(V38), Ev::S(&[1, 2]), Ev::C(&[2, 9])];
    let want = Malformed("client data before the server's challenge");
    assert_eq!(
        run_all_splits(MK, &before_challenge),
        ([V38, &[2]].concat(), Err(want))
    );
    let before_result = [Ev::S(V38), Ev::C(V38), Ev::S(&[1, 1]), Ev::C(&[1, 1])];
    let want = Malformed("client data before the server's security result");
    assert_eq!(
        run_all_splits(MK, &before_result),
        ([V38, &[1]].concat(), Err(want))
    );
}

#[test]
fn failed_or_unsupported_handshakes_close() {
    let failed = [
        Ev::S(V38),
        Ev::C(V38),
        Ev::S(&[1, 2]),
        Ev::C(&[2]),
        Ev::S(CHALLENGE),
        Ev::C(RESPONSE),
        Ev::S(&[0, 0, 0, 1, 0, 0, 0, 3, b'b', b'a', b'd']),
        Ev::C(&[1]),
    ];
    let want = Malformed("client data after a failed VNC handshake");
    assert_eq!(
        run_all_splits(MK, &failed),
        ([V38, &[2], RESPONSE].concat(), Err(want))
    );
    let vencrypt = [Ev::S(V38), Ev::C(V38), Ev::S(&[2, 19, 2]), Ev::C(&[19, 0])];
    let want = Unsupported("VNC security type other than None or VNC auth");
    assert_eq!(run_all_splits(MK, &vencrypt), (V38.to_vec(), Err(want)));
    let not_offered = [Ev::S(V38), Ev::C(V38), Ev::S(&[1, 2]), Ev::C(&[1])];
    let want = Malformed("security type not offered by the server");
    assert_eq!(run_all_splits(MK, &not_offered), (V38.to_vec(), Err(want)));
    let odd_33 = [Ev::S(V33), Ev::C(V33), Ev::S(&[0, 0, 0, 16]), Ev::C(&[1])];
    let want = Unsupported("VNC security type from a 3.3 server");
    assert_eq!(run_all_splits(MK, &odd_33), (V33.to_vec(), Err(want)));
    let above = [Ev::S(V33), Ev::C(V38)];
    let want = Malformed("client RFB version above the server's");
    assert_eq!(run_all_splits(MK, &above), (vec![], Err(want)));
    for v in [&b"RFB 003.005\n"[..], b"RFB 004.001\n"] {
        let want = Unsupported("RFB version other than 3.3, 3.7, 3.8");
        assert_eq!(
            run_all_splits(MK, &[Ev::S(b"RFB 005.000\n"), Ev::C(v)]),
            (vec![], Err(want))
        );
    }
    let junk = [Ev::S(V38), Ev::C(b"RFB 03.008\n\n")];
    let want = Malformed("invalid RFB ProtocolVersion");
    assert_eq!(run_all_splits(MK, &junk), (vec![], Err(want)));
}

/// A 3.8/None session up to ClientInit, then `msgs`.
fn session(msgs: &[u8]) -> (Vec<u8>, Vec<Ev<'_>>) {
    let prefix = [V38, &[1, 1]].concat();
    let events = vec![
        Ev::S(V38),
        Ev::C(V38),
        Ev::S(&[1, 1]),
        Ev::C(&[1]),
        Ev::S(OK),
        Ev::C(msgs),
    ];
    (prefix, events)
}

#[test]
fn unknown_messages_and_huge_cut_text_close() {
    let msgs = [&[1u8][..], &update_request(true), &[251, 0, 0, 0]].concat();
    let (prefix, events) = session(&msgs);
    let want = (
        [&prefix[..], &update_request(true)].concat(),
        Err(Unsupported("VNC client message type")),
    );
    assert_eq!(run_all_splits(MK, &events), want);
    let mut huge = cut_text(b"");
    huge[4..8].copy_from_slice(&(MAX_CUT_TEXT + 1).to_be_bytes());
    let msgs = [&[1u8][..], &huge].concat();
    let (prefix, events) = session(&msgs);
    assert_eq!(run_all_splits(MK, &events), (prefix, Err(TooLarge)));
    let extended_clipboard = [&[1u8][..], &[6, 0, 0, 0, 0xff, 0xff, 0xff, 0xf0]].concat();
    let (prefix, events) = session(&extended_clipboard);
    assert_eq!(run_all_splits(MK, &events), (prefix, Err(TooLarge)));
    let many = [&[1u8][..], &[2, 0, 0xff, 0xff]].concat();
    let (prefix, events) = session(&many);
    assert_eq!(run_all_splits(MK, &events), (prefix, Err(TooLarge)));
}

#[test]
fn set_encodings_loses_extensions_that_need_refused_messages() {
    let sent = set_encodings(&[
        16,
        -312,
        7,
        -313,
        -308,
        -309,
        -258,
        -259,
        -305,
        -316,
        -1063131698,
        -223,
    ]);
    let kept = set_encodings(&[16, 7, -223]);
    let empty = set_encodings(&[]);
    let only_fence = set_encodings(&[-312]);
    let msgs = [&[1u8][..], &sent, &empty, &only_fence].concat();
    let (prefix, events) = session(&msgs);
    let want = [&prefix[..], &kept, &empty, &empty].concat();
    assert_eq!(run_all_splits(MK, &events), (want, Ok(())));
}

/// One client message and what of it passes.
fn any_message() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let encodings = prop::collection::vec(-320i32..300, 0..20).prop_map(|e| {
        let kept: Vec<i32> = e
            .iter()
            .copied()
            .filter(|x| !STRIPPED_ENCODINGS.contains(x))
            .collect();
        (set_encodings(&e), set_encodings(&kept))
    });
    prop_oneof![
        Just((set_pixel_format(), set_pixel_format())),
        encodings,
        any::<bool>().prop_map(|i| (update_request(i), update_request(i))),
        any::<bool>().prop_map(|d| (key(d), vec![])),
        Just((pointer(), vec![])),
        prop::collection::vec(any::<u8>(), 0..100).prop_map(|t| (cut_text(&t), vec![])),
    ]
}

proptest! {
    #[test]
    fn random_splits_match_whole_feeding(
        msgs in prop::collection::vec(any_message(), 0..12),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let client: Vec<u8> = [vec![0u8], msgs.iter().flat_map(|m| m.0.clone()).collect()].concat();
        let kept: Vec<u8> = msgs.iter().flat_map(|m| m.1.clone()).collect();
        let (prefix, events) = session(&client);
        let want = ([prefix, kept].concat(), Ok(()));
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(client.len())).collect();
        at.sort_unstable();
        let last = events.len() - 1;
        prop_assert_eq!(run_cut(MK, &events, &|i, _| if i == last { at.clone() } else { vec![] }), want);
    }
}
