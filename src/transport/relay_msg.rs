//! Reading and writing relay messages (`edgegate_proto::relay`) on any
//! async byte stream, with the length cap checked before allocating. Used
//! by the relay, the router's uplink and the engineer's client alike.

use edgegate_proto::relay::{self, RelayMsg};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Read one message; an end of stream or a malformed message is an error.
pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<RelayMsg> {
    read_allowing(r, None).await
}

/// [`read`], letting one kind of message, the variant `tag`, be as large
/// as `cap` (a bundle: `relay::PUSH_TAG` or `relay::DELIVER_TAG`); every
/// other message stays within `MAX_RELAY_MSG`, checked from the length
/// and the first byte before anything large is allocated. The body grows
/// with the bytes that arrive, not with the announced length.
pub async fn read_allowing<R: AsyncRead + Unpin>(
    r: &mut R,
    large: Option<(u8, usize)>,
) -> io::Result<RelayMsg> {
    let mut prefix = [0u8; 4];
    r.read_exact(&mut prefix).await?;
    let cap = large.map_or(relay::MAX_RELAY_MSG, |(_, cap)| {
        cap.max(relay::MAX_RELAY_MSG)
    });
    let len = relay::check_len_capped(prefix, cap).map_err(invalid)?;
    let mut body = Vec::with_capacity(len.min(relay::MAX_RELAY_MSG));
    if len > relay::MAX_RELAY_MSG {
        let mut tag = [0u8; 1];
        r.read_exact(&mut tag).await?;
        if Some(tag[0]) != large.map(|(t, _)| t) {
            return Err(invalid(relay::RelayMsgError::TooLarge(len)));
        }
        body.push(tag[0]);
    }
    (&mut *r)
        .take((len - body.len()) as u64)
        .read_to_end(&mut body)
        .await?;
    if body.len() != len {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
    }
    relay::decode(&body).map_err(invalid)
}

/// Write one message and flush it.
pub async fn write<W: AsyncWrite + Unpin>(w: &mut W, msg: &RelayMsg) -> io::Result<()> {
    w.write_all(&relay::encode(msg)).await?;
    w.flush().await
}

/// A malformed message, as an I/O error.
pub(crate) fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_round_trip_and_the_cap_holds() {
        let (mut a, mut b) = tokio::io::duplex(64 << 10);
        let msg = RelayMsg::Connect {
            ticket: vec![5; 100],
        };
        write(&mut a, &msg).await.unwrap();
        assert_eq!(read(&mut b).await.unwrap(), msg);
        a.write_all(&(relay::MAX_RELAY_MSG as u32 + 1).to_be_bytes())
            .await
            .unwrap();
        let err = read(&mut b).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        drop(a);
        assert!(read(&mut b).await.is_err());
    }

    #[tokio::test]
    async fn only_the_allowed_kind_may_be_large() {
        let big = RelayMsg::Deliver {
            bundle: vec![1; 20_000],
        };
        let allow = Some((relay::DELIVER_TAG, 64 << 10));
        let (mut a, mut b) = tokio::io::duplex(64 << 10);
        write(&mut a, &big).await.unwrap();
        assert_eq!(read_allowing(&mut b, allow).await.unwrap(), big);
        write(&mut a, &big).await.unwrap();
        assert!(read(&mut b).await.is_err(), "not without leave");
        let (mut a, mut b) = tokio::io::duplex(64 << 10);
        let other = RelayMsg::Connect {
            ticket: vec![2; 20_000],
        };
        write(&mut a, &other).await.unwrap();
        let push = Some((relay::PUSH_TAG, 64 << 10));
        assert!(read_allowing(&mut b, push).await.is_err(), "another kind");
    }
}
