//! Numbers with units as keepalived and HAProxy write them, and durations as
//! halo writes them.
//!
//! keepalived times are seconds, possibly with decimals ("1", "0.5").
//! HAProxy times are integers with an optional unit (us, ms, s, m, h, d);
//! a bare number is milliseconds. halo wants a string with a unit, exact to
//! the millisecond. No floating point: "0.1" second is 100 ms exactly.

use std::time::Duration;

/// keepalived seconds: "2", "0.5", "1.25" (up to microseconds).
pub fn keepalived_secs(text: &str) -> Result<Duration, String> {
    let bad = || format!("\"{text}\" is not a number of seconds");
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err(bad());
    }
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(frac) || whole.len() > 9 || frac.len() > 6 {
        return Err(bad());
    }
    let secs: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let micros: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().map_err(|_| bad())?
    };
    Ok(Duration::from_secs(secs) + Duration::from_micros(u64::from(micros)))
}

/// An HAProxy time: "2000" (ms), "5s", "1m", "100us", "1d".
pub fn haproxy_time(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() || number.len() > 12 {
        return Err(format!(
            "\"{text}\" is not an HAProxy time (a number and an optional unit: us, ms, s, m, h, d)"
        ));
    }
    let n: u64 = number
        .parse()
        .map_err(|_| format!("\"{text}\" is not an HAProxy time"))?;
    let d = match unit {
        "us" => Duration::from_micros(n),
        "" | "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86400),
        _ => {
            return Err(format!(
                "\"{text}\" has an unknown time unit \"{unit}\" (HAProxy knows us, ms, s, m, h, d)"
            ))
        }
    };
    Ok(d)
}

/// Round up to whole milliseconds (halo's resolution for these keys).
pub fn ceil_ms(d: Duration) -> Duration {
    let ms = d.as_nanos().div_ceil(1_000_000);
    Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// halo's duration text: the shortest of "250ms", "1.5s", "2m", "1h" that
/// says `d` to the millisecond (callers round with [`ceil_ms`] first).
pub fn halo_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".into(),
        ms if ms < 1000 => format!("{ms}ms"),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => {
            let s = format!("{}.{:03}", ms / 1000, ms % 1000);
            format!("{}s", s.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalived_seconds_are_exact() {
        assert_eq!(keepalived_secs("2"), Ok(Duration::from_secs(2)));
        assert_eq!(keepalived_secs("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(keepalived_secs("1.25"), Ok(Duration::from_millis(1250)));
        assert_eq!(keepalived_secs(".1"), Ok(Duration::from_millis(100)));
        for bad in ["", ".", "1s", "-1", "1.2.3", "abc", "1e3", "99999999999"] {
            assert!(keepalived_secs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn haproxy_times_default_to_milliseconds() {
        assert_eq!(haproxy_time("2000"), Ok(Duration::from_secs(2)));
        assert_eq!(haproxy_time("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(haproxy_time("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(haproxy_time("100us"), Ok(Duration::from_micros(100)));
        assert_eq!(haproxy_time("1d"), Ok(Duration::from_secs(86400)));
        for bad in ["", "s", "5 s", "5sec", "-1", "1.5s", "9999999999999"] {
            assert!(haproxy_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn halo_durations_are_shortest_and_exact() {
        let ms = Duration::from_millis;
        assert_eq!(halo_duration(ms(2000)), "2s");
        assert_eq!(halo_duration(ms(1500)), "1.5s");
        assert_eq!(halo_duration(ms(60_000)), "1m");
        assert_eq!(halo_duration(ms(10)), "10ms");
        assert_eq!(halo_duration(ms(3_600_000)), "1h");
        assert_eq!(halo_duration(ms(90_000)), "90s");
        assert_eq!(halo_duration(Duration::ZERO), "0s");
        assert_eq!(ceil_ms(Duration::from_micros(100)), ms(1));
    }
}
