//! The tunnel side of a proxied stream, in its two shapes: raw bytes on a
//! QUIC stream, or `Data`/`Close` frames on a stream multiplexed over a TLS
//! connection (`mux.rs`; yamux has no per-stream reset code to carry a
//! reason). The pumps copy between a pipe and a
//! plain socket with byte counts kept in shared counters, so a stream cut
//! mid-copy still reports what it carried.

use super::{pool, read_body, read_prefix, write_frame, TransportError};
use edgegate_proto::frame::{self, Frame, SessionEnd, MAX_FRAME, STREAM_READ_ONLY};
use edgegate_proto::DenyReason;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A read-level filter as the pump calls it: feed the client's bytes, append
/// what may pass to `out`; `false` refuses the bytes.
pub type Transform<'a> = &'a mut (dyn FnMut(&[u8], &mut Vec<u8>) -> bool + Send);

type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// A stream's two halves as one plain byte stream, whatever the transport:
/// what a relay copies and what a relayed TLS session runs over. Reads and
/// writes are raw (a multiplexed stream's bytes carry no `Data`/`Close`
/// frames here); the halves stay what they were, so a relay can move a
/// QUIC stream's chunks to another without copying them (`into_inner`).
pub type RawStream = tokio::io::Join<PipeReader, PipeWriter>;

/// Reading end of a tunnel stream.
pub enum PipeReader {
    /// A QUIC receive stream carrying raw bytes.
    Quic(quinn::RecvStream),
    /// A multiplexed (TLS) stream's read half carrying `Data`/`Close` frames.
    Framed(BoxRead),
}

/// Writing end of a tunnel stream.
pub enum PipeWriter {
    /// A QUIC send stream carrying raw bytes.
    Quic(quinn::SendStream),
    /// A multiplexed (TLS) stream's write half carrying `Data`/`Close` frames.
    Framed(BoxWrite),
}

/// One read from a pipe.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    /// `n` bytes were placed at the start of the buffer.
    Data(usize),
    /// The sender finished its direction.
    End,
    /// The daemon cut the stream for this reason.
    Cut(DenyReason),
    /// The daemon closed the stream: the client's bytes broke its read level.
    ReadOnly,
    /// The daemon ended the whole session (TLS transport).
    SessionClosed(SessionEnd),
}

/// How a pump ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PumpEnd {
    /// The source finished and the end was passed on.
    Finished,
    /// The daemon cut the stream (seen by the client).
    Cut(DenyReason),
    /// The transform refused the bytes (read-level violation), or (client
    /// side) the daemon reported that it did.
    Refused,
    /// The daemon ended the whole session (seen by the client, TLS).
    SessionClosed(SessionEnd),
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl PipeReader {
    /// Read the next chunk into `buf` (whose length is the read size).
    pub async fn read_chunk(&mut self, buf: &mut Vec<u8>) -> io::Result<Chunk> {
        match self {
            PipeReader::Quic(recv) => match recv.read(buf).await {
                Ok(Some(n)) => Ok(Chunk::Data(n)),
                Ok(None) => Ok(Chunk::End),
                Err(e) => quic_read_error(e),
            },
            PipeReader::Framed(r) => read_framed_chunk(r, buf).await,
        }
    }
}

/// A QUIC read error as the chunk (or error) it means.
fn quic_read_error(e: quinn::ReadError) -> io::Result<Chunk> {
    match e {
        quinn::ReadError::Reset(code) => {
            let code = code.into_inner();
            match DenyReason::from_stream_code(code) {
                Some(reason) => Ok(Chunk::Cut(reason)),
                None if code == u64::from(STREAM_READ_ONLY) => Ok(Chunk::ReadOnly),
                None => Err(io::Error::from(io::ErrorKind::ConnectionReset)),
            }
        }
        e => Err(io_err(e)),
    }
}

/// Read one frame of a TLS stream. A `Data` frame in its canonical encoding
/// (what `frame::encode` and `write_data_frame` produce) has its payload read
/// straight into `buf`; any other frame is read whole and decoded, so what is
/// accepted is exactly what `frame::decode` accepts.
async fn read_framed_chunk(r: &mut BoxRead, buf: &mut Vec<u8>) -> io::Result<Chunk> {
    // A framed stream ends with a `Close` frame; the stream ending without
    // one was reset or lost (a dropped multiplexed stream), never finished.
    let Some(prefix) = read_prefix(r).await? else {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "stream ended without a Close frame",
        ));
    };
    let len = frame::check_len(prefix, MAX_FRAME).map_err(|e| io_err(TransportError::from(e)))?;
    let mut start = Vec::new();
    if let Some((n, (expected, h))) =
        frame::data_len_for_body(len).and_then(|n| Some((n, frame::data_header(n)?)))
    {
        let mut head = [0u8; frame::DATA_HEADER_MAX];
        r.read_exact(&mut head[4..h]).await?;
        if head[4..h] == expected[4..h] {
            if buf.len() < n {
                buf.resize(n, 0);
            }
            r.read_exact(&mut buf[..n]).await?;
            return Ok(Chunk::Data(n));
        }
        start.extend_from_slice(&head[4..h]);
    }
    match read_body(r, len, start).await {
        Ok(Frame::Data(bytes)) => {
            if buf.len() < bytes.len() {
                buf.resize(bytes.len(), 0);
            }
            buf[..bytes.len()].copy_from_slice(&bytes);
            Ok(Chunk::Data(bytes.len()))
        }
        Ok(Frame::Close { reason: None }) => Ok(Chunk::End),
        Ok(Frame::Close {
            reason: Some(reason),
        }) => Ok(Chunk::Cut(reason)),
        Ok(Frame::ReadOnlyViolation) => Ok(Chunk::ReadOnly),
        Ok(Frame::SessionClosed { reason }) => Ok(Chunk::SessionClosed(reason)),
        Ok(_) => Err(io_err(TransportError::Unexpected)),
        Err(TransportError::Io(e)) => Err(e),
        Err(e) => Err(io_err(e)),
    }
}

/// Write one `Data` frame, byte for byte what `frame::encode(&Frame::Data(..))`
/// gives, in one write (a multiplexed stream makes each write a frame of its
/// own: a header written apart would travel as a frame of 5 bytes). Not
/// flushed. The bulk path avoids the copy: see [`PipeWriter::write_reserved`].
async fn write_data_frame(w: &mut BoxWrite, payload: &[u8]) -> io::Result<()> {
    let (header, h) = frame::data_header(payload.len())
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut bytes = Vec::with_capacity(h + payload.len());
    bytes.extend_from_slice(&header[..h]);
    bytes.extend_from_slice(payload);
    w.write_all(&bytes).await
}

impl PipeReader {
    /// Tell the sender to stop (QUIC `STOP_SENDING` with `code`); a TLS
    /// connection is closed by its writer instead.
    pub fn stop(&mut self, code: u32) {
        if let PipeReader::Quic(recv) = self {
            let _ = recv.stop(quinn::VarInt::from_u32(code));
        }
    }
}

impl PipeWriter {
    /// Send one control frame (before the raw bytes start).
    pub async fn write_frame(&mut self, f: &Frame) -> io::Result<()> {
        match self {
            PipeWriter::Quic(send) => {
                let bytes = edgegate_proto::frame::encode(f);
                send.write_all(&bytes).await.map_err(io_err)
            }
            PipeWriter::Framed(w) => write_frame(w, f).await,
        }
    }

    /// Send frames already encoded back to back (`frame::encode` each),
    /// with one flush: many small frames, as the VPN's packets, in one
    /// write instead of one write and flush each.
    pub async fn write_encoded(&mut self, frames: &[u8]) -> io::Result<()> {
        match self {
            PipeWriter::Quic(send) => send.write_all(frames).await.map_err(io_err),
            PipeWriter::Framed(w) => {
                w.write_all(frames).await?;
                w.flush().await
            }
        }
    }

    /// Send bytes.
    pub async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            PipeWriter::Quic(send) => send.write_all(data).await.map_err(io_err),
            PipeWriter::Framed(w) => {
                for piece in data.chunks(FRAMED_CHUNK) {
                    write_data_frame(w, piece).await?;
                }
                // One flush per chunk of the source, not per frame.
                w.flush().await
            }
        }
    }

    /// Send the `n` bytes at `buf[DATA_HEADER_MAX..]`; the first
    /// [`frame::DATA_HEADER_MAX`] bytes of `buf` are room for a `Data`
    /// frame's header, so a framed stream sends header and payload in one
    /// write without copying the payload (the bulk path). `n` is at most
    /// [`FRAMED_CHUNK`] on a framed stream.
    pub async fn write_reserved(&mut self, buf: &mut [u8], n: usize) -> io::Result<()> {
        const H: usize = frame::DATA_HEADER_MAX;
        match self {
            PipeWriter::Quic(send) => send.write_all(&buf[H..H + n]).await.map_err(io_err),
            PipeWriter::Framed(w) => {
                let (header, h) = frame::data_header(n)
                    .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
                buf[H - h..H].copy_from_slice(&header[..h]);
                w.write_all(&buf[H - h..H + n]).await?;
                w.flush().await
            }
        }
    }

    /// Finish this direction normally.
    pub async fn finish(&mut self) -> io::Result<()> {
        match self {
            PipeWriter::Quic(send) => send.finish().map_err(io_err),
            PipeWriter::Framed(w) => write_frame(w, &Frame::Close { reason: None }).await,
        }
    }

    /// Cut the stream for `reason` (daemon side of a re-decision).
    pub async fn cut(&mut self, reason: DenyReason) {
        match self {
            PipeWriter::Quic(send) => {
                let _ = send.reset(quinn::VarInt::from_u32(reason.stream_code()));
            }
            PipeWriter::Framed(w) => {
                // Best effort: the peer may already be gone.
                let _ = write_frame(
                    w,
                    &Frame::Close {
                        reason: Some(reason),
                    },
                )
                .await;
                let _ = w.shutdown().await;
            }
        }
    }

    /// Close the stream because the client broke its read level.
    pub async fn refuse(&mut self) {
        match self {
            PipeWriter::Quic(send) => {
                let _ = send.reset(quinn::VarInt::from_u32(STREAM_READ_ONLY));
            }
            PipeWriter::Framed(w) => {
                let _ = write_frame(w, &Frame::ReadOnlyViolation).await;
                let _ = w.shutdown().await;
            }
        }
    }

    /// Close the stream because the daemon ended its whole session: QUIC
    /// resets it (the connection close carries the reason), TLS says why
    /// with `SessionClosed` and closes.
    pub async fn end_session(&mut self, end: SessionEnd) {
        match self {
            PipeWriter::Quic(send) => {
                let code = match end {
                    SessionEnd::Denied(r) => r.stream_code(),
                    _ => 0,
                };
                let _ = send.reset(quinn::VarInt::from_u32(code));
            }
            PipeWriter::Framed(w) => {
                let _ = write_frame(w, &Frame::SessionClosed { reason: end }).await;
                let _ = w.shutdown().await;
            }
        }
    }

    /// Abort the stream without a reason (protocol error).
    pub async fn abort(&mut self) {
        match self {
            PipeWriter::Quic(send) => {
                let _ = send.reset(quinn::VarInt::from_u32(0));
            }
            PipeWriter::Framed(w) => {
                let _ = w.shutdown().await;
            }
        }
    }
}

/// Copy a pipe into a plain socket until the pipe ends, passing each chunk
/// through `transform` (the read-level filter; `false` refuses the bytes,
/// after what it let through before the offending message is written) or,
/// with `None`, writing it as it is. On a normal end, and on a refusal after
/// what passed, the socket's write side is shut down (half close): a backend
/// then knows no more requests come and can finish answering the ones it
/// got.
pub async fn pipe_to_socket<W>(
    from: &mut PipeReader,
    to: &mut W,
    buf_size: usize,
    counter: &AtomicU64,
    mut transform: Option<Transform<'_>>,
) -> io::Result<PumpEnd>
where
    W: AsyncWrite + Unpin,
{
    if let (PipeReader::Quic(recv), None) = (&mut *from, &transform) {
        return quic_to_socket(recv, to, counter).await;
    }
    let mut buf = vec![0u8; buf_size];
    let mut out = Vec::new();
    loop {
        let chunk = from.read_chunk(&mut buf).await?;
        match chunk {
            Chunk::Data(n) => {
                counter.fetch_add(n as u64, Ordering::Relaxed);
                let Some(transform) = &mut transform else {
                    to.write_all(&buf[..n]).await?;
                    continue;
                };
                out.clear();
                let ok = transform(&buf[..n], &mut out);
                to.write_all(&out).await?;
                if !ok {
                    let _ = to.shutdown().await;
                    return Ok(PumpEnd::Refused);
                }
            }
            Chunk::End => {
                let _ = to.shutdown().await;
                return Ok(PumpEnd::Finished);
            }
            Chunk::Cut(reason) => return Ok(PumpEnd::Cut(reason)),
            Chunk::ReadOnly => return Ok(PumpEnd::Refused),
            Chunk::SessionClosed(end) => return Ok(PumpEnd::SessionClosed(end)),
        }
    }
}

/// Chunks taken from a QUIC stream per socket write.
const QUIC_CHUNKS: usize = 32;

/// Unfiltered QUIC stream to socket without a copy of our own: the stream's
/// chunks (slices of the received datagrams) go out in one vectored write.
/// (`read` into one buffer copies every byte once more; `read_chunk` alone
/// costs one write per datagram.)
async fn quic_to_socket<W: AsyncWrite + Unpin>(
    recv: &mut quinn::RecvStream,
    to: &mut W,
    counter: &AtomicU64,
) -> io::Result<PumpEnd> {
    let mut chunks: [bytes::Bytes; QUIC_CHUNKS] = Default::default();
    loop {
        let n = match recv.read_chunks(&mut chunks).await {
            Ok(Some(n)) => n,
            Ok(None) => {
                let _ = to.shutdown().await;
                return Ok(PumpEnd::Finished);
            }
            // A reset with a reason is a cut or a read-level refusal;
            // anything else is an error.
            Err(e) => {
                return Ok(match quic_read_error(e)? {
                    Chunk::Cut(reason) => PumpEnd::Cut(reason),
                    Chunk::ReadOnly => PumpEnd::Refused,
                    other => return Err(io_err(format!("unexpected {other:?}"))),
                })
            }
        };
        let bytes: usize = chunks[..n].iter().map(|c| c.len()).sum();
        counter.fetch_add(bytes as u64, Ordering::Relaxed);
        write_all_chunks(to, &mut chunks[..n]).await?;
    }
}

/// Write every chunk, vectored, however the socket splits the writes; the
/// chunks are emptied as they go.
async fn write_all_chunks<W: AsyncWrite + Unpin>(
    to: &mut W,
    mut chunks: &mut [bytes::Bytes],
) -> io::Result<()> {
    use bytes::Buf as _;
    while !chunks.is_empty() {
        let slices: [IoSlice<'_>; QUIC_CHUNKS] =
            std::array::from_fn(|i| IoSlice::new(chunks.get(i).map_or(&[][..], |c| &c[..])));
        let mut n = to.write_vectored(&slices[..chunks.len()]).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let first = chunks[0].len().min(n);
            chunks[0].advance(first);
            n -= first;
            if chunks[0].is_empty() {
                chunks = &mut chunks[1..];
            }
        }
        while chunks.first().is_some_and(|c| c.is_empty()) {
            chunks = &mut chunks[1..];
        }
    }
    Ok(())
}

/// Largest `Data` payload a framed stream carries per frame: its header (at
/// most 8 bytes) and the payload make one yamux frame, which with yamux's
/// own 12-byte header fills four TLS records (see `mux.rs`).
pub const FRAMED_CHUNK: usize = super::mux::FRAME_MAX - frame::DATA_HEADER_MAX;

/// Copy a plain socket into a pipe until the socket ends, then finish the
/// pipe. `observe` sees every chunk before it is sent (a read-level filter
/// framing the other direction needs the server's bytes).
pub async fn socket_to_pipe<R, O>(
    from: &mut R,
    to: &mut PipeWriter,
    buf_size: usize,
    counter: &AtomicU64,
    observe: O,
) -> io::Result<PumpEnd>
where
    R: AsyncRead + Unpin,
    O: FnMut(&[u8]),
{
    socket_to_open_pipe(from, to, buf_size, counter, observe).await?;
    to.finish().await?;
    Ok(PumpEnd::Finished)
}

/// [`socket_to_pipe`] without the finish: the pipe stays open when the
/// socket ends, so the caller can add its own last bytes (the read-level
/// filter's answer to a refused request) before finishing it.
pub async fn socket_to_open_pipe<R, O>(
    from: &mut R,
    to: &mut PipeWriter,
    buf_size: usize,
    counter: &AtomicU64,
    mut observe: O,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    O: FnMut(&[u8]),
{
    if let PipeWriter::Quic(send) = to {
        return socket_to_quic(from, send, buf_size, counter, observe).await;
    }
    // One read, one frame: a read never straddles two frames, and lands
    // behind room for its frame header (one write, no copy).
    const H: usize = frame::DATA_HEADER_MAX;
    let mut buf = vec![0u8; H + buf_size.min(FRAMED_CHUNK)];
    loop {
        let n = from.read(&mut buf[H..]).await?;
        if n == 0 {
            return Ok(());
        }
        counter.fetch_add(n as u64, Ordering::Relaxed);
        observe(&buf[H..H + n]);
        to.write_reserved(&mut buf, n).await?;
    }
}

/// Socket to QUIC stream: each read lands in a pooled buffer that quinn
/// takes as it is (see `pool`).
async fn socket_to_quic<R, O>(
    from: &mut R,
    send: &mut quinn::SendStream,
    buf_size: usize,
    counter: &AtomicU64,
    mut observe: O,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    O: FnMut(&[u8]),
{
    loop {
        let mut buf = pool::Buf::take(buf_size);
        let n = from.read(buf.space()).await?;
        if n == 0 {
            return Ok(());
        }
        counter.fetch_add(n as u64, Ordering::Relaxed);
        observe(&buf.space()[..n]);
        send.write_chunk(buf.freeze(n)).await.map_err(io_err)?;
    }
}

/// Raw reads, for the frames a stream starts with (`Hello`, `Open`, the
/// answers) before its data phase.
impl AsyncRead for PipeReader {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            PipeReader::Quic(r) => std::pin::Pin::new(r).poll_read(cx, buf),
            PipeReader::Framed(r) => std::pin::Pin::new(r).poll_read(cx, buf),
        }
    }
}

/// Raw writes, for the frames a stream starts with and control frames.
impl AsyncWrite for PipeWriter {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        match self.get_mut() {
            PipeWriter::Quic(w) => std::pin::Pin::new(w)
                .poll_write(cx, buf)
                .map_err(io::Error::from),
            PipeWriter::Framed(w) => std::pin::Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        match self.get_mut() {
            PipeWriter::Quic(w) => std::pin::Pin::new(w).poll_write_vectored(cx, bufs),
            PipeWriter::Framed(w) => std::pin::Pin::new(w).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            PipeWriter::Quic(w) => w.is_write_vectored(),
            PipeWriter::Framed(w) => w.is_write_vectored(),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            PipeWriter::Quic(w) => std::pin::Pin::new(w).poll_flush(cx),
            PipeWriter::Framed(w) => std::pin::Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            PipeWriter::Quic(w) => std::pin::Pin::new(w).poll_shutdown(cx),
            PipeWriter::Framed(w) => std::pin::Pin::new(w).poll_shutdown(cx),
        }
    }
}
