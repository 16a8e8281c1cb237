//! Framed I/O and the byte pipes shared by the daemon and the client.
//!
//! Owns reading and writing length-prefixed [`Frame`]s on any async stream
//! (with the cap checked before allocating), the two shapes a tunnel stream
//! takes after `Opened` — raw bytes on a QUIC stream, `Data`/`Close` frames
//! on a TLS connection — behind [`PipeReader`] / [`PipeWriter`], and the QUIC
//! endpoint setup. It decides nothing and knows no policy.

use edgegate_proto::frame::{self, Frame, FrameError};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

mod coalesce;
mod conn;
pub mod mux;
mod pipe;
mod pool;
pub mod quic;
pub mod relay_msg;

pub use conn::{BiStream, BoxFuture, Closed, Connection, Grant, QuicConn};
pub use mux::MuxConn;
pub use pipe::{
    pipe_to_socket, socket_to_open_pipe, socket_to_pipe, Chunk, PipeReader, PipeWriter, PumpEnd,
    RawStream, Transform, FRAMED_CHUNK,
};

/// Why reading a frame failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The socket failed or closed mid-frame.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The frame was too large or malformed.
    #[error("frame: {0}")]
    Frame(#[from] FrameError),
    /// The peer sent nothing in time.
    #[error("timed out waiting for the peer")]
    Timeout,
    /// The peer sent a frame that does not belong here.
    #[error("unexpected frame")]
    Unexpected,
    /// The peer closed the stream before sending a frame.
    #[error("the peer closed the stream")]
    Closed,
}

/// Read one frame; `Ok(None)` on a clean end of stream before its first byte.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    cap: usize,
) -> Result<Option<Frame>, TransportError> {
    let Some(prefix) = read_prefix(r).await? else {
        return Ok(None);
    };
    let len = frame::check_len(prefix, cap)?;
    Ok(Some(read_body(r, len, Vec::new()).await?))
}

/// Read a frame's 4-byte length prefix; `Ok(None)` on a clean end of stream
/// before its first byte.
pub(crate) async fn read_prefix<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<[u8; 4]>> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut prefix[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        got += n;
    }
    Ok(Some(prefix))
}

/// Read the rest of a frame body of `len` bytes (already checked against
/// its cap) after the `start` bytes already read, and decode it.
pub(crate) async fn read_body<R: AsyncRead + Unpin>(
    r: &mut R,
    len: usize,
    start: Vec<u8>,
) -> Result<Frame, TransportError> {
    // Grow with the bytes actually received, not with the announced length,
    // so a large announced length costs nothing until it is really sent.
    let mut body = start;
    body.reserve(len.min(frame::MAX_FRAME).saturating_sub(body.len()));
    let rest = len.saturating_sub(body.len());
    (&mut *r).take(rest as u64).read_to_end(&mut body).await?;
    if body.len() != len {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
    }
    Ok(frame::decode(&body)?)
}

/// Read one frame, treating end of stream as an error.
pub async fn expect_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    cap: usize,
) -> Result<Frame, TransportError> {
    read_frame(r, cap).await?.ok_or(TransportError::Closed)
}

/// Write one frame and flush it.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, f: &Frame) -> io::Result<()> {
    w.write_all(&frame::encode(f)).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_cap_is_enforced() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        write_frame(
            &mut a,
            &Frame::Hello {
                ticket: vec![7; 10],
            },
        )
        .await
        .unwrap();
        let f = read_frame(&mut b, frame::MAX_FRAME).await.unwrap();
        assert_eq!(
            f,
            Some(Frame::Hello {
                ticket: vec![7; 10]
            })
        );

        a.write_all(&[0, 0, 0, 200]).await.unwrap();
        let err = read_frame(&mut b, 100).await.unwrap_err();
        assert!(matches!(
            err,
            TransportError::Frame(FrameError::TooLarge { .. })
        ));

        drop(a);
        assert!(read_frame(&mut b, 100).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn framed_pipe_data_is_the_encoded_frame_and_round_trips() {
        let sizes = [0usize, 1, 127, 128, 16_384, 70_000];
        let (a, b) = tokio::io::duplex(1 << 20);
        let (mut raw, mut tap) = tokio::io::duplex(1 << 20);
        let mut writer = PipeWriter::Framed(Box::new(a));
        for n in sizes {
            writer.write(&vec![n as u8; n]).await.unwrap();
            // What `write` produced equals frame::encode of the same pieces.
            for piece in vec![n as u8; n].chunks(FRAMED_CHUNK) {
                raw.write_all(&frame::encode(&Frame::Data(piece.to_vec())))
                    .await
                    .unwrap();
            }
        }
        writer.finish().await.unwrap();
        drop(writer);
        drop(raw);
        let mut expected = Vec::new();
        tap.read_to_end(&mut expected).await.unwrap();
        let mut got = Vec::new();
        let mut b = b;
        b.read_to_end(&mut got).await.unwrap();
        let close = frame::encode(&Frame::Close { reason: None });
        assert_eq!(got[..got.len() - close.len()], expected[..]);

        let mut reader = PipeReader::Framed(Box::new(std::io::Cursor::new(got)));
        let mut buf = vec![0u8; 8];
        let mut seen = Vec::new();
        loop {
            match reader.read_chunk(&mut buf).await.unwrap() {
                Chunk::Data(n) => seen.extend_from_slice(&buf[..n]),
                Chunk::End => break,
                other => panic!("{other:?}"),
            }
        }
        let sent: Vec<u8> = sizes.iter().flat_map(|&n| vec![n as u8; n]).collect();
        assert_eq!(seen, sent);
    }

    #[tokio::test]
    async fn truncated_frame_is_an_error() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&[0, 0, 0, 9, 1, 2]).await.unwrap();
        drop(a);
        assert!(read_frame(&mut b, 100).await.is_err());
    }
}
