//! A multiplexed stream split into a read half and a write half that tasks
//! of their own poll, without losing a wake-up.
//!
//! `tokio::io::split` is not enough for a yamux stream: both directions
//! send on the stream's one command channel (a read sends window updates,
//! and tries to on every read), and that channel keeps one waker per
//! sender. A read polled while a write waits for room replaces the write's
//! waker, and the write is never woken again: a stream carrying small
//! frames both ways at once (the VPN's packets over TLS) stalls for good.
//! Here every poll of the stream passes a waker that wakes both halves'
//! tasks; a half woken for the other's sake polls again and finds nothing.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What both halves share: the stream and each half's last waker.
struct Shared<S> {
    stream: Mutex<S>,
    wakers: Arc<Wakers>,
}

/// The tasks of the two halves (read, write), woken together.
#[derive(Default)]
struct Wakers([Mutex<Option<Waker>>; 2]);

impl Wake for Wakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        for slot in &self.0 {
            let waker = lock(slot).clone();
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The read half.
pub(crate) struct ReadHalf<S>(Arc<Shared<S>>);

/// The write half.
pub(crate) struct WriteHalf<S>(Arc<Shared<S>>);

/// Split `stream` into halves whose tasks are both woken by any wake-up
/// of the stream.
pub(crate) fn split<S>(stream: S) -> (ReadHalf<S>, WriteHalf<S>) {
    let shared = Arc::new(Shared {
        stream: Mutex::new(stream),
        wakers: Arc::new(Wakers::default()),
    });
    (ReadHalf(shared.clone()), WriteHalf(shared))
}

impl<S: Unpin> Shared<S> {
    /// Poll the stream as half `which` (0 read, 1 write).
    fn poll<T>(
        &self,
        which: usize,
        cx: &mut Context<'_>,
        f: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        {
            let mut slot = lock(&self.wakers.0[which]);
            if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *slot = Some(cx.waker().clone());
            }
        }
        let both = Waker::from(self.wakers.clone());
        let mut both_cx = Context::from_waker(&both);
        let mut stream = lock(&self.stream);
        f(Pin::new(&mut *stream), &mut both_cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadHalf<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.0.poll(0, cx, |s, cx| s.poll_read(cx, buf))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteHalf<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.poll(1, cx, |s, cx| s.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll(1, cx, |s, cx| s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll(1, cx, |s, cx| s.poll_shutdown(cx))
    }
}
