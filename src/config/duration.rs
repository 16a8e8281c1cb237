//! Duration strings of the config file and the control CLI: `45s`, `90m`,
//! `12h`, `30d`, `1d12h`, `0s` (a bare `0` is accepted too). `1d` is 24h.
//!
//! Private stand-in for the authoring branch's `src/duration.rs`; at merge,
//! callers switch to `crate::duration::parse_duration` (same contract).

/// Parse a duration string into whole seconds.
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    let s = text.trim();
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err("empty duration".to_string());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut seen_unit = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => {
                return Err(format!(
                    "bad duration {text:?}: unknown unit {c:?} (use s, m, h, d, w)"
                ))
            }
        };
        if digits.is_empty() {
            return Err(format!(
                "bad duration {text:?}: unit {c:?} without a number"
            ));
        }
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("bad duration {text:?}: number too large"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("bad duration {text:?}: too large"))?;
        digits.clear();
        seen_unit = true;
    }
    if !digits.is_empty() || !seen_unit {
        return Err(format!(
            "bad duration {text:?}: a number needs a unit (e.g. 30s, 10m, 2h, 7d)"
        ));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(parse_duration("0s"), Ok(0));
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("45s"), Ok(45));
        assert_eq!(parse_duration("90m"), Ok(5_400));
        assert_eq!(parse_duration("12h"), Ok(43_200));
        assert_eq!(parse_duration("30d"), Ok(30 * 86_400));
        assert_eq!(parse_duration("1d12h"), Ok(86_400 + 43_200));
        assert_eq!(parse_duration("2w"), Ok(14 * 86_400));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "10",
            "h",
            "10x",
            "1.5h",
            "-1s",
            "99999999999999999999s",
            "10 s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
