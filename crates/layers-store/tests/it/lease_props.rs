//! One home for the money rules (issue 11, item 11): random sequences of grants, refunds, lease
//! grants, settlements (duplicates and overdraws included), returns, reclaims, expiries, renewals
//! and reaps run through layers-domain's `Model` and through each store side by side. After every
//! step the stores must agree with the model on everything the rules decide: each outcome,
//! balances, leased credit, every lease's state and amount, and what each key has spent.

use std::collections::HashMap;
use std::sync::Arc;

use layers_domain::credit::ledger::{Charge, Model, ModelLeaseState, Outcome};
use layers_domain::credit::{GrantAsk, GrantDecision};
use layers_domain::{KeyId, MicroCredits, Usage, UserId};
use layers_store::testing::TestDatabase;
use layers_store::*;
use proptest::prelude::*;
use uuid::Uuid;

use crate::support::{key, now, user};

const NODES: [Uuid; 2] = [Uuid::from_u128(1), Uuid::from_u128(2)];

#[derive(Clone, Debug)]
enum Op {
    Grant(i64),
    /// A debit that may (refund) or may not (adjustment) go below what is leased.
    Debit {
        amount: i64,
        refund: bool,
    },
    Acquire {
        key: usize,
        node: usize,
        min: i64,
        want: i64,
        hour_cap: Option<i64>,
        key_cap: Option<i64>,
    },
    /// A batch of charges: (lease slot, amount), with a repeated usage id now and then.
    Settle {
        charges: Vec<(usize, i64)>,
        repeat: bool,
    },
    Return {
        lease: usize,
        amount: i64,
        end: bool,
        answer: bool,
    },
    Reclaim,
    Expire(usize),
    Renew(usize),
    Reap,
}

fn op() -> impl Strategy<Value = Op> {
    let cap = prop_oneof![Just(None), (500i64..20_000).prop_map(Some)];
    prop_oneof![
        (1i64..20_000).prop_map(Op::Grant),
        (1i64..3_000, any::<bool>()).prop_map(|(amount, refund)| Op::Debit { amount, refund }),
        (0usize..2, 0usize..2, 1i64..3_000, 1i64..6_000, cap.clone(), cap).prop_map(
            |(key, node, min, want, hour_cap, key_cap)| Op::Acquire { key, node, min, want, hour_cap, key_cap }
        ),
        (proptest::collection::vec((0usize..4, 0i64..2_500), 1..4), any::<bool>())
            .prop_map(|(charges, repeat)| Op::Settle { charges, repeat }),
        (0usize..4, 0i64..3_000, any::<bool>(), any::<bool>()).prop_map(|(lease, amount, end, answer)| Op::Return {
            lease,
            amount,
            end,
            answer
        }),
        Just(Op::Reclaim),
        (0usize..4).prop_map(Op::Expire),
        (0usize..2).prop_map(Op::Renew),
        Just(Op::Reap),
    ]
}

/// The lease slots of a run: one per (key, node), created on first use.
fn slot_id(slots: &mut HashMap<(usize, usize), Uuid>, key: usize, node: usize) -> Uuid {
    *slots.entry((key, node)).or_insert_with(Uuid::now_v7)
}

fn usage_row(id: Uuid, user: UserId, key: KeyId, charged: i64) -> UsageRecord {
    UsageRecord {
        id,
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
        held: MicroCredits(charged),
        shortfall: MicroCredits::ZERO,
        fees: MicroCredits::ZERO,
        rates: Default::default(),
        latency_ms: 1,
        status: 200,
        error_code: None,
        streamed: false,
        usage_estimated: false,
        created_at: now(),
        app_title: None,
        app_origin: None,
    }
}

fn outcome(o: SettleOutcome) -> Outcome {
    match o {
        SettleOutcome::Applied => Outcome::Applied,
        SettleOutcome::Duplicate => Outcome::Duplicate,
        SettleOutcome::Refused => Outcome::Refused,
    }
}

/// Everything the rules decide about an account, as the store has it and as the model has it.
async fn agree(store: &Arc<dyn Store>, model: &Model, u: UserId, keys: &[KeyId]) {
    let state = store.credit_state(u).await.unwrap();
    let m = &model.accounts[&u];
    assert_eq!((state.balance.0, state.leased.0), (m.balance, m.leased), "balance and leased");
    assert_eq!(store.ledger_sum(u).await.unwrap().0, m.ledger_sum, "ledger sum");
    assert_eq!(state.balance.0, m.ledger_sum, "balance = sum of the ledger");
    for l in store.leases_of_user(u).await.unwrap() {
        let ml = &model.leases[&l.id];
        let state = match l.state {
            LeaseState::Active => ModelLeaseState::Active,
            LeaseState::Released => ModelLeaseState::Released,
            LeaseState::Expired => ModelLeaseState::Expired,
        };
        assert_eq!((state, l.amount.0), (ml.state, ml.amount), "lease {}", l.id);
    }
    let spent: HashMap<KeyId, i64> =
        store.keys_of_user(u).await.unwrap().into_iter().map(|k| (k.id, k.spent.0)).collect();
    for k in keys {
        assert_eq!(spent[k], model.key_spent.get(k).copied().unwrap_or(0), "spent by key");
    }
}

async fn run(db: &TestDatabase, ops: Vec<Op>) {
    let store = db.store().await;
    let u = user(&store, "props@example.com").await;
    let keys = [key(&store, &u, 1).await.id, key(&store, &u, 2).await.id];
    let mut model = Model::default();
    model.add_account(u.id);
    let mut slots: HashMap<(usize, usize), Uuid> = HashMap::new();
    let mut last_usage: Option<(Uuid, usize, usize)> = None;
    let mut epoch = 0;
    for (i, op) in ops.into_iter().enumerate() {
        match op {
            Op::Grant(amount) => entry(&store, &mut model, u.id, amount, false, &format!("g{i}")).await,
            Op::Debit { amount, refund } => entry(&store, &mut model, u.id, -amount, refund, &format!("d{i}")).await,
            Op::Acquire { key, node, min, want, hour_cap, key_cap } => {
                let lease = slot_id(&mut slots, key, node);
                let ask = GrantAsk {
                    min: MicroCredits(min),
                    want: MicroCredits(want.max(min)),
                    account_hour_cap: hour_cap.map(MicroCredits),
                    key_hour_cap: None,
                    key_total_cap: key_cap.map(MicroCredits),
                };
                let req = LeaseRequest {
                    lease_id: lease,
                    user: u.id,
                    key: keys[key],
                    node: NODES[node],
                    min: ask.min,
                    want: ask.want,
                    account_hour_cap: ask.account_hour_cap,
                    key_hour_cap: None,
                    key_total_cap: ask.key_total_cap,
                    key_period_from_day: None,
                    ttl: std::time::Duration::from_secs(600),
                };
                let got: GrantDecision = store.acquire_lease(&req).await.unwrap();
                let want = model.acquire(lease, u.id, keys[key], NODES[node], &ask);
                assert_eq!(got, want, "grant");
                if got.lease_ended {
                    // The node starts a new lease for this key.
                    slots.remove(&(key, node));
                }
            }
            Op::Settle { charges, repeat } => {
                let mut batch = Vec::new();
                for (slot, amount) in charges {
                    let Some((&(key, _), &lease)) = slots.iter().nth(slot % slots.len().max(1)) else { continue };
                    let id = match last_usage.filter(|_| repeat && batch.is_empty()) {
                        Some((id, _, _)) => id,
                        None => Uuid::now_v7(),
                    };
                    last_usage = Some((id, key, slot));
                    batch.push(Settlement { usage: usage_row(id, u.id, keys[key], amount), lease_id: Some(lease) });
                }
                if batch.is_empty() {
                    continue;
                }
                let charges: Vec<Charge> = batch
                    .iter()
                    .map(|s| Charge {
                        usage_id: s.usage.id,
                        user: u.id,
                        key: s.usage.key_id,
                        lease: s.lease_id,
                        amount: s.usage.charged.0,
                        minute: 0,
                    })
                    .collect();
                let got = store.settle(&batch).await.unwrap();
                let want = model.settle(&charges);
                let got: Vec<_> =
                    got.iter().map(|r| (outcome(r.outcome), r.charged.0, r.balance_after.map(|b| b.0))).collect();
                let want: Vec<_> = want.iter().map(|d| (d.outcome, d.charged, d.balance_after)).collect();
                assert_eq!(got, want, "settlement decisions");
            }
            Op::Return { lease, amount, end, answer } => {
                let Some(&id) = slots.values().nth(lease % slots.len().max(1)) else { continue };
                let reclaim_epoch = answer.then_some(epoch);
                let r = LeaseReturn { user: u.id, lease: id, amount: MicroCredits(amount), end, reclaim_epoch };
                let got = !store.return_leases(&[r]).await.unwrap().is_empty();
                assert_eq!(got, model.return_lease(u.id, id, amount, end, reclaim_epoch), "return");
            }
            Op::Reclaim => {
                epoch = store.request_reclaim(u.id).await.unwrap();
                assert_eq!(epoch, model.request_reclaim(u.id), "reclaim epoch");
            }
            Op::Expire(lease) => {
                let Some(&id) = slots.values().nth(lease % slots.len().max(1)) else { continue };
                db.expire_lease(id).await;
                if let Some(l) = model.leases.get_mut(&id) {
                    l.expired = true;
                }
            }
            Op::Renew(node) => {
                let ids: Vec<Uuid> = slots.values().copied().collect();
                let mut got = store.renew_leases(NODES[node], &ids, std::time::Duration::from_secs(600)).await.unwrap();
                let mut want = model.renew(NODES[node], &ids);
                got.sort();
                want.sort();
                assert_eq!(got, want, "renewed");
            }
            Op::Reap => {
                let got = store.reap_expired_leases().await.unwrap();
                assert_eq!((got.leases, got.micros), model.reap(), "reaped");
            }
        }
        agree(&store, &model, u.id, &keys).await;
        let m = &model.accounts[&u.id];
        assert!(m.balance >= 0 || m.leased == 0, "usage never drives a balance below zero");
    }
}

async fn entry(store: &Arc<dyn Store>, model: &mut Model, user: UserId, amount: i64, refund: bool, key: &str) {
    let kind = match (amount > 0, refund) {
        (true, _) => TransactionKind::Grant,
        (false, true) => TransactionKind::Refund,
        (false, false) => TransactionKind::Adjustment,
    };
    let got = store
        .apply_transaction(&NewTransaction {
            id: Uuid::new_v4(),
            user_id: user,
            kind,
            amount: MicroCredits(amount),
            idempotency_key: key.to_owned(),
            reason: None,
            request_id: None,
            allow_negative: refund,
            created_at: now(),
        })
        .await
        .unwrap();
    let got = match got {
        LedgerOutcome::Applied { balance_after } => Some(balance_after.0),
        LedgerOutcome::Duplicate | LedgerOutcome::Insufficient { .. } => None,
    };
    assert_eq!(got, model.apply_entry(user, amount, refund, key), "ledger entry");
}

fn cases() -> ProptestConfig {
    ProptestConfig { cases: 24, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(cases())]
    #[test]
    fn sqlite_agrees_with_the_domain_model(ops in proptest::collection::vec(op(), 1..50)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async { run(&TestDatabase::sqlite(), ops).await });
    }

    #[test]
    fn postgres_agrees_with_the_domain_model(ops in proptest::collection::vec(op(), 1..50)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let Some(db) = TestDatabase::postgres().await else { return };
            run(&db, ops).await;
        });
    }
}
