//! Plans are Stripe subscriptions; the tier, and with it the rate limits, follow the
//! subscription's state. Only a subscription in good standing gives its plan's tier.

use crate::Tier;

/// A subscription's status as Stripe names it, reduced to what it means for the tier.
pub fn status_grants_plan(status: &str) -> bool {
    // `past_due` keeps the plan while Stripe retries the card (its dunning decides the end, with
    // `customer.subscription.updated`/`deleted`); `incomplete` never started.
    matches!(status, "active" | "trialing" | "past_due")
}

/// The tier an account has given its subscription (`None`: none or not in good standing).
pub fn tier_of(plan: Option<Tier>, status: &str) -> Tier {
    match plan {
        Some(tier) if status_grants_plan(status) => tier,
        _ => Tier::Free,
    }
}

/// Whether a subscription's state should replace the account's current one: the account's own
/// subscription always; another one only when it is live (an old subscription's late
/// `deleted` must not end the plan the person bought since).
pub fn replaces(current: Option<&str>, incoming: &str, incoming_status: &str) -> bool {
    match current {
        None => true,
        Some(id) if id == incoming => true,
        Some(_) => status_grants_plan(incoming_status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_follow_status() {
        assert_eq!(tier_of(Some(Tier::Pro), "active"), Tier::Pro);
        assert_eq!(tier_of(Some(Tier::Pro), "past_due"), Tier::Pro);
        for ended in ["canceled", "unpaid", "incomplete", "incomplete_expired", "paused"] {
            assert_eq!(tier_of(Some(Tier::Team), ended), Tier::Free, "{ended}");
        }
        assert_eq!(tier_of(None, "active"), Tier::Free);
    }

    #[test]
    fn an_old_subscription_does_not_end_the_new_one() {
        assert!(replaces(None, "sub_1", "canceled"));
        assert!(replaces(Some("sub_1"), "sub_1", "canceled"));
        assert!(!replaces(Some("sub_2"), "sub_1", "canceled"));
        assert!(replaces(Some("sub_1"), "sub_2", "active"));
    }
}
