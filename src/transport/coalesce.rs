//! Small writes held back until the next large write or flush, so that a
//! yamux frame's 12-byte header and its body reach TLS as one write.
//!
//! tokio-rustls seals and sends every write at once: yamux writes a frame
//! as header, then body, so each frame cost two TLS records and two `send`
//! calls, and a window update or a short control frame one of each more.
//! [`Coalesce`] keeps writes of up to [`SMALL`] bytes in a buffer and hands
//! them to TLS together with the next large write (one vectored write, one
//! record run, one system call) or on `flush`, which yamux calls after
//! every frame it sends: nothing waits longer than the frame after it.
//! Reads pass through untouched.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Writes of at most this many bytes are held back (a yamux header, a
/// window update, a short control frame).
pub(crate) const SMALL: usize = 1024;

/// Most bytes held back at once.
const HELD_MAX: usize = 16 << 10;

/// A writer that merges small writes into the next write or flush.
#[derive(Debug)]
pub(crate) struct Coalesce<T> {
    inner: T,
    held: Vec<u8>,
}

impl<T> Coalesce<T> {
    pub(crate) fn new(inner: T) -> Coalesce<T> {
        Coalesce {
            inner,
            held: Vec::with_capacity(HELD_MAX),
        }
    }
}

impl<T: AsyncWrite + Unpin> Coalesce<T> {
    /// Write out what is held back, all of it.
    fn poll_release(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesce<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.len() <= SMALL && this.held.len() + buf.len() <= HELD_MAX {
            this.held.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        // What is held goes first, in the same write as `buf` where the
        // writer takes both.
        while !this.held.is_empty() {
            let slices = [IoSlice::new(&this.held), IoSlice::new(buf)];
            let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, &slices))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if n <= this.held.len() {
                this.held.drain(..n);
            } else {
                let taken = n - this.held.len();
                this.held.clear();
                return Poll::Ready(Ok(taken));
            }
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_release(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_release(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalesce<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Counts the writes that reach it.
    #[derive(Default)]
    struct Sink {
        bytes: Vec<u8>,
        writes: usize,
    }

    impl AsyncWrite for Sink {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes += 1;
            self.bytes.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.writes += 1;
            let mut n = 0;
            for b in bufs {
                self.bytes.extend_from_slice(b);
                n += b.len();
            }
            Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_header_and_its_body_leave_in_one_write() {
        let mut w = Coalesce::new(Sink::default());
        w.write_all(&[1; 12]).await.unwrap();
        assert_eq!(w.inner.writes, 0, "held back");
        w.write_all(&[2; 60_000]).await.unwrap();
        assert_eq!(w.inner.writes, 1);
        w.write_all(&[3; 5]).await.unwrap();
        w.flush().await.unwrap();
        assert_eq!(w.inner.writes, 2, "a flush releases what is held");
        let mut want = vec![1; 12];
        want.extend([2; 60_000]);
        want.extend([3; 5]);
        assert_eq!(w.inner.bytes, want, "in order, nothing lost");
    }

    #[tokio::test]
    async fn partial_writes_keep_the_order() {
        // A duplex pipe smaller than the data accepts it in pieces.
        let (a, mut b) = tokio::io::duplex(100);
        let mut w = Coalesce::new(a);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut want = Vec::new();
        for i in 0..50u8 {
            let small = vec![i; 7];
            let large = vec![i; 3000];
            w.write_all(&small).await.unwrap();
            w.write_all(&large).await.unwrap();
            want.extend(small);
            want.extend(large);
        }
        w.write_all(b"end").await.unwrap();
        want.extend(b"end");
        w.shutdown().await.unwrap();
        drop(w);
        assert_eq!(reader.await.unwrap(), want);
    }
}
