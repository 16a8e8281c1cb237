//! Recycled read buffers for the QUIC send path.
//!
//! quinn keeps every chunk written to a stream until the peer acknowledges
//! it. Handing it the buffer we read into (`write_chunk`) instead of a slice
//! (`write`, which copies into a fresh allocation) saves a copy per byte, and
//! taking the buffers back when quinn drops them saves the allocator from
//! returning freed memory to the kernel and faulting it in again: at 6
//! Gbit/s those page faults were ~8% of the daemon's CPU. Small reads are
//! copied out instead, so a chunk never pins more than twice its size.

use bytes::Bytes;
use std::sync::Mutex;

/// Idle buffers kept for reuse (1 MiB at the default 64 KiB stream buffer);
/// more are freed. Shared by every stream of the process.
const KEEP: usize = 16;

static FREE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A read buffer from the pool; back to the pool when dropped.
pub(crate) struct Buf {
    data: Vec<u8>,
    len: usize,
}

impl Buf {
    /// A buffer of `size` bytes to read into.
    pub(crate) fn take(size: usize) -> Buf {
        let reused = lock().pop();
        let mut data = reused.unwrap_or_default();
        data.resize(size, 0);
        Buf { data, len: 0 }
    }

    /// The whole buffer, to read into.
    pub(crate) fn space(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// The first `len` bytes as a chunk for quinn: this buffer itself when
    /// they fill at least half of it (it returns to the pool once quinn lets
    /// go), otherwise a copy (and this buffer goes back at once).
    pub(crate) fn freeze(mut self, len: usize) -> Bytes {
        if len * 2 < self.data.len() {
            return Bytes::copy_from_slice(&self.data[..len]);
        }
        self.len = len;
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for Buf {
    fn as_ref(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        let data = std::mem::take(&mut self.data);
        let mut free = lock();
        if free.len() < KEEP {
            free.push(data);
        }
    }
}

fn lock() -> std::sync::MutexGuard<'static, Vec<Vec<u8>>> {
    FREE.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_reads_are_the_buffer_itself_and_come_back() {
        let mut b = Buf::take(1024);
        b.space()[..600].fill(7);
        let ptr = b.space().as_ptr();
        let bytes = b.freeze(600);
        assert_eq!(bytes.len(), 600);
        assert!(bytes.iter().all(|&x| x == 7));
        assert_eq!(bytes.as_ptr(), ptr, "no copy");
        drop(bytes);
        // Other tests share the pool: the buffer is back unless it was full.
        assert!(lock().iter().any(|v| v.as_ptr() == ptr) || lock().len() == KEEP);
    }

    #[test]
    fn small_reads_are_copied_and_the_buffer_is_freed_for_reuse() {
        let mut b = Buf::take(1024);
        b.space()[..10].copy_from_slice(b"0123456789");
        let ptr = b.space().as_ptr();
        let bytes = b.freeze(10);
        assert_eq!(&bytes[..], b"0123456789");
        assert_ne!(
            bytes.as_ptr(),
            ptr,
            "a copy, not a 1 KiB buffer pinned for 10 bytes"
        );
    }

    #[test]
    fn the_pool_is_bounded() {
        let bufs: Vec<Bytes> = (0..KEEP + 8)
            .map(|_| {
                let mut b = Buf::take(64);
                b.space().fill(1);
                b.freeze(64)
            })
            .collect();
        drop(bufs);
        assert!(lock().len() <= KEEP);
    }
}
