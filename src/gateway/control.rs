//! The gateway as the control socket sees it: status, sessions, kill,
//! consent, audit and bundle push, answered from the live state.

use super::Gateway;
use crate::control::{
    audit_response, audit_verify_response, BoxFuture, BundleStatus, ControlHandler, PeerCred,
    Request, Response, StatusInfo,
};
use edgegate_proto::audit::AuditEvent;
use edgegate_proto::control::MAX_AUDIT_BATCH;
use std::sync::Arc;

/// The control socket's handler: a handle on the gateway.
#[derive(Debug, Clone)]
pub struct ControlView(pub Arc<Gateway>);

impl Gateway {
    /// What `edgegate status` shows.
    pub fn status(&self) -> StatusInfo {
        let (quic, tls) = self
            .bound
            .get()
            .map(|(q, t)| {
                let shown = |a: &Option<std::net::SocketAddr>| {
                    a.map_or_else(|| "none".to_string(), |a| a.to_string())
                };
                (shown(q), shown(t))
            })
            .unwrap_or_default();
        StatusInfo {
            device_id: self.config().device_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            now: self.now(),
            time_floor: self.store.time_floor(),
            bundle: self.active().map(|a| BundleStatus {
                serial: a.index.serial(),
                issued_at: a.index.issued_at(),
                not_after: a.index.not_after(),
            }),
            consent: self.consent.info(self.now()),
            sessions: u32::try_from(self.registry.len()).unwrap_or(u32::MAX),
            listen_quic: quic,
            listen_tls: tls,
        }
    }
}

impl ControlHandler for ControlView {
    fn handle(&self, req: Request, peer: PeerCred) -> BoxFuture<'_, Response> {
        let gw = self.0.clone();
        Box::pin(async move {
            match req {
                Request::Status => Response::Status(gw.status()),
                Request::Keys => Response::Keys(gw.keys_info()),
                Request::Sessions => Response::Sessions(gw.sessions()),
                Request::Kill { id } => Response::Killed(gw.kill(id)),
                // What happened before the question is in the answer.
                Request::Audit { since, limit } => {
                    gw.audit.sync().await;
                    audit_response(gw.audit.log().clone(), since, limit).await
                }
                Request::AuditVerify => {
                    gw.audit.sync().await;
                    audit_verify_response(gw.audit.log().clone()).await
                }
                Request::ConsentGrant { secs } => {
                    // A grant is bounded (limits.max_consent): a longer one is
                    // refused, one without a length lasts the maximum.
                    let max = gw.config().limits.max_consent.as_secs();
                    if let Some(s) = secs.filter(|s| *s > max) {
                        return Response::Error(format!(
                            "consent grant refused: {} is longer than limits.max_consent ({})",
                            crate::duration::format_duration(s),
                            crate::duration::format_duration(max)
                        ));
                    }
                    gw.consent.grant(Some(secs.unwrap_or(max)));
                    let info = gw.consent.info(gw.now());
                    gw.audit.append(AuditEvent::ConsentGranted {
                        until: info.until,
                        by_uid: peer.uid,
                    });
                    Response::Consent(info)
                }
                Request::ConsentRevoke => {
                    gw.consent.revoke();
                    gw.audit
                        .append(AuditEvent::ConsentRevoked { by_uid: peer.uid });
                    Response::Consent(gw.consent.info(gw.now()))
                }
                Request::PushBundle { bytes } => Response::Push(gw.push_bundle(bytes).await),
                Request::Strangers { limit } => {
                    let limit = limit.min(MAX_AUDIT_BATCH) as usize;
                    match gw.audit.strangers(limit).await {
                        Ok(list) => Response::Strangers(list),
                        Err(e) => Response::Error(e.to_string()),
                    }
                }
                Request::AuditVerifyHead { head } => {
                    gw.audit.sync().await;
                    let log = gw.audit.log().clone();
                    match tokio::task::spawn_blocking(move || log.verify_against(Some(&head))).await
                    {
                        Ok(result) => Response::AuditVerify(result),
                        Err(e) => Response::Error(format!("audit verification failed: {e}")),
                    }
                }
            }
        })
    }
}
