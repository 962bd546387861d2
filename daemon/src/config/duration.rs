//! Durations as written in `halo.toml`: a decimal number and a unit, e.g.
//! "10ms", "1s", "1.5s", "2m", "1h".
//!
//! Parsing is exact (no floating point): "0.01s" is 10 ms, not 9.999... ms.
//! A bare number is refused because "interval = 2" is ambiguous between
//! keepalived (seconds) and HAProxy (milliseconds) habits.

use std::time::Duration;

/// Units accepted, longest suffix first so "ms" is not read as "m".
const UNITS: [(&str, u128); 4] = [
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3600 * 1_000_000_000),
];

/// Parse "1.5s" and friends. The error says what a good value looks like.
pub fn parse(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration \"{text}\": write a number and a unit (ms, s, m, h), e.g. \"1.5s\""
        )
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| {
            if text.is_empty() {
                bad()
            } else {
                format!("duration \"{text}\" has no unit: write \"{text}s\" (units: ms, s, m, h)")
            }
        })?;
    let (number, unit) = text.split_at(split);
    let per_unit = UNITS
        .iter()
        .find(|(u, _)| *u == unit)
        .map(|(_, ns)| *ns)
        .ok_or_else(bad)?;
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || frac.contains('.') || (number.contains('.') && frac.is_empty()) {
        return Err(bad());
    }
    // 20 digits overflow u64 anyway; cap so u128 arithmetic cannot overflow.
    if whole.len() > 12 || frac.len() > 9 {
        return Err(format!("duration \"{text}\" is too long or too precise"));
    }
    let whole: u128 = whole.parse().map_err(|_| bad())?;
    let frac_value: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| bad())?
    };
    let scale = 10u128.pow(frac.len() as u32);
    let frac_ns = frac_value * per_unit;
    if frac_ns % scale != 0 {
        return Err(format!("duration \"{text}\" is finer than a nanosecond"));
    }
    let nanos = whole * per_unit + frac_ns / scale;
    let secs = u64::try_from(nanos / 1_000_000_000)
        .map_err(|_| format!("duration \"{text}\" is too long"))?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// The shortest of "250ms", "1.5s", "2m", "1h" that says exactly `d`.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if d.subsec_nanos() % 1_000_000 != 0 {
        return format!("{d:?}");
    }
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    if ms % 3_600_000 == 0 {
        return format!("{}h", ms / 3_600_000);
    }
    if ms % 60_000 == 0 {
        return format!("{}m", ms / 60_000);
    }
    if ms % 1000 == 0 {
        return format!("{}s", ms / 1000);
    }
    let s = format!("{}.{:03}", ms / 1000, ms % 1000);
    format!("{}s", s.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit_exactly() {
        assert_eq!(parse("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("0.01s"), Ok(Duration::from_millis(10)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("40.95s"), Ok(Duration::from_millis(40950)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_bad_text_with_a_hint() {
        assert!(parse("2").unwrap_err().contains("write \"2s\""));
        for bad in [
            "", "s", "1.s", ".5s", "1..5s", "1 s", "1sec", "-1s", "1.2.3s", "1e3ms",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse("99999999999999999999h").is_err());
        assert!(parse("0.0000000001s").is_err());
    }

    #[test]
    fn formats_round_trip() {
        for text in ["10ms", "1s", "1.5s", "2m", "1h", "40.95s", "90s", "0s"] {
            let d = parse(text).unwrap();
            assert_eq!(parse(&format(d)), Ok(d), "{text}");
        }
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::from_secs(120)), "2m");
    }
}
