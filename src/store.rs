//! The durable device state: the bundle in force, its serial and the time floor.
//!
//! Owns the sled database under the state directory (`<dir>/db`) and the
//! accept-or-reject rules of DESIGN §3 that need device state: device id,
//! strictly increasing serial (the identical bytes again are a no-op), and
//! expiry against `max(wall clock, time floor)`. An accepted bundle, its
//! serial and the raised time floor are written in one sled transaction
//! across the `bundle` and `meta` trees and flushed before `apply` returns,
//! so a crash leaves the old or the new bundle, never a mix or a lower serial.
//!
//! `accept` is the whole accept path, cheapest check first: the digest of
//! the bundle in force (`Unchanged`, before any signature), then
//! verification (signatures, decode, caps, dates), then the device checks
//! (device, serial, expiry, future date), and the caller's compile last, so
//! a replayed stale bundle costs a hash and a signature check, never a
//! compile. `apply` is the device checks and the write, for a bundle
//! verified elsewhere.
//!
//! The time floor moves only under the ceiling of
//! `edgegate_proto::time_floor` (a mis-dated signed statement must not
//! brick the router); its anchor is the floor and wall clock when this
//! store first saw a wall time.
//!
//! A store that fails to open or verify is treated as absent, never trusted,
//! and never a reason to crash; what happens to the bad state is decided in
//! `open.rs` (summary in `Store::open`).
//!
//! The tickets of killed sessions are kept in the `barred` tree (ticket id
//! → expiry, bounded) so a restart does not let them back in. The other
//! trees in the same sled database (the audit log) are opened by their
//! owners through `Store::db`.

mod keys;
mod open;
mod reject;
mod reset;
#[cfg(test)]
mod tests;
mod watermark;

pub use keys::{KeysApplied, KeysRejected};
pub use reject::RejectReason;
pub use reset::{clear_note as clear_reset_note, reset_watermark, ResetError, WatermarkReset};

use edgegate_proto::ticket::TicketId;
use edgegate_proto::time_floor::{Ceiling, FloorClock};
use edgegate_proto::{TrustPolicy, UnixTime, VerifiedBundle};
use sha2::{Digest, Sha256};
use sled::transaction::{TransactionError, TransactionResult, Transactional};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Sled directory inside the state directory.
const SLED_DIR: &str = "db";
/// Lock file held for the lifetime of a `Store` (one process per state dir).
const LOCK_FILE: &str = "store.lock";
/// Sled page cache: a router has little memory, and the hot data (one bundle,
/// a few meta keys, the audit tail) is small.
const CACHE_BYTES: u64 = 4 << 20;
/// Background flush period; `apply` and `raise_time_floor` flush themselves,
/// this only bounds what the audit log can lose, and keeps flash writes rare.
const FLUSH_EVERY_MS: u64 = 1000;

/// Tree holding the stored envelope and its serial.
const TREE_BUNDLE: &str = "bundle";
/// Create `dir` and any missing parents with mode 0700 (existing ones are
/// left as they are): the state directory holds the bundle, the audit log
/// and the anti-rollback watermark, none of them for other users.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Tree holding the format marker and the time floor.
const TREE_META: &str = "meta";
const KEY_ENVELOPE: &[u8] = b"envelope";
const KEY_SERIAL: &[u8] = b"serial";
const KEY_FORMAT: &[u8] = b"format";
const KEY_FLOOR: &[u8] = b"time_floor";
/// Written and read back by the watchdog's health probe.
const KEY_HEARTBEAT: &[u8] = b"heartbeat";
/// Format marker written into a fresh store; any other value is not ours.
const FORMAT: &[u8] = b"edgegate-store/1";

/// The device's persistent state. `Send + Sync`; share it behind an `Arc`.
///
/// `apply` and `raise_time_floor` block on `fsync`: call them from
/// `spawn_blocking` inside an async runtime.
pub struct Store {
    db: sled::Db,
    bundle: sled::Tree,
    meta: sled::Tree,
    /// The authority in force (config keys and key statements, `keys.rs`);
    /// a config reload re-derives it (`set_roots`).
    keys: std::sync::RwLock<keys::Keys>,
    /// The key statements (`keys.rs`).
    keys_tree: sled::Tree,
    device_id: String,
    dir: PathBuf,
    state: Mutex<State>,
    /// Why no bundle may be accepted (the watermark is unreadable, see
    /// `open.rs`), until an operator runs `edgegate store reset-watermark`.
    sealed: Option<String>,
    _lock: nix::fcntl::Flock<File>,
}

/// What the checks of `apply` compare against. Mirrors the disk, except that
/// a stored bundle that failed verification at open is not trusted here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct State {
    /// The serial a new bundle must exceed; `None` when no trusted serial.
    serial: Option<u64>,
    /// SHA-256 of the stored envelope, only while it is the bundle in force.
    digest: Option<[u8; 32]>,
    /// SHA-256 of the last acknowledged bundle when the store no longer
    /// holds it (sled lost it, see `watermark.rs`): that exact bundle may be
    /// installed again at its own serial.
    lost: Option<[u8; 32]>,
    /// Newest signed timestamp seen; never decreases.
    floor: UnixTime,
    /// The floor when the store was opened: the anchor of the clockless
    /// ceiling (`time_floor.rs`), so the floor cannot be ratcheted.
    start_floor: UnixTime,
    /// The wall clock the first time the store was given one.
    start_wall: Option<UnixTime>,
    /// The highest key statement version accepted (for the watermark).
    keys_version: u64,
}

/// What the checks of `apply` concluded.
enum Verdict {
    /// The bundle in force, byte for byte.
    Unchanged(u64),
    /// Store it, with this time floor; `true` when it is the first signed
    /// time of a store without a clock (it becomes the anchor too).
    Install(UnixTime, bool),
}

/// What `accept` did, with what it built on the way.
#[derive(Debug)]
pub enum Accepted<T> {
    /// Stored (durably) and in force.
    Installed {
        /// Its serial.
        serial: u64,
        /// The bundle (boxed: the enum's other variant is a serial).
        bundle: Box<VerifiedBundle>,
        /// What the caller's compile produced.
        compiled: T,
    },
    /// The bundle in force, byte for byte: nothing verified, compiled or written.
    Unchanged {
        /// Its serial.
        serial: u64,
    },
}

/// The result of `Store::open`.
#[derive(Debug)]
pub struct Opened {
    /// The store, ready for `apply`.
    pub store: Store,
    /// The stored bundle, verified again under the current trust policy, for
    /// this device, and passing the caller's check; `None` otherwise.
    pub bundle: Option<VerifiedBundle>,
    /// One line per problem found and handled (also logged with `tracing::warn!`).
    pub warnings: Vec<String>,
    /// An operator's `reset-watermark` not yet audited: the daemon records
    /// it, then calls [`clear_reset_note`].
    pub reset: Option<WatermarkReset>,
}

/// What `apply` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The bundle is now stored (durably) and in force.
    Accepted {
        /// Its serial.
        serial: u64,
    },
    /// The identical bytes were already the bundle in force; nothing written.
    Unchanged {
        /// Its serial.
        serial: u64,
    },
}

impl Applied {
    /// The serial of the bundle in force afterwards.
    pub fn serial(&self) -> u64 {
        match *self {
            Applied::Accepted { serial } | Applied::Unchanged { serial } => serial,
        }
    }
}

/// Why the store could not be opened at all. Corrupt state is not one of
/// these: it is moved aside and reported in `Opened::warnings`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state directory or lock file could not be created or opened.
    #[error("state directory {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Another process (or another `Store` in this one) holds the state directory.
    #[error("state directory {0} is in use by another edgegate process")]
    Locked(PathBuf),
    /// Broken state could not be renamed out of the way.
    #[error("cannot move broken store {path} aside: {source}")]
    MoveAside {
        /// The sled directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Even a fresh sled database could not be created.
    #[error("cannot create a fresh store at {path}: {source}")]
    Fresh {
        /// The sled directory.
        path: PathBuf,
        /// Why.
        source: sled::Error,
    },
    /// A write or flush failed.
    #[error("store write failed: {0}")]
    Write(#[from] sled::Error),
}

impl Store {
    /// Open (or create) the store in the state directory `dir`.
    ///
    /// The stored bundle is verified again under `trust`, its device id is
    /// compared with `device_id`, and `check` (the caller compiles the policy)
    /// must accept it; only then is it returned in `Opened::bundle`.
    ///
    /// Never trusts, never crashes on bad state:
    /// - sled fails to open, or the store's own keys are malformed or of an
    ///   unknown format: the whole sled directory is renamed to
    ///   `<dir>/db.broken-<unix time>` and a fresh, empty store is created
    ///   (no bundle; serial and time floor carried over from the watermark
    ///   file `<dir>/store.watermark` if there is one, else none and 0);
    /// - sled opens but holds an older state than the last acknowledged write
    ///   (its log was truncated at a corrupt spot; detected by the
    ///   watermark): serial and time floor are raised back to the watermark
    ///   and an older bundle is not returned;
    /// - the stored bundle fails verification or is for another device (trust
    ///   keys rotated, threshold raised, config mistake): the database is
    ///   kept (audit log, time floor), no bundle is returned; its serial is
    ///   still enforced through the watermark (anti-rollback does not depend
    ///   on the trust settings); the bytes stay on disk until a new bundle
    ///   replaces them, so fixing a config mistake and restarting brings it
    ///   back;
    /// - the watermark is unreadable: the store fails closed (no bundle
    ///   returned, every bundle refused `watermark-unreadable`, the file left
    ///   as it is) until an operator runs `edgegate store reset-watermark`;
    /// - the stored bundle is authentic but `check` refuses it: no bundle is
    ///   returned, its serial is still enforced (no rollback).
    ///
    /// Expiry is not checked here: an expired stored bundle is returned and
    /// the evaluator fails closed (`no-valid-bundle`) after its grace period.
    ///
    /// Errors only when the directory is locked by another process, or when
    /// even a fresh store cannot be created. To reset a device completely,
    /// remove the whole state directory, not just `<dir>/db`.
    pub fn open(
        dir: &Path,
        trust: &TrustPolicy,
        device_id: &str,
        check: impl Fn(&VerifiedBundle) -> Result<(), String>,
    ) -> Result<Opened, StoreError> {
        open::open(dir, trust, device_id, &check)
    }

    /// Store `b` if DESIGN §3 allows it, durably, before returning `Ok`.
    ///
    /// Order of checks: identical bytes to the bundle in force (`Unchanged`,
    /// nothing written); device id (`wrong-device`); serial strictly greater
    /// (`rollback`); `not_after` not before `max(wall_now, time floor)`
    /// (`expired`); `issued_at` not beyond a plausible wall clock
    /// (`future-dated`). On failure nothing is written.
    pub fn apply(&self, b: &VerifiedBundle, wall_now: UnixTime) -> Result<Applied, RejectReason> {
        let digest: [u8; 32] = Sha256::digest(b.raw()).into();
        self.apply_digest(b, digest, wall_now)
    }

    fn apply_digest(
        &self,
        b: &VerifiedBundle,
        digest: [u8; 32],
        wall_now: UnixTime,
    ) -> Result<Applied, RejectReason> {
        let mut st = self.state();
        let (floor, first) = match self.judge(&mut st, b, digest, wall_now)? {
            Verdict::Unchanged(serial) => return Ok(Applied::Unchanged { serial }),
            Verdict::Install(floor, first) => (floor, first),
        };
        let serial = b.bundle().serial;
        self.write_bundle(b.raw(), serial, floor)
            .map_err(|e| RejectReason::Storage(e.to_string()))?;
        // Only after the flush: a failed flush leaves the old state in force,
        // so a retry of the same bytes writes and flushes again.
        *st = State {
            serial: Some(serial),
            digest: Some(digest),
            lost: None,
            floor,
            start_floor: if first { floor } else { st.start_floor },
            ..*st
        };
        self.mark(&st);
        self.clear_grandfathered();
        Ok(Applied::Accepted { serial })
    }

    /// The device checks of `apply`, in its order; writes nothing.
    fn judge(
        &self,
        st: &mut State,
        b: &VerifiedBundle,
        digest: [u8; 32],
        wall_now: UnixTime,
    ) -> Result<Verdict, RejectReason> {
        self.unsealed()?;
        let body = b.bundle();
        if st.digest == Some(digest) {
            return Ok(Verdict::Unchanged(body.serial));
        }
        for got in [&body.device_id, &body.device.id] {
            if *got != self.device_id {
                return Err(RejectReason::WrongDevice {
                    expected: self.device_id.clone(),
                    got: got.clone(),
                });
            }
        }
        let reinstall = st.lost == Some(digest) && st.serial == Some(body.serial);
        if let Some(stored) = st.serial.filter(|s| body.serial <= *s && !reinstall) {
            return Err(RejectReason::Rollback {
                stored,
                offered: body.serial,
            });
        }
        let now = wall_now.max(st.floor);
        if body.not_after < now {
            return Err(RejectReason::Expired {
                not_after: body.not_after,
                now,
            });
        }
        let ceiling = st.ceiling(wall_now);
        if ceiling.refuses(body.issued_at) {
            return Err(RejectReason::FutureDated {
                issued_at: body.issued_at,
                limit: ceiling.latest_issue().unwrap_or(UnixTime::MAX),
            });
        }
        // A store that never saw a signed time (a new router, or a state
        // directory reset) and has no clock takes its first bundle's
        // `issued_at` as it is, and anchors there: there is nothing else to
        // bound it by (proto/README.md §3.1, trust on first use).
        if st.floor == 0 && matches!(ceiling, Ceiling::Clockless(_)) {
            return Ok(Verdict::Install(body.issued_at, true));
        }
        Ok(Verdict::Install(
            ceiling.raise(st.floor, body.issued_at),
            false,
        ))
    }

    /// The whole accept path with one rejection type, cheapest check first:
    /// the digest of the bundle in force (`Unchanged` before any signature
    /// check), verification (signatures, then decode, caps and dates), the
    /// device checks of `apply`, then `compile`, then the write. Returns
    /// the verified bundle and what `compile` produced (the policy index).
    ///
    /// Takes the bytes by value: the verified bundle keeps them as its raw
    /// envelope, no copy.
    pub fn accept<T>(
        &self,
        bytes: Vec<u8>,
        wall_now: UnixTime,
        compile: impl FnOnce(&VerifiedBundle) -> Result<T, crate::policy::CompileError>,
    ) -> Result<Accepted<T>, RejectReason> {
        self.unsealed()?;
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        {
            let st = self.state();
            if let (Some(d), Some(serial)) = (st.digest, st.serial) {
                if d == digest {
                    return Ok(Accepted::Unchanged { serial });
                }
            }
        }
        let vb = VerifiedBundle::verify_owned(bytes, &self.trust())?;
        // The checks run again under the lock in `apply_digest`; the first
        // run refuses a stale or foreign bundle before it is compiled. The
        // state lock is not held across the compile (`now()` takes it).
        self.judge(&mut self.state(), &vb, digest, wall_now)?;
        let compiled = compile(&vb).map_err(RejectReason::InvalidPolicy)?;
        match self.apply_digest(&vb, digest, wall_now)? {
            Applied::Accepted { serial } => Ok(Accepted::Installed {
                serial,
                bundle: Box::new(vb),
                compiled,
            }),
            Applied::Unchanged { serial } => Ok(Accepted::Unchanged { serial }),
        }
    }

    /// The newest signed timestamp seen (persisted; never decreases).
    pub fn time_floor(&self) -> UnixTime {
        self.state().floor
    }

    /// The device's notion of now: `max(wall, time floor)`.
    pub fn now(&self, wall: UnixTime) -> UnixTime {
        wall.max(self.time_floor())
    }

    /// Raise the time floor towards `t` (e.g. a verified ticket's
    /// `issued_at`), never beyond the ceiling for `wall` (`time_floor.rs`);
    /// lower values are ignored. Persisted and flushed when it moves.
    /// Returns the floor.
    pub fn raise_time_floor(&self, t: UnixTime, wall: UnixTime) -> Result<UnixTime, StoreError> {
        let mut st = self.state();
        let t = st.ceiling(wall).raise(st.floor, t);
        if t <= st.floor {
            return Ok(st.floor);
        }
        self.meta.insert(KEY_FLOOR, &t.to_be_bytes())?;
        self.db.flush()?;
        st.floor = t;
        self.mark(&st);
        Ok(t)
    }

    /// Record the wall clock at the daemon's start: the anchor of the
    /// clockless ceiling (`time_floor.rs`). Without it, the first wall time
    /// given to `apply` or `raise_time_floor` is taken. Later calls do
    /// nothing.
    pub fn start_clock(&self, wall: UnixTime) {
        self.state().start_wall.get_or_insert(wall);
    }

    /// Whether `raise_time_floor(t, wall)` would move the floor: cheap, no
    /// I/O, so an async caller can skip the blocking call.
    pub fn floor_would_rise(&self, t: UnixTime, wall: UnixTime) -> bool {
        let mut st = self.state();
        st.ceiling(wall).raise(st.floor, t) > st.floor
    }

    /// Bar a ticket (its session was killed) until `until`, its expiry: a
    /// restart must not let it back in. Persisted and flushed. At most
    /// [`MAX_BARRED`] are kept; past that the soonest to expire goes first.
    pub fn bar_ticket(&self, id: TicketId, until: UnixTime) -> Result<(), StoreError> {
        self.bar_ticket_within(id, until, MAX_BARRED)
    }

    fn bar_ticket_within(
        &self,
        id: TicketId,
        until: UnixTime,
        cap: usize,
    ) -> Result<(), StoreError> {
        let tree = self.db.open_tree(TREE_BARRED)?;
        tree.insert(id, &until.to_be_bytes())?;
        if tree.len() > cap {
            let soonest = tree
                .iter()
                .filter_map(Result::ok)
                .filter_map(|(k, v)| Some((barred_until(&v)?, k)))
                .min_by_key(|(until, _)| *until);
            if let Some((_, k)) = soonest {
                tree.remove(k)?;
            }
        }
        self.db.flush()?;
        Ok(())
    }

    /// The barred tickets still unexpired at `now`; expired ones (and any
    /// unreadable entry) are dropped from disk on the way.
    pub fn barred_tickets(&self, now: UnixTime) -> Result<Vec<TicketId>, StoreError> {
        let tree = self.db.open_tree(TREE_BARRED)?;
        let (mut live, mut dropped) = (Vec::new(), false);
        for entry in tree.iter() {
            let (k, v) = entry?;
            match (<TicketId>::try_from(k.as_ref()), barred_until(&v)) {
                (Ok(id), Some(until)) if until >= now => live.push(id),
                _ => {
                    tree.remove(k)?;
                    dropped = true;
                }
            }
        }
        if dropped {
            self.db.flush()?;
        }
        Ok(live)
    }

    /// The serial a new bundle must exceed: that of the bundle in force, or
    /// of an authentic stored bundle the policy check refused at open.
    pub fn serial(&self) -> Option<u64> {
        self.state().serial
    }

    /// The bundle in force, read back and verified again; `None` if there is
    /// none (or it no longer reads back intact, which is logged).
    pub fn current(&self) -> Option<VerifiedBundle> {
        let digest = self.state().digest?;
        let raw = match self.bundle.get(KEY_ENVELOPE) {
            Ok(Some(raw)) => raw,
            Ok(None) => {
                tracing::warn!(dir = %self.dir.display(), "store: bundle in force is missing on disk");
                return None;
            }
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), "store: reading the bundle failed: {e}");
                return None;
            }
        };
        let read: [u8; 32] = Sha256::digest(&raw).into();
        if read != digest {
            tracing::warn!(dir = %self.dir.display(), "store: stored bundle changed under us");
            return None;
        }
        match VerifiedBundle::verify(&raw, &self.bundle_trust(Some(digest))) {
            Ok(vb) => Some(vb),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), "store: stored bundle no longer verifies: {e}");
                None
            }
        }
    }

    /// The bundle in force stopped verifying (trusted keys changed): it is
    /// no longer the one the same bytes are `Unchanged` against, so a push
    /// of them is verified (and refused) again. Its serial stays enforced.
    pub fn forget_current(&self) {
        self.state().digest = None;
    }

    /// This device's id, as configured.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// The trust policy new bundles are verified under: the bundle role of
    /// the authority in force.
    pub fn trust(&self) -> TrustPolicy {
        self.authority()
            .role(edgegate_proto::KeyRole::Bundle)
            .clone()
    }

    /// The config's trusted keys changed (reload): they are the root from
    /// now on, and the stored key statements are followed from them again
    /// (`keys.rs`). The bundle in force is not touched: ask `current`
    /// whether it still verifies. Returns what was found wrong, if anything.
    pub fn set_trust(&self, roots: TrustPolicy) -> Vec<String> {
        self.set_roots(roots)
    }

    /// Health probe: write a heartbeat key and read it back (no flush, so
    /// it is cheap). Blocks if sled is wedged: run it in `spawn_blocking`
    /// under a timeout.
    pub fn heartbeat(&self, stamp: u64) -> bool {
        let value = stamp.to_be_bytes();
        self.meta.insert(KEY_HEARTBEAT, &value).is_ok()
            && matches!(self.meta.get(KEY_HEARTBEAT), Ok(Some(v)) if v.as_ref() == value)
    }

    /// The sled database, for other trees (the audit log) to share its
    /// cache, lock and flushes. Do not touch the `bundle` and `meta` trees.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Flush everything written so far (e.g. audit records) without blocking.
    pub async fn flush_async(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// Envelope, serial and time floor in one transaction, then flush.
    fn write_bundle(&self, raw: &[u8], serial: u64, floor: UnixTime) -> Result<(), StoreError> {
        let serial = serial.to_be_bytes();
        let floor = floor.to_be_bytes();
        // The closure may run more than once (conflict retries): it only
        // stages writes, no side effects.
        let r: TransactionResult<(), ()> = (&self.bundle, &self.meta).transaction(|(bt, mt)| {
            bt.insert(KEY_ENVELOPE, raw)?;
            bt.insert(KEY_SERIAL, &serial)?;
            mt.insert(KEY_FLOOR, &floor)?;
            Ok(())
        });
        self.durable(r)
    }

    /// A transaction's outcome made durable: written and flushed before
    /// anyone is told, or the write error.
    fn durable(&self, r: TransactionResult<(), ()>) -> Result<(), StoreError> {
        match r {
            Ok(()) => {}
            Err(TransactionError::Storage(e)) => return Err(StoreError::Write(e)),
            Err(TransactionError::Abort(())) => unreachable!("the closure never aborts"),
        }
        self.db.flush()?;
        Ok(())
    }

    /// Record the acknowledged state in the watermark. Its failure is only
    /// logged: sled holds the data; a lagging watermark weakens detection of
    /// a silent sled rollback but never causes a false alarm.
    fn mark(&self, st: &State) {
        // An unreadable watermark stays as it is until an operator resets
        // it: writing over it would end the fail-closed state silently.
        if self.sealed.is_some() {
            return;
        }
        let w = watermark::Watermark {
            serial: st.serial,
            floor: st.floor,
            // A lost bundle stays the acknowledged one until another lands.
            digest: st.digest.or(st.lost),
            keys: st.keys_version,
        };
        if let Err(e) = watermark::write(&self.dir, &w) {
            tracing::warn!(dir = %self.dir.display(), "store: writing the watermark failed: {e}");
        }
    }

    /// Why the store refuses every bundle, if it does (unreadable watermark).
    pub fn sealed(&self) -> Option<&str> {
        self.sealed.as_deref()
    }

    fn unsealed(&self) -> Result<(), RejectReason> {
        match &self.sealed {
            None => Ok(()),
            Some(why) => Err(RejectReason::WatermarkUnreadable(why.clone())),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` half-written
        // (it is replaced whole), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    /// The ceiling on the floor for the wall clock `wall`; the first wall
    /// time seen is kept as the anchor's.
    fn ceiling(&mut self, wall: UnixTime) -> Ceiling {
        let start_wall = *self.start_wall.get_or_insert(wall);
        FloorClock {
            wall,
            floor: self.floor,
            start_floor: self.start_floor,
            start_wall,
        }
        .ceiling()
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("device_id", &self.device_id)
            .field("state", &*self.state())
            .finish_non_exhaustive()
    }
}

/// The tree of barred tickets: ticket id → `until` (u64 big-endian).
const TREE_BARRED: &str = "barred";

/// How many barred tickets are kept.
pub const MAX_BARRED: usize = 4096;

fn barred_until(v: &[u8]) -> Option<UnixTime> {
    Some(UnixTime::from_be_bytes(v.try_into().ok()?))
}
