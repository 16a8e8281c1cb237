//! Policy benchmark (`cargo bench --bench policy`): plain `std::time`
//! measurements on `synth_bundle(10_000 users, 1_000 groups, 100 roles, 50
//! services)`, printing the encoded envelope size, verify and compile times,
//! the accept path (`Store::accept`: verify + compile + store, flushed, in a
//! fresh temporary store each run), the store's size on disk and `decide`
//! latency.
//!
//! Decide latency is measured two ways, both over the same 200,000 mixed
//! requests (allowed and denied, vpn destinations, unknown users/services,
//! invalid tickets):
//! - per call, with an `Instant` pair around each call; the figures include
//!   the timer's own cost, which is printed alongside;
//! - in batches of 100 calls, one `Instant` pair per batch, reporting the
//!   median and p99 of the per-call mean of each batch.

use ed25519_dalek::SigningKey;
use edgegate::policy::{decide, explain, Decision, Policy, PolicyIndex, Request, TicketInput};
use edgegate::store::{Accepted, Store};
use edgegate::synth::{synth_bundle, SplitMix, SYNTH_DEVICE, SYNTH_ISSUED_AT};
use edgegate::testkit;
use edgegate_proto::{ticket, PublicKey, Ticket, TrustPolicy, VerifiedBundle, VerifiedTicket};
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const USERS: usize = 10_000;
const REQUESTS: usize = 200_000;
const BATCH: usize = 100;

fn main() {
    let authority = testkit::key(1);
    let client = testkit::public(&testkit::key(2));
    let trust = testkit::trust(&authority);

    let b = synth_bundle(USERS, 1_000, 100, 50, 1);
    let bytes = testkit::seal(&b, &authority);
    println!("bundle: {USERS} users, 1000 groups, 100 roles, 50 services");
    println!(
        "encoded envelope size: {} bytes ({:.1} KiB)",
        bytes.len(),
        bytes.len() as f64 / 1024.0
    );

    let verify = median_of(9, || VerifiedBundle::verify(&bytes, &trust).unwrap());
    println!("verify:  median {:.2} ms (9 runs)", ms(verify));
    let vb = VerifiedBundle::verify(&bytes, &trust).unwrap();
    let compile = median_of(9, || PolicyIndex::compile(&vb).unwrap());
    println!("compile: median {:.2} ms (9 runs)", ms(compile));
    accept_path(&bytes, &trust, &vb);

    let ix = PolicyIndex::compile(&vb).unwrap();
    let now = SYNTH_ISSUED_AT + 3_600;
    let tickets = make_tickets(&authority, &trust, client, now);
    let services: Vec<&str> = ix
        .services()
        .map(|s| s.id.as_str())
        .chain(["missing"])
        .collect();
    let requests = make_requests(&tickets, &services, &client, now);
    let p = Policy {
        index: Some(&ix),
        expiry_grace: 0,
    };

    print_mix(&p, &requests);
    per_call(&p, &requests);
    batched(&p, &requests);
    let explain_t = median_of(101, || explain(&p, &requests[7]));
    println!(
        "explain of one request (allocates; for comparison): median {:.2} µs",
        us(explain_t)
    );
}

/// Runs of the accept path; each gets a fresh store, opened before timing.
const ACCEPT_RUNS: usize = 7;

/// The daemon's accept path for one bundle, as `Store::accept` runs it:
/// digest, verify, device checks, compile, then store (one sled transaction, flushed before `Ok`).
/// Also times `Store::apply` alone, and prints the store's size on disk.
fn accept_path(bytes: &[u8], trust: &TrustPolicy, vb: &VerifiedBundle) {
    let wall = SYNTH_ISSUED_AT + 60;
    let mut accept = Vec::new();
    let mut apply = Vec::new();
    let mut sizes = None;
    for _ in 0..ACCEPT_RUNS {
        let (dir, store) = fresh_store(trust);
        // The copy is the daemon's too: the push path owns what it received.
        let owned = bytes.to_vec();
        let t = Instant::now();
        let accepted = store.accept(owned, wall, PolicyIndex::compile).unwrap();
        accept.push(t.elapsed());
        let Accepted::Installed { compiled, .. } = accepted else {
            panic!("a fresh store installs the bundle")
        };
        black_box(compiled);
        sizes = Some((store.db().size_on_disk().unwrap(), dir_size(dir.path())));
        drop(store);

        let (_dir, store) = fresh_store(trust);
        let t = Instant::now();
        black_box(store.apply(vb, wall).unwrap());
        apply.push(t.elapsed());
    }
    let (accept, _) = median_p99(&mut accept);
    let (apply, _) = median_p99(&mut apply);
    println!(
        "accept path (Store::accept: verify + compile + store, flushed): median {:.2} ms ({ACCEPT_RUNS} runs, fresh store each)",
        ms(accept)
    );
    println!(
        "  of which Store::apply alone (one transaction + flush): median {:.2} ms",
        ms(apply)
    );
    let (sled, files) = sizes.unwrap();
    println!(
        "store on disk after applying: sled size_on_disk {} bytes ({:.1} KiB); state dir files {} bytes ({:.1} KiB)",
        sled,
        sled as f64 / 1024.0,
        files,
        files as f64 / 1024.0
    );
}

/// A store in a new temporary state directory, trusting the synth authority.
fn fresh_store(trust: &TrustPolicy) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let opened = Store::open(dir.path(), trust, SYNTH_DEVICE, |_| Ok(())).unwrap();
    assert!(opened.bundle.is_none());
    (dir, opened.store)
}

/// Apparent size of the files under `dir`, recursively.
fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                dir_size(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

fn make_tickets(
    authority: &SigningKey,
    trust: &TrustPolicy,
    client: PublicKey,
    now: u64,
) -> Vec<VerifiedTicket> {
    let mut rng = SplitMix::new(99);
    (0..1_000u32)
        .map(|i| {
            let t = Ticket {
                id: [(i % 251) as u8; 16],
                // About 2% unknown users.
                user: format!("user-{}", rng.below(USERS + USERS / 50)),
                device: SYNTH_DEVICE.into(),
                client_key: client,
                issued_at: now - 60,
                expires_at: now + 3_600,
                auth_time: now - 600,
                mfa: rng.chance(50),
            };
            VerifiedTicket::verify(&ticket::seal(&t, &[authority]), trust).unwrap()
        })
        .collect()
}

fn make_requests<'a>(
    tickets: &'a [VerifiedTicket],
    services: &[&'a str],
    client: &'a PublicKey,
    now: u64,
) -> Vec<Request<'a>> {
    let dests: [SocketAddr; 4] = [
        "10.4.1.2:22".parse().unwrap(),
        "[fd00:8::9]:8080".parse().unwrap(),
        "10.12.1.2:443".parse().unwrap(),
        "192.168.0.1:22".parse().unwrap(),
    ];
    let mut rng = SplitMix::new(7);
    (0..REQUESTS)
        .map(|_| Request {
            ticket: if rng.chance(1) {
                TicketInput::Invalid
            } else {
                TicketInput::Verified(&tickets[rng.below(tickets.len())])
            },
            client_key: client,
            service: services[rng.below(services.len())],
            destination: Some(dests[rng.below(dests.len())]),
            echo: false,
            now,
            consent: rng.chance(50),
            limit_exceeded: false,
            local: edgegate::policy::destination::LocalAddrs::none(),
        })
        .collect()
}

fn print_mix(p: &Policy, requests: &[Request]) {
    let mut allow = 0;
    let mut reasons = std::collections::BTreeMap::new();
    for r in requests {
        match decide(p, r) {
            Decision::Allow(_) => allow += 1,
            Decision::Deny(reason) => *reasons.entry(reason.as_str()).or_insert(0) += 1,
        }
    }
    let deny: Vec<String> = reasons.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!(
        "request mix ({} requests): allow {allow}; deny {}",
        requests.len(),
        deny.join(", ")
    );
}

fn per_call(p: &Policy, requests: &[Request]) {
    let mut timer = Vec::with_capacity(requests.len());
    for _ in requests {
        let t = Instant::now();
        timer.push(black_box(t).elapsed());
    }
    let mut lat = Vec::with_capacity(requests.len());
    for r in requests {
        let t = Instant::now();
        black_box(decide(p, black_box(r)));
        lat.push(t.elapsed());
    }
    let (tm, t99) = median_p99(&mut timer);
    let (m, p99) = median_p99(&mut lat);
    println!(
        "decide per call (Instant pair per call, timer included): median {:.0} ns, p99 {:.0} ns; empty timer pair: median {:.0} ns, p99 {:.0} ns",
        ns(m), ns(p99), ns(tm), ns(t99)
    );
}

fn batched(p: &Policy, requests: &[Request]) {
    let mut means = Vec::new();
    for _ in 0..3 {
        for chunk in requests.chunks(BATCH) {
            let t = Instant::now();
            for r in chunk {
                black_box(decide(p, black_box(r)));
            }
            means.push(t.elapsed() / chunk.len() as u32);
        }
    }
    let (m, p99) = median_p99(&mut means);
    println!(
        "decide batched ({BATCH} calls per Instant pair, 3 passes): per-call mean median {:.0} ns, p99 {:.0} ns",
        ns(m), ns(p99)
    );
}

fn median_of<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    let mut d: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed()
        })
        .collect();
    median_p99(&mut d).0
}

fn median_p99(d: &mut [Duration]) -> (Duration, Duration) {
    d.sort_unstable();
    (d[d.len() / 2], d[(d.len() * 99 / 100).min(d.len() - 1)])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ns(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}
