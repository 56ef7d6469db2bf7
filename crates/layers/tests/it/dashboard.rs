//! The dashboard over HTTP, as a browser without JavaScript meets it (issue 14): keys created,
//! limited, rotated, locked down; usage with its holds and charges, filters, CSV and paging;
//! alerts by e-mail and signed webhook; expiry reminders. Time moves by the app's clock.

use std::collections::HashSet;
use std::time::Duration;

use layers_domain::webhook_signature as signature;
use layers_domain::MicroCredits;
use layers_store::User;
use layers_testkit::app::MOCK_MODEL;
use layers_testkit::{AppOptions, Browser, MailCatcher, MockOpenAi, TestApp, WebhookCatcher};
use serde_json::json;

use crate::accounts::{log_in, signed_up, PASSWORD};

struct Dash {
    app: TestApp,
    mail: MailCatcher,
    _mock: MockOpenAi,
}

async fn dashboard_app() -> Dash {
    let mail = MailCatcher::start().await;
    let mock = MockOpenAi::start().await;
    let opts = AppOptions::default()
        .with_mock(&mock)
        .config(&format!("[email]\nsmtp_url = \"{}\"\nfrom = \"Layers <no-reply@layers.test>\"\n", mail.url))
        .config("[alerts]\nallow_private_webhooks = true");
    Dash { app: TestApp::spawn_with(opts).await.unwrap(), mail, _mock: mock }
}

/// A confirmed, logged-in person with `credits`.
async fn person(d: &Dash, email: &str, credits: &str) -> (Browser, User) {
    let mut b = signed_up(&d.app, &d.mail, email).await;
    let done = log_in(&mut b, email, PASSWORD, "").await;
    assert_eq!(done.location(), Some("/dashboard"));
    let user = d.app.core.accounts.user_by_email(email).await.unwrap();
    // Pro: 300 requests a minute, so spend limits, not rate limits, answer first here.
    d.app.core.accounts.set_tier(user.id, layers_domain::Tier::Pro).await.unwrap();
    if credits != "0" {
        d.app.grant(&user, credits).await;
    }
    (b, user)
}

/// Creates a key through the page; returns (full key, key id).
async fn create_key(b: &mut Browser, fields: &[(&str, &str)]) -> (String, String) {
    let page = b.get("/dashboard/keys").await;
    let mut form = vec![("csrf", page.csrf())];
    form.extend(fields.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let shown = b.post("/dashboard/keys", &form).await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert!(shown.body.contains("only time it is shown"));
    let key = shown.input_value("new_key").expect("the full key, once");
    (key, key_id_in(&shown.body))
}

fn key_id_in(body: &str) -> String {
    let at = body.find("/dashboard/keys/").expect("a link to the key") + "/dashboard/keys/".len();
    body[at..at + 36].to_owned()
}

async fn call(app: &TestApp, key: &str, model: &str) -> reqwest::Response {
    let body = json!({"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "Hello"}]});
    app.chat(key, &body).send().await.unwrap()
}

/// The `data-request-id`s of a page's request rows.
fn request_ids(body: &str) -> Vec<String> {
    body.match_indices("data-request-id=\"")
        .map(|(at, m)| {
            let start = at + m.len();
            let end = start + body[start..].find('"').unwrap();
            body[start..end].to_owned()
        })
        .collect()
}

fn next_link(body: &str) -> Option<String> {
    let at = body.find("rel=\"next\" href=\"")? + "rel=\"next\" href=\"".len();
    let end = at + body[at..].find('"')?;
    Some(body[at..end].replace("&amp;", "&"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_shows_in_usage_with_its_hold_charge_and_release_and_filters_and_csv_agree() {
    let d = dashboard_app().await;
    let (mut b, user) = person(&d, "usage@example.com", "20").await;
    let (live, live_id) = create_key(&mut b, &[("name", "=HYPERLINK(\"http://evil\")"), ("env", "live")]).await;
    let (test, test_id) = create_key(&mut b, &[("name", "sandbox key"), ("env", "test")]).await;
    for _ in 0..3 {
        assert_eq!(call(&d.app, &live, MOCK_MODEL).await.status(), 200);
    }
    assert_eq!(call(&d.app, &test, "sandbox/echo").await.status(), 200);
    let rows = d.app.wait_for_usage(&user, 4).await;
    let live_rows: Vec<_> = rows.iter().filter(|r| r.key_id.map(|k| k.to_string()) == Some(live_id.clone())).collect();
    assert_eq!(live_rows.len(), 3);

    // Every request is on the page, each with its detail: the hold, the charge, the release.
    let usage = b.get("/dashboard/usage").await;
    assert_eq!(usage.status, 200);
    let shown: HashSet<String> = request_ids(&usage.body).into_iter().collect();
    assert_eq!(shown, rows.iter().map(|r| r.request_id.clone()).collect::<HashSet<_>>());
    let row = live_rows[0];
    assert!(row.held.is_positive() && row.charged.is_positive() && row.held >= row.charged, "{row:?}");
    let detail = b.get(&format!("/dashboard/usage/{}", row.id)).await;
    assert_eq!(detail.status, 200);
    assert!(detail.body.contains(&row.request_id));
    assert!(detail.body.contains(&format!("{} credits", row.held.credits_display())), "the hold");
    assert!(detail.body.contains(&format!("{} credits", row.charged.credits_display())), "the charge");
    let released = MicroCredits(row.held.0 - row.charged.0);
    assert!(detail.body.contains(&format!("{} credits", released.credits_display())), "the release");

    // A filter changes the table, the totals and the chart.
    let only_test = b.get(&format!("/dashboard/usage?key={test_id}")).await;
    assert_eq!(request_ids(&only_test.body).len(), 1);
    assert!(only_test.body.contains("data-test=\"total-requests\">1<"));
    let bars = |body: &str| body.matches("credits, ").count();
    assert!(usage.body.contains("3 requests") || usage.body.contains("4 requests"), "the chart's day has its requests");
    assert_ne!(bars(&usage.body), 0);
    let by_model = b.get(&format!("/dashboard/usage?model={}", MOCK_MODEL.replace('/', "%2F"))).await;
    assert_eq!(request_ids(&by_model.body).len(), 3);
    assert!(by_model.body.contains("data-test=\"total-requests\">3<"));
    let none = b.get("/dashboard/usage?status=failed").await;
    assert!(request_ids(&none.body).is_empty());
    for bad in [
        "/dashboard/usage?from=yesterday",
        "/dashboard/usage?to=9999-12-31",
        "/dashboard/usage?from=-5000-01-01",
        "/dashboard/usage?from=2026-12-02&to=2026-12-01",
        "/dashboard/usage?key=not-a-key",
        "/dashboard/usage.csv?to=9999-12-31",
    ] {
        assert_eq!(b.get(bad).await.status, 400, "{bad}: a bad filter is a 400 with a message, never a 500");
    }
    let odd_cursor = b.get("/dashboard/usage?before=-99999999999999999999999.x").await;
    assert_eq!(odd_cursor.status, 200, "a cursor that does not parse is the first page");
    assert_eq!(request_ids(&odd_cursor.body).len(), 4);

    // The CSV holds exactly the filtered rows, and the key's name cannot run as a formula.
    let csv = b.get(&format!("/dashboard/usage.csv?key={live_id}")).await;
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-disposition").unwrap().contains("attachment"));
    let lines: Vec<&str> = csv.body.trim_end().split("\r\n").collect();
    assert!(lines[0].starts_with("time_utc,request_id,key_name,"));
    assert_eq!(lines.len(), 4, "a header and the three live rows");
    let ids: HashSet<String> = lines[1..].iter().map(|l| l.split(',').nth(1).unwrap().to_owned()).collect();
    assert_eq!(ids, live_rows.iter().map(|r| r.request_id.clone()).collect::<HashSet<_>>());
    for line in &lines[1..] {
        assert!(line.contains(",\"'=HYPERLINK(\"\"http://evil\"\")\","), "{line}");
    }
    let all_csv = b.get("/dashboard/usage.csv").await;
    assert_eq!(all_csv.body.trim_end().split("\r\n").count(), 5);

    // The overview: the balance is the ledger's sum, today's spend is the charges.
    let overview = b.get("/dashboard").await;
    let spent: i64 = rows.iter().map(|r| r.charged.0).sum();
    assert!(overview
        .body
        .contains(&format!("data-test=\"spend-today\">{} credits<", MicroCredits(spent).credits_display())));
    let balance = d.app.store().balance(user.id).await.unwrap();
    assert!(overview.body.contains(&format!("data-test=\"balance\">{} credits exactly<", balance.credits_display())));
    assert!(overview.body.contains("equals the sum of your ledger"));
    // The billing statement ends at the balance.
    let billing = b.get("/dashboard/billing").await;
    assert!(billing.body.contains(&format!("data-test=\"balance-after\">{}<", balance.credits_display())));
    assert!(billing.body.contains("Credit grant"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_limit_answers_402_until_the_next_utc_day() {
    let d = dashboard_app().await;
    let (mut b, user) = person(&d, "daily@example.com", "20").await;
    let (key, id) = create_key(&mut b, &[("name", "capped"), ("env", "live")]).await;
    let page = b.get(&format!("/dashboard/keys/{id}")).await;
    let saved = b
        .post(
            &format!("/dashboard/keys/{id}/limits"),
            &[
                ("csrf", &page.csrf()),
                ("spend_limit", "0.02"),
                ("period", "day"),
                ("per_request", ""),
                ("per_hour", ""),
            ],
        )
        .await;
    assert_eq!(saved.location(), Some(format!("/dashboard/keys/{id}?notice=limits").as_str()));
    let shown = b.get(&format!("/dashboard/keys/{id}")).await;
    assert!(shown.body.contains("data-test=\"next-reset\""), "the next reset is shown");
    assert!(shown.body.contains("00:00:00 UTC"));
    let mut passed = 0;
    let refusal = loop {
        let resp = call(&d.app, &key, MOCK_MODEL).await;
        if resp.status() != 200 {
            break resp;
        }
        passed += 1;
        assert!(passed < 100, "the limit never applied");
    };
    assert!(passed >= 1, "calls under the limit pass");
    assert_eq!(refusal.status(), 402);
    let body: serde_json::Value = refusal.json().await.unwrap();
    assert_eq!(body["error"]["code"], "key_spend_limit_reached", "{body}");
    d.app.wait_for_usage(&user, passed).await;
    let spent: i64 = d.app.store().recent_usage(user.id, 1000, None).await.unwrap().iter().map(|r| r.charged.0).sum();
    assert!(spent <= 20_000, "never past the limit: {spent} µcr");

    // The next UTC day, the limit starts again.
    let now = d.app.core.clock.now();
    let midnight = (now.date() + time::Duration::days(1)).midnight().assume_utc();
    d.app.core.clock.advance(Duration::from_secs((midnight - now).whole_seconds() as u64 + 60));
    assert_eq!(call(&d.app, &key, MOCK_MODEL).await.status(), 200, "a new day, a new limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_the_old_secret_for_the_overlap_then_only_the_new_one_works() {
    let d = dashboard_app().await;
    let (mut b, user) = person(&d, "rotate@example.com", "5").await;
    let (old, id) = create_key(&mut b, &[("name", "rotating"), ("env", "test")]).await;
    assert_eq!(call(&d.app, &old, "sandbox/echo").await.status(), 200);
    let page = b.get(&format!("/dashboard/keys/{id}")).await;
    let rotated =
        b.post(&format!("/dashboard/keys/{id}/rotate"), &[("csrf", &page.csrf()), ("overlap_secs", "3600")]).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let new = rotated.input_value("new_key").unwrap();
    assert_ne!(new, old);
    assert_eq!(key_id_in(&rotated.body), id, "the same key id");
    assert!(rotated.body.contains("The old secret keeps working until"));
    assert_eq!(call(&d.app, &old, "sandbox/echo").await.status(), 200, "the old secret in the overlap");
    assert_eq!(call(&d.app, &new, "sandbox/echo").await.status(), 200, "the new secret");
    d.app.core.clock.advance(Duration::from_secs(3_601));
    assert_eq!(call(&d.app, &old, "sandbox/echo").await.status(), 401, "the overlap is over");
    assert_eq!(call(&d.app, &new, "sandbox/echo").await.status(), 200);

    // A leaked old secret can be refused before its overlap ends, and a lock-down ends the
    // overlap for good: a key reactivated afterwards answers to its current secret only.
    let page = b.get(&format!("/dashboard/keys/{id}")).await;
    let again =
        b.post(&format!("/dashboard/keys/{id}/rotate"), &[("csrf", &page.csrf()), ("overlap_secs", "86400")]).await;
    let third = again.input_value("new_key").unwrap();
    assert_eq!(call(&d.app, &new, "sandbox/echo").await.status(), 200, "in its overlap");
    let detail = b.get(&format!("/dashboard/keys/{id}")).await;
    assert!(detail.body.contains("Refuse the old secret now"));
    let retired = b.post(&format!("/dashboard/keys/{id}/retire-old-secret"), &[("csrf", &detail.csrf())]).await;
    assert_eq!(retired.location(), Some(format!("/dashboard/keys/{id}?notice=retired").as_str()));
    assert_eq!(call(&d.app, &new, "sandbox/echo").await.status(), 401, "refused at once");
    assert_eq!(call(&d.app, &third, "sandbox/echo").await.status(), 200);
    let page = b.get(&format!("/dashboard/keys/{id}")).await;
    let fourth =
        b.post(&format!("/dashboard/keys/{id}/rotate"), &[("csrf", &page.csrf()), ("overlap_secs", "86400")]).await;
    let fourth = fourth.input_value("new_key").unwrap();
    let page = b.get(&format!("/dashboard/keys/{id}")).await;
    b.post(&format!("/dashboard/keys/{id}/state"), &[("csrf", &page.csrf()), ("action", "deactivate")]).await;
    b.post(&format!("/dashboard/keys/{id}/state"), &[("csrf", &page.csrf()), ("action", "reactivate")]).await;
    assert_eq!(call(&d.app, &third, "sandbox/echo").await.status(), 401, "deactivation ended the overlap");
    assert_eq!(call(&d.app, &fourth, "sandbox/echo").await.status(), 200);
    // Its history stays with it.
    let rows = d.app.wait_for_usage(&user, 3).await;
    assert!(rows.iter().all(|r| r.key_id.map(|k| k.to_string()) == Some(id.clone())));
    let events = b.get("/dashboard/security?group=keys").await;
    assert!(events.body.contains("data-event=\"key_rotated\""));
    // Changes made at a browser carry its address in the audit log.
    let audited = d.app.store().audit_events(user.id, 100).await.unwrap();
    for kind in ["key_created", "key_rotated", "key_old_secret_retired", "key_deactivated", "key_reactivated"] {
        let e = audited.iter().find(|e| e.event_type == kind).unwrap_or_else(|| panic!("no {kind}"));
        assert!(e.ip_address.is_some(), "{kind} without the address");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_incident_panel_turns_every_key_off_and_ends_every_session() {
    let d = dashboard_app().await;
    let (mut b, user) = person(&d, "incident@example.com", "5").await;
    let mut other_browser = Browser::new(&d.app.url);
    assert_eq!(log_in(&mut other_browser, "incident@example.com", PASSWORD, "").await.location(), Some("/dashboard"));
    let (k1, _) = create_key(&mut b, &[("name", "one"), ("env", "test")]).await;
    let (k2, _) = create_key(&mut b, &[("name", "two"), ("env", "live")]).await;
    assert_eq!(call(&d.app, &k1, "sandbox/echo").await.status(), 200);
    assert_eq!(call(&d.app, &k2, MOCK_MODEL).await.status(), 200);

    let panel = b.get("/dashboard/security").await;
    let wrong = b
        .post("/dashboard/security/lock-down", &[("csrf", &panel.csrf()), ("password", "not it"), ("confirm", "yes")])
        .await;
    assert_eq!(wrong.status, 422);
    assert_eq!(call(&d.app, &k1, "sandbox/echo").await.status(), 200, "a wrong password changes nothing");
    let done = b
        .post("/dashboard/security/lock-down", &[("csrf", &panel.csrf()), ("password", PASSWORD), ("confirm", "yes")])
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("2 keys were deactivated and 2 sessions were ended"), "{}", done.body);
    let started = std::time::Instant::now();
    for key in [&k1, &k2] {
        let model = if key == &k1 { "sandbox/echo" } else { MOCK_MODEL };
        assert_eq!(call(&d.app, key, model).await.status(), 401);
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(other_browser.get("/dashboard").await.status, 303, "the other session is over");
    assert_eq!(b.get("/dashboard").await.status, 303, "and this one");
    let events = d.app.store().audit_events(user.id, 50).await.unwrap();
    assert!(events.iter().any(|e| e.event_type == "incident_lockdown"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_key_is_reminded_7_days_and_1_day_before_then_refused() {
    let d = dashboard_app().await;
    let email = "expiry@example.com";
    let (mut b, _user) = person(&d, email, "5").await;
    let (key, _) = create_key(&mut b, &[("name", "short lived"), ("env", "test"), ("expires", "30")]).await;
    let before = d.mail.to(email).len();
    let alerts = &d.app.core.alerts;
    assert_eq!(alerts.remind_expiring().await.unwrap(), 0, "30 days out: nothing yet");
    d.app.core.clock.advance(Duration::from_secs(23 * 86_400 + 3_600));
    assert_eq!(alerts.remind_expiring().await.unwrap(), 1);
    assert_eq!(alerts.remind_expiring().await.unwrap(), 0, "once");
    let seven = d.mail.wait_for(email, before + 1).await;
    assert!(seven.subject().contains("expires in 7 days"), "{}", seven.subject());
    d.app.core.clock.advance(Duration::from_secs(6 * 86_400));
    assert_eq!(alerts.remind_expiring().await.unwrap(), 1);
    let one = d.mail.wait_for(email, before + 2).await;
    assert!(one.subject().contains("expires within a day"), "{}", one.subject());
    assert_eq!(call(&d.app, &key, "sandbox/echo").await.status(), 200, "still valid");
    d.app.core.clock.advance(Duration::from_secs(86_400));
    let refused = call(&d.app, &key, "sandbox/echo").await;
    assert_eq!(refused.status(), 401);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["message"], "API key has expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_once_per_threshold_and_period_by_mail_and_a_signed_webhook() {
    let d = dashboard_app().await;
    let hook = WebhookCatcher::start().await;
    let email = "alerts@example.com";
    let (mut b, user) = person(&d, email, "1").await;
    let (key, id) =
        create_key(&mut b, &[("name", "watched"), ("env", "live"), ("spend_limit", "0.01"), ("period", "day")]).await;
    let page = b.get("/dashboard/keys").await;
    let saved = b
        .post(
            "/dashboard/keys/alerts",
            &[
                ("csrf", &page.csrf()),
                ("low_balance", "0.995"),
                ("key_thresholds", "50, 100"),
                ("webhook_url", &hook.url()),
            ],
        )
        .await;
    assert_eq!(saved.location(), Some("/dashboard/keys?notice=alerts#alerts"), "{}", saved.body);
    let keys_page = b.get("/dashboard/keys").await;
    let at = keys_page.body.find("id=\"webhook-secret\"").expect("the signing secret is shown");
    let secret = {
        let v = keys_page.body[at..].find("value=\"").unwrap() + at + 7;
        let end = v + keys_page.body[v..].find('"').unwrap();
        keys_page.body[v..end].to_owned()
    };
    assert!(secret.starts_with("whsec_"));

    // Spend until the key's limit: 50 % then 100 % of 0.01 credits.
    let mut n = 0;
    while call(&d.app, &key, MOCK_MODEL).await.status() == 200 {
        n += 1;
        assert!(n < 100);
    }
    d.app.wait_for_usage(&user, n).await;
    let alerts = &d.app.core.alerts;
    alerts.check(user.id).await.unwrap();
    alerts.check(user.id).await.unwrap();
    // Webhooks are delivered off the alert job: wait for both kinds.
    let kinds_of = |all: &[layers_testkit::webhook::Delivery]| -> HashSet<String> {
        all.iter().map(|d| d.json()["type"].as_str().unwrap().to_owned()).collect()
    };
    let mut deliveries = hook.wait_for(2).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    // Every alert mailed (all but the sign-up confirmation) has reached the webhook as well.
    while kinds_of(&deliveries).len() < 2 || deliveries.len() + 1 != d.mail.to(email).len() {
        assert!(std::time::Instant::now() < deadline, "{:?}", kinds_of(&deliveries));
        tokio::time::sleep(Duration::from_millis(20)).await;
        deliveries = hook.deliveries();
    }
    for delivery in &deliveries {
        let header = delivery.header("layers-signature").expect("signed");
        let now = time::OffsetDateTime::now_utc().unix_timestamp().max(delivery.json()["created"].as_i64().unwrap());
        assert!(signature::verify(secret.as_bytes(), header, &delivery.body, now), "the receiver verifies it");
        assert!(!signature::verify(b"whsec_other", header, &delivery.body, now));
    }
    // The alert job may have seen a lower threshold before a higher one; either way each
    // threshold of the period is sent at most once, and the highest one reached is sent.
    let spent: i64 = d.app.store().recent_usage(user.id, 100, None).await.unwrap().iter().map(|r| r.charged.0).sum();
    let top = layers_domain::dashboard::alerts::reached(&[50, 100], MicroCredits(spent), MicroCredits(10_000));
    let top = i64::from(*top.last().expect("spend reached at least half the limit"));
    let thresholds: Vec<i64> = deliveries
        .iter()
        .filter(|x| x.json()["type"] == "key_limit" && x.json()["data"]["key_id"] == id.as_str())
        .map(|x| x.json()["data"]["threshold_percent"].as_i64().unwrap())
        .collect();
    assert!(thresholds.contains(&top), "{thresholds:?} (spent {spent} µcr of 10,000)");
    assert_eq!(thresholds.iter().collect::<HashSet<_>>().len(), thresholds.len(), "once per threshold: {thresholds:?}");
    // The confirmation at sign-up, then the key's alert(s) and the low balance.
    d.mail.wait_for(email, 2 + thresholds.len()).await;
    let limit_mails = d.mail.to(email).into_iter().filter(|m| m.subject().contains("of its limit")).count();
    assert_eq!(limit_mails, thresholds.len(), "one mail per threshold and period");

    // Low balance: 1 credit granted, below 0.995 after the first charge, once per top-up.
    let low = deliveries.iter().filter(|x| x.json()["type"] == "low_balance").count();
    assert_eq!(low, 1);
    alerts.check(user.id).await.unwrap();
    assert_eq!(hook.deliveries().iter().filter(|x| x.json()["type"] == "low_balance").count(), 1, "still once");
    d.app.grant(&user, "0.001").await; // a top-up re-arms it (still below)
    alerts.check(user.id).await.unwrap();
    let all = hook.wait_for(deliveries.len() + 1).await;
    assert_eq!(all.iter().filter(|x| x.json()["type"] == "low_balance").count(), 2);
    // Each alert is audited once its webhook answered.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let audited = d.app.store().audit_events(user.id, 100).await.unwrap();
        let sent: Vec<_> = audited.iter().filter(|e| e.event_type == "alert_sent").collect();
        if sent.len() == all.len() {
            assert!(sent.iter().all(|e| e.metadata["webhook"] == "delivered"), "{sent:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{} alerts audited, {} delivered", sent.len(), all.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_account_cannot_see_or_change_these_keys_and_requests() {
    let d = dashboard_app().await;
    let (mut alice, alice_user) = person(&d, "alice@example.com", "5").await;
    let (mut bob, _) = person(&d, "bob@example.com", "0").await;
    let (key, id) = create_key(&mut alice, &[("name", "alice's"), ("env", "test")]).await;
    assert_eq!(call(&d.app, &key, "sandbox/echo").await.status(), 200);
    let row = d.app.wait_for_usage(&alice_user, 1).await.remove(0);
    assert_eq!(bob.get(&format!("/dashboard/usage/{}", row.id)).await.status, 404);
    assert_eq!(bob.get(&format!("/dashboard/keys/{id}")).await.status, 404);
    let page = bob.get("/dashboard/keys").await;
    for action in ["deactivate", "delete"] {
        let tried =
            bob.post(&format!("/dashboard/keys/{id}/state"), &[("csrf", &page.csrf()), ("action", action)]).await;
        assert_eq!(tried.status, 404);
    }
    let rotate =
        bob.post(&format!("/dashboard/keys/{id}/rotate"), &[("csrf", &page.csrf()), ("overlap_secs", "0")]).await;
    assert_eq!(rotate.status, 404);
    assert_eq!(call(&d.app, &key, "sandbox/echo").await.status(), 200, "alice's key is untouched");
    assert!(request_ids(&bob.get("/dashboard/usage").await.body).is_empty());
    assert!(!bob.get(&format!("/dashboard/usage.csv?key={id}")).await.body.contains(&row.request_id));
    assert_eq!(bob.get("/dashboard/usage/not-a-uuid").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_pages_never_skip_or_repeat_a_row() {
    let d = dashboard_app().await;
    let (mut b, user) = person(&d, "paging@example.com", "5").await;
    let (key, _) = create_key(&mut b, &[("name", "many"), ("env", "test")]).await;
    for _ in 0..3 {
        assert_eq!(call(&d.app, &key, "sandbox/echo").await.status(), 200);
    }
    let mut rows = d.app.wait_for_usage(&user, 3).await;
    // 117 more rows sharing one millisecond: paging by time alone would lose some.
    let template = rows.remove(0);
    let at = template.created_at;
    let extra: Vec<_> = (0..117)
        .map(|i| {
            let mut r = template.clone();
            r.id = uuid::Uuid::now_v7();
            r.request_id = format!("req_paging_{i:03}");
            r.created_at = at;
            r
        })
        .collect();
    d.app.store().record_usage(&extra).await.unwrap();
    let mut seen = Vec::new();
    let mut path = "/dashboard/usage".to_owned();
    loop {
        let page = b.get(&path).await;
        assert_eq!(page.status, 200);
        seen.extend(request_ids(&page.body));
        match next_link(&page.body) {
            Some(next) => path = next,
            None => break,
        }
    }
    assert_eq!(seen.len(), 120);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 120, "no row twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_honours_a_rotation_and_its_overlap() {
    let d = dashboard_app().await;
    let node2 = TestApp::spawn_with(AppOptions::default().second_node_of(&d.app)).await.unwrap();
    let user = d.app.create_user("nodes@example.com", layers_domain::Tier::Pro).await;
    let old = d.app.create_key(&user, layers_domain::KeyEnv::Test).await;
    assert_eq!(call(&node2, &old, "sandbox/echo").await.status(), 200, "node 2 caches the key");
    let id = d.app.core.keys.list(user.id).await.unwrap()[0].id;
    let rotated = d.app.core.keys.rotate(user.id, id, Duration::from_secs(60)).await.unwrap();
    let new = rotated.key.expose().to_owned();
    let rotated_at = std::time::Instant::now();
    // Through the second after the rotation, node 2 takes both secrets (the overlap).
    // (Test keys may make 10 requests a minute: a few calls suffice.)
    assert_eq!(call(&node2, &new, "sandbox/echo").await.status(), 200);
    while rotated_at.elapsed() < Duration::from_secs(1) {
        assert_eq!(call(&node2, &old, "sandbox/echo").await.status(), 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // A second after the rotation node 2 knows the old secret's deadline, whatever it cached.
    node2.core.clock.advance(Duration::from_secs(61));
    assert_eq!(call(&node2, &old, "sandbox/echo").await.status(), 401, "refused once the overlap ends");
    assert_eq!(call(&node2, &new, "sandbox/echo").await.status(), 200);
}
