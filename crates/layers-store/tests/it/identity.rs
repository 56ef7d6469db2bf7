//! Passwords, confirmed addresses and e-mailed links, on both backends.

use std::sync::Arc;

use layers_store::{EmailPurpose, EmailToken, Session, Store, UserStatus};
use time::Duration;

use crate::conformance;
use crate::support::{now, user};

conformance!(credentials_follow_password_and_confirmation, |store: Arc<dyn Store>| async move {
    let alice = user(&store, "alice@example.com").await;
    let c = store.credentials_by_email("alice@example.com").await.unwrap().unwrap();
    assert_eq!((c.user_id, c.status, c.password_hash, c.email_verified_at), (alice.id, UserStatus::Active, None, None));
    assert!(store.credentials_by_email("nobody@example.com").await.unwrap().is_none());
    let t = now();
    store.set_password_hash(alice.id, "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", t).await.unwrap();
    store.mark_email_verified(alice.id, t).await.unwrap();
    store.mark_email_verified(alice.id, t + Duration::hours(1)).await.unwrap();
    let c = store.credentials(alice.id).await.unwrap().unwrap();
    assert_eq!(c.password_hash.as_deref(), Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"));
    assert_eq!(c.email_verified_at, Some(t), "the first confirmation is kept");
});

conformance!(email_links_work_once_for_their_purpose_until_they_expire, |store: Arc<dyn Store>| async move {
    let alice = user(&store, "alice@example.com").await;
    let t = now();
    let token = |hash: u8, purpose, ttl: Duration| EmailToken {
        token_hash: vec![hash; 32],
        user_id: alice.id,
        purpose,
        new_email: None,
        created_at: t,
        expires_at: t + ttl,
    };
    let confirm = token(1, EmailPurpose::Confirm, Duration::hours(24));
    store.create_email_token(&confirm).await.unwrap();
    store.create_email_token(&token(2, EmailPurpose::Reset, Duration::minutes(30))).await.unwrap();
    // Not for another purpose.
    assert!(store.use_email_token(&[1; 32], EmailPurpose::Reset, t).await.unwrap().is_none());
    assert_eq!(store.use_email_token(&[1; 32], EmailPurpose::Confirm, t).await.unwrap(), Some(confirm));
    assert!(store.use_email_token(&[1; 32], EmailPurpose::Confirm, t).await.unwrap().is_none(), "used once");
    // Expired.
    assert!(store.use_email_token(&[2; 32], EmailPurpose::Reset, t + Duration::minutes(31)).await.unwrap().is_none());
    assert!(store.use_email_token(&[9; 32], EmailPurpose::Reset, t).await.unwrap().is_none(), "unknown");
});

conformance!(a_users_live_sessions_are_listed_newest_first, |store: Arc<dyn Store>| async move {
    let alice = user(&store, "alice@example.com").await;
    let bob = user(&store, "bob@example.com").await;
    let t = now();
    let mk = |owner: layers_domain::UserId, hash: u8, seen: Duration| Session {
        id: uuid::Uuid::new_v4(),
        user_id: owner,
        token_hash: vec![hash; 32],
        created_at: t,
        authenticated_at: t,
        last_seen_at: t + seen,
        expires_at: t + Duration::days(7),
        revoked_at: None,
        ip_address: Some("2001:db8::7".parse().unwrap()),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0".into()),
    };
    let (old, new, revoked, theirs) = (
        mk(alice.id, 1, Duration::ZERO),
        mk(alice.id, 2, Duration::minutes(5)),
        mk(alice.id, 3, Duration::ZERO),
        mk(bob.id, 4, Duration::ZERO),
    );
    for s in [&old, &new, &revoked, &theirs] {
        store.create_session(s).await.unwrap();
    }
    store.revoke_session(alice.id, revoked.id, t).await.unwrap();
    assert_eq!(store.sessions_of_user(alice.id).await.unwrap(), vec![new, old]);
});

conformance!(two_factor_is_pending_until_enabled_and_codes_work_once, |store: Arc<dyn Store>| async move {
    let alice = user(&store, "alice@example.com").await;
    let t = now();
    assert!(store.two_factor(alice.id).await.unwrap().is_none());
    assert!(store.set_pending_two_factor(alice.id, b"first", t).await.unwrap());
    assert!(store.set_pending_two_factor(alice.id, b"second", t).await.unwrap(), "a pending secret is replaced");
    assert!(!store.use_totp_step(alice.id, 5).await.unwrap(), "not enabled yet");
    store.enable_two_factor(alice.id, 10, &[vec![1; 32], vec![2; 32]], t).await.unwrap();
    let f = store.two_factor(alice.id).await.unwrap().unwrap();
    assert_eq!((f.secret_enc.as_slice(), f.enabled_at, f.last_step), (&b"second"[..], Some(t), Some(10)));
    assert!(!store.set_pending_two_factor(alice.id, b"third", t).await.unwrap(), "an enabled secret stays");
    assert!(!store.use_totp_step(alice.id, 10).await.unwrap(), "the step that enabled it is used");
    assert!(store.use_totp_step(alice.id, 11).await.unwrap());
    assert!(!store.use_totp_step(alice.id, 11).await.unwrap(), "no replay");
    assert_eq!(store.unused_recovery_codes(alice.id).await.unwrap(), 2);
    assert!(store.use_recovery_code(alice.id, &[1; 32], t).await.unwrap());
    assert!(!store.use_recovery_code(alice.id, &[1; 32], t).await.unwrap());
    assert!(!store.use_recovery_code(alice.id, &[9; 32], t).await.unwrap());
    assert_eq!(store.unused_recovery_codes(alice.id).await.unwrap(), 1);
    store.disable_two_factor(alice.id).await.unwrap();
    assert!(store.two_factor(alice.id).await.unwrap().is_none());
    assert_eq!(store.unused_recovery_codes(alice.id).await.unwrap(), 0);
});

conformance!(erasure_removes_personal_data_and_keeps_the_ledger, |store: Arc<dyn Store>| async move {
    use layers_domain::MicroCredits;
    use layers_store::{AuditEvent, NewTransaction, Severity, TransactionKind};
    let alice = user(&store, "alice@example.com").await;
    let bob = user(&store, "bob@example.com").await;
    let t = now();
    store.set_password_hash(alice.id, "hash", t).await.unwrap();
    store.set_pending_two_factor(alice.id, b"secret", t).await.unwrap();
    let grant = NewTransaction {
        id: uuid::Uuid::new_v4(),
        user_id: alice.id,
        kind: TransactionKind::Grant,
        amount: MicroCredits(5_000_000),
        idempotency_key: "grant-1".into(),
        reason: Some("welcome".into()),
        request_id: None,
        allow_negative: false,
        created_at: t,
    };
    store.apply_transaction(&grant).await.unwrap();
    let event = |who: layers_domain::UserId| AuditEvent {
        id: uuid::Uuid::new_v4(),
        created_at: t,
        user_id: Some(who),
        event_type: "login_succeeded".into(),
        ip_address: Some("203.0.113.9".parse().unwrap()),
        user_agent: Some("Firefox".into()),
        metadata: serde_json::json!({}),
        severity: Severity::Info,
    };
    store.record_audit(&event(alice.id)).await.unwrap();
    store.record_audit(&event(bob.id)).await.unwrap();

    store.erase_personal_data(alice.id, t).await.unwrap();
    assert!(store.credentials_by_email("alice@example.com").await.unwrap().is_none(), "the address is free again");
    let gone = store.user(alice.id).await.unwrap().unwrap();
    assert_eq!(gone.email, format!("deleted+{}@deleted.invalid", alice.id));
    assert_eq!(gone.status, layers_store::UserStatus::Suspended);
    let c = store.credentials(alice.id).await.unwrap().unwrap();
    assert_eq!((c.password_hash, c.email_verified_at), (None, None));
    assert!(store.two_factor(alice.id).await.unwrap().is_none());
    assert_eq!(store.balance(alice.id).await.unwrap(), MicroCredits(5_000_000), "the ledger stays");
    let audit = store.audit_events(alice.id, 10).await.unwrap();
    assert!(audit.iter().all(|e| e.ip_address.is_none() && e.user_agent.is_none()));
    let theirs = store.audit_events(bob.id, 10).await.unwrap();
    assert_eq!(theirs[0].ip_address, Some("203.0.113.9".parse().unwrap()), "nobody else's rows change");
});

conformance!(identities_are_keyed_on_issuer_and_subject, |store: Arc<dyn Store>| async move {
    let alice = user(&store, "alice@example.com").await;
    let bob = user(&store, "bob@example.com").await;
    let t = now();
    assert!(store.user_by_identity("https://accounts.google.com", "123").await.unwrap().is_none());
    store.link_identity(alice.id, "https://accounts.google.com", "123", t).await.unwrap();
    store.link_identity(bob.id, "https://accounts.google.com", "123", t).await.unwrap();
    assert_eq!(
        store.user_by_identity("https://accounts.google.com", "123").await.unwrap(),
        Some(alice.id),
        "first link wins"
    );
    assert!(
        store.user_by_identity("https://other.example", "123").await.unwrap().is_none(),
        "the issuer is part of the key"
    );
    store.erase_personal_data(alice.id, t).await.unwrap();
    assert!(store.user_by_identity("https://accounts.google.com", "123").await.unwrap().is_none());
});

conformance!(an_address_moves_only_to_a_free_one, |store: Arc<dyn Store>| async move {
    let alice = user(&store, "alice@example.com").await;
    user(&store, "bob@example.com").await;
    let t = now();
    store.set_email(alice.id, "alice@new.example", t).await.unwrap();
    let c = store.credentials_by_email("alice@new.example").await.unwrap().unwrap();
    assert_eq!((c.user_id, c.email_verified_at), (alice.id, Some(t)));
    assert!(store.credentials_by_email("alice@example.com").await.unwrap().is_none());
    let taken = store.set_email(alice.id, "bob@example.com", t).await.unwrap_err();
    assert!(taken.is_conflict_on("users_email_key"), "{taken:?}");
});

conformance!(revoking_a_users_links_ends_only_theirs, |store: Arc<dyn Store>| async move {
    let alice = user(&store, "alice@example.com").await;
    let bob = user(&store, "bob@example.com").await;
    let t = now();
    for (owner, hash) in [(alice.id, 1u8), (bob.id, 2u8)] {
        let token = EmailToken {
            token_hash: vec![hash; 32],
            user_id: owner,
            purpose: EmailPurpose::ChangeEmail,
            new_email: Some("x@example.com".into()),
            created_at: t,
            expires_at: t + Duration::hours(24),
        };
        store.create_email_token(&token).await.unwrap();
    }
    store.revoke_email_tokens(alice.id, t).await.unwrap();
    assert!(store.use_email_token(&[1; 32], EmailPurpose::ChangeEmail, t).await.unwrap().is_none());
    assert!(store.use_email_token(&[2; 32], EmailPurpose::ChangeEmail, t).await.unwrap().is_some());
});
