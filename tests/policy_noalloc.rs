//! `decide` and `next_change` must not allocate: a counting global allocator
//! (stats_alloc, so that this test needs no unsafe code of its own) proves
//! zero allocations across many calls on a synthetic 2,000-user bundle,
//! covering every step of DESIGN §2 (allow and deny, vpn destinations,
//! invalid tickets, no bundle).
//!
//! The file holds a single test, so no other test thread allocates while the
//! region is measured.

use edgegate::policy::{decide, next_change, Decision, Policy, PolicyIndex, Request, TicketInput};
use edgegate::synth::{synth_bundle, SYNTH_DEVICE, SYNTH_ISSUED_AT};
use edgegate::testkit;
use edgegate_proto::{Ticket, VerifiedTicket};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::net::SocketAddr;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn decide_does_not_allocate() {
    let authority = testkit::key(1);
    let client = testkit::public(&testkit::key(2));
    let vb = testkit::verified(&synth_bundle(2_000, 200, 40, 20, 7), &authority);
    let ix = PolicyIndex::compile(&vb).unwrap();
    let now = SYNTH_ISSUED_AT + 600;
    let tickets: Vec<VerifiedTicket> = (0..64u32)
        .map(|i| {
            let t = Ticket {
                id: [i as u8; 16],
                // Every 16th user does not exist.
                user: format!("user-{}", i * 37 % 2_100),
                device: if i % 29 == 0 {
                    "elsewhere".into()
                } else {
                    SYNTH_DEVICE.into()
                },
                client_key: client,
                issued_at: now - 60,
                expires_at: now + 3600 - u64::from(i % 5) * 1000,
                auth_time: now - 120,
                mfa: i % 3 == 0,
            };
            testkit::verified_ticket(&t, &authority)
        })
        .collect();
    let services: Vec<&str> = ix
        .services()
        .map(|s| s.id.as_str())
        .chain(["missing"])
        .collect();
    let dests: [Option<SocketAddr>; 4] = [
        None,
        Some("10.0.1.2:22".parse().unwrap()),
        Some("[fd00:4::9]:8080".parse().unwrap()),
        Some("10.3.1.2:5000".parse().unwrap()),
    ];
    let requests: Vec<Request> = (0..4_000usize)
        .map(|i| Request {
            ticket: if i % 97 == 0 {
                TicketInput::Invalid
            } else {
                TicketInput::Verified(&tickets[i % tickets.len()])
            },
            client_key: &client,
            service: services[i % services.len()],
            destination: dests[i % dests.len()],
            echo: i % 7 == 0,
            now,
            consent: i % 2 == 0,
            limit_exceeded: i % 50 == 0,
            local: edgegate::policy::destination::LocalAddrs::none(),
        })
        .collect();
    let with = Policy {
        index: Some(&ix),
        expiry_grace: 0,
    };
    let without = Policy {
        index: None,
        expiry_grace: 0,
    };
    let mut allowed = 0usize;
    let mut reasons = [0usize; 16];

    let region = Region::new(GLOBAL);
    for round in 0..5 {
        for (i, r) in requests.iter().enumerate() {
            let p = if (i + round) % 211 == 0 {
                &without
            } else {
                &with
            };
            match decide(p, r) {
                Decision::Allow(_) => allowed += 1,
                Decision::Deny(reason) => reasons[reason as usize] += 1,
            }
            std::hint::black_box(next_change(p, r));
        }
    }
    let stats = region.change();

    assert_eq!(
        (stats.allocations, stats.reallocations),
        (0, 0),
        "decide allocated: {stats:?}"
    );
    // The mix really exercised allows and many deny reasons.
    assert!(allowed > 0, "no request was allowed");
    let distinct = reasons.iter().filter(|&&n| n > 0).count();
    assert!(
        distinct >= 8,
        "only {distinct} deny reasons seen: {reasons:?}"
    );
}
