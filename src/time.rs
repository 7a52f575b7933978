//! Wall-clock time as the server stamps it on the wire and in the database, and durations as operators
//! type them (`30s`, `10m`, `2h`, `7d`, `1h30m`) and read them.

use std::time::{Duration, SystemTime};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The longest duration an operator may give (about 100 years): longer is "until lifted".
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Parses `30s`, `10m`, `2h`, `7d`, `2w` and sums such as `1h30m`. `None` for anything else, zero, or
/// more than [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in text.chars() {
        if let Some(digit) = c.to_digit(10) {
            number = Some(
                number
                    .unwrap_or(0)
                    .checked_mul(10)?
                    .checked_add(u64::from(digit))?,
            );
            continue;
        }
        let unit = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return None,
        };
        total = total.checked_add(number.take()?.checked_mul(unit)?)?;
    }
    if number.is_some() || total == 0 || total > MAX_DURATION.as_secs() {
        return None;
    }
    Some(Duration::from_secs(total))
}

/// A duration as people read it, its two largest units: `2d 3h`, `9m 58s`, `5s`.
pub fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs().max(1);
    let units = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let Some(first) = units.iter().position(|&(size, _)| secs >= size) else {
        return "1s".into();
    };
    let (size, name) = units[first];
    let mut text = format!("{}{name}", secs / size);
    if let Some(&(next, next_name)) = units.get(first + 1)
        && secs % size / next > 0
    {
        text += &format!(" {}{next_name}", secs % size / next);
    }
    text
}

/// A Unix time in milliseconds as a UTC date and time: `2026-11-22 14:03 UTC`.
pub fn format_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3_600,
        rest % 3_600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_operators_type_them() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("2W"), Some(Duration::from_secs(14 * 86_400)));
        for bad in [
            "",
            "10",
            "m",
            "0s",
            "1x",
            "-1h",
            "99999999999999999999d",
            "200000d",
            "1h 2m",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn durations_and_dates_read_well() {
        assert_eq!(format_duration(Duration::from_secs(5)), "5s");
        assert_eq!(format_duration(Duration::from_secs(598)), "9m 58s");
        assert_eq!(format_duration(Duration::from_secs(3_600)), "1h");
        assert_eq!(
            format_duration(Duration::from_secs(2 * 86_400 + 3 * 3_600 + 7)),
            "2d 3h"
        );
        assert_eq!(format_duration(Duration::from_millis(10)), "1s");
        assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_utc(1_795_359_780_000), "2026-11-22 15:03 UTC");
    }
}
