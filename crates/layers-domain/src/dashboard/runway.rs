//! How long a balance lasts at the recent rate of spend.

use crate::MicroCredits;

/// Days the runway forecast looks back on.
pub const WINDOW_DAYS: i64 = 7;

/// What the overview says about the balance's future.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runway {
    /// Nothing was spent in the window: no forecast.
    Idle,
    /// The balance is spent (zero or below).
    Empty,
    /// At the window's average daily spend, the balance lasts about this many whole days
    /// (rounded down: a forecast that errs, errs early).
    Days(i64),
}

/// The runway of `balance` when `spent` was spent over the last [`WINDOW_DAYS`] days.
pub fn runway(balance: MicroCredits, spent: MicroCredits) -> Runway {
    if balance.0 <= 0 {
        return Runway::Empty;
    }
    if spent.0 <= 0 {
        return Runway::Idle;
    }
    // balance / (spent / 7) = balance * 7 / spent, in integers without overflow.
    let days = i128::from(balance.0) * i128::from(WINDOW_DAYS) / i128::from(spent.0);
    Runway::Days(i64::try_from(days).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credits(c: i64) -> MicroCredits {
        MicroCredits(c * 1_000_000)
    }

    #[test]
    fn a_week_at_seven_credits_leaves_balance_days() {
        // 7 credits a week is 1 a day: 30 credits last 30 days.
        assert_eq!(runway(credits(30), credits(7)), Runway::Days(30));
        // 70 a week is 10 a day: 25 credits last 2.5 days, said as 2.
        assert_eq!(runway(credits(25), credits(70)), Runway::Days(2));
        // Less than a day left.
        assert_eq!(runway(credits(5), credits(70)), Runway::Days(0));
    }

    #[test]
    fn nothing_spent_is_no_forecast_and_nothing_left_is_empty() {
        assert_eq!(runway(credits(30), MicroCredits::ZERO), Runway::Idle);
        assert_eq!(runway(MicroCredits::ZERO, credits(7)), Runway::Empty);
        assert_eq!(runway(MicroCredits(-5), credits(7)), Runway::Empty);
    }

    #[test]
    fn the_arithmetic_is_exact_at_the_micro_credit_and_never_overflows() {
        assert_eq!(runway(MicroCredits(6), MicroCredits(7)), Runway::Days(6));
        assert_eq!(runway(MicroCredits(1), MicroCredits(7)), Runway::Days(1));
        assert_eq!(runway(MicroCredits(1), MicroCredits(8)), Runway::Days(0));
        assert_eq!(runway(MicroCredits(i64::MAX), MicroCredits(1)), Runway::Days(i64::MAX));
    }
}
