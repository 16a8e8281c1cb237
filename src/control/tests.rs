//! Socket-level tests with a stand-in handler: framing, several requests
//! per connection, size caps, stale sockets. The real gateway's answers are
//! tested with the daemon.

use super::*;
use crate::audit::AuditLog;
use edgegate_proto::audit::AuditEvent;
use edgegate_proto::control::MAX_FRAME;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Echo {
    calls: AtomicU64,
    audit: Arc<AuditLog>,
}

impl ControlHandler for Echo {
    fn handle(&self, req: Request, peer: PeerCred) -> BoxFuture<'_, Response> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            match req {
                Request::Kill { id } => Response::Killed(id == 7),
                Request::PushBundle { bytes } => Response::Push(PushResult::Rejected {
                    code: "malformed".into(),
                    message: format!("{} bytes from uid {}", bytes.len(), peer.uid),
                }),
                Request::Audit { since, limit } => {
                    audit_response(self.audit.clone(), since, limit).await
                }
                Request::AuditVerify => audit_verify_response(self.audit.clone()).await,
                _ => Response::Error("not in this test".into()),
            }
        })
    }
}

async fn start(
    dir: &std::path::Path,
) -> (std::path::PathBuf, Arc<Echo>, tokio::task::JoinHandle<()>) {
    let path = dir.join("run/edgegate/control.sock");
    let server = ControlServer::bind(&path, Some("no-such-group-edgegate")).unwrap();
    let db = sled::Config::new()
        .path(dir.join("db"))
        .cache_capacity(4 << 20)
        .open()
        .unwrap();
    let audit = Arc::new(AuditLog::open(&db, 100).unwrap());
    audit
        .append(
            5,
            AuditEvent::DaemonStart {
                version: "t".into(),
            },
        )
        .unwrap();
    let handler = Arc::new(Echo {
        calls: AtomicU64::new(0),
        audit,
    });
    let task = tokio::spawn(server.serve(handler.clone()));
    (path, handler, task)
}

#[tokio::test]
async fn requests_round_trip_on_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (path, handler, task) = start(dir.path()).await;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660);

    let mut c = Client::connect(&path).await.unwrap();
    assert_eq!(
        c.call(&Request::Kill { id: 7 }).await.unwrap(),
        Response::Killed(true)
    );
    assert_eq!(
        c.call(&Request::Kill { id: 8 }).await.unwrap(),
        Response::Killed(false)
    );
    let big = vec![0u8; 5 << 20];
    match c.call(&Request::PushBundle { bytes: big }).await.unwrap() {
        Response::Push(PushResult::Rejected { message, .. }) => {
            assert!(message.starts_with("5242880 bytes from uid"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    match c
        .call(&Request::Audit {
            since: None,
            limit: 10,
        })
        .await
        .unwrap()
    {
        Response::Audit(recs) => assert_eq!(recs.len(), 1),
        other => panic!("{other:?}"),
    }
    match c.call(&Request::AuditVerify).await.unwrap() {
        Response::AuditVerify(Ok(r)) => assert_eq!(r.records, 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(handler.calls.load(Ordering::SeqCst), 5);
    task.abort();
}

#[tokio::test]
async fn oversized_and_garbage_frames_get_an_error_and_a_close() {
    let dir = tempfile::tempdir().unwrap();
    let (path, handler, task) = start(dir.path()).await;

    let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
    s.write_all(&((MAX_FRAME + 1) as u32).to_be_bytes())
        .await
        .unwrap();
    let resp: Response = frame::read_frame(&mut s).await.unwrap().unwrap();
    assert!(
        matches!(resp, Response::Error(ref m) if m.contains("exceeds")),
        "{resp:?}"
    );
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());

    let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
    s.write_all(&[0, 0, 0, 2, 200, 1]).await.unwrap();
    let resp: Response = frame::read_frame(&mut s).await.unwrap().unwrap();
    assert!(
        matches!(resp, Response::Error(ref m) if m.starts_with("bad request")),
        "{resp:?}"
    );

    assert_eq!(handler.calls.load(Ordering::SeqCst), 0);
    // The server is still serving.
    let mut c = Client::connect(&path).await.unwrap();
    assert_eq!(
        c.call(&Request::Kill { id: 7 }).await.unwrap(),
        Response::Killed(true)
    );
    task.abort();
}

#[tokio::test]
async fn stale_socket_is_replaced_but_a_live_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let live = ControlServer::bind(&path, None).unwrap();
    let err = ControlServer::bind(&path, None).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    drop(live);
    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    assert!(ControlServer::bind(&file, None).is_err());
    assert!(file.exists());
}

#[tokio::test]
async fn client_reports_a_missing_socket_in_one_line() {
    let err = Client::connect("/nonexistent/edgegate.sock")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("cannot connect to /nonexistent/edgegate.sock: "),
        "{text}"
    );
    assert!(!text.contains('\n'));
}

proptest::proptest! {
    /// Whatever a local peer sends, decoding answers with a value or an error.
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
        let _ = edgegate_proto::control::decode_body::<Request>(&bytes);
        let _ = edgegate_proto::control::decode_body::<Response>(&bytes);
        let _ = edgegate_proto::audit::AuditEntry::decode(&bytes);
    }
}
