//! Credit leases and settlement: the same bodies on SQLite and PostgreSQL.

use std::sync::Arc;

use layers_domain::{KeyId, MicroCredits, Usage, UserId};
use layers_store::*;
use uuid::Uuid;

use crate::conformance;
use crate::support::{key, now, user};

pub(crate) fn lease_req(user: UserId, key: KeyId, lease: Uuid, min: i64, want: i64) -> LeaseRequest {
    LeaseRequest {
        lease_id: lease,
        user,
        key,
        node: Uuid::nil(),
        min: MicroCredits(min),
        want: MicroCredits(want),
        account_hour_cap: None,
        key_hour_cap: None,
        key_total_cap: None,
        key_period_from_day: None,
        ttl: std::time::Duration::from_secs(30),
    }
}

pub(crate) fn settlement(user: UserId, key: KeyId, lease: Option<Uuid>, charged: i64) -> Settlement {
    Settlement {
        usage: UsageRecord {
            id: Uuid::now_v7(),
            request_id: "req_x".into(),
            user_id: user,
            key_id: Some(key),
            model: "m/x".into(),
            provider: "p".into(),
            upstream_model: "x".into(),
            endpoint: "chat".into(),
            usage: Usage { prompt_tokens: 10, completion_tokens: 5, ..Usage::default() },
            cost: MicroCredits(charged),
            charged: MicroCredits(charged),
            held: MicroCredits(charged),
            shortfall: MicroCredits::ZERO,
            fees: MicroCredits::ZERO,
            rates: Default::default(),
            latency_ms: 3,
            status: 200,
            error_code: None,
            streamed: false,
            usage_estimated: false,
            created_at: now(),
            app_title: Some("Settling app".into()),
            app_origin: Some("https://settle.example".into()),
        },
        lease_id: lease,
    }
}

/// Gives back `amount` of one lease (ending it with `end`); whether it was still active.
async fn give_back(store: &Arc<dyn Store>, user: UserId, lease: Uuid, amount: i64, end: bool) -> bool {
    let r = LeaseReturn { user, lease, amount: MicroCredits(amount), end, reclaim_epoch: None };
    store.return_leases(&[r]).await.unwrap() == vec![lease]
}

pub(crate) async fn funded(store: &Arc<dyn Store>, email: &str, micros: i64) -> (User, KeyRecord) {
    let u = user(store, email).await;
    let k = key(store, &u, email.len() as u8).await;
    store
        .apply_transaction(&NewTransaction {
            id: Uuid::new_v4(),
            user_id: u.id,
            kind: TransactionKind::Grant,
            amount: MicroCredits(micros),
            idempotency_key: format!("grant:{email}"),
            reason: None,
            request_id: None,
            allow_negative: false,
            created_at: now(),
        })
        .await
        .unwrap();
    (u, k)
}

async fn assert_ledger_balanced(store: &Arc<dyn Store>, u: UserId) {
    let state = store.credit_state(u).await.unwrap();
    assert_eq!(store.ledger_sum(u).await.unwrap(), state.balance, "balance = sum of the ledger");
    assert!(state.balance.0 >= 0);
}

conformance!(leases_are_granted_within_the_balance, |store: Arc<dyn Store>| async move {
    let (u, k) = funded(&store, "lease@example.com", 1_000).await;
    let l1 = Uuid::new_v4();
    // At most a quarter of what is left per grant, at least `min`.
    let g = store.acquire_lease(&lease_req(u.id, k.id, l1, 100, 600)).await.unwrap();
    assert_eq!((g.granted.0, g.available.0, g.balance.0), (250, 1_000, 1_000));
    let g = store.acquire_lease(&lease_req(u.id, k.id, l1, 300, 300)).await.unwrap();
    assert_eq!((g.granted.0, g.available.0), (300, 750), "min = want asks for an exact amount");
    // A second node gets what is left, never more.
    let l2 = Uuid::new_v4();
    let g = store.acquire_lease(&lease_req(u.id, k.id, l2, 600, 600)).await.unwrap();
    assert_eq!((g.granted.0, g.available.0), (0, 450), "below min: nothing");
    let mut total = 550;
    loop {
        let g = store.acquire_lease(&lease_req(u.id, k.id, l2, 1, 600)).await.unwrap();
        if g.granted.0 == 0 {
            break;
        }
        total += g.granted.0;
    }
    assert_eq!(total, 1_000, "exactly the balance was leased, no more");
    assert_eq!(store.credit_state(u.id).await.unwrap().leased.0, 1_000);
    // The same lease id is extended, not duplicated.
    assert!(give_back(&store, u.id, l1, 200, false).await);
    let g = store.acquire_lease(&lease_req(u.id, k.id, l1, 50, 50)).await.unwrap();
    assert_eq!(g.granted.0, 50);
    let leases = store.leases_of_user(u.id).await.unwrap();
    assert_eq!(leases.len(), 2);
    assert_eq!(leases.iter().find(|l| l.id == l1).unwrap().amount.0, 400);
    // Ending a lease gives back all it still held.
    assert!(give_back(&store, u.id, l1, 0, true).await);
    assert!(!give_back(&store, u.id, l1, 10, false).await, "ended leases stay ended");
    assert_eq!(store.credit_state(u.id).await.unwrap().leased.0, 450);
});

conformance!(settlement_debits_once_and_never_below_zero, |store: Arc<dyn Store>| async move {
    let (u, k) = funded(&store, "settle@example.com", 1_000).await;
    let lease = Uuid::new_v4();
    store.acquire_lease(&lease_req(u.id, k.id, lease, 1_000, 1_000)).await.unwrap();
    let a = settlement(u.id, k.id, Some(lease), 300);
    let b = settlement(u.id, k.id, Some(lease), 0);
    let out = store.settle(&[a.clone(), b.clone()]).await.unwrap();
    assert_eq!(out[0].outcome, SettleOutcome::Applied);
    assert_eq!((out[0].charged.0, out[0].balance_after), (300, Some(MicroCredits(700))));
    assert_eq!((out[1].outcome, out[1].charged.0), (SettleOutcome::Applied, 0));
    // A retried flush changes nothing.
    let again = store.settle(std::slice::from_ref(&a)).await.unwrap();
    assert_eq!(again[0].outcome, SettleOutcome::Duplicate);
    // The settled row keeps the app it came from.
    let row = store.usage_by_request(u.id, "req_x").await.unwrap().expect("the usage row");
    assert_eq!(row.app_title.as_deref(), Some("Settling app"));
    assert_eq!(row.app_origin.as_deref(), Some("https://settle.example"));
    let state = store.credit_state(u.id).await.unwrap();
    assert_eq!((state.balance.0, state.leased.0), (700, 700));
    assert_eq!(store.leases_of_user(u.id).await.unwrap()[0].amount.0, 700);
    let rows = store.recent_usage(u.id, 10, None).await.unwrap();
    assert_eq!(rows.len(), 2, "one usage row per request, even when free");
    assert_eq!(store.keys_of_user(u.id).await.unwrap()[0].spent.0, 300);
    assert_ledger_balanced(&store, u.id).await;
    // An admin debit cannot take credit that is leased to nodes.
    let adjust = NewTransaction {
        id: Uuid::new_v4(),
        user_id: u.id,
        kind: TransactionKind::Adjustment,
        amount: MicroCredits(-100),
        idempotency_key: "adj:1".into(),
        reason: Some("x".into()),
        request_id: None,
        allow_negative: false,
        created_at: now(),
    };
    assert!(matches!(store.apply_transaction(&adjust).await.unwrap(), LedgerOutcome::Insufficient { .. }));
    // A refund may; the credit it took was leased, so the account's leases end, and a charge
    // against them is refused rather than taking the balance further down.
    let refund = NewTransaction {
        kind: TransactionKind::Refund,
        allow_negative: true,
        idempotency_key: "ref:1".into(),
        amount: MicroCredits(-600),
        ..adjust
    };
    store.apply_transaction(&refund).await.unwrap();
    let state = store.credit_state(u.id).await.unwrap();
    assert_eq!((state.balance.0, state.leased.0), (100, 0));
    assert_eq!(store.leases_of_user(u.id).await.unwrap()[0].state, LeaseState::Expired);
    let out = store.settle(&[settlement(u.id, k.id, Some(lease), 250)]).await.unwrap();
    assert_eq!((out[0].outcome, out[0].charged.0), (SettleOutcome::Refused, 0));
    let row = store.recent_usage(u.id, 1, None).await.unwrap().remove(0);
    assert_eq!((row.charged.0, row.shortfall.0), (0, 250), "a refused charge is recorded as a shortfall");
    assert_ledger_balanced(&store, u.id).await;
});

conformance!(the_reaper_returns_expired_leases_and_late_settlements_are_refused, |store: Arc<dyn Store>| async move {
    let (u, k) = funded(&store, "reap@example.com", 1_000).await;
    let lease = Uuid::new_v4();
    let mut req = lease_req(u.id, k.id, lease, 800, 800);
    req.ttl = std::time::Duration::from_millis(1);
    store.acquire_lease(&req).await.unwrap();
    let live = Uuid::new_v4();
    store.acquire_lease(&lease_req(u.id, k.id, live, 100, 100)).await.unwrap();
    assert_eq!(store.renew_leases(Uuid::nil(), &[live], std::time::Duration::from_secs(60)).await.unwrap(), vec![live]);
    // Poll the reaper until the 1 ms lease has expired by the database's clock.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let reaped = loop {
        let r = store.reap_expired_leases().await.unwrap();
        if r.leases > 0 {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    assert_eq!((reaped.leases, reaped.micros), (1, 800));
    assert_eq!(store.reap_expired_leases().await.unwrap().leases, 0, "idempotent");
    assert_eq!(store.credit_state(u.id).await.unwrap().leased.0, 100);
    // Once reaped, a lease cannot be renewed back to life.
    assert!(store.renew_leases(Uuid::nil(), &[lease], std::time::Duration::from_secs(60)).await.unwrap().is_empty());
    // The node that held the reaped lease was only paused: its settlement arrives late.
    let late = settlement(u.id, k.id, Some(lease), 200);
    let out = store.settle(&[late]).await.unwrap();
    assert_eq!((out[0].outcome, out[0].charged.0), (SettleOutcome::Refused, 0));
    assert_eq!(store.credit_state(u.id).await.unwrap().balance.0, 1_000, "not charged twice, not charged at all");
    let rows = store.recent_usage(u.id, 10, None).await.unwrap();
    assert_eq!((rows.len(), rows[0].charged.0), (1, 0), "the request is still recorded");
    // Extending a reaped lease is refused too; the node starts a new one.
    let g = store.acquire_lease(&lease_req(u.id, k.id, lease, 1, 10)).await.unwrap();
    assert!(g.lease_ended && g.granted.0 == 0);
    assert_ledger_balanced(&store, u.id).await;
});

conformance!(a_charge_is_applied_in_full_from_its_lease_or_refused, |store: Arc<dyn Store>| async move {
    let (u, k) = funded(&store, "overage@example.com", 1_000).await;
    let lease = Uuid::new_v4();
    store.acquire_lease(&lease_req(u.id, k.id, lease, 300, 300)).await.unwrap();
    // Two charges in one batch: the second no longer fits what the lease still holds.
    let out = store
        .settle(&[settlement(u.id, k.id, Some(lease), 200), settlement(u.id, k.id, Some(lease), 150)])
        .await
        .unwrap();
    assert_eq!(
        (out[0].outcome, out[0].charged.0, out[0].balance_after),
        (SettleOutcome::Applied, 200, Some(MicroCredits(800)))
    );
    assert_eq!((out[1].outcome, out[1].charged.0), (SettleOutcome::Refused, 0));
    let state = store.credit_state(u.id).await.unwrap();
    assert_eq!((state.balance.0, state.leased.0), (800, 100));
    // A charge with no lease is refused too: only leased credit is ever charged.
    let out = store.settle(&[settlement(u.id, k.id, None, 50)]).await.unwrap();
    assert_eq!(out[0].outcome, SettleOutcome::Refused);
    assert_ledger_balanced(&store, u.id).await;
});

conformance!(usage_rows_carry_what_reproduces_their_cost, |store: Arc<dyn Store>| async move {
    let (u, k) = funded(&store, "rates@example.com", 10_000_000).await;
    let lease = Uuid::new_v4();
    store.acquire_lease(&lease_req(u.id, k.id, lease, 1_000_000, 1_000_000)).await.unwrap();
    let price =
        layers_domain::Price::from_usd(3.0, 15.0, Some(0.3), None).unwrap().with_cache_write(Some(3.75)).unwrap();
    let usage = Usage {
        prompt_tokens: 1_000,
        completion_tokens: 200,
        cached_tokens: 300,
        cache_write_tokens: 400,
        reasoning_tokens: 50,
        images: 0,
    };
    let rates = price.rates_for(usage.prompt_tokens);
    let fees = MicroCredits(5_000);
    let mut s = settlement(u.id, k.id, Some(lease), 0);
    s.usage.usage = usage;
    s.usage.rates = rates;
    s.usage.fees = fees;
    s.usage.cost = rates.cost(&usage).saturating_add(fees);
    s.usage.charged = s.usage.cost;
    s.usage.held = MicroCredits(900_000);
    store.settle(&[s.clone()]).await.unwrap();
    let row = store.recent_usage(u.id, 1, None).await.unwrap().remove(0);
    assert_eq!(row.usage, usage, "every priced quantity is stored");
    assert_eq!((row.rates, row.fees, row.held), (rates, fees, MicroCredits(900_000)));
    assert_eq!(row.rates.cost(&row.usage).saturating_add(row.fees), row.cost, "the row reproduces its cost");
    assert_eq!(store.usage_by_request(u.id, "req_x").await.unwrap().map(|r| r.id), Some(s.usage.id));
});

conformance!(caps_limit_what_is_leased, |store: Arc<dyn Store>| async move {
    let (u, k) = funded(&store, "caps@example.com", 100_000).await;
    let lease = Uuid::new_v4();
    store.acquire_lease(&lease_req(u.id, k.id, lease, 1_000, 1_000)).await.unwrap();
    store.settle(&[settlement(u.id, k.id, Some(lease), 900)]).await.unwrap();
    // Rolling hour: 900 spent + 100 still leased, so 500 of a 1,500 cap is left.
    let mut req = lease_req(u.id, k.id, Uuid::new_v4(), 600, 600);
    req.account_hour_cap = Some(MicroCredits(1_500));
    let g = store.acquire_lease(&req).await.unwrap();
    assert_eq!((g.granted.0, g.account_hour_room), (0, Some(MicroCredits(500))));
    req.min = MicroCredits(500);
    req.want = MicroCredits(500);
    assert_eq!(store.acquire_lease(&req).await.unwrap().granted.0, 500);
    // Key lifetime limit: 900 spent, 600 leased to this key now.
    let mut req = lease_req(u.id, k.id, Uuid::new_v4(), 1, 5_000);
    req.key_total_cap = Some(MicroCredits(2_000));
    let g = store.acquire_lease(&req).await.unwrap();
    assert_eq!((g.granted.0, g.key_total_room), (125, Some(MicroCredits(500))));
    // Key hour cap: 725 leased + 900 spent within the hour.
    let mut req = lease_req(u.id, k.id, Uuid::new_v4(), 400, 400);
    req.key_hour_cap = Some(MicroCredits(2_000));
    let g = store.acquire_lease(&req).await.unwrap();
    assert_eq!((g.granted.0, g.key_hour_room), (0, Some(MicroCredits(375))));
});

conformance!(concurrent_leases_never_exceed_the_balance, |store: Arc<dyn Store>| async move {
    let (u, k) = funded(&store, "race@example.com", 10_000).await;
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let store = store.clone();
        let (uid, kid) = (u.id, k.id);
        tasks.push(tokio::spawn(async move {
            let mut got = 0;
            loop {
                let g = store.acquire_lease(&lease_req(uid, kid, Uuid::new_v4(), 1, 700)).await.unwrap();
                if g.granted.0 == 0 {
                    return got;
                }
                got += g.granted.0;
            }
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 10_000, "exactly the balance was leased, no more");
    assert_eq!(store.credit_state(u.id).await.unwrap().leased.0, 10_000);
});
