//! What the dashboard reads and the controls it writes: calendar key limits, rotation, expiry
//! reminders, usage filters, summaries and paging, the statement, alerts, audit filters.

use std::sync::Arc;

use layers_domain::dashboard::period::day_of;
use layers_domain::{KeyId, MicroCredits, UserId};
use layers_store::*;
use time::Duration;
use uuid::Uuid;

use crate::conformance;
use crate::credits::{funded, lease_req, settlement};
use crate::support::{key, now, user};

/// Leases `micros` for the key and settles one request per (time, model, charge) against it.
async fn spend(
    store: &Arc<dyn Store>,
    u: UserId,
    k: KeyId,
    rows: &[(time::OffsetDateTime, &str, i64)],
) -> Vec<UsageRecord> {
    let lease = Uuid::new_v4();
    let total: i64 = rows.iter().map(|r| r.2).sum();
    let g = store.acquire_lease(&lease_req(u, k, lease, total, total)).await.unwrap();
    assert_eq!(g.granted.0, total, "the test funds enough");
    let batch: Vec<Settlement> = rows
        .iter()
        .map(|(at, model, charged)| {
            let mut s = settlement(u, k, Some(lease), *charged);
            s.usage.created_at = *at;
            s.usage.model = (*model).to_owned();
            s.usage.request_id = format!("req_{}", Uuid::new_v4().simple());
            s
        })
        .collect();
    store.settle(&batch).await.unwrap();
    batch.into_iter().map(|s| s.usage).collect()
}

conformance!(calendar_limits_count_the_periods_spend_only, |store: Arc<dyn Store>| async move {
    let (u, k) = funded(&store, "calendar@example.com", 100_000_000).await;
    let today = now();
    let yesterday = today - Duration::days(1);
    spend(&store, u.id, k.id, &[(yesterday, "m/a", 700), (today, "m/a", 200), (today, "m/b", 50)]).await;
    let days = store.key_spend_days(u.id, day_of(yesterday)).await.unwrap();
    assert_eq!(
        days,
        vec![(k.id, day_of(yesterday), MicroCredits(700)), (k.id, day_of(today), MicroCredits(250))],
        "spend is rolled up per UTC day"
    );
    // A daily limit of 1,000: today's 250 count, yesterday's 700 do not.
    let mut req = lease_req(u.id, k.id, Uuid::new_v4(), 1, 10_000);
    req.key_total_cap = Some(MicroCredits(1_000));
    req.key_period_from_day = Some(day_of(today));
    let g = store.acquire_lease(&req).await.unwrap();
    assert_eq!(g.key_total_room, Some(MicroCredits(750)));
    // The same limit over the key's lifetime leaves 50.
    req.key_period_from_day = None;
    req.lease_id = Uuid::new_v4();
    let g = store.acquire_lease(&req).await.unwrap();
    assert_eq!(g.key_total_room, Some(MicroCredits(0)), "750 leased above + 950 spent reach the cap");
    let limits =
        KeyLimits { spend_limit: Some(MicroCredits(1_000)), period: SpendPeriod::Week, ..KeyLimits::default() };
    let changed = store.set_key_limits(u.id, k.id, limits).await.unwrap();
    assert_eq!((changed.limit_period, changed.spend_limit), (SpendPeriod::Week, Some(MicroCredits(1_000))));
});

conformance!(a_rotated_key_answers_to_both_secrets_and_announces_both, |store: Arc<dyn Store>| async move {
    let alice = user(&store, "rotate@example.com").await;
    let k = key(&store, &alice, 40).await;
    let mark = store.db_now().await.unwrap() - Duration::seconds(1);
    let until = now() + Duration::hours(24);
    let secret = NewSecret {
        key_hash: vec![41; 32],
        pepper_version: 1,
        display_prefix: "lyr_live_sk_new1".into(),
        last4: "wxyz".into(),
    };
    let rotated = store.rotate_key(alice.id, k.id, &secret, until, now()).await.unwrap();
    assert_eq!(rotated.id, k.id);
    assert_eq!((rotated.key_hash.clone(), rotated.last4.clone()), (vec![41; 32], "wxyz".to_owned()));
    let previous = rotated.previous.clone().unwrap();
    assert_eq!((previous.key_hash, previous.valid_until, previous.last4), (vec![40; 32], until, "abcd".to_owned()));
    for hash in [[40u8; 32], [41u8; 32]] {
        let auth = store.key_for_auth(&hash).await.unwrap().unwrap();
        assert_eq!(auth.key.id, k.id, "found by either secret");
    }
    // A second rotation drops the first secret at once.
    let third = NewSecret { key_hash: vec![42; 32], display_prefix: "lyr_live_sk_new2".into(), ..secret.clone() };
    store.rotate_key(alice.id, k.id, &third, until, now()).await.unwrap();
    assert!(store.key_for_auth(&[40; 32]).await.unwrap().is_none());
    assert_eq!(store.key_for_auth(&[41; 32]).await.unwrap().unwrap().key.id, k.id);
    let events = store.cache_events_since(mark).await.unwrap();
    let announced: Vec<Vec<u8>> = events.into_iter().filter_map(|e| e.key_hash).collect();
    for hash in [vec![40u8; 32], vec![41u8; 32]] {
        assert!(announced.contains(&hash), "every node hears of each secret that changed");
    }
    // Found for incident response by the old secret's prefix too.
    let by_old = store.keys_by_prefix("lyr_live_sk_new1").await.unwrap();
    assert_eq!(by_old.iter().map(|k| k.id).collect::<Vec<_>>(), vec![k.id]);
    // Ending the overlap now forgets the old secret and tells every node.
    let mark2 = store.db_now().await.unwrap() - Duration::seconds(1);
    let retired = store.retire_previous_secret(alice.id, k.id).await.unwrap();
    assert!(retired.previous.is_none());
    assert!(store.key_for_auth(&[41; 32]).await.unwrap().is_none());
    let events = store.cache_events_since(mark2).await.unwrap();
    assert!(events.iter().any(|e| e.key_hash.as_deref() == Some(&[41u8; 32][..])));
    // Deactivation ends an overlap as well: a reactivated key answers to its current secret only.
    let fourth = NewSecret { key_hash: vec![44; 32], ..secret.clone() };
    store.rotate_key(alice.id, k.id, &fourth, until, now()).await.unwrap();
    store.set_key_state(alice.id, k.id, KeyState::Deactivated).await.unwrap();
    let back = store.set_key_state(alice.id, k.id, KeyState::Active).await.unwrap();
    assert!(back.previous.is_none());
    assert!(store.key_for_auth(&[42; 32]).await.unwrap().is_none(), "the secret before the rotation is gone");
    // Another user cannot rotate it; a deleted key cannot be rotated.
    let bob = user(&store, "rotate-bob@example.com").await;
    let stolen = NewSecret { key_hash: vec![43; 32], ..secret.clone() };
    assert!(matches!(store.rotate_key(bob.id, k.id, &stolen, until, now()).await, Err(StoreError::NotFound { .. })));
    store.set_key_state(alice.id, k.id, KeyState::Deleted).await.unwrap();
    assert!(matches!(store.rotate_key(alice.id, k.id, &stolen, until, now()).await, Err(StoreError::NotFound { .. })));
    assert!(
        matches!(store.set_key_state(alice.id, k.id, KeyState::Active).await, Err(StoreError::NotFound { .. })),
        "deletion is final"
    );
});

conformance!(expiry_reminders_are_claimed_once_per_stage, |store: Arc<dyn Store>| async move {
    let alice = user(&store, "expiry@example.com").await;
    let soon = store
        .insert_key(&NewKey {
            id: KeyId::random(),
            user_id: alice.id,
            name: "soon".into(),
            env: layers_domain::KeyEnv::Live,
            key_hash: vec![50; 32],
            pepper_version: 1,
            display_prefix: "lyr_live_sk_soon".into(),
            last4: "soon".into(),
            spend_limit: None,
            limit_period: Default::default(),
            expires_at: Some(now() + Duration::days(5)),
            created_at: now(),
        })
        .await
        .unwrap();
    key(&store, &alice, 51).await; // no expiry: never listed
    let listed = store.keys_expiring(now(), now() + Duration::days(7)).await.unwrap();
    assert_eq!(listed.iter().map(|k| k.id).collect::<Vec<_>>(), vec![soon.id]);
    assert_eq!(listed[0].reminded, None);
    let bob = user(&store, "expiry-bob@example.com").await;
    assert!(!store.claim_expiry_reminder(bob.id, soon.id, 7).await.unwrap(), "only the owner's key");
    assert!(store.claim_expiry_reminder(alice.id, soon.id, 7).await.unwrap());
    assert!(!store.claim_expiry_reminder(alice.id, soon.id, 7).await.unwrap(), "the 7-day reminder goes once");
    assert_eq!(store.keys_expiring(now(), now() + Duration::days(7)).await.unwrap()[0].reminded, Some(7));
    assert!(store.claim_expiry_reminder(alice.id, soon.id, 1).await.unwrap());
    assert!(!store.claim_expiry_reminder(alice.id, soon.id, 7).await.unwrap(), "never back to an earlier stage");
    assert!(
        store.keys_expiring(now(), now() + Duration::days(7)).await.unwrap().is_empty(),
        "a key reminded a day before is not listed again"
    );
    assert!(store.keys_expiring(now(), now() + Duration::days(400)).await.unwrap().is_empty());
});

conformance!(usage_filters_summaries_and_pages_that_never_skip, |store: Arc<dyn Store>| async move {
    let (u, k1) = funded(&store, "usage-page@example.com", 100_000_000).await;
    let k2 = key(&store, &u, 77).await;
    let t = now();
    let same = t - Duration::hours(2);
    // Seven rows in the same millisecond: paging by time alone would skip or repeat some.
    let mut rows: Vec<_> = (0..7).map(|i| (same, "m/a", 10 + i)).collect();
    rows.push((t - Duration::days(2), "m/b", 1_000));
    let mut written = spend(&store, u.id, k1.id, &rows).await;
    written.extend(spend(&store, u.id, k2.id, &[(t, "m/b", 5)]).await);
    let all = UsageFilter::default();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.usage_page(u.id, &all, 3, cursor).await.unwrap();
        seen.extend(page.iter().map(|r| r.id));
        if page.len() < 3 {
            break;
        }
        cursor = page.last().map(UsageCursor::after);
    }
    let mut want: Vec<Uuid> = written.iter().map(|r| r.id).collect();
    want.sort();
    let mut got = seen.clone();
    got.sort();
    assert_eq!(got, want, "every row exactly once");
    assert_eq!(seen.len(), 9);

    let by_key = UsageFilter { key: Some(k2.id), ..UsageFilter::default() };
    let page = store.usage_page(u.id, &by_key, 50, None).await.unwrap();
    assert_eq!(page.iter().map(|r| r.charged.0).collect::<Vec<_>>(), vec![5]);
    let model_b =
        UsageFilter { model: Some("m/b".into()), from: Some(t - Duration::days(3)), ..UsageFilter::default() };
    let s = store.usage_summary(u.id, &model_b).await.unwrap();
    assert_eq!((s.total.requests, s.total.charged.0), (2, 1_005));
    assert_eq!(s.by_day.len(), 2, "two UTC days");
    assert_eq!(s.by_model, vec![("m/b".to_owned(), s.total.clone())]);
    let everything = store.usage_summary(u.id, &all).await.unwrap();
    assert_eq!(everything.total.charged.0, 1_005 + (10..17).sum::<i64>());
    assert_eq!(everything.by_key[0].0, Some(k1.id), "most charged first");
    let failed = UsageFilter { status: Some(StatusClass::Failed), ..UsageFilter::default() };
    assert_eq!(store.usage_summary(u.id, &failed).await.unwrap().total.requests, 0);
    let old = UsageFilter { until: Some(t - Duration::days(1)), ..UsageFilter::default() };
    assert_eq!(store.usage_summary(u.id, &old).await.unwrap().total.charged.0, 1_000);
    let one = &written[0];
    assert_eq!(store.usage_row(u.id, one.id).await.unwrap().map(|r| r.id), Some(one.id));
    // Another user sees none of it.
    let bob = user(&store, "usage-bob@example.com").await;
    assert!(store.usage_row(bob.id, one.id).await.unwrap().is_none());
    assert_eq!(store.usage_summary(bob.id, &all).await.unwrap().total.requests, 0);
    assert!(store.usage_page(bob.id, &all, 10, None).await.unwrap().is_empty());
});

conformance!(the_statement_sums_usage_per_day_and_keeps_other_entries, |store: Arc<dyn Store>| async move {
    let (u, k) = funded(&store, "statement@example.com", 10_000).await;
    let t = now();
    spend(&store, u.id, k.id, &[(t - Duration::days(1), "m/a", 100), (t, "m/a", 30), (t, "m/a", 20)]).await;
    let lines = store.statement(u.id, 50).await.unwrap();
    let summary: Vec<(TransactionKind, i64, i64)> = lines.iter().map(|l| (l.kind, l.amount.0, l.count)).collect();
    assert!(summary.contains(&(TransactionKind::Usage, -50, 2)), "{summary:?}");
    assert!(summary.contains(&(TransactionKind::Usage, -100, 1)), "{summary:?}");
    assert!(summary.contains(&(TransactionKind::Grant, 10_000, 1)), "{summary:?}");
    assert_eq!(lines.iter().map(|l| l.amount.0).sum::<i64>(), store.balance(u.id).await.unwrap().0);
    assert!(lines.windows(2).all(|w| w[0].at >= w[1].at), "newest first");
    assert!(store.last_credit_at(u.id).await.unwrap().is_some());
});

conformance!(
    a_statement_line_never_spans_a_top_up_and_carries_the_recorded_balance,
    |store: Arc<dyn Store>| async move {
        let (u, k) = funded(&store, "statement-mix@example.com", 10_000).await;
        let t = now();
        spend(&store, u.id, k.id, &[(t + Duration::seconds(1), "m/a", 30)]).await;
        store
            .apply_transaction(&NewTransaction {
                id: Uuid::new_v4(),
                user_id: u.id,
                kind: TransactionKind::Purchase,
                amount: MicroCredits(500),
                idempotency_key: "top-up".into(),
                reason: Some("top-up".into()),
                request_id: None,
                allow_negative: false,
                created_at: t + Duration::seconds(2),
            })
            .await
            .unwrap();
        spend(&store, u.id, k.id, &[(t + Duration::seconds(3), "m/a", 20)]).await;
        let lines: Vec<(TransactionKind, i64, i64)> =
            store.statement(u.id, 50).await.unwrap().iter().map(|l| (l.kind, l.amount.0, l.balance_after.0)).collect();
        assert_eq!(
            lines,
            vec![
                (TransactionKind::Usage, -20, 10_450),
                (TransactionKind::Purchase, 500, 10_470),
                (TransactionKind::Usage, -30, 9_970),
                (TransactionKind::Grant, 10_000, 10_000),
            ]
        );
    }
);

conformance!(alerts_are_kept_and_claimed_once, |store: Arc<dyn Store>| async move {
    let alice = user(&store, "alerts@example.com").await;
    assert_eq!(store.alert_settings(alice.id).await.unwrap(), None);
    let settings = AlertSettings {
        low_balance: Some(MicroCredits(5_000_000)),
        key_thresholds: vec![50, 80, 100],
        webhook_url: Some("https://hooks.example.com/x".into()),
        webhook_secret_enc: Some(vec![1, 2, 3]),
    };
    store.set_alert_settings(alice.id, &settings, now()).await.unwrap();
    assert_eq!(store.alert_settings(alice.id).await.unwrap(), Some(settings));
    let firing = AlertFiring {
        user: alice.id,
        kind: "key_limit",
        subject: "k".into(),
        period: "20000".into(),
        threshold: 80,
        at: now(),
    };
    assert!(store.claim_alert(&firing).await.unwrap());
    assert!(!store.claim_alert(&firing).await.unwrap(), "once per period");
    let next = AlertFiring { period: "20001".into(), ..firing.clone() };
    assert!(store.claim_alert(&next).await.unwrap(), "again in the next period");
    store.erase_personal_data(alice.id, now()).await.unwrap();
    assert_eq!(store.alert_settings(alice.id).await.unwrap(), None, "erasure removes the webhook address");
});

conformance!(audit_events_filter_by_type_and_time, |store: Arc<dyn Store>| async move {
    let alice = user(&store, "audit-filter@example.com").await;
    let t = now();
    for (i, kind) in ["login", "key_created", "login", "alert_sent"].iter().enumerate() {
        store
            .record_audit(&AuditEvent {
                id: Uuid::new_v4(),
                created_at: t - Duration::minutes(10 - i as i64),
                user_id: Some(alice.id),
                event_type: (*kind).to_owned(),
                ip_address: None,
                user_agent: None,
                metadata: serde_json::json!({}),
                severity: Severity::Info,
            })
            .await
            .unwrap();
    }
    let logins = AuditFilter { types: vec!["login".into()], ..AuditFilter::default() };
    assert_eq!(store.audit_events_filtered(alice.id, &logins, 50).await.unwrap().len(), 2);
    let recent = AuditFilter { since: Some(t - Duration::minutes(8)), ..AuditFilter::default() };
    let kinds: Vec<String> =
        store.audit_events_filtered(alice.id, &recent, 50).await.unwrap().into_iter().map(|e| e.event_type).collect();
    assert_eq!(kinds, vec!["alert_sent", "login"]);
    let bob = user(&store, "audit-bob@example.com").await;
    assert!(store.audit_events_filtered(bob.id, &AuditFilter::default(), 50).await.unwrap().is_empty());
});
