//! Wall-clock time as Herald stores and shows it: milliseconds and microseconds since the Unix
//! epoch, and RFC 3339 on the wire. A clock set before 1970 reads as the epoch, and a time
//! too far ahead to count saturates, so no conversion can fail.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn since_epoch(time: SystemTime) -> Duration {
    time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO)
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis(time: SystemTime) -> u64 {
    u64::try_from(since_epoch(time).as_millis()).unwrap_or(u64::MAX)
}

/// Microseconds since the Unix epoch.
pub fn unix_micros(time: SystemTime) -> u64 {
    u64::try_from(since_epoch(time).as_micros()).unwrap_or(u64::MAX)
}

/// The time `millis` milliseconds after the Unix epoch.
pub fn from_unix_millis(millis: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis)
}

/// The time `micros` microseconds after the Unix epoch.
pub fn from_unix_micros(micros: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(micros)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    unix_millis(SystemTime::now())
}

/// RFC 3339 in UTC with milliseconds, the form of every timestamp on the wire.
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip_and_never_fail() {
        let time = from_unix_millis(1_700_000_000_123);
        assert_eq!(unix_millis(time), 1_700_000_000_123);
        assert_eq!(unix_micros(time), 1_700_000_000_123_000);
        assert_eq!(from_unix_micros(unix_micros(time)), time);
        assert_eq!(rfc3339(time), "2023-11-14T22:13:20.123Z");
        let before_epoch = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(unix_millis(before_epoch), 0);
    }
}
