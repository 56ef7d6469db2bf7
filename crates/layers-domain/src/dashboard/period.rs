//! Calendar periods of a key's spend limit. Every boundary is midnight UTC: a daily limit
//! resets at 00:00 UTC, a weekly one on Monday 00:00 UTC, a monthly one on the 1st at 00:00 UTC.
//! Days are counted as Unix days (days since 1970-01-01, UTC), the unit spend is rolled up in.

use time::{Date, Duration, Month, OffsetDateTime, Time, UtcOffset};

/// How a key's spend limit resets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SpendPeriod {
    /// Never: the limit is on the key's lifetime spend.
    #[default]
    Total,
    Day,
    Week,
    Month,
}

impl SpendPeriod {
    pub const ALL: [SpendPeriod; 4] = [SpendPeriod::Total, SpendPeriod::Day, SpendPeriod::Week, SpendPeriod::Month];

    pub fn as_str(self) -> &'static str {
        match self {
            SpendPeriod::Total => "total",
            SpendPeriod::Day => "day",
            SpendPeriod::Week => "week",
            SpendPeriod::Month => "month",
        }
    }

    pub fn parse(s: &str) -> Option<SpendPeriod> {
        SpendPeriod::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// What a person reads: "per day", "in total"…
    pub fn label(self) -> &'static str {
        match self {
            SpendPeriod::Total => "in total",
            SpendPeriod::Day => "per day",
            SpendPeriod::Week => "per week",
            SpendPeriod::Month => "per month",
        }
    }

    /// The first Unix day of the period `at` falls in; `None` for [`SpendPeriod::Total`].
    pub fn start_day(self, at: OffsetDateTime) -> Option<i64> {
        let date = at.to_offset(UtcOffset::UTC).date();
        let start = match self {
            SpendPeriod::Total => return None,
            SpendPeriod::Day => date,
            SpendPeriod::Week => date - Duration::days(i64::from(date.weekday().number_days_from_monday())),
            SpendPeriod::Month => date.replace_day(1).unwrap_or(date),
        };
        Some(unix_day(start))
    }

    /// When the period `at` falls in ends (the next reset); `None` for [`SpendPeriod::Total`].
    pub fn next_reset(self, at: OffsetDateTime) -> Option<OffsetDateTime> {
        let date = at.to_offset(UtcOffset::UTC).date();
        let next = match self {
            SpendPeriod::Total => return None,
            SpendPeriod::Day => date.next_day()?,
            SpendPeriod::Week => {
                let days = 7 - i64::from(date.weekday().number_days_from_monday());
                date + Duration::days(days)
            }
            SpendPeriod::Month => first_of_next_month(date)?,
        };
        Some(next.with_time(Time::MIDNIGHT).assume_utc())
    }
}

/// Days since 1970-01-01 (UTC) of `date`.
pub fn unix_day(date: Date) -> i64 {
    i64::from(date.to_julian_day()) - i64::from(UNIX_EPOCH_JULIAN_DAY)
}

/// The Unix day `at` falls on (UTC).
pub fn day_of(at: OffsetDateTime) -> i64 {
    at.unix_timestamp().div_euclid(86_400)
}

/// Midnight UTC starting Unix day `day`.
pub fn day_start(day: i64) -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + Duration::days(day)
}

const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

fn first_of_next_month(date: Date) -> Option<Date> {
    let (year, month) = match date.month() {
        Month::December => (date.year() + 1, Month::January),
        m => (date.year(), m.next()),
    };
    Date::from_calendar_date(year, month, 1).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn unix_days_agree_with_timestamps() {
        let at = datetime!(2026-12-01 15:00 UTC);
        assert_eq!(SpendPeriod::Day.start_day(at), Some(day_of(at)));
        assert_eq!(day_start(day_of(at)), datetime!(2026-12-01 00:00 UTC));
        assert_eq!(day_of(datetime!(1970-01-01 23:59:59 UTC)), 0);
        assert_eq!(day_of(datetime!(1969-12-31 23:59:59 UTC)), -1);
    }

    #[test]
    fn daily_limits_reset_at_midnight_utc_whatever_the_offset_of_the_instant() {
        // 23:30 in New York on Nov 30 is 04:30 UTC on Dec 1: the UTC day counts.
        let ny = datetime!(2026-11-30 23:30 -5);
        assert_eq!(SpendPeriod::Day.start_day(ny), Some(day_of(datetime!(2026-12-01 00:00 UTC))));
        assert_eq!(SpendPeriod::Day.next_reset(ny), Some(datetime!(2026-12-02 00:00 UTC)));
        // 00:30 in Tokyo on Dec 1 is still Nov 30 in UTC.
        let tokyo = datetime!(2026-12-01 00:30 +9);
        assert_eq!(SpendPeriod::Day.next_reset(tokyo), Some(datetime!(2026-12-01 00:00 UTC)));
        assert_eq!(
            SpendPeriod::Day.next_reset(datetime!(2026-12-01 23:59:59.999 UTC)),
            Some(datetime!(2026-12-02 00:00 UTC))
        );
    }

    #[test]
    fn weekly_limits_reset_on_monday() {
        // 2026-12-03 is a Thursday.
        let thu = datetime!(2026-12-03 12:00 UTC);
        assert_eq!(SpendPeriod::Week.start_day(thu), Some(day_of(datetime!(2026-11-30 00:00 UTC))));
        assert_eq!(SpendPeriod::Week.next_reset(thu), Some(datetime!(2026-12-07 00:00 UTC)));
        let mon = datetime!(2026-12-07 00:00 UTC);
        assert_eq!(SpendPeriod::Week.start_day(mon), Some(day_of(mon)));
        assert_eq!(SpendPeriod::Week.next_reset(mon), Some(datetime!(2026-12-14 00:00 UTC)));
        // Sunday night still belongs to the week that started on Monday.
        assert_eq!(SpendPeriod::Week.next_reset(datetime!(2026-12-06 23:59 UTC)), Some(mon));
    }

    #[test]
    fn monthly_limits_reset_on_the_first_across_month_and_year_ends() {
        let cases = [
            (datetime!(2026-01-31 23:59 UTC), datetime!(2026-01-01 00:00 UTC), datetime!(2026-02-01 00:00 UTC)),
            (datetime!(2028-02-29 12:00 UTC), datetime!(2028-02-01 00:00 UTC), datetime!(2028-03-01 00:00 UTC)),
            (datetime!(2026-02-28 12:00 UTC), datetime!(2026-02-01 00:00 UTC), datetime!(2026-03-01 00:00 UTC)),
            (datetime!(2026-12-31 23:59:59 UTC), datetime!(2026-12-01 00:00 UTC), datetime!(2027-01-01 00:00 UTC)),
            (datetime!(2026-04-30 10:00 UTC), datetime!(2026-04-01 00:00 UTC), datetime!(2026-05-01 00:00 UTC)),
        ];
        for (at, start, next) in cases {
            assert_eq!(SpendPeriod::Month.start_day(at), Some(day_of(start)), "{at}");
            assert_eq!(SpendPeriod::Month.next_reset(at), Some(next), "{at}");
        }
        // 1 Jan 00:30 in Berlin is still 31 Dec in UTC: December's period.
        let berlin = datetime!(2027-01-01 00:30 +1);
        assert_eq!(SpendPeriod::Month.start_day(berlin), Some(day_of(datetime!(2026-12-01 00:00 UTC))));
    }

    #[test]
    fn total_has_no_calendar_and_names_round_trip() {
        assert_eq!(SpendPeriod::Total.start_day(OffsetDateTime::UNIX_EPOCH), None);
        assert_eq!(SpendPeriod::Total.next_reset(OffsetDateTime::UNIX_EPOCH), None);
        for p in SpendPeriod::ALL {
            assert_eq!(SpendPeriod::parse(p.as_str()), Some(p));
        }
        assert_eq!(SpendPeriod::parse("fortnight"), None);
    }
}
