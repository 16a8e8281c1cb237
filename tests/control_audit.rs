//! The audit log inside the real store's database, read through the real
//! control socket: it survives a restart, `audit verify` passes, and an
//! edited record makes it fail.

use edgegate::audit::AuditLog;
use edgegate::control::{
    audit_response, audit_verify_response, BoxFuture, Client, ControlHandler, ControlServer,
    PeerCred, Request, Response,
};
use edgegate::store::Store;
use edgegate_proto::audit::{AuditEntry, AuditEvent, CloseReason};
use edgegate_proto::DenyReason;
use std::path::Path;
use std::sync::Arc;

struct AuditOnly(Arc<AuditLog>);

impl ControlHandler for AuditOnly {
    fn handle(&self, req: Request, _peer: PeerCred) -> BoxFuture<'_, Response> {
        Box::pin(async move {
            match req {
                Request::Audit { since, limit } => {
                    audit_response(self.0.clone(), since, limit).await
                }
                Request::AuditVerify => audit_verify_response(self.0.clone()).await,
                _ => Response::Error("unsupported".into()),
            }
        })
    }
}

fn open_store(dir: &Path) -> Store {
    let trust = edgegate::testkit::trust(&edgegate::testkit::key(1));
    Store::open(dir, &trust, "router-1", |_| Ok(()))
        .unwrap()
        .store
}

async fn ask(log: Arc<AuditLog>, sock: &Path, req: Request) -> Response {
    let server = ControlServer::bind(sock, None).unwrap();
    let task = tokio::spawn(server.serve(Arc::new(AuditOnly(log))));
    let resp = Client::connect(sock)
        .await
        .unwrap()
        .call(&req)
        .await
        .unwrap();
    task.abort();
    let _ = task.await;
    resp
}

#[tokio::test]
async fn audit_survives_restart_and_shows_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let sock = dir.path().join("control.sock");
    {
        let store = open_store(&state);
        let log = AuditLog::open(store.db(), 1000).unwrap();
        log.append(
            100,
            AuditEvent::DaemonStart {
                version: "test".into(),
            },
        )
        .unwrap();
        log.append(
            101,
            AuditEvent::StreamClose {
                session: 1,
                user: "anna".into(),
                service: "hmi-vnc".into(),
                destination: None,
                bytes_up: 10,
                bytes_down: 2000,
                duration_ms: 1500,
                reason: CloseReason::Denied(DenyReason::UserInactive),
            },
        )
        .unwrap();
        log.append(102, AuditEvent::DaemonStop).unwrap();
        log.flush_async().await.unwrap();
    }

    let store = open_store(&state);
    let log = Arc::new(AuditLog::open(store.db(), 1000).unwrap());
    assert_eq!(
        log.append(
            103,
            AuditEvent::DaemonStart {
                version: "test".into()
            }
        )
        .unwrap(),
        4
    );
    match ask(log.clone(), &sock, Request::AuditVerify).await {
        Response::AuditVerify(Ok(r)) => {
            assert_eq!((r.records, r.first_seq, r.last_seq), (4, Some(1), Some(4)))
        }
        other => panic!("{other:?}"),
    }
    match ask(
        log.clone(),
        &sock,
        Request::Audit {
            since: Some(2),
            limit: 1,
        },
    )
    .await
    {
        Response::Audit(recs) => {
            assert_eq!(recs.len(), 1);
            assert!(matches!(
                recs[0].event,
                AuditEvent::StreamClose {
                    bytes_down: 2000,
                    ..
                }
            ));
        }
        other => panic!("{other:?}"),
    }

    // Someone rewrites the byte count of record 2 in place.
    let tree = store.db().open_tree("audit").unwrap();
    let key = 2u64.to_be_bytes();
    let mut rec = AuditEntry::decode(&tree.get(key).unwrap().unwrap())
        .unwrap()
        .into_record();
    if let AuditEvent::StreamClose { bytes_down, .. } = &mut rec.event {
        *bytes_down = 0;
    }
    tree.insert(key, AuditEntry::V1(rec).encode()).unwrap();
    match ask(log, &sock, Request::AuditVerify).await {
        Response::AuditVerify(Err(e)) => {
            assert_eq!(e.seq, 3);
            assert!(e.what.contains("record 2 or 3 was altered"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}
