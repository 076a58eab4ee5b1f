//! RFC 3339 timestamps from unix nanoseconds, as `container_event` frames
//! carry them (UTC, always nine fractional digits:
//! `2026-11-30T12:34:56.000000001Z`).
//!
//! Pure arithmetic (Howard Hinnant's civil-from-days); it never reads a clock
//! and never fails: every `i64` of nanoseconds maps to a proleptic Gregorian
//! date.

/// Nanoseconds in one second.
const NANOS_PER_SEC: i64 = 1_000_000_000;
/// Seconds in one day.
const SECS_PER_DAY: i64 = 86_400;

/// Formats unix nanoseconds as RFC 3339 in UTC with nanoseconds.
///
/// Nine fractional digits always (not trimmed as Go's `RFC3339Nano` does):
/// both forms are valid RFC 3339, and fixed width sorts as text.
pub(crate) fn rfc3339_nanos(unix_nanos: i64) -> String {
    let secs = unix_nanos.div_euclid(NANOS_PER_SEC);
    let nanos = unix_nanos.rem_euclid(NANOS_PER_SEC);
    let days = secs.div_euclid(SECS_PER_DAY);
    let sod = secs.rem_euclid(SECS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// `(year, month 1..=12, day 1..=31)` of a count of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are in range by construction: the casts cannot truncate.
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_instants() {
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339_nanos(1), "1970-01-01T00:00:00.000000001Z");
        // From a real Docker event: time 1796398595, timeNano …339616247.
        assert_eq!(
            rfc3339_nanos(1_796_398_595_339_616_247),
            "2026-12-04T15:36:35.339616247Z"
        );
        // 2000-02-29 (leap day of a century leap year), 23:59:59.
        assert_eq!(
            rfc3339_nanos(951_868_799 * NANOS_PER_SEC + 999_999_999),
            "2000-02-29T23:59:59.999999999Z"
        );
        // 2100-03-01: 2100 is not a leap year.
        assert_eq!(
            rfc3339_nanos(4_107_542_400 * NANOS_PER_SEC),
            "2100-03-01T00:00:00.000000000Z"
        );
    }

    #[test]
    fn before_the_epoch() {
        assert_eq!(rfc3339_nanos(-1), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn every_day_of_four_centuries_is_a_valid_successor() {
        // Walk 146,097 days (one full Gregorian cycle) and check that each
        // date follows the previous one by the calendar's rules.
        let mut prev = civil_from_days(-1);
        for d in 0..146_097 {
            let cur = civil_from_days(d);
            let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match prev.1 {
                2 if leap(prev.0) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            let expect = if prev.2 < len {
                (prev.0, prev.1, prev.2 + 1)
            } else if prev.1 < 12 {
                (prev.0, prev.1 + 1, 1)
            } else {
                (prev.0 + 1, 1, 1)
            };
            assert_eq!(cur, expect, "day {d}");
            prev = cur;
        }
    }
}
