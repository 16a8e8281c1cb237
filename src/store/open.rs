//! Opening the store: lock, open sled, check our keys, verify the stored
//! bundle again, and move broken state aside instead of trusting or crashing.
//!
//! The rules (also in `Store::open`'s doc):
//! - sled fails to open, or our keys are malformed / of an unknown format:
//!   the sled directory is renamed to `<dir>/db.broken-<unix time>` (kept
//!   for forensics, never deleted) and a fresh store is created;
//! - sled opened an older state than the watermark of the last acknowledged
//!   write (see `watermark.rs`): serial and floor are raised back, an older
//!   bundle is dropped, and the repair is persisted;
//! - the stored bundle fails verification or names another device: the
//!   database stays, the bundle is not returned; the watermark's serial is
//!   enforced whatever the trust settings;
//! - the watermark is unreadable: fail closed (`Store::sealed`) until an
//!   operator runs `edgegate store reset-watermark` (`reset.rs`);
//! - the stored bundle is authentic but the caller's check refuses it: the
//!   bundle is not returned, its serial is still enforced.
//!
//! The time floor is kept in every case where the database is kept: its only
//! failure mode is failing closed (bundles and tickets look expired).

use super::watermark;
use super::*;
use edgegate_proto::bundle::BundleError;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::os::unix::fs::OpenOptionsExt;

/// What a successful sled open read back.
pub(super) struct Loaded {
    db: sled::Db,
    bundle: sled::Tree,
    meta: sled::Tree,
    pub(super) floor: UnixTime,
    pub(super) serial: Option<u64>,
    pub(super) envelope: Option<sled::IVec>,
}

impl Loaded {
    /// The database opened.
    pub(super) fn db(&self) -> &sled::Db {
        &self.db
    }
}

/// Why the sled directory could not be used.
pub(super) enum OpenFailure {
    /// Unusable state: move it aside and start fresh.
    Broken(String),
    /// Not a property of the state (lock held elsewhere): give up.
    Fatal(StoreError),
}

pub(super) fn open(
    dir: &Path,
    trust: &TrustPolicy,
    device_id: &str,
    check: &dyn Fn(&VerifiedBundle) -> Result<(), String>,
) -> Result<Opened, StoreError> {
    let io = |source| StoreError::Io {
        path: dir.to_path_buf(),
        source,
    };
    create_private_dir(dir).map_err(io)?;
    let lock = lock_dir(dir)?;
    let mut warnings = Vec::new();
    let mut loaded = open_or_replace(dir, &mut warnings)?;
    let (mark, sealed) = match reconcile(dir, &mut loaded, &mut warnings) {
        Ok(mark) => (mark, None),
        Err(why) => (None, Some(why)),
    };
    let keys_tree = super::keys::tree(&loaded.db).map_err(StoreError::Write)?;
    let acknowledged = mark.as_ref().map_or(0, |w| w.keys);
    let keys = super::keys::load(&keys_tree, trust, acknowledged, &mut warnings);
    let bundle_trust = bundle_trust(&loaded, &keys);
    let (mut state, mut bundle) =
        load_bundle(&loaded, &bundle_trust, device_id, check, &mut warnings);
    // The anti-rollback serial comes from the watermark whatever the trust
    // settings: a bundle signed by keys no longer trusted is not used, but
    // its serial still counts.
    if let Some(w) = &mark {
        state.serial = state.serial.max(w.serial);
    }
    // Without a readable watermark a silent sled rollback cannot be told
    // apart: fail closed, no bundle (stored or pushed) until an operator
    // acknowledges it (`edgegate store reset-watermark`).
    if sealed.is_some() {
        bundle = None;
    }
    // The acknowledged bundle is gone (sled lost it, or held an older one)
    // but its serial is enforced: allow exactly that bundle back at its
    // serial (a re-push after sled loss). A stored bundle refused for
    // another reason is not "gone": its bytes would be refused again.
    let gone = loaded.envelope.is_none();
    if let Some(w) = mark.filter(|w| gone && w.serial == state.serial) {
        state.lost = w.digest;
    }
    state.start_floor = state.floor;
    state.keys_version = keys.version_floor;
    let Loaded {
        db,
        bundle: bt,
        meta,
        ..
    } = loaded;
    let store = Store {
        db,
        bundle: bt,
        meta,
        keys: std::sync::RwLock::new(keys),
        keys_tree,
        device_id: device_id.to_string(),
        dir: dir.to_path_buf(),
        state: Mutex::new(state),
        sealed,
        _lock: lock,
    };
    Ok(Opened {
        store,
        bundle,
        warnings,
        reset: super::reset::read_note(dir),
    })
}

/// One process per state directory. Our own lock (rather than sled's) tells
/// "in use" apart from "corrupt" without parsing sled's error text, so a
/// running daemon's store is never moved aside by a second instance.
pub(super) fn lock_dir(dir: &Path) -> Result<Flock<File>, StoreError> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .mode(0o600)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((_, Errno::EWOULDBLOCK)) => Err(StoreError::Locked(dir.to_path_buf())),
        Err((_, errno)) => Err(StoreError::Io {
            path,
            source: errno.into(),
        }),
    }
}

fn open_or_replace(dir: &Path, warnings: &mut Vec<String>) -> Result<Loaded, StoreError> {
    let path = dir.join(SLED_DIR);
    let why = match try_open(&path) {
        Ok(loaded) => return Ok(loaded),
        Err(OpenFailure::Fatal(e)) => return Err(e),
        Err(OpenFailure::Broken(why)) => why,
    };
    let moved = move_aside(dir)?;
    warn(
        warnings,
        format!(
            "database {}: {why}; moved aside to {}, starting with an empty store",
            path.display(),
            moved.display()
        ),
    );
    match try_open(&path) {
        Ok(loaded) => Ok(loaded),
        Err(OpenFailure::Fatal(e)) => Err(e),
        Err(OpenFailure::Broken(why)) => Err(StoreError::Fresh {
            path,
            source: sled::Error::Unsupported(why),
        }),
    }
}

fn sled_config(path: &Path) -> sled::Config {
    sled::Config::new()
        .path(path)
        .cache_capacity(CACHE_BYTES)
        // Routers have small flash; a bundle rewrite every few minutes and
        // an audit append per decision need no write-optimised layout.
        .mode(sled::Mode::LowSpace)
        .flush_every_ms(Some(FLUSH_EVERY_MS))
}

fn is_lock_error(io: &std::io::Error) -> bool {
    io.to_string().contains("could not acquire lock")
}

/// Open sled, waiting out a previous `Db` of this process that is still
/// shutting down. We hold our own flock on the state directory, so no other
/// process has it; sled's lock can then only be held by a dropped `Db` whose
/// background flusher thread has not exited yet (it wakes every
/// `FLUSH_EVERY_MS`). Reopening in-process happens in tests and on reload.
fn open_sled(path: &Path) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(3 * FLUSH_EVERY_MS);
    loop {
        match sled_config(path).open() {
            Err(sled::Error::Io(io))
                if is_lock_error(&io) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

pub(super) fn try_open(path: &Path) -> Result<Loaded, OpenFailure> {
    let broken = |what: &str, e: sled::Error| OpenFailure::Broken(format!("{what}: {e}"));
    // sled creates its directory with the default mode; ours is 0700.
    if let Err(e) = create_private_dir(path) {
        return Err(OpenFailure::Broken(format!(
            "creating {}: {e}",
            path.display()
        )));
    }
    let db = open_sled(path).map_err(|e| match e {
        sled::Error::Io(ref io) if is_lock_error(io) => {
            OpenFailure::Fatal(StoreError::Locked(path.to_path_buf()))
        }
        e => broken("sled failed to open", e),
    })?;
    let bundle = db
        .open_tree(TREE_BUNDLE)
        .map_err(|e| broken("opening tree bundle", e))?;
    let meta = db
        .open_tree(TREE_META)
        .map_err(|e| broken("opening tree meta", e))?;
    let get = |t: &sled::Tree, k: &[u8]| {
        t.get(k)
            .map_err(|e| broken(&format!("reading {}", String::from_utf8_lossy(k)), e))
    };
    match get(&meta, KEY_FORMAT)? {
        Some(f) if f == FORMAT => {}
        Some(f) => {
            return Err(OpenFailure::Broken(format!(
                "unknown store format {:?}",
                String::from_utf8_lossy(&f)
            )))
        }
        None if bundle.is_empty() && meta.is_empty() => {
            meta.insert(KEY_FORMAT, FORMAT)
                .and_then(|_| db.flush())
                .map_err(|e| broken("initialising a fresh store", e))?;
        }
        None => return Err(OpenFailure::Broken("format marker missing".into())),
    }
    let floor = read_u64(get(&meta, KEY_FLOOR)?, "time floor")?.unwrap_or(0);
    let serial = read_u64(get(&bundle, KEY_SERIAL)?, "serial")?;
    let envelope = get(&bundle, KEY_ENVELOPE)?;
    Ok(Loaded {
        db,
        bundle,
        meta,
        floor,
        serial,
        envelope,
    })
}

fn read_u64(v: Option<sled::IVec>, what: &str) -> Result<Option<u64>, OpenFailure> {
    v.map(|v| {
        <[u8; 8]>::try_from(&v[..])
            .map(u64::from_be_bytes)
            .map_err(|_| OpenFailure::Broken(format!("stored {what} is {} bytes, not 8", v.len())))
    })
    .transpose()
}

/// Rename `<dir>/db` to `<dir>/db.broken-<unix time>[.n]`. The caller has
/// dropped every handle on it.
fn move_aside(dir: &Path) -> Result<PathBuf, StoreError> {
    let from = dir.join(SLED_DIR);
    let secs = crate::clock::Clock::system().wall();
    let base = format!("{SLED_DIR}.broken-{secs}");
    let to = (0..)
        .map(|n| match n {
            0 => dir.join(&base),
            n => dir.join(format!("{base}.{n}")),
        })
        .find(|p| !p.exists())
        .expect("an unused name exists");
    std::fs::rename(&from, &to).map_err(|source| StoreError::MoveAside { path: from, source })?;
    Ok(to)
}

/// Compare sled with the watermark of the last acknowledged write; if sled
/// came back older (see `watermark.rs`), raise its serial and floor back and
/// drop the older bundle, persisting the repair. Returns the watermark, or
/// why it could not be read (the store then fails closed).
fn reconcile(
    dir: &Path,
    l: &mut Loaded,
    warnings: &mut Vec<String>,
) -> Result<Option<watermark::Watermark>, String> {
    let w = match watermark::read(dir) {
        Ok(Some(w)) => w,
        Ok(None) => return Ok(None),
        Err(e) => {
            let why = format!("watermark {}: {e}", watermark::FILE);
            warn(
                warnings,
                format!(
                    "{why}; failing closed: no bundle is used or accepted until an operator \
                     runs `edgegate store reset-watermark --config FILE` with the daemon stopped"
                ),
            );
            return Err(why);
        }
    };
    if !w.ahead_of(l.serial, l.floor) {
        return Ok(Some(w));
    }
    let show = |s: Option<u64>| s.map_or("none".to_string(), |s| s.to_string());
    let serial = l.serial.max(w.serial);
    let drop_bundle = l.serial < w.serial && l.envelope.is_some();
    warn(
        warnings,
        format!(
            "sled recovered an older state than last acknowledged (serial {} < {} or time floor {} < {}); \
             serial and time floor raised back{}",
            show(l.serial),
            show(w.serial),
            l.floor,
            w.floor,
            if drop_bundle { ", the older bundle is treated as absent" } else { "" }
        ),
    );
    l.floor = l.floor.max(w.floor);
    l.serial = serial;
    if drop_bundle {
        l.envelope = None;
    }
    let floor = l.floor.to_be_bytes();
    let serial = serial.map(u64::to_be_bytes);
    let r: TransactionResult<(), ()> = (&l.bundle, &l.meta).transaction(|(bt, mt)| {
        if drop_bundle {
            bt.remove(KEY_ENVELOPE)?;
        }
        if let Some(s) = &serial {
            bt.insert(KEY_SERIAL, s)?;
        }
        mt.insert(KEY_FLOOR, &floor)?;
        Ok(())
    });
    if let Err(e) = r
        .map_err(|e| format!("{e:?}"))
        .and_then(|()| l.db.flush().map(drop).map_err(|e| e.to_string()))
    {
        warn(
            warnings,
            format!("persisting the repair failed: {e}; enforced in memory only"),
        );
    }
    Ok(Some(w))
}

/// The keys the stored bundle must verify under: the bundle role in force,
/// or the one it was signed under if a statement grandfathered it.
fn bundle_trust(l: &Loaded, keys: &super::keys::Keys) -> TrustPolicy {
    let digest: Option<[u8; 32]> = l.envelope.as_ref().map(|e| Sha256::digest(e).into());
    match &keys.grandfathered {
        Some((d, t)) if Some(*d) == digest => t.clone(),
        _ => keys.authority.role(edgegate_proto::KeyRole::Bundle).clone(),
    }
}

/// Decide what of the stored bundle is still trusted.
fn load_bundle(
    l: &Loaded,
    trust: &TrustPolicy,
    device_id: &str,
    check: &dyn Fn(&VerifiedBundle) -> Result<(), String>,
    warnings: &mut Vec<String>,
) -> (State, Option<VerifiedBundle>) {
    let untrusted = State {
        serial: None,
        digest: None,
        lost: None,
        floor: l.floor,
        start_floor: 0,
        start_wall: None,
        keys_version: 0,
    };
    let Some(raw) = &l.envelope else {
        return (
            State {
                serial: l.serial,
                ..untrusted
            },
            None,
        );
    };
    let stored = l.serial.map_or("?".to_string(), |s| s.to_string());
    let vb = match VerifiedBundle::verify(raw, trust) {
        Ok(vb) => vb,
        Err(e) => {
            warn(warnings, untrusted_line(&stored, &e));
            return (untrusted, None);
        }
    };
    let b = vb.bundle();
    if b.device_id != device_id || b.device.id != device_id {
        warn(
            warnings,
            format!(
                "stored bundle serial {stored} is for device {:?}, this is {device_id:?}; \
                 treated as absent (no bundle in force, its serial not enforced)",
                b.device_id
            ),
        );
        return (untrusted, None);
    }
    let authentic = State {
        serial: Some(b.serial.max(l.serial.unwrap_or(0))),
        ..untrusted
    };
    if l.serial != Some(b.serial) {
        warn(
            warnings,
            format!(
                "stored serial {stored} does not match the stored bundle's serial {}; \
                 treated as absent (the higher serial is enforced)",
                b.serial
            ),
        );
        return (authentic, None);
    }
    if let Err(why) = check(&vb) {
        warn(
            warnings,
            format!(
                "stored bundle serial {} is refused by the policy check: {why}; \
                 treated as absent (its serial is still enforced)",
                b.serial
            ),
        );
        return (authentic, None);
    }
    let state = State {
        serial: Some(b.serial),
        digest: Some(Sha256::digest(raw).into()),
        lost: None,
        // Not raised to the bundle's `issued_at`: the floor was written in
        // the same transaction, already bounded by the ceiling then.
        ..untrusted
    };
    (state, Some(vb))
}

fn untrusted_line(stored: &str, e: &BundleError) -> String {
    format!(
        "stored bundle serial {stored} fails verification under the current trust policy \
         ({}: {e}); treated as absent (no bundle in force, its serial not enforced; \
         the bytes stay on disk until a new bundle replaces them)",
        e.code()
    )
}

/// Record a warning for the caller (the daemon logs each once).
fn warn(warnings: &mut Vec<String>, line: String) {
    warnings.push(line);
}
