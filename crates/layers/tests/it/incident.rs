//! The incident toolkit (issue 16, SPEC §8.7) as an operator runs it: `layers admin` as a
//! process against the database of a running node, every command audited and idempotent.

use std::time::Duration;

use layers_domain::{KeyEnv, KeyId, MicroCredits, Tier};
use layers_store::{NewKey, UserStatus};
use layers_testkit::{AppOptions, MockOpenAi, TestApp};
use serde_json::json;

struct Ops {
    app: TestApp,
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
    _mock: MockOpenAi,
}

async fn ops(extra: &str) -> Ops {
    let mock = MockOpenAi::start().await;
    let app = TestApp::spawn_with(AppOptions::default().with_mock(&mock)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("layers.toml");
    let toml = format!(
        "data_dir = \"{}\"\n[database]\nurl = \"{}\"\n[keys]\npepper = \"{}\"\n{extra}",
        dir.path().display(),
        app.db.url,
        layers_testkit::app::TEST_PEPPER,
    );
    std::fs::write(&config, toml).unwrap();
    Ops { app, config, _dir: dir, _mock: mock }
}

/// Runs `layers admin …`: (exit success, stdout, stderr).
async fn admin(o: &Ops, args: &[&str]) -> (bool, String, String) {
    let config = o.config.clone();
    let args: Vec<String> = std::iter::once("admin".to_owned()).chain(args.iter().map(|a| (*a).to_owned())).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_layers"))
            .args(&args)
            .env("LAYERS_CONFIG", &config)
            .env("LAYERS_LOG__LEVEL", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn ok(o: &Ops, args: &[&str]) -> String {
    let (success, out, err) = admin(o, args).await;
    assert!(success, "layers admin {args:?} failed: {err}");
    out
}

async fn status_of(app: &TestApp, key: &str) -> u16 {
    let body = json!({"model": layers_testkit::app::MOCK_MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    app.chat(key, &body).send().await.unwrap().status().as_u16()
}

/// Polls until the key's requests answer `want` (the change feed reaches the node).
async fn until_status(app: &TestApp, key: &str, want: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let got = status_of(app, key).await;
        if got == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {got}, not {want}, after a second");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn keys_by_id_or_prefix_and_an_ambiguous_prefix_is_refused_with_the_keys_listed() {
    let o = ops("").await;
    let (user, key) = o.app.user_with_key("ops@example.com", "5").await;
    assert_eq!(status_of(&o.app, &key).await, 200);
    let listed = ok(&o, &["key", "list", "--email", "ops@example.com"]).await;
    let id = listed.split('\t').next().unwrap().to_owned();

    // By id: deactivated everywhere within a second; again: the same answer, one audit event.
    assert_eq!(ok(&o, &["key", "deactivate", "--id", &id]).await, id);
    until_status(&o.app, &key, 401).await;
    assert_eq!(ok(&o, &["key", "deactivate", "--id", &id]).await, id);
    let events = ok(&o, &["audit", "--email", "ops@example.com", "--type", "key_deactivated"]).await;
    assert_eq!(events.lines().count(), 1, "{events}");
    assert_eq!(ok(&o, &["key", "reactivate", "--id", &id]).await, id);
    until_status(&o.app, &key, 200).await;

    // Two keys sharing a display prefix: the prefix is refused, naming both; the id works.
    let prefix = &key[..16];
    let twin = o
        .app
        .store()
        .insert_key(&NewKey {
            id: KeyId::random(),
            user_id: user.id,
            name: "twin".into(),
            env: KeyEnv::Live,
            key_hash: vec![7; 32],
            pepper_version: 1,
            display_prefix: prefix.to_owned(),
            last4: "zzzz".into(),
            spend_limit: None,
            limit_period: Default::default(),
            expires_at: None,
            created_at: time::OffsetDateTime::now_utc(),
        })
        .await
        .unwrap();
    let (success, _, err) = admin(&o, &["key", "deactivate", "--prefix", prefix]).await;
    assert!(!success);
    assert!(err.contains("2 keys share the prefix"), "{err}");
    assert!(err.contains(&id) && err.contains(&twin.id.to_string()), "both are listed: {err}");
    assert_eq!(status_of(&o.app, &key).await, 200, "nothing was deactivated");
    let (success, _, err) = admin(&o, &["key", "deactivate", "--id", "not-an-id"]).await;
    assert!(!success && err.contains("is not a key id"), "{err}");
    let (success, _, _) = admin(&o, &["key", "deactivate", "--id", &id, "--prefix", prefix]).await;
    assert!(!success, "one of --id and --prefix");
}

#[tokio::test]
async fn a_suspended_account_is_refused_everywhere_and_comes_back() {
    let o = ops("").await;
    let (user, key) = o.app.user_with_key("suspect@example.com", "5").await;
    assert_eq!(status_of(&o.app, &key).await, 200);
    assert_eq!(ok(&o, &["user", "suspend", "--email", "suspect@example.com"]).await, user.id.to_string());
    until_status(&o.app, &key, 403).await;
    assert_eq!(o.app.store().user(user.id).await.unwrap().unwrap().status, UserStatus::Suspended);
    ok(&o, &["user", "suspend", "--email", "suspect@example.com"]).await;
    let events = ok(&o, &["audit", "--email", "suspect@example.com", "--type", "account_suspended"]).await;
    assert_eq!(events.lines().count(), 1, "suspending twice is one event: {events}");
    assert!(events.contains("critical"));
    ok(&o, &["user", "unsuspend", "--email", "suspect@example.com"]).await;
    until_status(&o.app, &key, 200).await;
    // The operator sees the account's recent requests and its security events.
    o.app.wait_for_usage(&user, 2).await;
    let usage = ok(&o, &["user", "usage", "--email", "suspect@example.com", "--limit", "5"]).await;
    assert!(usage.lines().count() >= 2 && usage.contains(layers_testkit::app::MOCK_MODEL), "{usage}");
    let warnings = ok(&o, &["audit", "--email", "suspect@example.com", "--severity", "warning", "--since", "1h"]).await;
    assert!(warnings.contains("account_suspended") && warnings.contains("account_unsuspended"), "{warnings}");
    assert!(!warnings.contains("\tinfo\t"), "only warnings and worse: {warnings}");
}

#[tokio::test]
async fn credits_adjust_is_a_signed_change_and_never_goes_below_zero() {
    let o = ops("").await;
    let user = o.app.create_user("money@example.com", Tier::Free).await;
    assert_eq!(
        ok(&o, &["credits", "grant", "--email", "money@example.com", "--credits", "5", "--reason", "welcome"]).await,
        "5.000000"
    );
    let removed =
        ok(&o, &["credits", "adjust", "--email", "money@example.com", "--credits", "-2", "--reason", "abuse"]).await;
    assert_eq!(removed, "3.000000", "-2 removes two credits");
    let added =
        ok(&o, &["credits", "adjust", "--email", "money@example.com", "--credits", "3", "--reason", "goodwill"]).await;
    assert_eq!(added, "6.000000", "3 adds three");
    let (success, _, err) =
        admin(&o, &["credits", "adjust", "--email", "money@example.com", "--credits", "-10", "--reason", "x"]).await;
    assert!(!success && err.contains("cannot cover"), "{err}");
    assert_eq!(o.app.store().balance(user.id).await.unwrap(), MicroCredits(6_000_000));
    // A retried command with the same idempotency key applies once.
    for _ in 0..2 {
        let out = ok(
            &o,
            &[
                "credits",
                "grant",
                "--email",
                "money@example.com",
                "--credits",
                "1",
                "--reason",
                "ticket 42",
                "--idempotency-key",
                "T-42",
            ],
        )
        .await;
        assert_eq!(out, "7.000000");
    }
    let (success, _, err) =
        admin(&o, &["credits", "adjust", "--email", "money@example.com", "--credits", "-1", "--reason", " "]).await;
    assert!(!success && err.contains("reason"), "{err}");
    let help = ok(&o, &["credits", "adjust", "--help"]).await;
    assert!(help.contains("`--credits -2` removes 2 credits") && help.contains("`--credits 2` adds 2"), "{help}");
}

#[tokio::test]
async fn sessions_end_for_one_account_or_everyone() {
    let o = ops("").await;
    let a = o.app.create_user("one@example.com", Tier::Free).await;
    let b = o.app.create_user("two@example.com", Tier::Free).await;
    for u in [&a, &b] {
        for _ in 0..2 {
            let session = layers_store::Session {
                id: uuid::Uuid::new_v4(),
                user_id: u.id,
                token_hash: uuid::Uuid::new_v4().as_bytes().to_vec(),
                created_at: time::OffsetDateTime::now_utc(),
                authenticated_at: time::OffsetDateTime::now_utc(),
                last_seen_at: time::OffsetDateTime::now_utc(),
                expires_at: time::OffsetDateTime::now_utc() + time::Duration::days(1),
                revoked_at: None,
                ip_address: None,
                user_agent: None,
            };
            o.app.store().create_session(&session).await.unwrap();
        }
    }
    assert_eq!(ok(&o, &["sessions", "revoke", "--email", "one@example.com"]).await, "2");
    assert_eq!(ok(&o, &["sessions", "revoke", "--email", "one@example.com"]).await, "0", "nothing more to end");
    assert_eq!(ok(&o, &["sessions", "revoke", "--all"]).await, "2", "the other account's two");
    assert_eq!(ok(&o, &["sessions", "revoke", "--all"]).await, "0");
    let (success, _, _) = admin(&o, &["sessions", "revoke"]).await;
    assert!(!success, "--email or --all is required");
    let system = ok(&o, &["audit", "--type", "all_sessions_revoked"]).await;
    assert_eq!(system.lines().count(), 2, "{system}");
}

#[tokio::test]
async fn after_a_pepper_rotation_old_keys_work_and_are_listed_until_reissued() {
    let o = ops("").await;
    let (_, old_key) = o.app.user_with_key("pepper@example.com", "5").await;
    // The operator rotates: a new pepper as version 2, the old one kept as version 1.
    let rotated = format!("pepper_version = 2\nold_peppers = {{ \"1\" = \"{}\" }}\n", layers_testkit::app::TEST_PEPPER);
    let config = std::fs::read_to_string(&o.config).unwrap().replace(
        &format!("pepper = \"{}\"", layers_testkit::app::TEST_PEPPER),
        &format!("pepper = \"a-brand-new-pepper-0123456789-abcdefghijklmnop\"\n{rotated}"),
    );
    std::fs::write(&o.config, config).unwrap();
    let listed = ok(&o, &["key", "old-pepper"]).await;
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.contains(&old_key[..16]));
    // A key issued after the rotation is on the new version: not listed.
    let new_key = ok(&o, &["key", "create", "--email", "pepper@example.com", "--env", "live"]).await;
    let listed = ok(&o, &["key", "old-pepper"]).await;
    assert_eq!(listed.lines().count(), 1);
    assert!(!listed.contains(&new_key[..16]));
    // A node running the rotated configuration serves both: the old key under version 1, the
    // new one under version 2.
    let mut opts = AppOptions::default().second_node_of(&o.app).with_mock(&o._mock);
    opts.env.push(("LAYERS_KEYS__PEPPER".into(), "a-brand-new-pepper-0123456789-abcdefghijklmnop".into()));
    opts.env.push(("LAYERS_KEYS__PEPPER_VERSION".into(), "2".into()));
    opts.env.push(("LAYERS_KEYS__OLD_PEPPERS__1".into(), layers_testkit::app::TEST_PEPPER.into()));
    let rotated_node = TestApp::spawn_with(opts).await.unwrap();
    assert_eq!(status_of(&rotated_node, &old_key).await, 200, "old keys keep working until re-issued");
    assert_eq!(status_of(&rotated_node, &new_key).await, 200);
    // Once the old pepper is removed, keys still on it stop working.
    let mut opts = AppOptions::default().second_node_of(&o.app).with_mock(&o._mock);
    opts.env.push(("LAYERS_KEYS__PEPPER".into(), "a-brand-new-pepper-0123456789-abcdefghijklmnop".into()));
    opts.env.push(("LAYERS_KEYS__PEPPER_VERSION".into(), "2".into()));
    let retired = TestApp::spawn_with(opts).await.unwrap();
    assert_eq!(status_of(&retired, &old_key).await, 401);
    assert_eq!(status_of(&retired, &new_key).await, 200);
}

#[tokio::test]
async fn an_operator_exports_and_deletes_an_account() {
    let o = ops("").await;
    let (user, key) = o.app.user_with_key("leaving@example.com", "5").await;
    assert_eq!(status_of(&o.app, &key).await, 200);
    let exported: serde_json::Value =
        serde_json::from_str(&ok(&o, &["user", "export", "--email", "leaving@example.com"]).await).unwrap();
    assert_eq!(exported["account"]["email"], "leaving@example.com");
    assert_eq!(exported["api_keys"].as_array().unwrap().len(), 1);
    assert!(!exported.to_string().contains(&key), "no secret in an export");
    let (success, _, err) = admin(&o, &["user", "delete", "--email", "leaving@example.com"]).await;
    assert!(!success && err.contains("--yes"), "{err}");
    assert_eq!(ok(&o, &["user", "delete", "--email", "leaving@example.com", "--yes"]).await, user.id.to_string());
    until_status(&o.app, &key, 401).await;
    let events = o.app.store().audit_events(user.id, 50).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert!(kinds.contains(&"data_exported") && kinds.contains(&"account_deleted"), "{kinds:?}");
    assert!(!o.app.store().transactions(user.id, 10).await.unwrap().is_empty(), "the ledger is kept");
    assert_ne!(o.app.store().user(user.id).await.unwrap().map(|u| u.email), Some("leaving@example.com".to_owned()));
}
