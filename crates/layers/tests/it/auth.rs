//! API key authentication (SPEC §3): the four exact errors, revocation within a second across
//! processes, and typos rejected before any database lookup.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use layers_domain::{KeyEnv, Tier};
use layers_store::{ConnectOptions, KeyState, UserStatus};
use layers_testkit::{AppOptions, TestApp};
use serde_json::Value;

use crate::support::*;

async fn message_for(app: &TestApp, auth: Option<&str>) -> (u16, String, String) {
    let mut req = app.http.post(format!("{}/v1/chat/completions", app.url)).json(&chat_body("sandbox/echo", "x"));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.unwrap();
    let should_retry = resp.headers().get("x-should-retry").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let (status, err) = error_of(resp).await;
    (status, err["message"].as_str().unwrap().to_owned(), should_retry)
}

/// Flips one character of the secret so only the checksum can tell.
fn typo(key: &str) -> String {
    let mut chars: Vec<char> = key.chars().collect();
    chars[20] = if chars[20] == 'a' { 'b' } else { 'a' };
    chars.into_iter().collect()
}

#[tokio::test]
async fn the_four_authentication_errors_say_exactly_what_went_wrong() {
    let app = TestApp::spawn().await;
    let (user, key) = app.user_with_key("auth@example.com", "1").await;
    assert_eq!(message_for(&app, None).await, (401, "Missing Authorization header".into(), "false".into()));
    assert_eq!(message_for(&app, Some("Bearer sk-not-ours")).await.1, "Invalid API key format");
    assert_eq!(message_for(&app, Some(&format!("Bearer {}", typo(&key)))).await.1, "Invalid API key format");
    // Well-formed, checksum valid, but never issued.
    let stranger = layers_domain::ApiKey::from_entropy(KeyEnv::Live, &[9; 24]);
    assert_eq!(message_for(&app, Some(&format!("Bearer {}", stranger.expose()))).await.1, "Invalid API key");
    let record = app.core.keys.list(user.id).await.unwrap().remove(0);
    app.core.keys.set_state(user.id, record.id, KeyState::Deactivated).await.unwrap();
    assert_eq!(message_for(&app, Some(&format!("Bearer {key}"))).await.1, "API key is deactivated");
    // Deleted keys are unknown, and a suspended account is forbidden, not unauthenticated.
    app.core.keys.set_state(user.id, record.id, KeyState::Deleted).await.unwrap();
    assert_eq!(message_for(&app, Some(&format!("Bearer {key}"))).await.1, "Invalid API key");
    let other = app.create_user("suspended@example.com", Tier::Free).await;
    let other_key = app.create_key(&other, KeyEnv::Live).await;
    app.store().set_user_status(other.id, UserStatus::Suspended).await.unwrap();
    let (status, msg, _) = message_for(&app, Some(&format!("Bearer {other_key}"))).await;
    assert_eq!((status, msg.as_str()), (403, "Account is suspended"));
    // A key already cached learns of the suspension through the feed, within a second.
    let user3 = app.create_user("later@example.com", Tier::Free).await;
    let key3 = app.create_key(&user3, KeyEnv::Live).await;
    assert_eq!(message_for(&app, Some(&format!("Bearer {key3}"))).await.0, 402, "cached, and no credits yet");
    app.store().set_user_status(user3.id, UserStatus::Suspended).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let (status, msg, _) = message_for(&app, Some(&format!("Bearer {key3}"))).await;
        if status == 403 {
            assert_eq!(msg, "Account is suspended");
            break;
        }
        assert!(Instant::now() < deadline, "suspension not seen within 1 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn keys_work_with_x_api_key_and_any_bearer_case() {
    let app = TestApp::spawn().await;
    let (_, key) = app.user_with_key("hdr@example.com", "1").await;
    let body = chat_body("sandbox/echo", "x");
    let url = format!("{}/v1/chat/completions", app.url);
    let r = app.http.post(&url).header("x-api-key", &key).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = app.http.post(&url).header("authorization", format!("bearer {key}")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

async fn revoked_in_another_process_within_a_second(opts: AppOptions) {
    let Some(app) = TestApp::spawn_with(opts).await else { return };
    let (user, key) = app.user_with_key("revoke@example.com", "1").await;
    // Warm the cache.
    for _ in 0..3 {
        assert_eq!(app.chat(&key, &chat_body("sandbox/echo", "x")).send().await.unwrap().status(), 200);
    }
    let took = deactivate_elsewhere_and_wait(&app, &user, &key).await;
    println!("revocation took effect after {took:?}");
}

/// Deactivates the user's key as another process would (an operator's `layers admin key
/// deactivate`), then waits until `app` refuses it; fails past one second.
async fn deactivate_elsewhere_and_wait(app: &TestApp, user: &layers_store::User, key: &str) -> Duration {
    let other = layers_store::connect(&ConnectOptions {
        url: app.db.url.clone(),
        max_connections: 1,
        app_role: app.db.is_postgres().then(|| "layers_app".to_owned()),
    })
    .await
    .unwrap();
    let record = other.keys_of_user(user.id).await.unwrap().remove(0);
    let revoked_at = Instant::now();
    other.set_key_state(user.id, record.id, KeyState::Deactivated).await.unwrap();
    loop {
        let resp = app.chat(key, &chat_body("sandbox/echo", "x")).send().await.unwrap();
        if resp.status() == 401 {
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["error"]["message"], "API key is deactivated");
            break;
        }
        assert!(revoked_at.elapsed() < Duration::from_secs(1), "a revoked key was still served after 1 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = revoked_at.elapsed();
    other.close().await;
    took
}

#[tokio::test]
async fn a_key_deactivated_elsewhere_is_rejected_within_a_second_on_sqlite() {
    revoked_in_another_process_within_a_second(AppOptions::default()).await;
}

#[tokio::test]
async fn a_key_deactivated_elsewhere_is_rejected_within_a_second_on_postgres() {
    revoked_in_another_process_within_a_second(AppOptions::default().postgres()).await;
}

#[tokio::test]
async fn a_wrong_checksum_is_rejected_without_touching_the_database() {
    let app = TestApp::spawn().await;
    let (_, key) = app.user_with_key("typo@example.com", "1").await;
    let stats = app.core.auth.stats();
    assert_eq!(app.chat(&key, &chat_body("sandbox/echo", "x")).send().await.unwrap().status(), 200);
    let lookups = stats.db_lookups.load(Ordering::Relaxed);
    // A recently seen key is answered from memory.
    assert_eq!(app.chat(&key, &chat_body("sandbox/echo", "x")).send().await.unwrap().status(), 200);
    assert_eq!(stats.db_lookups.load(Ordering::Relaxed), lookups, "a cached key went to the database");

    // With the database gone, a typo is still answered at once — it never needed the database —
    // while a well-formed unknown key cannot be checked.
    app.store().close().await;
    let started = Instant::now();
    let (status, msg, _) = message_for(&app, Some(&format!("Bearer {}", typo(&key)))).await;
    assert_eq!((status, msg.as_str()), (401, "Invalid API key format"));
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(stats.db_lookups.load(Ordering::Relaxed), lookups);
    assert!(stats.format_rejections.load(Ordering::Relaxed) >= 1);
    let stranger = layers_domain::ApiKey::from_entropy(KeyEnv::Live, &[7; 24]);
    let (status, _, _) = message_for(&app, Some(&format!("Bearer {}", stranger.expose()))).await;
    assert_eq!(status, 503, "an unknown key needs the database");
}

/// With the change feed failing, cached keys are re-checked in the database once older than
/// the revocation bound, instead of being served for the cache's whole TTL.
async fn revoked_within_a_second_with_the_feed_broken(opts: AppOptions) {
    let Some(app) = TestApp::spawn_with(opts).await else { return };
    let (user, key) = app.user_with_key("feedcut@example.com", "1").await;
    assert_eq!(app.chat(&key, &chat_body("sandbox/echo", "x")).send().await.unwrap().status(), 200);
    app.db.break_change_feed().await;
    // Let every node notice nothing (the feed now fails on each poll).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lookups = app.core.auth.stats().db_lookups.load(Ordering::Relaxed);
    let took = deactivate_elsewhere_and_wait(&app, &user, &key).await;
    println!("refused {took:?} after the revocation, feed cut");
    assert!(app.core.auth.stats().db_lookups.load(Ordering::Relaxed) > lookups, "refused without a re-check?");
}

#[tokio::test]
async fn with_the_feed_broken_a_revoked_key_is_refused_within_a_second_on_sqlite() {
    revoked_within_a_second_with_the_feed_broken(AppOptions::default()).await;
}

#[tokio::test]
async fn with_the_feed_broken_a_revoked_key_is_refused_within_a_second_on_postgres() {
    revoked_within_a_second_with_the_feed_broken(AppOptions::default().postgres()).await;
}
