//! One tunnel stream on the daemon side, the same for QUIC and TLS: decide
//! the `Open`, reach the target, proxy both ways (through the read-level
//! filter when the level is `read`), and keep re-deciding until it ends.

use super::registry::{Session, StreamStats};
use super::{admit, session, Gateway};
use crate::filter::{self, ByteFilter};
use crate::policy::Decision;
use crate::transport::{self, PipeReader, PipeWriter, PumpEnd};
use edgegate_proto::audit::CloseReason;
use edgegate_proto::bundle::Target;
use edgegate_proto::frame::{Frame, SessionEnd, STREAM_READ_ONLY};
use edgegate_proto::{DenyReason, Level};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};

/// The audited close reason of a read-level violation.
const READ_ONLY: &str = "read-only-violation";

/// What the client asked for in its `Open` frame.
#[derive(Debug, Clone)]
pub(crate) struct OpenRequest {
    pub(crate) stream_id: u64,
    pub(crate) service: String,
    pub(crate) destination: Option<String>,
}

/// Why the guard of a live stream ended it.
enum GuardEnd {
    /// The decision turned to deny.
    Denied(DenyReason),
    /// The whole session ended (its own decision, a kill, idle, shutdown).
    SessionEnded(SessionEnd),
}

/// How the proxy part ended on its own.
enum ProxyEnd {
    Finished,
    Violation,
    Error,
}

impl ProxyEnd {
    fn reason(self) -> CloseReason {
        match self {
            ProxyEnd::Finished => CloseReason::Normal,
            ProxyEnd::Violation => CloseReason::Error(READ_ONLY.into()),
            ProxyEnd::Error => CloseReason::Error("transport".into()),
        }
    }
}

impl Gateway {
    /// Serve one stream to its end. `on_cut` tells the client out of band
    /// (QUIC control stream) that a re-decision cut it.
    pub(crate) async fn serve_stream(
        &self,
        session: &Arc<Session>,
        open: OpenRequest,
        mut reader: PipeReader,
        mut writer: PipeWriter,
        on_cut: impl FnOnce(DenyReason),
    ) {
        let destination = open
            .destination
            .as_deref()
            .and_then(|d| d.parse::<SocketAddr>().ok());
        let Some((level, filter, backend)) = self
            .admit_and_connect(session, &open, destination, &mut writer)
            .await
        else {
            let _ = writer.finish().await;
            return;
        };
        let max = self.config().limits.max_streams_per_session;
        let added = session.add_stream(
            open.stream_id,
            &open.service,
            open.destination.clone(),
            level,
            max,
        );
        let Some(stats) = added else {
            let _ = writer
                .write_frame(&Frame::Denied {
                    reason: DenyReason::LimitExceeded,
                })
                .await;
            let _ = writer.finish().await;
            return;
        };
        if writer.write_frame(&Frame::Opened { level }).await.is_err() {
            session.remove_stream(open.stream_id);
            return;
        }
        self.audit.stream_opened(session, &stats);
        let mut backend = backend;
        let buf = self.config().limits.stream_buffer;
        let mut session_end = None;
        let reason = tokio::select! {
            // The guard first: when a kill or deny also breaks the
            // transport, the audited reason is the decision, not the error.
            biased;
            end = self.guard(session, &open.service, destination, level) => match end {
                GuardEnd::Denied(r) => CloseReason::Denied(r),
                GuardEnd::SessionEnded(end) => {
                    session_end = Some(end);
                    session::close_reason(Some(end))
                }
            },
            end = proxy(&mut reader, &mut writer, &mut backend, filter, &stats, buf) => end.reason(),
        };
        close_pipe(&mut reader, &mut writer, &reason, session_end, on_cut).await;
        session.remove_stream(open.stream_id);
        self.audit.stream_closed(session, &stats, reason);
    }

    /// Decide, pick the filter, connect the target. On refusal the answer
    /// frame is already written and `None` returned.
    async fn admit_and_connect(
        &self,
        session: &Session,
        open: &OpenRequest,
        destination: Option<SocketAddr>,
        writer: &mut PipeWriter,
    ) -> Option<(Level, Option<Box<dyn ByteFilter>>, TcpStream)> {
        let over_limit = session.stream_count() >= self.config().limits.max_streams_per_session;
        let decision = self.admit(&session.cred, &open.service, destination, over_limit);
        let decision = match (decision, self.active()) {
            (Decision::Allow(level), Some(active)) => {
                let svc = active.index.service(&open.service)?;
                let filter = match level {
                    Level::Manage => Ok(None),
                    // A read grant on a kind that cannot be filtered is no
                    // usable grant: refuse rather than pass unfiltered.
                    Level::Read => filter::for_read_level(svc.kind)
                        .map(Some)
                        .ok_or(DenyReason::NoGrant),
                };
                let target = match (&svc.target, destination) {
                    (Target::Endpoint { host, port }, _) => format!("{host}:{port}"),
                    (Target::Networks { .. }, Some(d)) => d.to_string(),
                    (Target::Networks { .. }, None) => String::new(),
                };
                filter.map(|f| (level, f, target))
            }
            (Decision::Allow(_), None) => Err(DenyReason::NoValidBundle),
            (Decision::Deny(r), _) => Err(r),
        };
        self.audit
            .decision(session, open, decision.as_ref().map(|d| d.0));
        let (level, filter, target) = match decision {
            Ok(d) => d,
            Err(reason) => {
                let _ = writer.write_frame(&Frame::Denied { reason }).await;
                return None;
            }
        };
        let limit = self.config().limits.handshake_timeout;
        match timeout(limit, TcpStream::connect(target.as_str())).await {
            Ok(Ok(tcp)) => {
                let _ = tcp.set_nodelay(true);
                Some((level, filter, tcp))
            }
            Ok(Err(e)) => {
                self.fail(writer, format!("cannot reach {}: {e}", open.service))
                    .await
            }
            Err(_) => {
                self.fail(writer, format!("cannot reach {}: timed out", open.service))
                    .await
            }
        }
    }

    async fn fail<T>(&self, writer: &mut PipeWriter, message: String) -> Option<T> {
        tracing::warn!("{message}");
        let _ = writer.write_frame(&Frame::Failed { message }).await;
        None
    }

    /// Wait until the stream must end: re-run `admit` on every policy,
    /// consent or kill change and at the decision's own time deadline.
    async fn guard(
        &self,
        session: &Session,
        service: &str,
        destination: Option<SocketAddr>,
        level: Level,
    ) -> GuardEnd {
        let mut policy_rx = self.policy.subscribe();
        let mut consent_rx = self.consent.subscribe();
        let mut kill_rx = session.kill.subscribe();
        loop {
            policy_rx.borrow_and_update();
            consent_rx.borrow_and_update();
            if *kill_rx.borrow_and_update() {
                let end = session.end_reason().unwrap_or(SessionEnd::Killed);
                return GuardEnd::SessionEnded(end);
            }
            match self.admit(&session.cred, service, destination, false) {
                // Steps 1–4 decide the session, not this stream: end it all
                // (the session's own guard may not have run yet).
                Decision::Deny(r) if admit::session_level(r) => {
                    session.end(SessionEnd::Denied(r));
                    let end = session.end_reason().unwrap_or(SessionEnd::Denied(r));
                    return GuardEnd::SessionEnded(end);
                }
                Decision::Deny(r) => return GuardEnd::Denied(r),
                // The filter was chosen at open; a lower level now is not
                // the grant this stream was admitted under.
                Decision::Allow(now) if now < level => {
                    return GuardEnd::Denied(DenyReason::NoGrant)
                }
                Decision::Allow(_) => {}
            }
            let deadline = self.next_deadline(&session.cred, service, destination);
            let timer = async {
                match deadline {
                    // At least one second: the deadline has second resolution.
                    Some(at) => {
                        sleep_until(at.max(Instant::now() + std::time::Duration::from_secs(1)))
                            .await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = policy_rx.changed() => {}
                _ = consent_rx.changed() => {}
                _ = kill_rx.changed() => {}
                _ = timer => {}
            }
        }
    }
}

/// Tell the client how its stream ended, each transport its own way.
async fn close_pipe(
    reader: &mut PipeReader,
    writer: &mut PipeWriter,
    reason: &CloseReason,
    session_end: Option<SessionEnd>,
    on_cut: impl FnOnce(DenyReason),
) {
    if let Some(end) = session_end {
        // QUIC: the connection's close carries the reason; the stream reset
        // says it too. TLS: this connection is the only channel.
        writer.end_session(end).await;
        match end {
            SessionEnd::Denied(r) => {
                reader.stop(r.stream_code());
                on_cut(r);
            }
            _ => reader.stop(0),
        }
        return;
    }
    match reason {
        &CloseReason::Denied(r) => {
            writer.cut(r).await;
            reader.stop(r.stream_code());
            on_cut(r);
        }
        CloseReason::Normal => {}
        CloseReason::Error(e) if e == READ_ONLY => {
            writer.refuse().await;
            reader.stop(STREAM_READ_ONLY);
        }
        _ => {
            writer.abort().await;
            reader.stop(0);
        }
    }
}

/// Copy both ways until both directions finished, or stop at the first
/// error or filter violation.
async fn proxy(
    reader: &mut PipeReader,
    writer: &mut PipeWriter,
    backend: &mut TcpStream,
    filter: Option<Box<dyn ByteFilter>>,
    stats: &StreamStats,
    buf: usize,
) -> ProxyEnd {
    let (mut from_backend, mut to_backend) = backend.split();
    let filter = filter.map(Mutex::new);
    let mut feed = |input: &[u8], out: &mut Vec<u8>| match &filter {
        Some(f) => lock(f).feed(input, out).is_ok(),
        None => true,
    };
    // No filter (level manage): the bytes go to the backend as they are.
    let transform: Option<transport::Transform<'_>> = match filter {
        Some(_) => Some(&mut feed),
        None => None,
    };
    let up = transport::pipe_to_socket(reader, &mut to_backend, buf, &stats.up, transform);
    let down = transport::socket_to_pipe(&mut from_backend, writer, buf, &stats.down, |bytes| {
        if let Some(f) = &filter {
            lock(f).observe_server(bytes);
        }
    });
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        tokio::select! {
            end = &mut up, if !up_done => match end {
                Ok(PumpEnd::Finished) => up_done = true,
                Ok(PumpEnd::Refused) => return ProxyEnd::Violation,
                Ok(PumpEnd::Cut(_) | PumpEnd::SessionClosed(_)) | Err(_) => return ProxyEnd::Error,
            },
            end = &mut down, if !down_done => match end {
                Ok(_) => down_done = true,
                Err(_) => return ProxyEnd::Error,
            },
        }
    }
    ProxyEnd::Finished
}

fn lock(f: &Mutex<Box<dyn ByteFilter>>) -> std::sync::MutexGuard<'_, Box<dyn ByteFilter>> {
    f.lock().unwrap_or_else(|p| p.into_inner())
}
