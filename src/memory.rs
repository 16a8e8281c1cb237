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
#[allow(unsafe_code)] // The crate's one unsafe block: an FFI call (see the crate's lints).
pub fn release_freed() {
    // SAFETY: malloc_trim takes no pointers and has no preconditions; glibc
    // serialises it with every other allocator call.
    let released = unsafe { nix::libc::malloc_trim(0) } == 1;
    tracing::debug!(released, "returned freed heap pages to the kernel");
}

/// Return the allocator's free pages to the kernel (no-op off glibc).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_freed() {}
