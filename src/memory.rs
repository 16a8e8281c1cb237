//! Handing freed memory back to the kernel after a burst of allocation.
//!
//! glibc keeps what a thread frees in that thread's arena and returns only
//! the top of a heap to the kernel. Installing a large bundle decodes it
//! (10,000 users: ~4 MiB in ~90,000 allocations) next to the index compiled
//! from it, so once the decoded bundle is dropped its pages stay resident,
//! scattered between live ones: 9 MB measured, on a router that has little.
//! `malloc_trim` gives those free pages back. Elsewhere (musl) this does
//! nothing: those allocators return memory themselves.

/// Return the allocator's free pages to the kernel. It walks and locks every
/// arena in turn, so call it from a blocking thread after a burst, not on
/// the data path.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // One of the crate's two unsafe blocks, both FFI calls here.
pub fn release_freed() {
    // SAFETY: malloc_trim takes no pointers and has no preconditions; glibc
    // serialises it with every other allocator call.
    let released = unsafe { nix::libc::malloc_trim(0) } == 1;
    tracing::debug!(released, "returned freed heap pages to the kernel");
}

/// Return the allocator's free pages to the kernel (no-op off glibc).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_freed() {}

/// How much freed memory each of a process's heaps keeps for the data
/// path's next buffers (see [`keep_data_path_pages`]): about what its
/// receive windows can hold at once, since that is what a bulk stream fills
/// and frees over and over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep(usize);

/// What a router's heaps keep for the data path, all arenas together.
pub const ROUTER_KEEP_TOTAL: usize = 4 << 20;

/// What a relay's heaps keep for relayed bytes, all arenas together.
pub const RELAY_KEEP_TOTAL: usize = 32 << 20;

impl Keep {
    /// The router, whose data path runs on `workers` runtime threads (one
    /// per core), each allocating from its own heap arena: 2 MiB an arena
    /// (its receive windows stay at 256 KiB a stream, yamux's and QUIC's,
    /// `quic::STREAM_WINDOW`; 2 MiB measured no refaults on a direct TLS or
    /// QUIC stream and about 8,000 page faults per GiB relayed), but at
    /// most [`ROUTER_KEEP_TOTAL`] over all workers, the share of it the
    /// memory budget counts (`docs/deploy.md`). The gateway gives it back
    /// once its streams have ended (`Gateway::trim_when_quiet`,
    /// [`release_freed`]).
    pub fn router(workers: usize) -> Keep {
        Keep((ROUTER_KEEP_TOTAL / workers.max(1)).min(2 << 20))
    }
    /// A relay, whose relayed bytes pass through `workers` runtime threads
    /// (one per core): its QUIC streams take 2 MiB (`RELAY_STREAM_WINDOW`,
    /// 8 MiB a connection) and its yamux links may grow by 4 MiB; 2 MiB an
    /// arena still faulted 13,000 pages per relayed GiB, 8 MiB none to
    /// speak of. 8 MiB an arena, at most [`RELAY_KEEP_TOTAL`] over all.
    pub fn relay(workers: usize) -> Keep {
        Keep((RELAY_KEEP_TOTAL / workers.max(1)).min(8 << 20))
    }
    /// The engineer's client, whose runtime is one thread (one arena
    /// carries its data path): its yamux windows may grow by 16 MiB
    /// (`Growth::CLIENT`). Below 16 MiB a download through a TLS session
    /// faulted 30,000 to 200,000 pages per GiB, half its CPU; a laptop
    /// keeps 32 MiB for that without noticing.
    pub const CLIENT: Keep = Keep(32 << 20);
}

/// Keep the data path's freed buffers for the next frames. A tunnel stream
/// allocates and frees its frames (yamux's, rustls's records, quinn's
/// datagrams) as fast as they flow, and what its windows buffer rises and
/// falls by megabytes; glibc hands a heap's top back to the kernel as soon
/// as 128 KiB of it is free, so each rise faulted its pages in again:
/// 90,000 to 200,000 page faults per GiB through a TLS session, up to half
/// its CPU, and a download at half speed. `keep` sets how much free memory
/// a heap keeps before it is trimmed. Setting it also stops glibc's own
/// sliding threshold (the first large free, a bundle's decode, used to
/// raise it), so large blocks always go back when freed. [`release_freed`]
/// still returns everything after a bundle's burst or a quiet spell. Call
/// once, at start.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // One of the crate's two unsafe blocks, both FFI calls here.
pub fn keep_data_path_pages(keep: Keep) {
    let bytes = i32::try_from(keep.0).unwrap_or(i32::MAX);
    // SAFETY: mallopt takes two integers and no pointers; glibc serialises
    // it with every other allocator call.
    let ok = unsafe { nix::libc::mallopt(nix::libc::M_TRIM_THRESHOLD, bytes) } == 1;
    if !ok {
        tracing::debug!("mallopt(M_TRIM_THRESHOLD) refused");
    }
}

/// Keep the data path's freed buffers (no-op off glibc).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_data_path_pages(_keep: Keep) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The heaps of all workers together keep no more than the budget
    /// counts, however many cores run them.
    #[test]
    fn what_all_workers_keep_stays_within_the_total() {
        for workers in [0, 1, 2, 3, 4, 8, 16, 64] {
            let (router, relay) = (Keep::router(workers).0, Keep::relay(workers).0);
            assert!(router <= 2 << 20 && router * workers <= ROUTER_KEEP_TOTAL);
            assert!(relay <= 8 << 20 && relay * workers <= RELAY_KEEP_TOTAL);
        }
        assert_eq!(Keep::router(2), Keep(2 << 20));
        assert_eq!(Keep::router(4), Keep(1 << 20));
        assert_eq!(Keep::relay(4), Keep(8 << 20));
        assert_eq!(Keep::relay(16), Keep(2 << 20));
    }
}
