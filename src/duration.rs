//! Durations as people write them in policy files, configs and flags:
//! `45s`, `90m`, `12h`, `30d`, `1d12h`, `0s`.
//!
//! A duration is one or more `<number><unit>` parts with units `d` (24 hours),
//! `h`, `m` and `s`, each unit at most once and from largest to smallest.
//! There is no calendar arithmetic: `1d` is always 86 400 seconds. Seed 004's
//! convention that "1 day" of logout period means 22 hours (and "5 days"
//! 110 hours) is a convention of whoever writes the policy, so fixtures say
//! `22h` or `110h` explicitly instead of `1d`.
//!
//! Instants on the command line and in policy tests are RFC 3339
//! (`2026-11-25T08:00:00Z`), converted here to and from `UnixTime`.

use edgegate_proto::UnixTime;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

/// Parse a duration into seconds, e.g. `"1d12h"` → `129600`.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = |why: &str| {
        format!("invalid duration {text:?}: {why} (examples: 45s, 90m, 12h, 30d, 1d12h)")
    };
    if text.is_empty() {
        return Err(bad("empty"));
    }
    let mut total: u64 = 0;
    let mut next_unit = 0; // index into UNITS of the smallest unit still allowed
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad("expected a number"));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| bad("number too large"))?;
        let unit = rest[digits..]
            .chars()
            .next()
            .ok_or_else(|| bad("missing unit after the number"))?;
        let idx = UNITS
            .iter()
            .position(|(u, _)| *u == unit)
            .ok_or_else(|| bad("unit must be d, h, m or s"))?;
        if idx < next_unit {
            return Err(bad("units must go from largest to smallest, each once"));
        }
        next_unit = idx + 1;
        total = number
            .checked_mul(UNITS[idx].1)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| bad("too large"))?;
        rest = &rest[digits + unit.len_utf8()..];
    }
    Ok(total)
}

/// Format seconds in the same notation, largest units first: `129600` →
/// `"1d12h"`, `0` → `"0s"`. `parse_duration(&format_duration(n)) == Ok(n)`.
pub fn format_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    let mut left = secs;
    for (unit, size) in UNITS {
        let n = left / size;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
            left %= size;
        }
    }
    out
}

/// Seconds since the epoch of a system time (0 before the epoch).
pub fn unix_seconds(t: SystemTime) -> UnixTime {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Parse an RFC 3339 instant in UTC (`2026-11-25T08:00:00Z`; a space may
/// replace the `T`, fractional seconds are allowed, offsets are not).
pub fn parse_time(text: &str) -> Result<UnixTime, String> {
    humantime::parse_rfc3339_weak(text)
        .map(unix_seconds)
        .map_err(|e| {
            format!("invalid time {text:?}: {e} (expected RFC 3339, e.g. 2026-11-25T08:00:00Z)")
        })
}

/// The last second RFC 3339 can write: 9999-12-31T23:59:59Z.
pub const LAST_RFC3339: UnixTime = 253_402_300_799;

/// Format an instant as RFC 3339 UTC with second precision; an instant past
/// year 9999 (signed bundles and tickets may carry one) as `@SECONDS`.
pub fn format_time(t: UnixTime) -> String {
    if t > LAST_RFC3339 {
        return format!("@{t}");
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_every_instant_without_panicking() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(LAST_RFC3339), "9999-12-31T23:59:59Z");
        assert_eq!(format_time(LAST_RFC3339 + 1), "@253402300800");
        assert_eq!(format_time(u64::MAX), format!("@{}", u64::MAX));
    }

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse_duration("12h"), Ok(12 * 3600));
        assert_eq!(parse_duration("30d"), Ok(30 * 86_400));
        assert_eq!(parse_duration("90m"), Ok(90 * 60));
        assert_eq!(parse_duration("45s"), Ok(45));
        assert_eq!(parse_duration("1d12h"), Ok(36 * 3600));
        assert_eq!(parse_duration("0s"), Ok(0));
        assert_eq!(parse_duration("22h"), Ok(22 * 3600));
        assert_eq!(parse_duration("1h30m15s"), Ok(5415));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "12",
            "h",
            "12x",
            "1h1d",
            "1h1h",
            "-1h",
            " 1h",
            "1h ",
            "1.5h",
            "12H",
            "99999999999999999999s",
            "999999999999999d",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("invalid duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn times_round_trip() {
        let t = parse_time("2026-11-25T08:00:00Z").unwrap();
        assert_eq!(t, 1_795_593_600);
        assert_eq!(format_time(t), "2026-11-25T08:00:00Z");
        assert_eq!(parse_time("2026-11-25 08:00:00Z"), Ok(t));
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn formats_back() {
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(45), "45s");
        assert_eq!(format_duration(90 * 60), "1h30m");
        assert_eq!(format_duration(36 * 3600), "1d12h");
        assert_eq!(format_duration(30 * 86_400), "30d");
        for n in [0, 1, 59, 60, 3599, 3601, 86_399, 86_401, 1 << 40, u64::MAX] {
            assert_eq!(parse_duration(&format_duration(n)), Ok(n), "{n}");
        }
    }
}
