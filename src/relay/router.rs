//! A router's registration: verify its enrollment (the trusted keys'
//! threshold, its dates, bound to the key the handshake proved), register
//! it (replacing an older one of the same device), answer its pings, and
//! tell it `GoingAway` when the relay shuts down.

use super::accept::refuse;
use super::Relay;
use crate::tlsid::AuthenticatedPeer;
use crate::transport::{relay_msg, Connection, RawStream};
use edgegate_proto::enrollment::EnrollmentError;
use edgegate_proto::relay::{RelayMsg, RelayRefusal};
use edgegate_proto::VerifiedEnrollment;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// How long a router may take to close after `GoingAway`.
const GOODBYE: std::time::Duration = std::time::Duration::from_secs(1);

/// The refusal a failed enrollment check gets.
fn refusal(e: &EnrollmentError) -> RelayRefusal {
    match e {
        EnrollmentError::Expired { .. } | EnrollmentError::NotYetValid { .. } => {
            RelayRefusal::EnrollmentExpired
        }
        EnrollmentError::KeyMismatch { .. } => RelayRefusal::KeyMismatch,
        _ => RelayRefusal::BadEnrollment,
    }
}

impl Relay {
    /// Serve a router's connection from its `Register` on.
    pub(super) async fn router(
        self: Arc<Self>,
        conn: Arc<dyn Connection>,
        mut ctl: RawStream,
        peer: AuthenticatedPeer,
        enrollment: Vec<u8>,
    ) {
        let remote = conn.remote();
        let verified = VerifiedEnrollment::verify(&enrollment, &self.authority, self.now())
            .and_then(|v| v.bound_to(peer.key()).map(|()| v));
        let verified = match verified {
            Ok(v) => v,
            Err(e) => {
                tracing::info!(%remote, "registration refused: {}: {e}", e.code());
                return refuse(&*conn, ctl, refusal(&e), &e.to_string()).await;
            }
        };
        let device = verified.enrollment().device_id.clone();
        let registered = self.registry.register(
            verified.clone(),
            conn.clone(),
            self.config.limits.max_routers,
            self.now(),
        );
        let id = match registered {
            Ok(id) => id,
            Err((reason, detail)) => {
                tracing::info!(%remote, device, "registration refused: {reason}: {detail}");
                return refuse(&*conn, ctl, reason, &detail).await;
            }
        };
        let transport = conn.transport();
        if relay_msg::write(&mut ctl, &RelayMsg::Registered)
            .await
            .is_ok()
        {
            tracing::info!(%remote, device, ?transport, "router registered");
            self.registered.notify_one();
            tokio::spawn(self.clone().deliver(device.clone()));
            self.keep(&*conn, ctl, &verified).await;
        }
        self.registry.remove(&device, id);
        tracing::info!(%remote, device, "router gone");
    }

    /// Answer pings until the connection ends, the enrollment runs out,
    /// or the relay shuts down (then `GoingAway`).
    async fn keep(
        &self,
        conn: &dyn Connection,
        mut ctl: RawStream,
        enrollment: &VerifiedEnrollment,
    ) {
        let mut shutdown = self.shutdown.subscribe();
        loop {
            // A read cut short here ends the registration anyway, so its
            // not being cancel-safe loses nothing.
            let msg = tokio::select! {
                msg = relay_msg::read(&mut ctl) => msg,
                _ = shutdown.changed() => {
                    // Written is not sent: wait (bounded) for the router to
                    // close, which it does on reading it.
                    if relay_msg::write(&mut ctl, &RelayMsg::GoingAway).await.is_ok() {
                        let _ = ctl.shutdown().await;
                        let _ = tokio::time::timeout(GOODBYE, conn.closed()).await;
                    }
                    return;
                }
                _ = conn.closed() => return,
            };
            match msg {
                Ok(RelayMsg::Ping(n)) => {
                    if let Err(e) = enrollment.check_at(self.now()) {
                        let detail = e.to_string();
                        return refuse(conn, ctl, refusal(&e), &detail).await;
                    }
                    if relay_msg::write(&mut ctl, &RelayMsg::Pong(n))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(_) => {
                    let why = "expected Ping";
                    return refuse(conn, ctl, RelayRefusal::Protocol, why).await;
                }
                Err(_) => return,
            }
        }
    }
}
