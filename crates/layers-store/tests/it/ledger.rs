use std::sync::Arc;

use layers_domain::{MicroCredits, UserId};
use layers_store::{LedgerOutcome, NewTransaction, Store, TransactionKind};
use proptest::prelude::*;

use crate::conformance;
use crate::support::{now, user};

fn entry(user: UserId, amount: i64, key: &str, kind: TransactionKind) -> NewTransaction {
    NewTransaction {
        id: uuid::Uuid::new_v4(),
        user_id: user,
        kind,
        amount: MicroCredits(amount),
        idempotency_key: key.to_owned(),
        reason: Some("test".into()),
        request_id: None,
        allow_negative: kind == TransactionKind::Refund,
        created_at: now(),
    }
}

conformance!(grants_are_applied_once, |store: Arc<dyn Store>| async move {
    let alice = user(&store, "alice@example.com").await;
    let first = store.apply_transaction(&entry(alice.id, 5_000_000, "grant:1", TransactionKind::Grant)).await.unwrap();
    assert_eq!(first, LedgerOutcome::Applied { balance_after: MicroCredits(5_000_000) });
    let again = store.apply_transaction(&entry(alice.id, 5_000_000, "grant:1", TransactionKind::Grant)).await.unwrap();
    assert_eq!(again, LedgerOutcome::Duplicate);
    assert_eq!(store.balance(alice.id).await.unwrap(), MicroCredits(5_000_000));
    let txs = store.transactions(alice.id, 10).await.unwrap();
    assert_eq!(txs.len(), 1);
    assert_eq!(txs[0].balance_after, MicroCredits(5_000_000));
    assert_eq!(txs[0].kind, TransactionKind::Grant);
});

conformance!(usage_never_takes_the_balance_below_zero, |store: Arc<dyn Store>| async move {
    let alice = user(&store, "alice@example.com").await;
    store.apply_transaction(&entry(alice.id, 100, "g", TransactionKind::Grant)).await.unwrap();
    let out = store.apply_transaction(&entry(alice.id, -101, "u1", TransactionKind::Usage)).await.unwrap();
    assert_eq!(out, LedgerOutcome::Insufficient { balance: MicroCredits(100) });
    let out = store.apply_transaction(&entry(alice.id, -100, "u2", TransactionKind::Usage)).await.unwrap();
    assert_eq!(out, LedgerOutcome::Applied { balance_after: MicroCredits(0) });
    // A refund of spent credits may go negative (SPEC §7).
    let out = store.apply_transaction(&entry(alice.id, -50, "r1", TransactionKind::Refund)).await.unwrap();
    assert_eq!(out, LedgerOutcome::Applied { balance_after: MicroCredits(-50) });
    assert_eq!(store.ledger_sum(alice.id).await.unwrap(), store.balance(alice.id).await.unwrap());
});

conformance!(concurrent_entries_keep_balance_equal_to_ledger, |store: Arc<dyn Store>| async move {
    let alice = user(&store, "alice@example.com").await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        let id = alice.id;
        // Every idempotency key is submitted twice, concurrently.
        let key = format!("grant:{}", i / 2);
        tasks.push(tokio::spawn(async move {
            store.apply_transaction(&entry(id, 1_000 + i64::from(i / 2), &key, TransactionKind::Grant)).await.unwrap()
        }));
    }
    let mut applied = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), LedgerOutcome::Applied { .. }) {
            applied += 1;
        }
    }
    assert_eq!(applied, 20);
    let expected: i64 = (0..20).map(|i| 1_000 + i).sum();
    assert_eq!(store.balance(alice.id).await.unwrap(), MicroCredits(expected));
    assert_eq!(store.ledger_sum(alice.id).await.unwrap(), MicroCredits(expected));
});

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    /// Whatever sequence of grants, usage and refunds is applied, balance = ledger sum and usage
    /// never pushed the balance below zero.
    #[test]
    fn ledger_invariants_hold_for_any_sequence(ops in proptest::collection::vec((0u8..3, 1i64..5_000), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let db = layers_store::testing::TestDatabase::sqlite();
            let store = db.store().await;
            let alice = user(&store, "prop@example.com").await;
            let mut model: i64 = 0;
            for (i, (op, amount)) in ops.iter().enumerate() {
                let (kind, delta) = match op {
                    0 => (TransactionKind::Grant, *amount),
                    1 => (TransactionKind::Usage, -*amount),
                    _ => (TransactionKind::Refund, -*amount),
                };
                let out = store.apply_transaction(&entry(alice.id, delta, &format!("k{i}"), kind)).await.unwrap();
                match out {
                    LedgerOutcome::Applied { balance_after } => { model += delta; assert_eq!(balance_after.0, model); }
                    LedgerOutcome::Insufficient { .. } => assert!(kind == TransactionKind::Usage && model + delta < 0),
                    LedgerOutcome::Duplicate => unreachable!(),
                }
            }
            assert_eq!(store.balance(alice.id).await.unwrap().0, model);
            assert_eq!(store.ledger_sum(alice.id).await.unwrap().0, model);
        });
    }
}
