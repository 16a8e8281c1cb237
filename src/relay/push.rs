//! Bundles through the relay (DESIGN §8): a pushed bundle is checked
//! (signatures under the relay's trusted keys, a serial above the one
//! kept), spooled, and delivered to its router at once if it is registered
//! or as soon as it registers; a pusher that waits gets the router's
//! answer. The router applies it by its own rules (`Gateway::push_bundle`).

use super::accept::refuse;
use super::spool::Offer;
use super::Relay;
use crate::transport::{relay_msg, Connection, RawStream};
use edgegate_proto::frame::PushResult;
use edgegate_proto::relay::{RelayMsg, RelayRefusal};
use edgegate_proto::{KeyRole, VerifiedBundle};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::timeout;

/// How long a delivery (open, send, the router's answer) may take.
const DELIVER_WAIT: Duration = Duration::from_secs(60);

impl Relay {
    /// Serve a pusher's connection from its `PushBundle` on.
    pub(super) async fn push(
        self: Arc<Self>,
        conn: Arc<dyn Connection>,
        mut raw: RawStream,
        bytes: Vec<u8>,
        wait: bool,
    ) {
        let trust = self.authority.role(KeyRole::Bundle).clone();
        let bundle = match VerifiedBundle::verify(&bytes, &trust) {
            Ok(b) => b,
            Err(e) => {
                let why = format!("{}: {e}", e.code());
                return refuse(&*conn, raw, RelayRefusal::BadBundle, &why).await;
            }
        };
        let (device, serial) = (bundle.bundle().device_id.clone(), bundle.bundle().serial);
        let mut results = self.deliveries.subscribe();
        let offered = self.spool.offer(&bundle, &bytes, &trust);
        let answered = match offered {
            Ok(Offer::Stored) => None,
            Ok(Offer::Unchanged(answer)) => answer,
            Err((reason, why)) => return refuse(&*conn, raw, reason, &why).await,
        };
        tracing::info!(device, serial, remote = %conn.remote(), "bundle spooled");
        let queued = RelayMsg::Queued {
            device: device.clone(),
            serial,
        };
        if relay_msg::write(&mut raw, &queued).await.is_err() {
            return;
        }
        if answered.is_none() {
            tokio::spawn(self.clone().deliver(device.clone()));
        }
        if !wait {
            let _ = timeout(Duration::from_secs(2), conn.closed()).await;
            return;
        }
        let result = match answered {
            Some(result) => Some(result),
            None => loop {
                tokio::select! {
                    got = results.recv() => match got {
                        Ok((d, s, result)) if d == device && s == serial => break Some(result),
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => break None,
                    },
                    _ = conn.closed() => break None,
                }
            },
        };
        if let Some(result) = result {
            if relay_msg::write(&mut raw, &RelayMsg::Delivered(result))
                .await
                .is_ok()
            {
                let _ = timeout(Duration::from_secs(2), conn.closed()).await;
            }
        }
    }

    /// Deliver `device`'s spooled bundle to its router, if both are there
    /// and the router has not answered it yet.
    pub(super) async fn deliver(self: Arc<Self>, device: String) {
        let trust = self.authority.role(KeyRole::Bundle).clone();
        let Some(route) = self.registry.route(&device) else {
            return;
        };
        let Some((serial, bytes)) = self.spool.pending(&device, &trust) else {
            return;
        };
        let exchange = async {
            let mut s = route.conn.open_bi().await?.into_raw();
            let deliver = RelayMsg::Deliver {
                bundle: bytes.clone(),
            };
            relay_msg::write(&mut s, &deliver).await?;
            relay_msg::read(&mut s).await
        };
        let result: PushResult = match timeout(DELIVER_WAIT, exchange).await {
            Ok(Ok(RelayMsg::Delivered(result))) => result,
            Ok(Ok(_)) => {
                tracing::warn!(device, "delivery: unexpected answer from the router");
                return;
            }
            Ok(Err(e)) => {
                tracing::info!(device, "delivery: {e}");
                return;
            }
            Err(_) => {
                tracing::info!(device, "delivery: the router did not answer");
                return;
            }
        };
        tracing::info!(device, serial, ?result, "bundle delivered");
        self.spool.answered(&device, &bytes, &result);
        let _ = self.deliveries.send((device, serial, result));
    }
}
