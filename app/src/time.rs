//! Times as the page shows them: relative ("3 min ago"), exact in UTC, durations, and the ETA of a run.
//! Plain arithmetic on Unix milliseconds, so the server and the browser render the same text.

use crate::model::UnixMillis;

/// The current time: the browser's clock in the browser, the system clock on the server.
pub fn now_millis() -> UnixMillis {
    #[cfg(feature = "hydrate")]
    {
        js_sys::Date::now() as UnixMillis
    }
    #[cfg(not(feature = "hydrate"))]
    {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as UnixMillis)
    }
}

/// "just now", "40 s ago", "5 min ago", "3 h ago", "2 days ago" (or "in ..." for the future).
pub fn relative(at: UnixMillis, now: UnixMillis) -> String {
    let seconds = (now - at) / 1000;
    if seconds.abs() < 5 {
        return "just now".into();
    }
    let amount = short_duration(seconds.abs() * 1000);
    if seconds > 0 {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

/// The largest unit only: "40 s", "5 min", "3 h", "2 days".
fn short_duration(millis: i64) -> String {
    let seconds = millis / 1000;
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min", seconds / 60),
        3600..86400 => format!("{} h", seconds / 3600),
        _ if seconds < 2 * 86400 => "1 day".into(),
        _ => format!("{} days", seconds / 86400),
    }
}

/// A duration with two units: "45 s", "3 min 12 s", "2 h 05 min", "3 d 04 h".
pub fn duration(millis: i64) -> String {
    let seconds = millis.max(0) / 1000;
    let (days, hours, minutes, seconds) = (seconds / 86400, seconds / 3600 % 24, seconds / 60 % 60, seconds % 60);
    if days > 0 {
        format!("{days} d {hours:02} h")
    } else if hours > 0 {
        format!("{hours} h {minutes:02} min")
    } else if minutes > 0 {
        format!("{minutes} min {seconds:02} s")
    } else {
        format!("{seconds} s")
    }
}

/// How much of the last `samples` (time, percent) an ETA goes by: operations run at different speeds, so
/// the recent rate says more than the rate since the start.
pub const ETA_WINDOW_MILLIS: i64 = 10 * 60 * 1000;

/// The time left at the rate progress moved across `samples` (oldest first), once they span at least 5 s
/// and progress moved.
pub fn remaining(samples: &[(UnixMillis, u8)]) -> Option<i64> {
    let (&(first_at, first), &(last_at, last)) = (samples.first()?, samples.last()?);
    let (span, moved) = (last_at - first_at, i64::from(last) - i64::from(first));
    if span < 5_000 || moved <= 0 || last >= 100 {
        return None;
    }
    Some(span * (100 - i64::from(last)) / moved)
}

/// "2026-11-23 17:44:08 UTC".
pub fn exact_utc(at: UnixMillis) -> String {
    let (year, month, day, hour, minute, second) = civil(at);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02} UTC")
}

/// "2026-11-23T17:44:08Z", for `<time datetime>`.
pub fn iso(at: UnixMillis) -> String {
    let (year, month, day, hour, minute, second) = civil(at);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

/// Calendar date and time of day in UTC (Howard Hinnant's days-to-civil algorithm).
fn civil(at: UnixMillis) -> (i64, i64, i64, i64, i64, i64) {
    let seconds = at.div_euclid(1000);
    let (days, second_of_day) = (seconds.div_euclid(86400), seconds.rem_euclid(86400));
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day, second_of_day / 3600, second_of_day / 60 % 60, second_of_day % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_times_are_utc_calendar_dates() {
        assert_eq!(exact_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(exact_utc(1_795_455_848_000), "2026-11-23 17:44:08 UTC");
        assert_eq!(iso(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(exact_utc(-1000), "1969-12-31 23:59:59 UTC");
    }

    #[test]
    fn relative_times_use_the_largest_unit() {
        let now = 1_000_000_000_000;
        assert_eq!(relative(now - 2_000, now), "just now");
        assert_eq!(relative(now - 40_000, now), "40 s ago");
        assert_eq!(relative(now - 5 * 60_000 - 10_000, now), "5 min ago");
        assert_eq!(relative(now - 3 * 3_600_000, now), "3 h ago");
        assert_eq!(relative(now - 30 * 3_600_000, now), "1 day ago");
        assert_eq!(relative(now - 50 * 3_600_000, now), "2 days ago");
        assert_eq!(relative(now + 120_000, now), "in 2 min");
    }

    #[test]
    fn durations_show_two_units() {
        assert_eq!(duration(45_000), "45 s");
        assert_eq!(duration(192_000), "3 min 12 s");
        assert_eq!(duration(2 * 3_600_000 + 5 * 60_000), "2 h 05 min");
        assert_eq!(duration(3 * 86_400_000 + 4 * 3_600_000), "3 d 04 h");
        assert_eq!(duration(-5), "0 s");
    }

    #[test]
    fn the_eta_follows_the_recent_progress_rate() {
        // 10 points in 60 s: the 40 points left take 240 s, whatever happened before the window.
        assert_eq!(remaining(&[(0, 50), (30_000, 55), (60_000, 60)]), Some(240_000));
        assert_eq!(remaining(&[(0, 50)]), None, "one sample has no rate");
        assert_eq!(remaining(&[(0, 50), (2_000, 51)]), None, "too short to tell");
        assert_eq!(remaining(&[(0, 50), (60_000, 50)]), None, "no movement");
        assert_eq!(remaining(&[(0, 90), (60_000, 100)]), None);
    }
}
