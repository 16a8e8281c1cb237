//! The relay's control socket (`edgegate relay status`): the same socket
//! rules as the daemon's (`control/server.rs`: mode 0660, root or the
//! control group, checked with SO_PEERCRED), its own messages
//! (`edgegate_proto::relay::RelayControlRequest`).

use super::Relay;
use crate::control::access::{supplementary_groups, Access, PeerCred};
use crate::control::frame::{read_frame, write_frame, FrameIoError};
use crate::control::ControlServer;
use edgegate_proto::relay::{RelayControlRequest, RelayControlResponse, RelayStatus};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixStream;
use tokio::sync::Semaphore;

/// Connections served at once.
const MAX_CONNECTIONS: usize = 16;

/// A connection that sends no complete request for this long is closed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

impl Relay {
    /// Serve the control socket until the task is aborted.
    pub(super) async fn serve_control(self: Arc<Self>, server: ControlServer) {
        let (listener, access) = server.into_parts();
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let permit = slots.clone().acquire_owned().await.expect("never closed");
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (relay, access) = (self.clone(), access.clone());
            tokio::spawn(async move {
                if let Err(e) = relay.control_connection(stream, &access).await {
                    tracing::debug!(error = %e, "control connection ended");
                }
                drop(permit);
            });
        }
    }

    async fn control_connection(
        &self,
        mut stream: UnixStream,
        access: &Arc<Access>,
    ) -> Result<(), FrameIoError> {
        let cred = stream.peer_cred()?;
        let peer = PeerCred {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid(),
        };
        let rule = access.clone();
        let allowed = tokio::task::spawn_blocking(move || rule.allows(&peer, supplementary_groups))
            .await
            .unwrap_or(false);
        if !allowed {
            tracing::warn!(uid = peer.uid, "control socket: permission denied");
            let denied = RelayControlResponse::Error("permission denied".into());
            return Ok(write_frame(&mut stream, &denied).await?);
        }
        loop {
            let read = read_frame::<RelayControlRequest>(&mut stream);
            let req = match tokio::time::timeout(REQUEST_TIMEOUT, read).await {
                Err(_) | Ok(Ok(None)) => return Ok(()),
                Ok(Ok(Some(req))) => req,
                Ok(Err(FrameIoError::Frame(e))) => {
                    let answer = RelayControlResponse::Error(format!("bad request: {e}"));
                    write_frame(&mut stream, &answer).await?;
                    return Err(e.into());
                }
                Ok(Err(e)) => return Err(e),
            };
            let answer = match req {
                RelayControlRequest::Status => RelayControlResponse::Status(RelayStatus {
                    key: self.public(),
                    routers: self.registry.snapshot(),
                    bundles: self
                        .spool
                        .list(self.authority.role(edgegate_proto::KeyRole::Bundle)),
                }),
            };
            write_frame(&mut stream, &answer).await?;
        }
    }
}
