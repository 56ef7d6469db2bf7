use std::sync::Arc;

use layers_domain::{MicroCredits, Usage};
use layers_store::{AuditEvent, Session, Severity, Store, UsageCursor, UsageRecord};
use time::Duration;

use crate::conformance;
use crate::support::{key, now, user};

fn usage_row(user: &layers_store::User, key: Option<layers_domain::KeyId>, i: u32) -> UsageRecord {
    UsageRecord {
        id: uuid::Uuid::new_v4(),
        request_id: format!("req_{i}"),
        user_id: user.id,
        key_id: key,
        model: "openai/gpt-4o-mini".into(),
        provider: "openai".into(),
        upstream_model: "gpt-4o-mini".into(),
        endpoint: "chat".into(),
        usage: Usage {
            prompt_tokens: 10 + i,
            completion_tokens: 20,
            cached_tokens: 1,
            reasoning_tokens: 2,
            ..Usage::default()
        },
        held: MicroCredits::ZERO,
        shortfall: MicroCredits::ZERO,
        fees: MicroCredits::ZERO,
        rates: Default::default(),
        cost: MicroCredits(1_234 + i64::from(i)),
        charged: MicroCredits(0),
        latency_ms: 42,
        status: 200,
        error_code: None,
        streamed: i.is_multiple_of(2),
        usage_estimated: false,
        created_at: now() - Duration::seconds(i64::from(100 - i)),
        // Attribution round-trips (odd rows name their app).
        app_title: (i % 2 == 1).then(|| format!("App {i}")),
        app_origin: (i % 2 == 1).then(|| "https://app.example".to_owned()),
    }
}

conformance!(usage_batches_are_idempotent_and_paged, |store: Arc<dyn Store>| async move {
    let alice = user(&store, "alice@example.com").await;
    let bob = user(&store, "bob@example.com").await;
    let k = key(&store, &alice, 1).await;
    let mut rows: Vec<_> = (0..30).map(|i| usage_row(&alice, Some(k.id), i)).collect();
    rows.push(usage_row(&bob, None, 99));
    assert_eq!(store.record_usage(&rows).await.unwrap(), 31);
    // Re-sending the same batch (a retried flush) writes nothing.
    assert_eq!(store.record_usage(&rows).await.unwrap(), 0);
    let page = store.recent_usage(alice.id, 10, None).await.unwrap();
    assert_eq!(page.len(), 10);
    assert_eq!(page[0], rows[29]);
    let next = store.recent_usage(alice.id, 100, Some(UsageCursor::after(&page[9]))).await.unwrap();
    assert_eq!(next.len(), 20);
    assert_eq!(store.recent_usage(bob.id, 100, None).await.unwrap(), vec![rows[30].clone()]);
});

conformance!(rows_sharing_a_millisecond_are_paged_exactly_once, |store: Arc<dyn Store>| async move {
    let alice = user(&store, "same-ms@example.com").await;
    let at = now();
    let rows: Vec<_> = (0..7)
        .map(|i| UsageRecord { created_at: at, id: uuid::Uuid::now_v7(), ..usage_row(&alice, None, i) })
        .collect();
    store.record_usage(&rows).await.unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.recent_usage(alice.id, 3, cursor).await.unwrap();
        if page.is_empty() {
            break;
        }
        cursor = page.last().map(UsageCursor::after);
        seen.extend(page.into_iter().map(|r| r.id));
    }
    let mut expected: Vec<_> = rows.iter().map(|r| r.id).collect();
    expected.sort();
    let mut got = seen.clone();
    got.sort();
    assert_eq!(got, expected, "every row once: {seen:?}");
});

conformance!(audit_events_with_and_without_user, |store: Arc<dyn Store>| async move {
    let alice = user(&store, "alice@example.com").await;
    let anonymous = AuditEvent {
        id: uuid::Uuid::new_v4(),
        created_at: now(),
        user_id: None,
        event_type: "auth_failed".into(),
        ip_address: Some("203.0.113.9".parse().unwrap()),
        user_agent: Some("curl/8".into()),
        metadata: serde_json::json!({"reason": "invalid_key"}),
        severity: Severity::Warning,
    };
    store.record_audit(&anonymous).await.unwrap();
    let mine = AuditEvent {
        id: uuid::Uuid::new_v4(),
        user_id: Some(alice.id),
        event_type: "key_created".into(),
        ip_address: Some("::1".parse().unwrap()),
        severity: Severity::Info,
        ..anonymous.clone()
    };
    store.record_audit(&mine).await.unwrap();
    assert_eq!(store.audit_events(alice.id, 10).await.unwrap(), vec![mine]);
    // The operator sees events of no account (the app role cannot read them directly on PG).
    let blocked = AuditEvent {
        id: uuid::Uuid::new_v4(),
        created_at: now() + time::Duration::seconds(1),
        event_type: "ip_blocked".into(),
        severity: Severity::Critical,
        ..anonymous.clone()
    };
    store.record_audit(&blocked).await.unwrap();
    assert_eq!(store.system_audit_events(None, 10).await.unwrap(), vec![blocked.clone(), anonymous.clone()]);
    assert_eq!(store.system_audit_events(Some("auth_failed"), 10).await.unwrap(), vec![anonymous]);
    assert_eq!(store.system_audit_events(None, 1).await.unwrap(), vec![blocked]);
});

conformance!(sessions_are_found_by_hash_and_revoked, |store: Arc<dyn Store>| async move {
    let alice = user(&store, "alice@example.com").await;
    let mk = |hash: u8| Session {
        id: uuid::Uuid::new_v4(),
        user_id: alice.id,
        token_hash: vec![hash; 32],
        created_at: now(),
        authenticated_at: now(),
        last_seen_at: now(),
        expires_at: now() + Duration::days(7),
        revoked_at: None,
        ip_address: Some("127.0.0.1".parse().unwrap()),
        user_agent: None,
    };
    let (s1, s2) = (mk(1), mk(2));
    store.create_session(&s1).await.unwrap();
    store.create_session(&s2).await.unwrap();
    assert_eq!(store.session_by_token_hash(&[1; 32]).await.unwrap(), Some(s1.clone()));
    let later = now() + Duration::minutes(1);
    store.touch_session(alice.id, s1.id, later).await.unwrap();
    assert_eq!(store.session_by_token_hash(&[1; 32]).await.unwrap().unwrap().last_seen_at, later);
    store.revoke_session(alice.id, s1.id, later).await.unwrap();
    assert!(store.session_by_token_hash(&[1; 32]).await.unwrap().is_none());
    assert_eq!(store.revoke_all_sessions(alice.id, later).await.unwrap(), 1);
    assert!(store.session_by_token_hash(&[2; 32]).await.unwrap().is_none());
});
