//! The anomaly rules (issue 16, SPEC §8.4), each on two nodes of one PostgreSQL database: it
//! fires at its threshold and not one below, once per period whichever node sees it, and goes
//! to the audit log, the metric and the operator's signed webhook.

use std::time::Duration;

use layers_domain::webhook_signature as signature;
use layers_domain::{KeyEnv, Tier};
use layers_store::User;
use layers_testkit::{AppOptions, MailCatcher, MockOpenAi, TestApp, WebhookCatcher};

use crate::billing::{exact, EXACT_MODEL};

const OPERATOR_SECRET: &str = "operator-webhook-secret-0123456789";

struct Pair {
    a: TestApp,
    b: TestApp,
    hook: WebhookCatcher,
    mail: MailCatcher,
    _mock: MockOpenAi,
}

async fn pair(rules: &str) -> Option<Pair> {
    let mock = MockOpenAi::start().await;
    let hook = WebhookCatcher::start().await;
    let mail = MailCatcher::start().await;
    let config = format!(
        "[anomaly]\n{rules}\noperator_webhook_url = \"{}\"\noperator_webhook_secret = \"{OPERATOR_SECRET}\"\n\
         [alerts]\nallow_private_webhooks = true\n[email]\nsmtp_url = \"{}\"\nfrom = \"Layers <no-reply@layers.test>\"\n",
        hook.url(),
        mail.url
    );
    let a = TestApp::spawn_with(AppOptions::default().postgres().with_mock(&mock).config(EXACT_MODEL).config(&config))
        .await?;
    let b = TestApp::spawn_with(
        AppOptions::default().second_node_of(&a).with_mock(&mock).config(EXACT_MODEL).config(&config),
    )
    .await
    .unwrap();
    Some(Pair { a, b, hook, mail, _mock: mock })
}

async fn events(app: &TestApp, user: &User, kind: &str) -> usize {
    app.store().audit_events(user.id, 500).await.unwrap().iter().filter(|e| e.event_type == kind).count()
}

fn metric(app: &TestApp, rule: &str) -> u64 {
    use std::sync::atomic::Ordering;
    let s = app.core.alerts.anomaly_stats();
    match rule {
        "rapid_key_creation" => s.rapid_key_creation.load(Ordering::Relaxed),
        "usage_spike" => s.usage_spike.load(Ordering::Relaxed),
        _ => s.expensive_models.load(Ordering::Relaxed),
    }
}

/// The operator's webhook got exactly `n` POSTs for `rule`, each signed with its secret.
async fn operator_told(p: &Pair, rule: &str, n: usize) {
    if n > 0 {
        p.hook.wait_for(n).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got: Vec<_> = p.hook.deliveries().into_iter().filter(|d| d.json()["data"]["rule"] == rule).collect();
    assert_eq!(got.len(), n, "{rule}: operator webhook POSTs");
    for d in got {
        let header = d.header(signature::HEADER).unwrap();
        // Signed at the node's clock (the tests move it forward).
        let now = p.a.core.clock.now().unix_timestamp();
        assert!(
            signature::verify(OPERATOR_SECRET.as_bytes(), header, &d.body, now),
            "{rule}: signed with the operator's secret"
        );
        assert!(!signature::verify(b"another-secret-entirely-000000", header, &d.body, now));
    }
}

async fn create_key(app: &TestApp, user: &User) {
    app.create_key(user, KeyEnv::Live).await;
}

#[tokio::test]
async fn rapid_key_creation_flags_at_five_an_hour_once_across_nodes() {
    let Some(p) = pair("").await else { return };
    let user = p.a.create_user("keys@example.com", Tier::Pro).await;
    for i in 0..4 {
        create_key(if i % 2 == 0 { &p.a } else { &p.b }, &user).await;
    }
    assert_eq!(events(&p.a, &user, "anomaly_rapid_key_creation").await, 0, "four keys: not one below");
    create_key(&p.b, &user).await;
    assert_eq!(events(&p.a, &user, "anomaly_rapid_key_creation").await, 1, "the fifth flags");
    create_key(&p.a, &user).await;
    create_key(&p.b, &user).await;
    assert_eq!(events(&p.a, &user, "anomaly_rapid_key_creation").await, 1, "once per hour, on either node");
    assert_eq!(metric(&p.a, "rapid_key_creation") + metric(&p.b, "rapid_key_creation"), 1);
    operator_told(&p, "rapid_key_creation", 1).await;
    let other = p.a.create_user("calm@example.com", Tier::Pro).await;
    create_key(&p.a, &other).await;
    assert_eq!(events(&p.a, &other, "anomaly_rapid_key_creation").await, 0);
}

/// Waits for the usage rows, then lets each node's anomaly check run once more.
async fn settle_and_check(p: &Pair, user: &User, rows: usize) {
    p.a.wait_for_usage(user, rows).await;
    // Each node examines an account at most every 30 s of its clock.
    for app in [&p.a, &p.b] {
        app.core.clock.advance(Duration::from_secs(31));
    }
    tokio::time::sleep(Duration::from_millis(2_500)).await;
}

#[tokio::test]
async fn a_usage_spike_alerts_once_and_holds_the_account_to_a_lower_rate_for_a_while() {
    let Some(p) =
        pair("spike_factor = 10\nspike_min_credits = 0\nspike_requests_per_minute = 2\nspike_hold_minutes = 30").await
    else {
        return;
    };
    let user = p.a.create_user("spike@example.com", Tier::Pro).await;
    p.a.grant(&user, "10").await;
    let key = p.a.create_key(&user, KeyEnv::Live).await;
    // The normal: 17 requests (0.85 credits) in the week before. 17 × 10 / 168 hours: a spike
    // is 1.0119 requests' worth in an hour, so one request is not, two are.
    for _ in 0..17 {
        assert_eq!(p.a.chat(&key, &exact()).send().await.unwrap().status(), 200);
    }
    p.a.wait_for_usage(&user, 17).await;
    for app in [&p.a, &p.b] {
        app.core.clock.advance(Duration::from_secs(2 * 3600));
    }
    assert_eq!(p.b.chat(&key, &exact()).send().await.unwrap().status(), 200);
    settle_and_check(&p, &user, 18).await;
    assert_eq!(events(&p.a, &user, "anomaly_usage_spike").await, 0, "one request in the hour: not a spike");
    let r = p.a.chat(&key, &exact()).send().await.unwrap();
    assert_eq!(r.headers()["x-ratelimit-limit-requests"], "300", "Pro's limit before the spike");
    assert_eq!(p.b.chat(&key, &exact()).send().await.unwrap().status(), 200);
    settle_and_check(&p, &user, 20).await;
    assert_eq!(events(&p.a, &user, "anomaly_usage_spike").await, 1, "the spike is flagged once");
    assert_eq!(metric(&p.a, "usage_spike") + metric(&p.b, "usage_spike"), 1);
    operator_told(&p, "usage_spike", 1).await;
    // The hold: every node limits the key to 2 requests a minute now.
    for app in [&p.a, &p.b] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            let r = app.get("/api/v1/balance").bearer_auth(&key).send().await.unwrap();
            if r.headers().get("x-ratelimit-limit-requests").is_some_and(|v| v == "2") {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the hold did not reach a node");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // More usage in the same hour: no second alert.
    settle_and_check(&p, &user, 20).await;
    assert_eq!(events(&p.a, &user, "anomaly_usage_spike").await, 1);
    // Nothing is released before its time, whatever a node asks.
    assert_eq!(p.b.core.alerts.release_holds().await.unwrap(), 0, "the hold lasts 30 minutes");
    // After the hold (the database's clock decides), the account's own limit is back.
    p.a.db.age_account(user.id, 1).await;
    assert_eq!(p.b.core.alerts.release_holds().await.unwrap(), 1);
    assert_eq!(p.a.core.alerts.release_holds().await.unwrap(), 0, "released once");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let r = p.a.get("/api/v1/balance").bearer_auth(&key).send().await.unwrap();
        if r.headers().get("x-ratelimit-limit-requests").is_some_and(|v| v == "300") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the hold was not lifted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn spend_on_high_cost_models_alerts_the_user_and_the_operator_once_a_day() {
    let Some(p) = pair("expensive_models = [\"mock/ex*\"]\nexpensive_credits_per_day = 1").await else { return };
    let user = p.a.create_user("opus@example.com", Tier::Pro).await;
    p.a.grant(&user, "5").await;
    let key = p.a.create_key(&user, KeyEnv::Live).await;
    // 19 requests at 0.05 credits: 0.95, one below the threshold.
    for i in 0..19 {
        let node = if i % 2 == 0 { &p.a } else { &p.b };
        assert_eq!(node.chat(&key, &exact()).send().await.unwrap().status(), 200);
    }
    settle_and_check(&p, &user, 19).await;
    assert_eq!(events(&p.a, &user, "anomaly_expensive_models").await, 0, "0.95 credits: not yet");
    assert_eq!(p.b.chat(&key, &exact()).send().await.unwrap().status(), 200);
    settle_and_check(&p, &user, 20).await;
    assert_eq!(events(&p.a, &user, "anomaly_expensive_models").await, 1, "1.00 credit: alerted");
    assert_eq!(p.a.chat(&key, &exact()).send().await.unwrap().status(), 200);
    settle_and_check(&p, &user, 21).await;
    assert_eq!(events(&p.a, &user, "anomaly_expensive_models").await, 1, "once a day, on either node");
    let mail = p.mail.wait_for("opus@example.com", 1).await;
    assert!(mail.subject().contains("high-cost models"), "{}", mail.subject());
    operator_told(&p, "expensive_models", 1).await;
}
