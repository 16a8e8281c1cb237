//! One tunnel stream on the daemon side, the same for QUIC and TLS: decide
//! the `Open`, reach the target, proxy both ways (through the read-level
//! filter when the level is `read`), and keep re-deciding until it ends.

use super::authorize::{Permit, Scope, Subject};
use super::redecide::GuardEnd;
use super::registry::{Session, StreamStats};
use super::{session, Gateway};
use crate::filter::ByteFilter;
use crate::transport::{self, PipeReader, PipeWriter, PumpEnd};
use edgegate_proto::audit::CloseReason;
use edgegate_proto::frame::{Frame, SessionEnd, STREAM_READ_ONLY};
use edgegate_proto::DenyReason;
use nix::sys::socket::Shutdown;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::timeout;

/// The audited close reason of a read-level violation.
const READ_ONLY: &str = "read-only-violation";
/// After a refusal with an answer, how long the backend may take to finish
/// answering the requests that passed before the refused one (it has seen
/// the end of them). A bound on that phase only: past it the stream closes
/// without the answer, as a refusal without one does.
const ANSWER_DRAIN: Duration = Duration::from_secs(10);

/// What the client asked for in its `Open` frame.
#[derive(Debug, Clone)]
pub(crate) struct OpenRequest {
    pub(crate) stream_id: u64,
    pub(crate) service: String,
    pub(crate) destination: Option<String>,
}

/// How the proxy part ended on its own.
enum ProxyEnd {
    Finished,
    /// The read-level filter refused the client's bytes; its stable code.
    Violation(&'static str),
    /// Refused too, and the filter's answer (an HTTP `403`) went to the
    /// client after the backend's bytes: the pipe is already finished.
    Answered(&'static str),
    Error,
}

impl ProxyEnd {
    fn reason(self) -> CloseReason {
        match self {
            ProxyEnd::Finished => CloseReason::Normal,
            // `read-only-violation: forbidden-method`, … (audited code).
            ProxyEnd::Violation(code) | ProxyEnd::Answered(code) => {
                CloseReason::Error(format!("{READ_ONLY}: {code}"))
            }
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
        let Some((permit, stats, mut backend)) = self
            .admit_and_connect(session, &open, destination, &mut writer)
            .await
        else {
            let _ = writer.finish().await;
            return;
        };
        if writer
            .write_frame(&Frame::Opened {
                level: permit.level,
            })
            .await
            .is_err()
        {
            self.end_stream(session, open.stream_id);
            return;
        }
        self.audit.stream_opened(session, &stats);
        let subject = Subject::Stream {
            service: &open.service,
            destination,
            over_limit: false,
        };
        let buf = self.config().limits.stream_buffer;
        let mut session_end = None;
        let mut answered = false;
        let reason = tokio::select! {
            // The guard first: when a kill or deny also breaks the
            // transport, the audited reason is the decision, not the error.
            biased;
            end = self.stream_guard(session, subject, &permit) => match end {
                GuardEnd::Denied(r) => CloseReason::Denied(r),
                GuardEnd::SessionEnded(None) => CloseReason::Disconnected,
                GuardEnd::SessionEnded(Some(end)) => {
                    session_end = Some(end);
                    session::close_reason(Some(end))
                }
            },
            end = proxy(&mut reader, &mut writer, &mut backend, permit.byte_filter(), &stats, buf) => {
                answered = matches!(end, ProxyEnd::Answered(_));
                end.reason()
            }
        };
        if answered {
            // The answer is on a finished pipe: a reset now could discard
            // it. Only the client's direction is stopped.
            reader.stop(STREAM_READ_ONLY);
        } else {
            close_pipe(&mut reader, &mut writer, &reason, session_end, on_cut).await;
        }
        self.end_stream(session, open.stream_id);
        self.audit.stream_closed(session, &stats, reason);
    }

    /// Take a stream slot, authorize, audit the decision, connect the
    /// target. The slot is taken first so that the stream limit is part of
    /// the one decision (step 7) and audited with it. On refusal the answer
    /// frame is already written and `None` returned.
    async fn admit_and_connect(
        &self,
        session: &Session,
        open: &OpenRequest,
        destination: Option<SocketAddr>,
        writer: &mut PipeWriter,
    ) -> Option<(Permit, Arc<StreamStats>, TcpStream)> {
        let max = self.config().limits.max_streams_per_session;
        let slot = session.reserve_stream(max);
        let subject = Subject::Stream {
            service: &open.service,
            destination,
            over_limit: slot.is_none(),
        };
        let outcome = self.authorize(&session.cred, subject).outcome;
        let outcome = match outcome {
            Ok(Some(permit)) => Ok(permit),
            // A stream subject always yields a permit when allowed.
            Ok(None) => Err(DenyReason::UnknownService),
            Err(r) => {
                if r.scope == Scope::Session {
                    session.end(SessionEnd::Denied(r.reason));
                }
                Err(r.reason)
            }
        };
        self.audit
            .decision(session, open, outcome.as_ref().map(|p| p.level));
        // Over the limit step 7 has denied, so an allowed stream has its slot.
        let (permit, slot) = match (outcome, slot) {
            (Ok(permit), Some(slot)) => (permit, slot),
            (outcome, _) => {
                let reason = outcome.err().unwrap_or(DenyReason::LimitExceeded);
                let _ = writer.write_frame(&Frame::Denied { reason }).await;
                return None;
            }
        };
        let limit = self.config().limits.handshake_timeout;
        let what = &open.service;
        let tcp = match timeout(limit, TcpStream::connect(permit.target.as_str())).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return self.fail(writer, format!("cannot reach {what}: {e}")).await,
            Err(_) => {
                return self
                    .fail(writer, format!("cannot reach {what}: timed out"))
                    .await
            }
        };
        let _ = tcp.set_nodelay(true);
        let stats = slot.fill(
            open.stream_id,
            &open.service,
            open.destination.clone(),
            permit.level,
            self.now(),
        );
        Some((permit, stats, tcp))
    }

    async fn fail<T>(&self, writer: &mut PipeWriter, message: String) -> Option<T> {
        tracing::warn!("{message}");
        let _ = writer.write_frame(&Frame::Failed { message }).await;
        None
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
        // Nobody is left to tell.
        CloseReason::Normal | CloseReason::Disconnected => {}
        CloseReason::Error(e) if e.starts_with(READ_ONLY) => {
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
///
/// Ordering of a refusal's answer (the HTTP `403`): once the filter refuses,
/// the backend's write side is shut down after the requests that passed, and
/// the answer goes out only when the backend has ended its side, after every
/// byte it sent. A client that pipelined requests thus reads the backend's
/// answers to those that passed, then the `403`, then the end of the stream;
/// never the `403` in place of an earlier answer. A backend that does not end
/// within [`ANSWER_DRAIN`] gets the stream closed without the answer. When
/// nothing passed, the backend owes the client nothing: its side is not
/// waited for (many keep an idle connection open) and the `403` goes at once.
async fn proxy(
    reader: &mut PipeReader,
    writer: &mut PipeWriter,
    backend: &mut TcpStream,
    filter: Option<Box<dyn ByteFilter>>,
    stats: &StreamStats,
    buf: usize,
) -> ProxyEnd {
    let backend_fd = backend.as_raw_fd();
    let (mut from_backend, mut to_backend) = backend.split();
    let filter = filter.map(Mutex::new);
    let passed_any = AtomicBool::new(false);
    let mut feed = |input: &[u8], out: &mut Vec<u8>| match &filter {
        Some(f) => {
            let ok = lock(f).feed(input, out).is_ok();
            if !out.is_empty() {
                passed_any.store(true, Ordering::Relaxed);
            }
            ok
        }
        None => true,
    };
    // No filter (level manage): the bytes go to the backend as they are.
    let transform: Option<transport::Transform<'_>> = match filter {
        Some(_) => Some(&mut feed),
        None => None,
    };
    let up = transport::pipe_to_socket(reader, &mut to_backend, buf, &stats.up, transform);
    // Ends with whether the filter's answer was sent.
    let down = async {
        transport::socket_to_open_pipe(&mut from_backend, writer, buf, &stats.down, |bytes| {
            if let Some(f) = &filter {
                lock(f).observe_server(bytes);
            }
        })
        .await?;
        let answer = filter.as_ref().and_then(|f| lock(f).refusal_answer());
        if let Some(answer) = &answer {
            writer.write(answer).await?;
        }
        writer.finish().await?;
        Ok::<_, std::io::Error>(answer.is_some())
    };
    let drain = tokio::time::sleep(ANSWER_DRAIN);
    tokio::pin!(up, down, drain);
    let (mut up_done, mut down_done, mut answered) = (false, false, false);
    let mut refused = None;
    while !(up_done && down_done) {
        tokio::select! {
            end = &mut up, if !up_done => match end {
                Ok(PumpEnd::Finished) => up_done = true,
                Ok(PumpEnd::Refused) => {
                    let (code, has_answer) = refusal(filter.as_ref());
                    if down_done || !has_answer {
                        return refused_end(code, answered);
                    }
                    refused = Some(code);
                    up_done = true;
                    if !passed_any.load(Ordering::Relaxed) {
                        // Ends `down`'s read (after what the backend sent).
                        let _ = nix::sys::socket::shutdown(backend_fd, Shutdown::Read);
                    }
                    drain.as_mut().reset(tokio::time::Instant::now() + ANSWER_DRAIN);
                }
                Ok(PumpEnd::Cut(_) | PumpEnd::SessionClosed(_)) | Err(_) => return ProxyEnd::Error,
            },
            end = &mut down, if !down_done => match end {
                Ok(sent) => (down_done, answered) = (true, sent),
                Err(_) => return ProxyEnd::Error,
            },
            () = &mut drain, if refused.is_some() => {
                return ProxyEnd::Violation(refused.unwrap_or("unknown"));
            }
        }
    }
    match refused {
        Some(code) => refused_end(code, answered),
        None => ProxyEnd::Finished,
    }
}

/// The failed filter's stable code, and whether it has an answer to send.
fn refusal(filter: Option<&Mutex<Box<dyn ByteFilter>>>) -> (&'static str, bool) {
    let Some(f) = filter else {
        return ("unknown", false);
    };
    let mut f = lock(f);
    // A filter that failed fails again with the same error.
    let code = f
        .feed(&[], &mut Vec::new())
        .err()
        .map_or("unknown", |v| v.code());
    (code, f.refusal_answer().is_some())
}

/// How a refused stream ended: with the filter's answer sent, or not.
fn refused_end(code: &'static str, answered: bool) -> ProxyEnd {
    if answered {
        ProxyEnd::Answered(code)
    } else {
        ProxyEnd::Violation(code)
    }
}

fn lock(f: &Mutex<Box<dyn ByteFilter>>) -> std::sync::MutexGuard<'_, Box<dyn ByteFilter>> {
    f.lock().unwrap_or_else(|p| p.into_inner())
}
