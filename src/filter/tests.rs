//! Shared test drivers: feed a script of client and server events whole and
//! split at every offset, and require identical output and verdict.

use super::*;

/// One event of a stream: client->server bytes fed to the filter, or
/// server->client bytes it observes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ev<'a> {
    C(&'a [u8]),
    S(&'a [u8]),
}

/// Output and verdict of a run.
pub(crate) type Run = (Vec<u8>, Result<(), FilterViolation>);

/// Makes a fresh filter.
pub(crate) type Mk = fn() -> Box<dyn ByteFilter>;

/// Runs `events`, cutting client event `i` at the offsets `cuts(i, len)`.
pub(crate) fn run_cut(mk: Mk, events: &[Ev], cuts: &dyn Fn(usize, usize) -> Vec<usize>) -> Run {
    let mut f = mk();
    let mut out = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        match *ev {
            Ev::S(b) => f.observe_server(b),
            Ev::C(b) => {
                let mut at = 0;
                for cut in cuts(i, b.len()).into_iter().chain([b.len()]) {
                    if cut > at {
                        if let Err(e) = f.feed(&b[at..cut], &mut out) {
                            return (out, Err(e));
                        }
                        at = cut;
                    }
                }
            }
        }
    }
    (out, Ok(()))
}

/// Runs `events` with each client event fed whole.
pub(crate) fn run_whole(mk: Mk, events: &[Ev]) -> Run {
    run_cut(mk, events, &|_, _| Vec::new())
}

/// Runs `events` whole, then split at every offset of every client event
/// (one cut, and byte by byte; two cuts when short), asserting the same
/// result each time. Returns it.
pub(crate) fn run_all_splits(mk: Mk, events: &[Ev]) -> Run {
    let whole = run_whole(mk, events);
    let bytewise = run_cut(mk, events, &|_, len| (1..len).collect());
    assert_eq!(bytewise, whole, "byte by byte");
    let total: usize = client_lens(events).iter().sum();
    for (i, len) in client_lens(events).into_iter().enumerate() {
        let step = if total > 20_000 { len / 200 + 1 } else { 1 };
        for a in (1..len).step_by(step) {
            let one = run_cut(mk, events, &|j, _| if j == i { vec![a] } else { vec![] });
            assert_eq!(one, whole, "event {i} cut at {a}");
            if total <= 300 {
                for b in a + 1..len {
                    let two = run_cut(mk, events, &|j, _| if j == i { vec![a, b] } else { vec![] });
                    assert_eq!(two, whole, "event {i} cut at {a} and {b}");
                }
            }
        }
    }
    whole
}

/// The length of each event, 0 for server events.
fn client_lens(events: &[Ev]) -> Vec<usize> {
    events
        .iter()
        .map(|e| match e {
            Ev::C(b) => b.len(),
            Ev::S(_) => 0,
        })
        .collect()
}

/// Runs a client-only stream at every split; returns the result.
pub(crate) fn client_only(mk: Mk, input: &[u8]) -> Run {
    run_all_splits(mk, &[Ev::C(input)])
}

fn http() -> Box<dyn ByteFilter> {
    for_read_level(ServiceKind::Http).expect("http filter")
}

#[test]
fn vpn_has_no_read_filter() {
    assert!(for_read_level(ServiceKind::Vpn).is_none());
    assert!(!read_level_supported(ServiceKind::Vpn));
    for k in [ServiceKind::Http, ServiceKind::Websocket, ServiceKind::Vnc] {
        assert!(read_level_supported(k), "{k:?}");
    }
}

#[test]
fn violation_displays_one_line_with_stable_codes() {
    let all = [
        (FilterViolation::forbidden("POST\r\nX"), "forbidden-method"),
        (FilterViolation::Malformed("bare LF"), "malformed"),
        (FilterViolation::Unsupported("HTTP/2"), "unsupported"),
        (FilterViolation::TooLarge, "too-large"),
    ];
    for (v, code) in all {
        assert_eq!(v.code(), code);
        assert!(!v.to_string().contains('\n'), "{v}");
    }
    assert_eq!(
        FilterViolation::forbidden("POST\r\nX").to_string(),
        "not allowed at read level: POSTX"
    );
}

#[test]
fn a_failed_filter_stays_failed() {
    let mut f = http();
    let mut out = Vec::new();
    let e = f.feed(b"POST / HTTP/1.1\r\n\r\n", &mut out).unwrap_err();
    assert_eq!(e, FilterViolation::ForbiddenMethod("POST".into()));
    let again = f.feed(b"GET / HTTP/1.1\r\n\r\n", &mut out).unwrap_err();
    assert_eq!(again, e);
    assert!(out.is_empty());
}
