//! Payments through Stripe: each event once with its effect, refunds cumulative, disputes
//! held then given back, subscriptions converging, auto top-up claimed once.

use std::sync::Arc;

use layers_domain::{MicroCredits, Tier, UserId};
use layers_store::*;

use crate::conformance;
use crate::support::{now, user};

const CREDIT: i64 = 1_000_000;

fn event(id: &str, kind: &str) -> StripeEventRecord {
    StripeEventRecord { id: id.into(), event_type: kind.into() }
}

fn grant(payment: &str, cents: i64, credits: i64) -> PaymentEffect {
    PaymentEffect::Grant(PaymentGrant {
        payment_ref: payment.into(),
        paid_cents: cents,
        credits: MicroCredits(credits * CREDIT),
        kind: TransactionKind::Purchase,
        reason: "credit top-up".into(),
        checkout_session: None,
    })
}

async fn apply(store: &Arc<dyn Store>, u: UserId, id: &str, effect: PaymentEffect) -> PaymentOutcome {
    store.apply_payment(u, Some(&event(id, "test.event")), &[effect], now()).await.unwrap()
}

conformance!(an_event_applies_once_even_a_hundred_times_at_once, |store: Arc<dyn Store>| async move {
    let u = user(&store, "buyer@example.com").await;
    let checkout = CheckoutRecord {
        session_id: "cs_pi_1".into(),
        user_id: u.id,
        mode: "payment".into(),
        credits: MicroCredits(2_500 * CREDIT),
        created_at: now(),
        completed_at: None,
    };
    store.record_checkout(&checkout).await.unwrap();
    assert_eq!(store.checkout(u.id, "cs_pi_1").await.unwrap().unwrap().completed_at, None);
    let bought = |payment: &str| {
        let PaymentEffect::Grant(mut g) = grant(payment, 2_500, 2_500) else { unreachable!() };
        g.checkout_session = Some("cs_pi_1".into());
        PaymentEffect::Grant(g)
    };
    // A paid session Layers never created (a Payment Link, another account's): not credited.
    let mut stranger = bought("pi_0");
    if let PaymentEffect::Grant(g) = &mut stranger {
        g.checkout_session = Some("cs_unknown".into());
    }
    let out = apply(&store, u.id, "evt_0", stranger).await;
    assert!(out.unknown_checkout);
    assert_eq!(out.credited, MicroCredits::ZERO);
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let store = store.clone();
        let id = u.id;
        let effect = bought("pi_1");
        tasks.push(tokio::spawn(async move { apply(&store, id, "evt_1", effect).await }));
    }
    let mut applied = 0;
    for t in tasks {
        let out = t.await.unwrap();
        if !out.duplicate {
            applied += 1;
            assert_eq!(out.credited, MicroCredits(2_500 * CREDIT));
        }
    }
    assert_eq!(applied, 1, "one delivery applies, 99 are acknowledged");
    assert_eq!(store.balance(u.id).await.unwrap(), MicroCredits(2_500 * CREDIT));
    assert_eq!(store.ledger_sum(u.id).await.unwrap(), MicroCredits(2_500 * CREDIT));
    assert!(apply(&store, u.id, "evt_1", bought("pi_1")).await.duplicate, "the event is recorded");
    assert!(store.checkout(u.id, "cs_pi_1").await.unwrap().unwrap().completed_at.is_some());
    // Another event naming the same payment (checkout.session.completed and
    // async_payment_succeeded both) grants nothing more.
    let out = apply(&store, u.id, "evt_2", grant("pi_1", 2_500, 2_500)).await;
    assert!(!out.duplicate);
    assert_eq!(out.credited, MicroCredits::ZERO);
    assert_eq!(store.balance(u.id).await.unwrap(), MicroCredits(2_500 * CREDIT));
});

conformance!(partial_refunds_debit_the_difference_and_may_go_negative, |store: Arc<dyn Store>| async move {
    let u = user(&store, "refund@example.com").await;
    apply(&store, u.id, "evt_buy", grant("pi_r", 1_000, 1_000)).await;
    // Spend 900 credits of the 1,000.
    let spend = NewTransaction {
        id: uuid::Uuid::new_v4(),
        user_id: u.id,
        kind: TransactionKind::Adjustment,
        amount: MicroCredits(-900 * CREDIT),
        idempotency_key: "spent".into(),
        reason: Some("spent".into()),
        request_id: None,
        allow_negative: false,
        created_at: now(),
    };
    store.apply_transaction(&spend).await.unwrap();
    let refund = |cents| PaymentEffect::Refund { payment_ref: "pi_r".into(), amount_refunded_cents: cents };
    let first = apply(&store, u.id, "evt_r1", refund(300)).await;
    assert_eq!(first.debited, MicroCredits(300 * CREDIT));
    assert_eq!(first.balance_after, Some(MicroCredits(-200 * CREDIT)), "a refund alone may go below zero");
    assert!(first.leases_revoked);
    assert_eq!(first.refunds_in_window, Some(1));
    assert!(!first.flagged_for_review);
    // The first event again, or arriving after the second: nothing.
    assert!(apply(&store, u.id, "evt_r1", refund(300)).await.duplicate);
    let second = apply(&store, u.id, "evt_r2", refund(1_000)).await;
    assert_eq!(second.debited, MicroCredits(700 * CREDIT));
    assert_eq!(second.refunds_in_window, Some(2));
    assert!(second.flagged_for_review, "repeated refunds flag the account");
    let late = apply(&store, u.id, "evt_r1_late", refund(300)).await;
    assert_eq!(late.debited, MicroCredits::ZERO);
    assert_eq!(store.balance(u.id).await.unwrap(), MicroCredits(-900 * CREDIT));
    assert_eq!(store.ledger_sum(u.id).await.unwrap(), store.balance(u.id).await.unwrap());
    assert!(store.billing_account(u.id).await.unwrap().review_flagged_at.is_some());
    // A refund of a payment this account never made changes nothing.
    let other =
        apply(&store, u.id, "evt_r3", PaymentEffect::Refund { payment_ref: "pi_x".into(), amount_refunded_cents: 5 })
            .await;
    assert!(other.unknown_payment);
});

conformance!(a_dispute_holds_credits_and_a_win_gives_them_back, |store: Arc<dyn Store>| async move {
    let u = user(&store, "dispute@example.com").await;
    apply(&store, u.id, "evt_buy", grant("pi_d", 2_000, 2_000)).await;
    let opened =
        PaymentEffect::DisputeOpened { dispute_id: "dp_1".into(), payment_ref: "pi_d".into(), amount_cents: 2_000 };
    let out = apply(&store, u.id, "evt_d1", opened.clone()).await;
    assert_eq!(out.debited, MicroCredits(2_000 * CREDIT));
    assert_eq!(store.balance(u.id).await.unwrap(), MicroCredits::ZERO);
    // A second delivery under another event id holds nothing more.
    assert_eq!(apply(&store, u.id, "evt_d1b", opened).await.debited, MicroCredits::ZERO);
    let won =
        apply(&store, u.id, "evt_d2", PaymentEffect::DisputeClosed { dispute_id: "dp_1".into(), won: true }).await;
    assert_eq!(won.credited, MicroCredits(2_000 * CREDIT));
    let again =
        apply(&store, u.id, "evt_d3", PaymentEffect::DisputeClosed { dispute_id: "dp_1".into(), won: true }).await;
    assert_eq!(again.credited, MicroCredits::ZERO);
    assert_eq!(store.balance(u.id).await.unwrap(), MicroCredits(2_000 * CREDIT));
    assert_eq!(store.ledger_sum(u.id).await.unwrap(), MicroCredits(2_000 * CREDIT));
});

conformance!(subscriptions_set_the_tier_and_an_old_one_cannot_end_a_new_one, |store: Arc<dyn Store>| async move {
    let u = user(&store, "plan@example.com").await;
    let sub = |id: &str, status: &str, plan| {
        PaymentEffect::Subscription(SubscriptionState {
            subscription_id: id.into(),
            status: status.into(),
            plan,
            period_end: Some(now()),
            observed_at: now(),
        })
    };
    let out = apply(&store, u.id, "evt_s1", sub("sub_1", "active", Some(Tier::Pro))).await;
    assert_eq!(out.tier_changed, Some(Tier::Pro));
    assert_eq!(store.user(u.id).await.unwrap().unwrap().tier, Tier::Pro);
    // The same state again changes nothing.
    assert_eq!(apply(&store, u.id, "evt_s2", sub("sub_1", "active", Some(Tier::Pro))).await.tier_changed, None);
    // A new subscription replaces it; the old one's cancellation, arriving late, does not end it.
    assert_eq!(
        apply(&store, u.id, "evt_s3", sub("sub_2", "active", Some(Tier::Team))).await.tier_changed,
        Some(Tier::Team)
    );
    assert_eq!(apply(&store, u.id, "evt_s4", sub("sub_1", "canceled", Some(Tier::Pro))).await.tier_changed, None);
    assert_eq!(store.user(u.id).await.unwrap().unwrap().tier, Tier::Team);
    let out = apply(&store, u.id, "evt_s5", sub("sub_2", "canceled", Some(Tier::Team))).await;
    assert_eq!(out.tier_changed, Some(Tier::Free));
    let billing = store.billing_account(u.id).await.unwrap();
    assert_eq!(billing.subscription_id.as_deref(), Some("sub_2"));
    assert_eq!(billing.subscription_status.as_deref(), Some("canceled"));
    // A state fetched before the one stored (two deliveries racing) does not replace it.
    let stale = PaymentEffect::Subscription(SubscriptionState {
        subscription_id: "sub_2".into(),
        status: "active".into(),
        plan: Some(Tier::Team),
        period_end: None,
        observed_at: now() - time::Duration::seconds(5),
    });
    assert_eq!(apply(&store, u.id, "evt_s6", stale).await.tier_changed, None);
    assert_eq!(store.user(u.id).await.unwrap().unwrap().tier, Tier::Free);
});

conformance!(a_refund_that_arrives_before_its_grant_is_taken_back_with_it, |store: Arc<dyn Store>| async move {
    let u = user(&store, "early@example.com").await;
    let refund = |cents| PaymentEffect::Refund { payment_ref: "pi_e".into(), amount_refunded_cents: cents };
    let first = apply(&store, u.id, "evt_e1", refund(400)).await;
    assert!(first.unknown_payment);
    assert_eq!(first.debited, MicroCredits::ZERO);
    // A dispute of a payment not granted takes nothing either.
    let dispute =
        PaymentEffect::DisputeOpened { dispute_id: "dp_e".into(), payment_ref: "pi_e".into(), amount_cents: 1_000 };
    assert_eq!(apply(&store, u.id, "evt_e2", dispute).await.debited, MicroCredits::ZERO);
    // The grant arrives (late, or reconciled): credited, and the early refund taken back.
    let out = apply(&store, u.id, "evt_e3", grant("pi_e", 1_000, 1_000)).await;
    assert_eq!(out.credited, MicroCredits(1_000 * CREDIT));
    assert_eq!(out.debited, MicroCredits(400 * CREDIT));
    assert_eq!(store.balance(u.id).await.unwrap(), MicroCredits(600 * CREDIT));
    // The same refund delivered again, and the rest refunded later: exact.
    assert_eq!(apply(&store, u.id, "evt_e4", refund(400)).await.debited, MicroCredits::ZERO);
    assert_eq!(apply(&store, u.id, "evt_e5", refund(1_000)).await.debited, MicroCredits(600 * CREDIT));
    assert_eq!(store.balance(u.id).await.unwrap(), MicroCredits::ZERO);
    assert_eq!(store.ledger_sum(u.id).await.unwrap(), MicroCredits::ZERO);
});

conformance!(customers_invoices_and_auto_top_up, |store: Arc<dyn Store>| async move {
    let u = user(&store, "auto@example.com").await;
    let other = user(&store, "other@example.com").await;
    assert_eq!(store.set_stripe_customer(u.id, "cus_1", now()).await.unwrap(), "cus_1");
    assert_eq!(store.set_stripe_customer(u.id, "cus_2", now()).await.unwrap(), "cus_1", "the first customer stays");
    assert_eq!(store.user_of_stripe_customer("cus_1").await.unwrap(), Some(u.id));
    assert_eq!(store.user_of_stripe_customer("cus_2").await.unwrap(), None);
    assert_eq!(store.billing_account(other.id).await.unwrap(), BillingAccount::default());

    let invoice = InvoiceRecord {
        id: "in_1".into(),
        number: Some("LAY-0001".into()),
        amount_paid_cents: 2_000,
        currency: "usd".into(),
        status: "paid".into(),
        hosted_url: Some("https://invoice.stripe.com/i/1".into()),
        pdf_url: None,
        created_at: now(),
    };
    apply(&store, u.id, "evt_i1", PaymentEffect::Invoice(invoice.clone())).await;
    assert_eq!(store.invoices(u.id, 10).await.unwrap(), vec![invoice]);
    assert!(store.invoices(other.id, 10).await.unwrap().is_empty());

    let rule = AutoTopUp {
        enabled: true,
        threshold: MicroCredits(500 * CREDIT),
        amount_credits: 2_000,
        failures: 0,
        updated_at: now(),
    };
    store.set_auto_topup(u.id, &rule).await.unwrap();
    assert_eq!(store.auto_topup(u.id).await.unwrap().unwrap().amount_credits, 2_000);
    for attempt in 0..3 {
        let trigger = format!("t:{attempt}");
        let mut claims = Vec::new();
        for _ in 0..10 {
            let store = store.clone();
            let (id, trigger) = (u.id, trigger.clone());
            claims.push(tokio::spawn(async move { store.claim_auto_topup(id, &trigger, now()).await.unwrap() }));
        }
        let mut won = 0;
        for c in claims {
            won += usize::from(c.await.unwrap());
        }
        assert_eq!(won, 1, "one claim per trigger");
        let failed = PaymentEffect::AutoTopUpFailed { trigger: trigger.clone() };
        let out = store.apply_payment(u.id, None, std::slice::from_ref(&failed), now()).await.unwrap();
        assert_eq!(out.auto_topup_disabled, attempt == 2);
        // The webhook reporting the same failure counts nothing more.
        store
            .apply_payment(
                u.id,
                Some(&event(&format!("evt_f{attempt}"), "payment_intent.payment_failed")),
                &[failed],
                now(),
            )
            .await
            .unwrap();
        assert_eq!(store.auto_topup(u.id).await.unwrap().unwrap().failures, attempt + 1);
    }
    let after = store.auto_topup(u.id).await.unwrap().unwrap();
    assert!(!after.enabled, "three failures turn it off");
    assert_eq!(store.auto_topups_since(u.id, now() - time::Duration::hours(1)).await.unwrap(), 3);
    // An attempt Stripe never answered is claimed again after a while (same trigger, so the
    // same idempotency key), not before.
    assert!(store.claim_auto_topup(u.id, "t:unanswered", now()).await.unwrap());
    assert!(!store.claim_auto_topup(u.id, "t:unanswered", now() + time::Duration::seconds(60)).await.unwrap());
    assert!(store.claim_auto_topup(u.id, "t:unanswered", now() + time::Duration::seconds(121)).await.unwrap());
    // Turning it on again starts the count afresh.
    store.set_auto_topup(u.id, &rule).await.unwrap();
    let again = store.auto_topup(u.id).await.unwrap().unwrap();
    assert!(again.enabled);
    assert_eq!(again.failures, 0);
});
