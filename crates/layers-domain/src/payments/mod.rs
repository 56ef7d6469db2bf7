//! The payment rules (SPEC §7), free of HTTP and SQL: what a payment grants, what a refund or a
//! dispute takes back, which tier a subscription gives, and when an auto top-up buys. Stripe's
//! wire format is the core's; the stores apply these rules.
//!
//! Money: 1 credit = US$0.01, so one cent paid is one credit (1,000,000 µcr), plus a bonus
//! fixed when the purchase was offered.

pub mod autotopup;
pub mod plans;
pub mod refunds;

use crate::MicroCredits;

/// Micro-credits per cent paid (1 credit = 1 cent).
pub const MICROS_PER_CENT: i64 = 1_000_000;

/// The credits a payment of `cents` grants with a bonus of `bonus_percent` (rounded down):
/// `None` for a negative amount or an overflow.
pub fn credits_for(cents: i64, bonus_percent: u32) -> Option<MicroCredits> {
    if cents < 0 {
        return None;
    }
    let base = cents.checked_mul(MICROS_PER_CENT)?;
    let bonus = base.checked_mul(i64::from(bonus_percent))? / 100;
    base.checked_add(bonus).map(MicroCredits)
}

/// The bounds of a custom top-up, in whole credits (= cents).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopUpBounds {
    pub min_credits: i64,
    pub max_credits: i64,
}

impl Default for TopUpBounds {
    /// US$5 to US$5,000: Stripe's minimum charge is US$0.50, and a top-up beyond a few thousand
    /// dollars is an invoice, not a card payment.
    fn default() -> Self {
        TopUpBounds { min_credits: 500, max_credits: 500_000 }
    }
}

/// Why a custom amount is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("enter a whole number of dollars, like 25 or 25.00")]
    Malformed,
    #[error("the amount must be between the minimum and the maximum top-up")]
    OutOfBounds,
}

/// Reads a custom top-up typed in dollars ("25", "25.5", "25.50", "$1,000") as credits (cents).
pub fn parse_dollars(text: &str, bounds: TopUpBounds) -> Result<i64, AmountError> {
    let cleaned: String = text.trim().trim_start_matches('$').chars().filter(|c| *c != ',').collect();
    let (whole, frac) = match cleaned.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (cleaned.as_str(), None),
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || frac.is_some_and(|f| f.len() > 2 || !digits(f)) {
        return Err(AmountError::Malformed);
    }
    let dollars: i64 = whole.parse().map_err(|_| AmountError::Malformed)?;
    let cents: i64 = match frac {
        None => 0,
        Some(f) => {
            let c: i64 = f.parse().map_err(|_| AmountError::Malformed)?;
            if f.len() == 1 {
                c * 10
            } else {
                c
            }
        }
    };
    let credits = dollars * 100 + cents;
    if credits < bounds.min_credits || credits > bounds.max_credits {
        return Err(AmountError::OutOfBounds);
    }
    Ok(credits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cent_is_a_credit() {
        assert_eq!(credits_for(2_500, 0), Some(MicroCredits(2_500_000_000)));
        assert_eq!(credits_for(2_500, 10), Some(MicroCredits(2_750_000_000)));
        assert_eq!(credits_for(1, 5), Some(MicroCredits(1_050_000)));
        assert_eq!(credits_for(-1, 0), None);
        assert_eq!(credits_for(i64::MAX, 0), None);
    }

    #[test]
    fn dollars() {
        let b = TopUpBounds::default();
        assert_eq!(parse_dollars("25", b), Ok(2_500));
        assert_eq!(parse_dollars(" $1,000.5 ", b), Ok(100_050));
        assert_eq!(parse_dollars("12.34", b), Ok(1_234));
        for bad in ["", "abc", "1.234", "-5", "1e3", "5.", ".5", "1 000"] {
            assert_eq!(parse_dollars(bad, b), Err(AmountError::Malformed), "{bad}");
        }
        assert_eq!(parse_dollars("4.99", b), Err(AmountError::OutOfBounds));
        assert_eq!(parse_dollars("5000.01", b), Err(AmountError::OutOfBounds));
        assert_eq!(parse_dollars("5", b), Ok(500));
    }
}
