//! A tiny file beside the sled directory recording the last acknowledged
//! serial and time floor, to detect sled silently recovering an older state.
//!
//! sled, on finding a corrupt log segment, truncates the log there and opens
//! the consistent prefix without an error: a damaged log can come back as an
//! older bundle or none at all, with the serial and the time floor lost. That
//! would be a silent rollback. The watermark is written (atomically, fsynced)
//! after every acknowledged write, so on open `sled >= watermark` must hold;
//! if it does not, the store raises its serial and floor back to the
//! watermark and does not return the older bundle.
//!
//! It is a detector, not the source of truth: it may lag sled (a crash
//! between the sled flush and the rename) but never lead it.

use edgegate_proto::UnixTime;
use std::io::Write;
use std::path::Path;

/// File name inside the state directory.
pub(super) const FILE: &str = "store.watermark";
const TMP: &str = "store.watermark.tmp";
const TAG: &str = "edgegate-store-watermark/1";

/// The last acknowledged state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Watermark {
    pub(super) serial: Option<u64>,
    pub(super) floor: UnixTime,
}

impl Watermark {
    /// Whether `serial`/`floor` read from sled are older than this mark.
    pub(super) fn ahead_of(&self, serial: Option<u64>, floor: UnixTime) -> bool {
        self.serial > serial || self.floor > floor
    }
}

/// Read the watermark: `Ok(None)` if there is none, `Err` if unreadable.
pub(super) fn read(dir: &Path) -> Result<Option<Watermark>, String> {
    let text = match std::fs::read_to_string(dir.join(FILE)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    parse(&text)
        .map(Some)
        .ok_or_else(|| format!("malformed: {:?}", text.trim()))
}

fn parse(text: &str) -> Option<Watermark> {
    let mut it = text.strip_suffix('\n')?.split(' ');
    let (tag, serial, floor) = (it.next()?, it.next()?, it.next()?);
    if tag != TAG || it.next().is_some() {
        return None;
    }
    let serial = match serial.strip_prefix("serial=")? {
        "none" => None,
        n => Some(n.parse().ok()?),
    };
    let floor = floor.strip_prefix("floor=")?.parse().ok()?;
    Some(Watermark { serial, floor })
}

fn format(w: &Watermark) -> String {
    let serial = w.serial.map_or("none".to_string(), |s| s.to_string());
    format!("{TAG} serial={serial} floor={}\n", w.floor)
}

/// Replace the watermark atomically: temp file, fsync, rename, fsync dir.
pub(super) fn write(dir: &Path, w: &Watermark) -> std::io::Result<()> {
    let tmp = dir.join(TMP);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(format(w).as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_junk() {
        for w in [
            Watermark {
                serial: None,
                floor: 0,
            },
            Watermark {
                serial: Some(u64::MAX),
                floor: 1_700_000_000,
            },
        ] {
            assert_eq!(parse(&format(&w)), Some(w));
        }
        for junk in [
            "",
            "\n",
            "edgegate-store-watermark/1 serial=1\n",
            "x serial=1 floor=2\n",
        ] {
            assert_eq!(parse(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn ahead_of_compares_both() {
        let w = Watermark {
            serial: Some(5),
            floor: 100,
        };
        assert!(!w.ahead_of(Some(5), 100));
        assert!(!w.ahead_of(Some(6), 200));
        assert!(w.ahead_of(Some(4), 100));
        assert!(w.ahead_of(None, 100));
        assert!(w.ahead_of(Some(5), 99));
    }
}
