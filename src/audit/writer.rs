//! Appends off the data path: a writer thread owns appending, callers only
//! queue an event with the time it happened.
//!
//! An append is a sled transaction: 20-350 µs measured, a third of a
//! session's set-up on loopback when it ran on the runtime's threads. The
//! writer gathers what arrives within [`BATCH_WINDOW`] of the first event
//! and appends it in one transaction: a session's set-up queues three or
//! four events in a row, and a revocation one per stream cut. The queue
//! keeps the order events were queued in, which is the order of the chain;
//! a record is visible to readers once [`AuditWriter::sync`] returns, and
//! durable after that plus [`AuditLog::flush_async`] (sled flushes on its
//! own every second). The queue is bounded: if the disk falls that far
//! behind, callers wait rather than drop a record.
//!
//! The thread also stores the strangers' minute summaries and, given the
//! device key, signs the head (`head.rs`): every `SIGN_EVERY` records,
//! every `SIGN_INTERVAL` while the head moves, and when asked (shutdown).

use super::head::{SIGN_EVERY, SIGN_INTERVAL};
use super::AuditLog;
use ed25519_dalek::SigningKey;
use edgegate_proto::audit::{AuditEvent, StrangerSummary};
use edgegate_proto::UnixTime;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Events queued at most before callers wait.
const QUEUE: usize = 4096;

/// How long the writer gathers events after the first of a batch.
const BATCH_WINDOW: Duration = Duration::from_millis(5);

/// Most events in one transaction.
const BATCH_MAX: usize = 512;

enum Msg {
    Append(UnixTime, AuditEvent),
    /// Answered once every message before it is appended.
    Sync(oneshot::Sender<()>),
    /// A finished minute of unauthenticated-event counters.
    Strangers(Vec<StrangerSummary>),
    /// Sign the head now (if it moved), then answer.
    SignHead(oneshot::Sender<()>),
}

/// Queues events for the writer thread. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditWriter {
    tx: SyncSender<Msg>,
    log: Arc<AuditLog>,
}

impl AuditWriter {
    /// Start the writer thread for `log`; it ends when every handle is gone.
    pub fn start(log: Arc<AuditLog>) -> std::io::Result<AuditWriter> {
        AuditWriter::start_signing(log, None)
    }

    /// [`AuditWriter::start`], signing the head with `key` (the device key).
    pub fn start_signing(
        log: Arc<AuditLog>,
        key: Option<SigningKey>,
    ) -> std::io::Result<AuditWriter> {
        let (tx, rx) = sync_channel(QUEUE);
        let writer = log.clone();
        std::thread::Builder::new()
            .name("edgegate-audit".into())
            .spawn(move || run(&writer, rx, Signer::new(key, writer.last_seq())))?;
        Ok(AuditWriter { tx, log })
    }

    /// Store a finished minute of stranger counters (never waits: under a
    /// full queue the summary is logged and dropped, not the chain's
    /// records).
    pub fn strangers(&self, batch: Vec<StrangerSummary>) {
        if batch.is_empty() {
            return;
        }
        for s in &batch {
            tracing::warn!(
                target: "edgegate::audit",
                minute = s.minute,
                source = %s.source,
                refused_sessions = s.refused_sessions,
                rejected_pushes = s.rejected_pushes,
                garbage = s.garbage,
                "unauthenticated events"
            );
        }
        if self.tx.try_send(Msg::Strangers(batch)).is_err() {
            tracing::warn!("audit queue full: a strangers summary was only logged");
        }
    }

    /// Sign the head now if it moved since the last signature, and wait.
    pub async fn sign_head(&self) {
        let (done, wait) = oneshot::channel();
        let tx = self.tx.clone();
        let queued =
            tokio::task::spawn_blocking(move || tx.send(Msg::SignHead(done)).is_ok()).await;
        if matches!(queued, Ok(true)) {
            let _ = wait.await;
        }
    }

    /// The log the writer appends to (for reading).
    pub fn log(&self) -> &Arc<AuditLog> {
        &self.log
    }

    /// Queue `event`, which happened at `time`.
    pub fn append(&self, time: UnixTime, event: AuditEvent) {
        if let Err(e) = self.tx.try_send(Msg::Append(time, event)) {
            let msg = match e {
                std::sync::mpsc::TrySendError::Full(m) => {
                    tracing::warn!("audit queue full: waiting for the disk");
                    m
                }
                std::sync::mpsc::TrySendError::Disconnected(_) => {
                    tracing::error!("audit writer stopped: record lost");
                    return;
                }
            };
            if self.tx.send(msg).is_err() {
                tracing::error!("audit writer stopped: record lost");
            }
        }
    }

    /// Wait until every event queued before this call is in the log.
    pub async fn sync(&self) {
        let (done, wait) = oneshot::channel();
        let tx = self.tx.clone();
        // The queue may be full: never block a runtime thread on it.
        let queued = tokio::task::spawn_blocking(move || tx.send(Msg::Sync(done)).is_ok()).await;
        if matches!(queued, Ok(true)) {
            let _ = wait.await;
        }
    }
}

/// When the head is signed next.
struct Signer {
    key: Option<SigningKey>,
    signed_seq: u64,
    signed_at: Instant,
}

impl Signer {
    fn new(key: Option<SigningKey>, seq: u64) -> Signer {
        Signer {
            key,
            // A head carried over from the last run is signed at the first
            // interval (or at once after SIGN_EVERY more records).
            signed_seq: seq.saturating_sub(1),
            signed_at: Instant::now(),
        }
    }

    /// How long the thread may wait for a message before a signature is due.
    fn wait(&self) -> Duration {
        SIGN_INTERVAL.saturating_sub(self.signed_at.elapsed())
    }

    /// Sign if the head moved and (`force`, or enough records, or enough time).
    fn maybe_sign(&mut self, log: &AuditLog, force: bool) {
        let Some(key) = &self.key else { return };
        let seq = log.last_seq();
        let moved = seq != self.signed_seq;
        let due = seq.saturating_sub(self.signed_seq) >= SIGN_EVERY
            || self.signed_at.elapsed() >= SIGN_INTERVAL;
        if moved && (force || due) {
            match log.sign_head(key) {
                Ok(_) => self.signed_seq = seq,
                Err(e) => tracing::error!("signing the audit head failed: {e}"),
            }
        }
        if force || due {
            self.signed_at = Instant::now();
        }
    }
}

fn run(log: &AuditLog, rx: Receiver<Msg>, mut signer: Signer) {
    let mut batch = Vec::new();
    let mut waiting = Vec::new();
    loop {
        let first = match rx.recv_timeout(signer.wait()) {
            Ok(m) => m,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                signer.maybe_sign(log, false);
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let until = Instant::now() + BATCH_WINDOW;
        let mut next = Some(first);
        let mut sign_now = Vec::new();
        while let Some(msg) = next.take() {
            match msg {
                Msg::Append(time, event) => batch.push((time, event)),
                // A reader is waiting: write what is gathered now.
                Msg::Sync(done) => {
                    waiting.push(done);
                    break;
                }
                Msg::SignHead(done) => {
                    sign_now.push(done);
                    break;
                }
                Msg::Strangers(s) => {
                    if let Err(e) = log.add_strangers(&s) {
                        tracing::error!("storing the strangers summary failed: {e}");
                    }
                }
            }
            if batch.len() >= BATCH_MAX {
                break;
            }
            let left = until.saturating_duration_since(Instant::now());
            // Timed out, or every sender is gone: write what is gathered.
            next = rx.recv_timeout(left).ok();
        }
        if let Err(e) = log.append_all(std::mem::take(&mut batch)) {
            tracing::error!("audit append failed: {e}");
        }
        signer.maybe_sign(log, !sign_now.is_empty());
        for done in waiting.drain(..).chain(sign_now) {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgegate_proto::audit::AuditEvent;

    fn log() -> (tempfile::TempDir, Arc<AuditLog>) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        (dir, Arc::new(AuditLog::open(&db, 100).unwrap()))
    }

    #[tokio::test]
    async fn queued_events_are_in_the_log_in_order_after_sync() {
        let (_dir, log) = log();
        let w = AuditWriter::start(log.clone()).unwrap();
        for uid in 0..50 {
            w.append(
                1000 + u64::from(uid),
                AuditEvent::ConsentRevoked { by_uid: uid },
            );
        }
        w.sync().await;
        let records = log.list(None, 100).unwrap();
        assert_eq!(records.len(), 50);
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.seq, i as u64 + 1);
            assert_eq!(r.time, 1000 + i as u64);
            assert_eq!(r.event, AuditEvent::ConsentRevoked { by_uid: i as u32 });
        }
        assert!(log.verify().is_ok());
    }

    #[tokio::test]
    async fn the_thread_ends_with_the_last_handle() {
        let (_dir, log) = log();
        let w = AuditWriter::start(log.clone()).unwrap();
        w.append(5, AuditEvent::ConsentRevoked { by_uid: 7 });
        w.sync().await;
        assert_eq!(log.last_seq(), 1);
        drop(w);
        // Only the test's handle on the log is left once the thread is gone.
        for _ in 0..200 {
            if Arc::strong_count(&log) == 1 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("the writer thread kept the log");
    }
}
