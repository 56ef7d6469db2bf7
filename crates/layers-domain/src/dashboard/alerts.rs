//! When an alert fires. Each alert fires once per period: a low-balance alert once per top-up
//! (it re-arms when credit is added), a key's percentage alert once per threshold and period of
//! the key's limit. Which thresholds were already sent is the database's to remember; this
//! module says which ones are due.

use crate::MicroCredits;

/// Most thresholds a key alert may have.
pub const MAX_THRESHOLDS: usize = 5;

/// The percentages of a key's limit that alert, parsed from "50, 80, 100": each 1..=100, at
/// most [`MAX_THRESHOLDS`], sorted and without duplicates.
pub fn parse_thresholds(text: &str) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::new();
    for part in text.split([',', ' ']).map(str::trim).filter(|p| !p.is_empty()) {
        let part = part.trim_end_matches('%');
        let value: u8 = part.parse().map_err(|_| "thresholds are whole percentages from 1 to 100")?;
        if !(1..=100).contains(&value) {
            return Err("thresholds are whole percentages from 1 to 100");
        }
        out.push(value);
    }
    out.sort_unstable();
    out.dedup();
    if out.len() > MAX_THRESHOLDS {
        return Err("at most five thresholds");
    }
    Ok(out)
}

/// The thresholds `spent` of `limit` has reached, highest last.
pub fn reached(thresholds: &[u8], spent: MicroCredits, limit: MicroCredits) -> Vec<u8> {
    if limit.0 <= 0 {
        return thresholds.to_vec();
    }
    thresholds.iter().copied().filter(|t| i128::from(spent.0) * 100 >= i128::from(*t) * i128::from(limit.0)).collect()
}

/// Whether the balance is low: strictly below the threshold.
pub fn balance_is_low(balance: MicroCredits, threshold: MicroCredits) -> bool {
    balance < threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_sorted_and_bounded() {
        assert_eq!(parse_thresholds("80, 50,100"), Ok(vec![50, 80, 100]));
        assert_eq!(parse_thresholds("50% 50%"), Ok(vec![50]));
        assert_eq!(parse_thresholds(""), Ok(vec![]));
        assert!(parse_thresholds("0").is_err());
        assert!(parse_thresholds("101").is_err());
        assert!(parse_thresholds("fifty").is_err());
        assert!(parse_thresholds("10,20,30,40,50,60").is_err());
    }

    #[test]
    fn a_threshold_is_reached_at_its_exact_figure_not_one_micro_credit_below() {
        let limit = MicroCredits(1_000_000);
        assert_eq!(reached(&[50, 80, 100], MicroCredits(499_999), limit), Vec::<u8>::new());
        assert_eq!(reached(&[50, 80, 100], MicroCredits(500_000), limit), vec![50]);
        assert_eq!(reached(&[50, 80, 100], MicroCredits(999_999), limit), vec![50, 80]);
        assert_eq!(reached(&[50, 80, 100], MicroCredits(1_000_000), limit), vec![50, 80, 100]);
        assert_eq!(reached(&[50], MicroCredits(0), MicroCredits(0)), vec![50]);
    }

    #[test]
    fn low_means_strictly_below() {
        assert!(!balance_is_low(MicroCredits(500), MicroCredits(500)));
        assert!(balance_is_low(MicroCredits(499), MicroCredits(500)));
    }
}
