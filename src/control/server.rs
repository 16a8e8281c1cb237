//! The daemon's end of the control socket.

use super::access::{supplementary_groups, Access, PeerCred};
use super::frame::{read_frame, write_frame, FrameIoError};
use super::ControlHandler;
use edgegate_proto::control::{Request, Response};
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

/// Connections served at once; further clients wait in the listen backlog.
const MAX_CONNECTIONS: usize = 16;
/// A connection that sends no complete request for this long is closed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A bound control socket, ready to [`serve`](ControlServer::serve).
#[derive(Debug)]
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    access: Arc<Access>,
}

impl ControlServer {
    /// Bind `path` (must run inside a tokio runtime): create the parent
    /// directory, replace a stale socket file (refusing if a live daemon
    /// answers on it or the path is not a socket), set mode 0660 and, if
    /// `group` exists, make it the socket's group. A missing group is
    /// logged and the socket stays root-only (plus the daemon's own uid).
    pub fn bind(path: &Path, group: Option<&str>) -> io::Result<ControlServer> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        remove_stale(path)?;
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        let group = group.and_then(|name| resolve_group(path, name));
        let access = Access {
            daemon_uid: nix::unistd::geteuid().as_raw(),
            group,
        };
        tracing::info!(path = %path.display(), group = ?group, "control socket listening");
        Ok(ControlServer {
            listener,
            path: path.to_path_buf(),
            access: Arc::new(access),
        })
    }

    /// The bound listener and who may use it, for a server of other
    /// messages on the same kind of socket (the relay's, `relay/control.rs`).
    pub(crate) fn into_parts(self) -> (UnixListener, Arc<Access>) {
        (self.listener, self.access)
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accept and serve connections until the task is aborted.
    pub async fn serve(self, handler: Arc<dyn ControlHandler>) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let permit = slots.clone().acquire_owned().await.expect("never closed");
            let stream = match self.listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (access, handler) = (self.access.clone(), handler.clone());
            tokio::spawn(async move {
                if let Err(e) = connection(stream, &access, handler.as_ref()).await {
                    tracing::debug!(error = %e, "control connection ended");
                }
                drop(permit);
            });
        }
    }
}

fn remove_stale(path: &Path) -> io::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} is in use by a running daemon", path.display()),
        ));
    }
    std::fs::remove_file(path)
}

fn resolve_group(path: &Path, name: &str) -> Option<u32> {
    let group = match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => g,
        Ok(None) | Err(_) => {
            tracing::warn!(
                group = name,
                "control_group does not exist; control socket is root-only"
            );
            return None;
        }
    };
    if let Err(e) = nix::unistd::chown(path, None, Some(group.gid)) {
        tracing::warn!(group = name, error = %e, "cannot give the control socket to its group");
    }
    Some(group.gid.as_raw())
}

async fn connection(
    mut stream: UnixStream,
    access: &Access,
    handler: &dyn ControlHandler,
) -> Result<(), FrameIoError> {
    let cred = stream.peer_cred()?;
    let peer = PeerCred {
        uid: cred.uid(),
        gid: cred.gid(),
        pid: cred.pid(),
    };
    let access_owned = access.clone();
    let allowed =
        tokio::task::spawn_blocking(move || access_owned.allows(&peer, supplementary_groups))
            .await
            .unwrap_or(false);
    if !allowed {
        tracing::warn!(uid = peer.uid, gid = peer.gid, pid = ?peer.pid, "control socket: permission denied");
        write_frame(&mut stream, &Response::Error("permission denied".into())).await?;
        return Ok(());
    }
    loop {
        let req =
            match tokio::time::timeout(REQUEST_TIMEOUT, read_frame::<Request>(&mut stream)).await {
                Err(_) | Ok(Ok(None)) => return Ok(()),
                Ok(Ok(Some(req))) => req,
                Ok(Err(FrameIoError::Frame(e))) => {
                    let msg = format!("bad request: {e}");
                    write_frame(&mut stream, &Response::Error(msg)).await?;
                    return Err(e.into());
                }
                Ok(Err(e)) => return Err(e),
            };
        tracing::debug!(
            uid = peer.uid,
            request = request_name(&req),
            "control request"
        );
        let resp = handler.handle(req, peer).await;
        write_frame(&mut stream, &resp).await?;
    }
}

fn request_name(req: &Request) -> &'static str {
    match req {
        Request::Status => "status",
        Request::Sessions => "sessions",
        Request::Kill { .. } => "kill",
        Request::Audit { .. } => "audit",
        Request::AuditVerify => "audit-verify",
        Request::ConsentGrant { .. } => "consent-grant",
        Request::ConsentRevoke => "consent-revoke",
        Request::PushBundle { .. } => "push-bundle",
        Request::Strangers { .. } => "strangers",
        Request::AuditVerifyHead { .. } => "audit-verify-head",
        Request::Keys => "keys",
    }
}
