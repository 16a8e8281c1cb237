//! A tiny file beside the sled directory recording the last acknowledged
//! serial and time floor (and the bundle's digest and the highest key
//! statement version), to detect sled silently recovering an older state.
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
const TAG: &str = "edgegate-store-watermark/3";
/// Written before the key statement version was recorded; still read.
const TAG_V2: &str = "edgegate-store-watermark/2";
/// Written before the digest was recorded; still read.
const TAG_V1: &str = "edgegate-store-watermark/1";

/// The last acknowledged state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Watermark {
    pub(super) serial: Option<u64>,
    pub(super) floor: UnixTime,
    /// SHA-256 of the acknowledged bundle's envelope (`None`: no bundle, or
    /// a version-1 watermark). Lets the store re-install exactly that
    /// bundle if sled lost it, without taking it for a rollback.
    pub(super) digest: Option<[u8; 32]>,
    /// The highest key statement version acknowledged (0: none, or an
    /// older watermark): a `keys` tree that came back older is not used.
    pub(super) keys: u64,
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
    let fields: Vec<&str> = text.strip_suffix('\n')?.split(' ').collect();
    let (serial, floor, digest, keys) = match fields.as_slice() {
        [TAG_V1, serial, floor] => (serial, floor, None, None),
        [TAG_V2, serial, floor, digest] => (serial, floor, Some(digest), None),
        [TAG, serial, floor, digest, keys] => (serial, floor, Some(digest), Some(keys)),
        _ => return None,
    };
    let serial = match serial.strip_prefix("serial=")? {
        "none" => None,
        n => Some(n.parse().ok()?),
    };
    let floor = floor.strip_prefix("floor=")?.parse().ok()?;
    let digest = match digest.map(|d| d.strip_prefix("sha256=")) {
        None | Some(Some("none")) => None,
        Some(Some(hex)) => Some(unhex(hex)?),
        Some(None) => return None,
    };
    let keys = match keys {
        None => 0,
        Some(k) => k.strip_prefix("keys=")?.parse().ok()?,
    };
    Some(Watermark {
        serial,
        floor,
        digest,
        keys,
    })
}

fn unhex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn format(w: &Watermark) -> String {
    let serial = w.serial.map_or("none".to_string(), |s| s.to_string());
    let digest = w.digest.map_or("none".to_string(), |d| {
        d.iter().map(|b| format!("{b:02x}")).collect()
    });
    format!(
        "{TAG} serial={serial} floor={} sha256={digest} keys={}\n",
        w.floor, w.keys
    )
}

/// Replace the watermark atomically: temp file, fsync, rename, fsync dir.
pub(super) fn write(dir: &Path, w: &Watermark) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join(TMP);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
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
                digest: None,
                keys: 0,
            },
            Watermark {
                serial: Some(u64::MAX),
                floor: 1_700_000_000,
                digest: Some([0xa5; 32]),
                keys: 7,
            },
        ] {
            assert_eq!(parse(&format(&w)), Some(w));
        }
        assert_eq!(
            parse("edgegate-store-watermark/1 serial=3 floor=9\n"),
            Some(Watermark {
                serial: Some(3),
                floor: 9,
                digest: None,
                keys: 0,
            })
        );
        assert_eq!(
            parse("edgegate-store-watermark/2 serial=3 floor=9 sha256=none\n").map(|w| w.keys),
            Some(0)
        );
        for junk in [
            "",
            "\n",
            "edgegate-store-watermark/1 serial=1\n",
            "edgegate-store-watermark/2 serial=1 floor=2\n",
            "edgegate-store-watermark/2 serial=1 floor=2 sha256=abc\n",
            "edgegate-store-watermark/2 serial=1 floor=2 md5=none\n",
            "edgegate-store-watermark/3 serial=1 floor=2 sha256=none\n",
            "edgegate-store-watermark/3 serial=1 floor=2 sha256=none keys=x\n",
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
            digest: None,
            keys: 0,
        };
        assert!(!w.ahead_of(Some(5), 100));
        assert!(!w.ahead_of(Some(6), 200));
        assert!(w.ahead_of(Some(4), 100));
        assert!(w.ahead_of(None, 100));
        assert!(w.ahead_of(Some(5), 99));
    }
}
