//! The command line's end of the control socket.

use super::frame::{read_frame, write_frame, FrameIoError};
use edgegate_proto::control::{Request, Response};
use std::path::{Path, PathBuf};
use tokio::net::UnixStream;

/// Why a control call failed (not counting a `Response::Error` answer).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot connect to {}: {source} (is edgegated running, and may you use its socket?)", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Reading or writing failed.
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    /// The daemon's answer could not be decoded.
    #[error("control socket: bad response: {0}")]
    BadResponse(String),
    /// The daemon closed the connection without answering.
    #[error("control socket: the daemon closed the connection without answering")]
    Closed,
}

impl From<FrameIoError> for ClientError {
    fn from(e: FrameIoError) -> Self {
        match e {
            FrameIoError::Io(e) => ClientError::Io(e),
            FrameIoError::Frame(e) => ClientError::BadResponse(e.to_string()),
        }
    }
}

/// A connection to the daemon's control socket.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
}

impl Client {
    /// Connect to the socket at `path`.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Client, ClientError> {
        let path = path.as_ref();
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| ClientError::Connect {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Client { stream })
    }

    /// Send one request and wait for its response.
    pub async fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
        // A daemon that refuses us answers and closes without reading, so a
        // failed write may still leave its answer to read.
        let written = write_frame(&mut self.stream, req).await;
        match read_frame(&mut self.stream).await {
            Ok(Some(resp)) => Ok(resp),
            Ok(None) => Err(written.err().map_or(ClientError::Closed, ClientError::Io)),
            Err(e) => Err(written.err().map_or(e.into(), ClientError::Io)),
        }
    }
}
