//! What a refund or a dispute takes back. Stripe's `charge.refunded` carries the charge's
//! cumulative `amount_refunded`, and events may arrive twice or out of order, so a refund is
//! debited as the difference between what was refunded and what was already taken back; the
//! last cent refunded takes back exactly what remains of the grant (no rounding left over).

/// A payment as the ledger knows it: what was paid and granted, and what was taken back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PaidGrant {
    pub paid_cents: i64,
    pub granted_micros: i64,
    pub refunded_cents: i64,
    pub refunded_micros: i64,
}

/// The micro-credits to debit when the charge's cumulative refund becomes
/// `amount_refunded_cents`, and the new refunded figures; `None` when nothing more is refunded
/// (a replay, or an older event arriving late).
pub fn refund_debit(p: PaidGrant, amount_refunded_cents: i64) -> Option<(i64, PaidGrant)> {
    let total = amount_refunded_cents.min(p.paid_cents);
    if total <= p.refunded_cents || p.paid_cents <= 0 {
        return None;
    }
    let target = if total == p.paid_cents {
        p.granted_micros
    } else {
        // Proportional to the grant (a bonus goes back with its share), rounded down.
        let t = i128::from(p.granted_micros) * i128::from(total) / i128::from(p.paid_cents);
        i64::try_from(t).unwrap_or(p.granted_micros)
    };
    let debit = target - p.refunded_micros;
    (debit > 0).then_some((debit, PaidGrant { refunded_cents: total, refunded_micros: target, ..p }))
}

/// The micro-credits a dispute of `disputed_cents` holds back from a payment: the disputed
/// share of what was granted and not yet refunded.
pub fn dispute_debit(p: PaidGrant, disputed_cents: i64) -> i64 {
    if p.paid_cents <= 0 || disputed_cents <= 0 {
        return 0;
    }
    let share = i128::from(p.granted_micros) * i128::from(disputed_cents.min(p.paid_cents)) / i128::from(p.paid_cents);
    let share = i64::try_from(share).unwrap_or(p.granted_micros);
    share.min(p.granted_micros - p.refunded_micros).max(0)
}

/// How many refunds within the review window flag an account for review.
pub const REVIEW_AFTER_REFUNDS: i64 = 2;
/// The review window, in days.
pub const REVIEW_WINDOW_DAYS: i64 = 30;

#[cfg(test)]
mod tests {
    use super::*;

    const P: PaidGrant =
        PaidGrant { paid_cents: 1_000, granted_micros: 1_100_000_000, refunded_cents: 0, refunded_micros: 0 };

    #[test]
    fn partial_refunds_are_cumulative() {
        let (d1, p1) = refund_debit(P, 300).unwrap();
        assert_eq!(d1, 330_000_000);
        // A replay of the same cumulative figure, or an older one, takes nothing.
        assert_eq!(refund_debit(p1, 300), None);
        assert_eq!(refund_debit(p1, 100), None);
        let (d2, p2) = refund_debit(p1, 1_000).unwrap();
        assert_eq!(d1 + d2, 1_100_000_000);
        assert_eq!(refund_debit(p2, 1_000), None);
    }

    #[test]
    fn rounding_never_leaves_or_takes_too_much() {
        let p = PaidGrant { paid_cents: 3, granted_micros: 3_000_001, refunded_cents: 0, refunded_micros: 0 };
        let (a, p) = refund_debit(p, 1).unwrap();
        let (b, p) = refund_debit(p, 2).unwrap();
        let (c, _) = refund_debit(p, 3).unwrap();
        assert_eq!(a + b + c, 3_000_001);
        // More than was paid is the whole payment.
        assert_eq!(refund_debit(P, 5_000).unwrap().0, 1_100_000_000);
    }

    #[test]
    fn disputes_take_what_refunds_left() {
        assert_eq!(dispute_debit(P, 1_000), 1_100_000_000);
        let (_, refunded) = refund_debit(P, 600).unwrap();
        assert_eq!(dispute_debit(refunded, 1_000), 440_000_000);
        assert_eq!(dispute_debit(P, 0), 0);
    }
}
