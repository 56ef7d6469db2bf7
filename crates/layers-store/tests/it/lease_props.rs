//! Property test of the money invariants through the real usage path (leases, settlement with
//! overages, returns, the reaper), not just ledger entries: whatever happens, balance = ledger
//! sum ≥ 0, and the credit leased equals what the active leases hold, never more than the balance.

use std::collections::HashMap;

use layers_domain::{KeyId, MicroCredits, Usage, UserId};
use layers_store::testing::TestDatabase;
use layers_store::*;
use proptest::prelude::*;
use uuid::Uuid;

use crate::support::{key, now, user};

#[derive(Clone, Debug)]
enum Op {
    Grant(i64),
    Acquire { key: usize, min: i64, want: i64, short_ttl: bool },
    Settle { lease: usize, charged: i64, overage: i64 },
    Return { lease: usize, amount: i64, end: bool },
    Reap,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1i64..5_000).prop_map(Op::Grant),
        (0usize..2, 1i64..2_000, 1i64..4_000, any::<bool>()).prop_map(|(key, min, want, short_ttl)| Op::Acquire {
            key,
            min,
            want,
            short_ttl
        }),
        (0usize..8, 0i64..3_000, prop_oneof![Just(0i64), 1i64..3_000])
            .prop_map(|(lease, charged, overage)| Op::Settle { lease, charged, overage }),
        (0usize..8, 0i64..3_000, any::<bool>()).prop_map(|(lease, amount, end)| Op::Return { lease, amount, end }),
        Just(Op::Reap),
    ]
}

fn usage_row(user: UserId, key: KeyId, charged: i64) -> UsageRecord {
    UsageRecord {
        id: Uuid::now_v7(),
        request_id: "req".into(),
        user_id: user,
        key_id: Some(key),
        model: "m/x".into(),
        provider: "p".into(),
        upstream_model: "x".into(),
        endpoint: "chat".into(),
        usage: Usage { prompt_tokens: 1, completion_tokens: 1, ..Usage::default() },
        cost: MicroCredits(charged),
        charged: MicroCredits(charged),
        latency_ms: 1,
        status: 200,
        error_code: None,
        streamed: false,
        usage_estimated: false,
        created_at: now(),
    }
}

async fn check(store: &std::sync::Arc<dyn Store>, u: UserId) {
    let state = store.credit_state(u).await.unwrap();
    assert!(state.balance.0 >= 0, "{state:?}");
    assert_eq!(store.ledger_sum(u).await.unwrap(), state.balance);
    let active: i64 = store
        .leases_of_user(u)
        .await
        .unwrap()
        .iter()
        .filter(|l| l.state == LeaseState::Active)
        .map(|l| l.amount.0)
        .sum();
    assert_eq!(state.leased.0, active, "leased = what active leases hold");
    assert!(state.leased <= state.balance, "{state:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn money_invariants_hold_through_leases_and_settlement(ops in proptest::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let db = TestDatabase::sqlite();
            let store = db.store().await;
            let u = user(&store, "props@example.com").await;
            let keys = [key(&store, &u, 1).await.id, key(&store, &u, 2).await.id];
            // The node's view: lease id → (key, amount it may still charge).
            let mut leases: Vec<(Uuid, usize)> = Vec::new();
            let mut remaining: HashMap<Uuid, i64> = HashMap::new();
            for (i, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Grant(n) => {
                        store.apply_transaction(&NewTransaction {
                            id: Uuid::new_v4(), user_id: u.id, kind: TransactionKind::Grant, amount: MicroCredits(n),
                            idempotency_key: format!("g{i}"), reason: None, request_id: None,
                            allow_negative: false, created_at: now(),
                        }).await.unwrap();
                    }
                    Op::Acquire { key, min, want, short_ttl } => {
                        let id = leases.iter().find(|(_, k)| *k == key).map(|(id, _)| *id).unwrap_or_else(Uuid::now_v7);
                        let g = store.acquire_lease(&LeaseRequest {
                            lease_id: id, user: u.id, key: keys[key], node: Uuid::nil(),
                            min: MicroCredits(min), want: MicroCredits(want.max(min)),
                            account_hour_cap: None, key_hour_cap: None, key_total_cap: None,
                            ttl: std::time::Duration::from_millis(if short_ttl { 0 } else { 60_000 }),
                        }).await.unwrap();
                        assert!(g.granted.0 == 0 || (g.granted.0 >= min && g.granted.0 <= want.max(min)));
                        assert!(g.granted <= g.available);
                        if g.granted.0 > 0 {
                            if !leases.iter().any(|(l, _)| *l == id) { leases.push((id, key)); }
                            *remaining.entry(id).or_default() += g.granted.0;
                        } else if g.lease_ended {
                            leases.retain(|(l, _)| *l != id);
                        }
                    }
                    Op::Settle { lease, charged, overage } => {
                        let Some(&(id, k)) = leases.get(lease % leases.len().max(1)) else { continue };
                        // A node never charges a lease more than it was granted.
                        let left = remaining.get(&id).copied().unwrap_or(0);
                        let charged = charged.min(left);
                        let s = Settlement { usage: usage_row(u.id, keys[k], charged), lease_id: Some(id), overage: MicroCredits(overage) };
                        let out = store.settle(&[s]).await.unwrap();
                        assert!(out[0].charged.0 <= charged + overage);
                        if out[0].outcome == SettleOutcome::Applied {
                            *remaining.entry(id).or_default() -= charged;
                        }
                    }
                    Op::Return { lease, amount, end } => {
                        let Some(&(id, _)) = leases.get(lease % leases.len().max(1)) else { continue };
                        let left = remaining.get(&id).copied().unwrap_or(0);
                        if store.return_lease(u.id, id, MicroCredits(amount.min(left)), end).await.unwrap() {
                            *remaining.entry(id).or_default() -= amount.min(left);
                        }
                        if end { leases.retain(|(l, _)| *l != id); remaining.remove(&id); }
                    }
                    Op::Reap => {
                        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                        store.reap_expired_leases().await.unwrap();
                    }
                }
                check(&store, u.id).await;
            }
        });
    }
}
