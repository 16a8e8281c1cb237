//! Reading and writing relay messages (`edgegate_proto::relay`) on any
//! async byte stream, with the length cap checked before allocating. Used
//! by the relay, the router's uplink and the engineer's client alike.

use edgegate_proto::relay::{self, RelayMsg};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Read one message; an end of stream or a malformed message is an error.
pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<RelayMsg> {
    let mut prefix = [0u8; 4];
    r.read_exact(&mut prefix).await?;
    let len = relay::check_len(prefix).map_err(invalid)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    relay::decode(&body).map_err(invalid)
}

/// Write one message and flush it.
pub async fn write<W: AsyncWrite + Unpin>(w: &mut W, msg: &RelayMsg) -> io::Result<()> {
    w.write_all(&relay::encode(msg)).await?;
    w.flush().await
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
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
}
