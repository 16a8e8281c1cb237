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

/// Bytes of free memory a heap keeps at its top before glibc trims it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: i32 = 512 << 10;

/// Keep the data path's freed buffers for the next frame. A tunnel stream
/// allocates and frees a 64 KiB buffer per frame (yamux's frames, rustls's
/// records); glibc hands a heap's top back to the kernel as soon as 128 KiB
/// of it is free, so each frame faulted its pages in again: ~90,000 page
/// faults per GiB through a TLS session, a tenth of its CPU. 512 KiB per
/// arena is the least that measured no refaults on a bulk TLS or QUIC
/// stream (256 KiB still faulted). glibc's own default moves the same way
/// (the first large free, a bundle's decode, raises it to twice that
/// block); setting it also stops that, so large blocks always go back to
/// the kernel when freed. [`release_freed`] still returns everything after
/// a bundle's burst. Call once, at start.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // One of the crate's two unsafe blocks, both FFI calls here.
pub fn keep_data_path_pages() {
    // SAFETY: mallopt takes two integers and no pointers; glibc serialises
    // it with every other allocator call.
    let ok = unsafe { nix::libc::mallopt(nix::libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) } == 1;
    if !ok {
        tracing::debug!("mallopt(M_TRIM_THRESHOLD) refused");
    }
}

/// Keep the data path's freed buffers (no-op off glibc).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_data_path_pages() {}
