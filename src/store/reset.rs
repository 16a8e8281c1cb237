//! `edgegate store reset-watermark`: the operator's acknowledgement that an
//! unreadable watermark (see `watermark.rs`) may be replaced by one written
//! from what sled holds now.
//!
//! A store whose watermark cannot be read fails closed: a silent sled
//! rollback could not be detected, so no bundle is used or accepted. Only
//! an operator, with the daemon stopped (the state directory's lock is
//! taken), can end that: the unreadable file is kept aside as
//! `store.watermark.unreadable-<unix time>`, a new one records sled's serial,
//! time floor and bundle digest, and a note `store.watermark-reset` says
//! who did it and when. The daemon audits the note when it next starts
//! (`WatermarkReset`) and removes it. A readable watermark is never reset.

use super::open::{lock_dir, try_open, OpenFailure};
use super::watermark::{self, Watermark};
use super::*;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

/// The note left for the daemon's next start.
const NOTE: &str = "store.watermark-reset";
const NOTE_TAG: &str = "edgegate-watermark-reset/1";

/// What a reset did; audited by the daemon at its next start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatermarkReset {
    /// When (the command's wall clock).
    pub at: UnixTime,
    /// Who ran it.
    pub by_uid: u32,
    /// The serial the new watermark enforces.
    pub serial: Option<u64>,
    /// The time floor it records.
    pub floor: UnixTime,
}

/// Why a reset was not made.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// The state directory is locked: edgegated is running.
    #[error("state directory {0} is in use: stop edgegated first")]
    Running(PathBuf),
    /// The watermark reads fine (or there is none): there is nothing to reset.
    #[error("the watermark {0} reads fine; nothing to reset")]
    Readable(PathBuf),
    /// The database itself cannot be opened: start the daemon, which moves
    /// it aside and keeps the serial from the watermark, if it can read it.
    #[error("database {path}: {why}")]
    Database {
        /// The sled directory.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Replace an unreadable watermark with one written from sled's state.
pub fn reset_watermark(
    dir: &Path,
    at: UnixTime,
    by_uid: u32,
) -> Result<WatermarkReset, ResetError> {
    let _lock = lock_dir(dir).map_err(|e| match e {
        StoreError::Locked(p) => ResetError::Running(p),
        StoreError::Io { path, source } => ResetError::Io { path, source },
        other => ResetError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::other(other.to_string()),
        },
    })?;
    let file = dir.join(watermark::FILE);
    if watermark::read(dir).is_ok() {
        return Err(ResetError::Readable(file));
    }
    let path = dir.join(SLED_DIR);
    let loaded = try_open(&path).map_err(|e| ResetError::Database {
        path: path.clone(),
        why: match e {
            OpenFailure::Broken(why) => why,
            OpenFailure::Fatal(e) => e.to_string(),
        },
    })?;
    let io = |path: PathBuf| move |source| ResetError::Io { path, source };
    let aside = (0..)
        .map(|n| match n {
            0 => dir.join(format!("{}.unreadable-{at}", watermark::FILE)),
            n => dir.join(format!("{}.unreadable-{at}.{n}", watermark::FILE)),
        })
        .find(|p| !p.exists())
        .expect("an unused name exists");
    std::fs::rename(&file, &aside).map_err(io(file.clone()))?;
    let w = Watermark {
        serial: loaded.serial,
        floor: loaded.floor,
        digest: loaded
            .envelope
            .as_ref()
            .map(|raw| Sha256::digest(raw).into()),
        keys: super::keys::stored_version(loaded.db()),
    };
    watermark::write(dir, &w).map_err(io(file))?;
    let done = WatermarkReset {
        at,
        by_uid,
        serial: w.serial,
        floor: w.floor,
    };
    write_note(dir, &done).map_err(io(dir.join(NOTE)))?;
    Ok(done)
}

fn write_note(dir: &Path, r: &WatermarkReset) -> std::io::Result<()> {
    let serial = r.serial.map_or("none".to_string(), |s| s.to_string());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dir.join(NOTE))?;
    writeln!(
        f,
        "{NOTE_TAG} at={} uid={} serial={serial} floor={}",
        r.at, r.by_uid, r.floor
    )?;
    f.sync_all()?;
    std::fs::File::open(dir)?.sync_all()
}

/// The note of a reset not yet audited, if any (an unreadable note is
/// reported with uid `u32::MAX`: the reset happened, who did it is lost).
pub(super) fn read_note(dir: &Path) -> Option<WatermarkReset> {
    let text = std::fs::read_to_string(dir.join(NOTE)).ok()?;
    Some(parse_note(&text).unwrap_or(WatermarkReset {
        at: 0,
        by_uid: u32::MAX,
        serial: None,
        floor: 0,
    }))
}

fn parse_note(text: &str) -> Option<WatermarkReset> {
    let fields: Vec<&str> = text.trim_end().split(' ').collect();
    let [NOTE_TAG, at, uid, serial, floor] = fields.as_slice() else {
        return None;
    };
    Some(WatermarkReset {
        at: at.strip_prefix("at=")?.parse().ok()?,
        by_uid: uid.strip_prefix("uid=")?.parse().ok()?,
        serial: match serial.strip_prefix("serial=")? {
            "none" => None,
            n => Some(n.parse().ok()?),
        },
        floor: floor.strip_prefix("floor=")?.parse().ok()?,
    })
}

/// Remove the note once its audit record is written.
pub fn clear_note(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(NOTE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
