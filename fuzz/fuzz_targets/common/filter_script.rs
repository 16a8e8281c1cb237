//! Shared driver of the read-level filter targets. The input is a script of
//! events, each `[tag] [len: u16 BE] [len bytes]` (a short last event takes
//! what is left): tag bit 0x80 set means server->client bytes the filter
//! observes, clear means client->server bytes it filters; the low 7 bits are
//! the size of the pieces the event is cut into (0: whole).
//!
//! Besides "never panics", the filters' contract (src/filter.rs): output
//! and verdict do not depend on how the bytes were split, so the script is
//! run once with every event whole and once cut as the tags say.

use edgegate::filter::{ByteFilter, FilterViolation};

struct Event<'a> {
    server: bool,
    step: usize,
    bytes: &'a [u8],
}

fn events(mut data: &[u8]) -> Vec<Event<'_>> {
    let mut out = Vec::new();
    while let [tag, rest @ ..] = data {
        let (len, rest) = match rest {
            [hi, lo, rest @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), rest),
            _ => (rest.len(), &[][..]),
        };
        let (bytes, rest) = rest.split_at(len.min(rest.len()));
        out.push(Event {
            server: tag & 0x80 != 0,
            step: usize::from(tag & 0x7f),
            bytes,
        });
        data = rest;
    }
    out
}

type Run = (Vec<u8>, Result<(), FilterViolation>);

fn run(filter: &mut dyn ByteFilter, events: &[Event<'_>], cut: bool) -> Run {
    let mut out = Vec::new();
    for ev in events {
        let step = if cut && ev.step > 0 {
            ev.step
        } else {
            ev.bytes.len().max(1)
        };
        for piece in ev.bytes.chunks(step) {
            if ev.server {
                filter.observe_server(piece);
            } else if let Err(e) = filter.feed(piece, &mut out) {
                // Once failed, a filter fails every later call the same way.
                assert_eq!(filter.feed(b"x", &mut out), Err(e.clone()));
                return (out, Err(e));
            }
        }
    }
    (out, Ok(()))
}

/// Run `data` through two fresh filters made by `make`, whole and cut.
pub fn check(make: fn() -> Box<dyn ByteFilter>, data: &[u8]) {
    let events = events(data);
    let whole = run(&mut *make(), &events, false);
    let cut = run(&mut *make(), &events, true);
    assert_eq!(whole, cut, "output depends on how the input was split");
}
