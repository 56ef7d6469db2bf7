//! Payments through Stripe (issue 15), against the testkit's stateful mock Stripe: the exact
//! calls Layers makes, webhooks signed exactly as Stripe signs them (and forged, stale,
//! tampered and replayed ones), out-of-order subscriptions, cumulative refunds, disputes, an
//! event delivered while the database is down and reconciled after, and auto top-up on two
//! nodes.

use std::time::Duration;

use layers_domain::{KeyEnv, MicroCredits, Tier};
use layers_store::User;
use layers_testkit::mock_stripe::{self, MockStripe};
use layers_testkit::tcp_proxy::TcpProxy;
use layers_testkit::{AppOptions, MailCatcher, MockOpenAi, TestApp};
use serde_json::{json, Value};

use crate::accounts::{log_in, signed_up, PASSWORD};
use crate::billing::{exact, EXACT_COST, EXACT_MODEL};

const CREDIT: i64 = 1_000_000;

struct Shop {
    app: TestApp,
    stripe: MockStripe,
    mail: MailCatcher,
    _mock: MockOpenAi,
}

async fn shop_with(opts: AppOptions, extra: &str) -> Option<Shop> {
    let stripe = MockStripe::start().await;
    let mail = MailCatcher::start().await;
    let mock = MockOpenAi::start().await;
    let opts = opts
        .with_mock(&mock)
        .config(EXACT_MODEL)
        .config(&stripe.config(extra))
        .config(&format!("[email]\nsmtp_url = \"{}\"\nfrom = \"Layers <no-reply@layers.test>\"\n", mail.url));
    let app = TestApp::spawn_with(opts).await?;
    stripe.deliver_to(&format!("{}/webhooks/stripe", app.url), false);
    Some(Shop { app, stripe, mail, _mock: mock })
}

async fn shop() -> Shop {
    shop_with(AppOptions::default(), "").await.unwrap()
}

fn payments(app: &TestApp) -> &layers_core::payments::PaymentService {
    app.core.payments.as_deref().expect("Stripe is configured")
}

async fn balance(app: &TestApp, user: &User) -> i64 {
    app.store().balance(user.id).await.unwrap().0
}

/// Posts a body to the webhook with a signature header as given.
async fn post_webhook(app: &TestApp, body: &[u8], signature: Option<&str>) -> u16 {
    let mut req = app.http.post(format!("{}/webhooks/stripe", app.url)).header("content-type", "application/json");
    if let Some(s) = signature {
        req = req.header("stripe-signature", s);
    }
    req.body(body.to_vec()).send().await.unwrap().status().as_u16()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn find<'a>(events: &'a [Value], kind: &str) -> &'a Value {
    events.iter().find(|e| e["type"] == kind).unwrap_or_else(|| panic!("no {kind} event"))
}

/// Buys `credits` through Checkout (the service the billing page calls); returns the session.
async fn checkout(s: &Shop, user: &User, credits: i64) -> Value {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let to = payments(&s.app).start_top_up(user.id, credits, &nonce).await.unwrap();
    let session = s.stripe.last_session();
    assert_eq!(to.0, session["url"].as_str().unwrap());
    session
}

#[tokio::test]
async fn a_top_up_sends_exactly_these_calls_and_is_credited_once_by_the_webhook() {
    let s = shop().await;
    let user = s.app.create_user("buyer@example.com", Tier::Free).await;
    let nonce = "0123456789abcdef0123456789abcdef";
    let first = payments(&s.app).start_top_up(user.id, 2_500, nonce).await.unwrap();
    // A double click: the same form's nonce opens the same session; a second purchase its own.
    let again = payments(&s.app).start_top_up(user.id, 2_500, nonce).await.unwrap();
    assert_eq!(first, again);
    let other = payments(&s.app).start_top_up(user.id, 2_500, "fedcba9876543210fedcba9876543210").await.unwrap();
    assert_ne!(first, other);

    let customers = s.stripe.calls_to("POST", "/v1/customers");
    assert_eq!(customers.len(), 1, "one customer, created lazily, reused after");
    let c = &customers[0];
    assert_eq!(c.idempotency_key.as_deref(), Some(format!("layers-customer-{}", user.id).as_str()));
    assert_eq!(c.authorization.as_deref(), Some(format!("Bearer {}", mock_stripe::SECRET_KEY).as_str()));
    assert_eq!(c.stripe_version.as_deref(), Some("2024-06-20"));
    assert_eq!(c.param("email"), Some("buyer@example.com"));
    assert_eq!(c.param("metadata[layers_user]"), Some(user.id.to_string().as_str()));
    let customer = s.app.store().billing_account(user.id).await.unwrap().customer.unwrap();

    let sessions = s.stripe.calls_to("POST", "/v1/checkout/sessions");
    assert_eq!(sessions.len(), 3);
    let call = &sessions[0];
    assert_eq!(call.idempotency_key.as_deref(), Some(format!("layers-checkout-{}-{nonce}", user.id).as_str()));
    let expected = [
        ("mode", "payment".to_owned()),
        ("customer", customer.clone()),
        ("client_reference_id", user.id.to_string()),
        ("metadata[layers_user]", user.id.to_string()),
        ("metadata[purpose]", "top_up".to_owned()),
        ("metadata[credits]", "2500".to_owned()),
        ("metadata[bonus_percent]", "0".to_owned()),
        ("line_items[0][quantity]", "1".to_owned()),
        ("line_items[0][price_data][currency]", "usd".to_owned()),
        ("line_items[0][price_data][unit_amount]", "2500".to_owned()),
        ("line_items[0][price_data][product_data][name]", "Layers credits (2,500 credits)".to_owned()),
        ("invoice_creation[enabled]", "true".to_owned()),
        ("payment_intent_data[metadata][layers_user]", user.id.to_string()),
        ("success_url", format!("{}/dashboard/billing/checkout/success?session_id={{CHECKOUT_SESSION_ID}}", s.app.url)),
        ("cancel_url", format!("{}/dashboard/billing/checkout/cancelled", s.app.url)),
        ("payment_intent_data[setup_future_usage]", "off_session".to_owned()),
    ];
    let sent: Vec<(&str, &str)> = call.form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let wanted: Vec<(&str, &str)> = expected.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(sent, wanted, "exactly these form fields, in this order");

    // Nothing is credited by starting, nor by the browser coming back.
    let session_id = first.0.rsplit('/').next().unwrap().to_owned();
    assert_eq!(balance(&s.app, &user).await, 0);
    let record = payments(&s.app).checkout(user.id, &session_id).await.unwrap().unwrap();
    assert_eq!(record.completed_at, None);

    // Stripe delivers checkout.session.completed: a hundred times at once, credited once.
    let events = s.stripe.complete_checkout(&session_id);
    let completed = find(&events, "checkout.session.completed").clone();
    let mut deliveries = Vec::new();
    for _ in 0..100 {
        let body = serde_json::to_vec(&completed).unwrap();
        let app_url = s.app.url.clone();
        deliveries.push(tokio::spawn(async move {
            let header = MockStripe::sign(mock_stripe::WEBHOOK_SECRET, now(), &body);
            reqwest::Client::new()
                .post(format!("{app_url}/webhooks/stripe"))
                .header("stripe-signature", header)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for d in deliveries {
        assert_eq!(d.await.unwrap(), 200, "every delivery is acknowledged");
    }
    assert_eq!(balance(&s.app, &user).await, 2_500 * CREDIT, "credited exactly once");
    assert_eq!(s.app.store().ledger_sum(user.id).await.unwrap().0, 2_500 * CREDIT);
    assert!(payments(&s.app).checkout(user.id, &session_id).await.unwrap().unwrap().completed_at.is_some());

    // The rest of the purchase's events: its PaymentIntent (not an auto top-up: ignored) and
    // its invoice (listed, credits nothing).
    for e in &events {
        assert_eq!(s.stripe.deliver(e).await, 200, "{}", e["type"]);
    }
    assert_eq!(balance(&s.app, &user).await, 2_500 * CREDIT);
    let invoices = s.app.store().invoices(user.id, 10).await.unwrap();
    assert_eq!(invoices.len(), 1);
    assert_eq!(invoices[0].amount_paid_cents, 2_500);
    let audit = s.app.store().audit_events(user.id, 50).await.unwrap();
    assert_eq!(audit.iter().filter(|e| e.event_type == "credits_purchased").count(), 1);
    // An amount outside the limits never reaches Stripe.
    let before = s.stripe.calls().len();
    assert!(payments(&s.app).start_top_up(user.id, 10, nonce).await.is_err());
    assert_eq!(s.stripe.calls().len(), before);
}

#[tokio::test]
async fn a_webhook_is_verified_before_anything_is_read() {
    let s = shop_with(AppOptions::default(), "").await.unwrap();
    let user = s.app.create_user("sig@example.com", Tier::Free).await;
    let session = checkout(&s, &user, 1_000).await;
    let events = s.stripe.complete_checkout(session["id"].as_str().unwrap());
    let event = find(&events, "checkout.session.completed");
    let body = serde_json::to_vec(event).unwrap();
    let t = now();
    let sign = |secret: &str, t: i64, body: &[u8]| MockStripe::sign(secret, t, body);
    let valid = sign(mock_stripe::WEBHOOK_SECRET, t, &body);
    let mut tampered = body.clone();
    let at = tampered.windows(4).position(|w| w == b"1000").unwrap();
    tampered[at] = b'9';
    let v1 = valid.split(",v1=").nth(1).unwrap().to_owned();
    let refused: Vec<(&str, Vec<u8>, Option<String>)> = vec![
        ("wrong secret", body.clone(), Some(sign("whsec_someone_else_entirely_000", t, &body))),
        ("stale by 301 s", body.clone(), Some(sign(mock_stripe::WEBHOOK_SECRET, t - 301, &body))),
        ("future by 301 s", body.clone(), Some(sign(mock_stripe::WEBHOOK_SECRET, t + 301, &body))),
        ("tampered body", tampered, Some(valid.clone())),
        ("missing header", body.clone(), None),
        ("garbage header", body.clone(), Some("garbage".into())),
        ("no timestamp", body.clone(), Some(format!("v1={v1}"))),
        ("two timestamps", body.clone(), Some(format!("t={t},t={},v1={v1}", t - 1))),
        ("only v0", body.clone(), Some(format!("t={t},v0={v1}"))),
        ("bad hex", body.clone(), Some(format!("t={t},v1=zz{}", &v1[2..]))),
    ];
    for (what, b, header) in &refused {
        assert_eq!(post_webhook(&s.app, b, header.as_deref()).await, 400, "{what}");
    }
    assert_eq!(balance(&s.app, &user).await, 0, "nothing forged was credited");
    // Among several v1 signatures, one valid is enough (Stripe sends one per secret).
    let several = format!("t={t},v1={},v1={v1}", "00".repeat(32));
    assert_eq!(post_webhook(&s.app, &body, Some(&several)).await, 200);
    assert_eq!(balance(&s.app, &user).await, 1_000 * CREDIT);
    // A replay of the same signed delivery within the tolerance: acknowledged, nothing more.
    assert_eq!(post_webhook(&s.app, &body, Some(&valid)).await, 200);
    assert_eq!(balance(&s.app, &user).await, 1_000 * CREDIT);
    // An event type Layers does not act on: 200, ignored.
    let unknown = s.stripe.raw_event("customer.tax_id.created", json!({"id": "txi_1", "customer": "cus_x"}));
    assert_eq!(s.stripe.deliver(&unknown).await, 200);
    // A known type whose object cannot be read: 400 (it will never read better).
    let broken = s.stripe.raw_event("charge.refunded", json!({"no": "id"}));
    assert_eq!(s.stripe.deliver(&broken).await, 400);
    // Not JSON at all, signed: 400.
    let junk = b"not json";
    assert_eq!(post_webhook(&s.app, junk, Some(&sign(mock_stripe::WEBHOOK_SECRET, t, junk))).await, 400);
}

#[tokio::test]
async fn during_a_secret_rotation_both_secrets_verify() {
    let rotated = format!(
        "[stripe]\nsecret_key = \"{}\"\nwebhook_secrets = [\"whsec_the_new_secret_0123456789\", \"{}\"]\n",
        mock_stripe::SECRET_KEY,
        mock_stripe::WEBHOOK_SECRET
    );
    let stripe = MockStripe::start().await;
    let opts = AppOptions::default()
        .config(&rotated.replace("[stripe]\n", &format!("[stripe]\napi_base = \"{}\"\n", stripe.url())));
    let app = TestApp::spawn_with(opts).await.unwrap();
    let user = app.create_user("rotate@example.com", Tier::Free).await;
    let customer = "cus_rotation";
    app.store().set_stripe_customer(user.id, customer, time::OffsetDateTime::now_utc()).await.unwrap();
    let event = json!({"id": "evt_rot_1", "type": "invoice.paid", "created": now(), "object": "event",
                       "data": {"object": {"id": "in_rot", "customer": customer, "amount_paid": 100, "currency": "usd",
                                           "status": "paid", "created": now()}}});
    let body = serde_json::to_vec(&event).unwrap();
    for (n, secret) in ["whsec_the_new_secret_0123456789", mock_stripe::WEBHOOK_SECRET].iter().enumerate() {
        let mut e = event.clone();
        e["id"] = json!(format!("evt_rot_{n}"));
        let body = serde_json::to_vec(&e).unwrap();
        assert_eq!(post_webhook(&app, &body, Some(&MockStripe::sign(secret, now(), &body))).await, 200, "secret {n}");
    }
    assert_eq!(
        post_webhook(&app, &body, Some(&MockStripe::sign("whsec_retired_secret_000000", now(), &body))).await,
        400
    );
}

/// A live key's rate-limit header on the next request.
async fn limit_header(app: &TestApp, key: &str) -> String {
    let r = app.get("/api/v1/balance").bearer_auth(key).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["x-ratelimit-limit-requests"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn subscription_events_in_any_order_converge_on_stripes_state() {
    let s = shop().await;
    let user = s.app.create_user("plans@example.com", Tier::Free).await;
    let key = s.app.create_key(&user, KeyEnv::Live).await;
    assert_eq!(limit_header(&s.app, &key).await, "10", "Free: 10 a minute");
    payments(&s.app).start_plan(user.id, Tier::Pro, "plan-nonce-0123456789abcdef").await.unwrap();
    let call = s.stripe.calls_to("POST", "/v1/checkout/sessions").pop().unwrap();
    assert_eq!(call.param("mode"), Some("subscription"));
    assert_eq!(call.param("line_items[0][price]"), Some("price_pro_mock"));
    assert_eq!(call.param("subscription_data[metadata][layers_user]"), Some(user.id.to_string().as_str()));
    assert_eq!(call.idempotency_key, Some(format!("layers-plan-{}-plan-nonce-0123456789abcdef", user.id)));
    let session = s.stripe.last_session();
    let mut events = s.stripe.complete_checkout(session["id"].as_str().unwrap());
    // Delivered newest first: the invoice, the session, then the subscription's creation.
    events.reverse();
    for e in &events {
        assert_eq!(s.stripe.deliver(e).await, 200, "{}", e["type"]);
    }
    assert_eq!(s.app.store().user(user.id).await.unwrap().unwrap().tier, Tier::Pro);
    assert_eq!(limit_header(&s.app, &key).await, "300", "the next request has Pro's limit");
    let sub = s.app.store().billing_account(user.id).await.unwrap().subscription_id.unwrap();

    // Upgraded to Team, then cancelled; Stripe delivers the cancellation first and the upgrade
    // late. The late event is not believed: the subscription is fetched, and it is cancelled.
    let upgraded = s.stripe.update_subscription(&sub, "active", Some("price_team_mock"));
    let cancelled = s.stripe.update_subscription(&sub, "canceled", None);
    assert_eq!(s.stripe.deliver(&cancelled).await, 200);
    assert_eq!(s.app.store().user(user.id).await.unwrap().unwrap().tier, Tier::Free);
    assert_eq!(s.stripe.deliver(&upgraded).await, 200);
    assert_eq!(
        s.app.store().user(user.id).await.unwrap().unwrap().tier,
        Tier::Free,
        "the late upgrade changes nothing"
    );
    assert_eq!(limit_header(&s.app, &key).await, "10");
    let fetches = s.stripe.calls_to("GET", &format!("/v1/subscriptions/{sub}"));
    assert!(fetches.len() >= 3, "each subscription event fetched the subscription");
    let audit = s.app.store().audit_events(user.id, 50).await.unwrap();
    assert_eq!(audit.iter().filter(|e| e.event_type == "plan_changed").count(), 2);
}

#[tokio::test]
async fn two_partial_refunds_and_a_dispute_go_through_the_ledger() {
    let s = shop().await;
    let user = s.app.create_user("refunds@example.com", Tier::Free).await;
    let key = s.app.create_key(&user, KeyEnv::Live).await;
    let session = checkout(&s, &user, 1_000).await;
    for e in s.stripe.complete_checkout(session["id"].as_str().unwrap()) {
        s.stripe.deliver(&e).await;
    }
    assert_eq!(balance(&s.app, &user).await, 1_000 * CREDIT);
    let intent = s.stripe.session(session["id"].as_str().unwrap())["payment_intent"].as_str().unwrap().to_owned();
    let charge = s.stripe.intents().into_iter().find(|p| p["id"] == intent.as_str()).unwrap()["latest_charge"]
        .as_str()
        .unwrap()
        .to_owned();
    // 900 of the credits are spent.
    s.app
        .core
        .accounts
        .change_credits(layers_core::accounts::CreditChange {
            user: user.id,
            amount: MicroCredits(-900 * CREDIT),
            reason: "spent".into(),
            idempotency_key: None,
        })
        .await
        .unwrap();
    // The key works, and its node now holds a lease of the account's credit.
    assert_eq!(s.app.chat(&key, &exact()).send().await.unwrap().status(), 200, "the key works");
    s.app.wait_for_usage(&user, 1).await;
    let before = 100 * CREDIT - EXACT_COST;
    assert_eq!(balance(&s.app, &user).await, before);

    // $3 refunded, then $7 more: charge.refunded carries 300, then 1000 (cumulative).
    let first = s.stripe.refund(&charge, 300);
    let second = s.stripe.refund(&charge, 700);
    assert_eq!(s.stripe.deliver(&first).await, 200);
    assert_eq!(balance(&s.app, &user).await, before - 300 * CREDIT, "spent credits refunded: below zero");
    assert_eq!(s.stripe.deliver(&second).await, 200);
    assert_eq!(s.stripe.deliver(&first).await, 200, "a replay");
    assert_eq!(balance(&s.app, &user).await, before - 1_000 * CREDIT, "1,000 credits taken back, once");
    assert_eq!(s.app.store().ledger_sum(user.id).await.unwrap().0, balance(&s.app, &user).await);
    // A negative balance turns the live key off until it is positive: the node's lease ended
    // with the refund, and no new one is granted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let status = s.app.chat(&key, &exact()).send().await.unwrap().status().as_u16();
        if status == 402 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still served after the refund ({status})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let audit = s.app.store().audit_events(user.id, 100).await.unwrap();
    let kinds: Vec<&str> = audit.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "credits_refunded").count(), 2);
    assert!(kinds.contains(&"balance_negative"));
    assert!(kinds.contains(&"account_flagged_for_review"), "two refunds flag the account: {kinds:?}");
    assert!(s.app.store().billing_account(user.id).await.unwrap().review_flagged_at.is_some());

    // Another purchase brings it back; a dispute of it holds its credits, a win returns them.
    let session = checkout(&s, &user, 2_000).await;
    for e in s.stripe.complete_checkout(session["id"].as_str().unwrap()) {
        s.stripe.deliver(&e).await;
    }
    assert!(balance(&s.app, &user).await > 0);
    assert_eq!(s.app.chat(&key, &exact()).send().await.unwrap().status(), 200, "positive again: the key works");
    s.app.wait_for_usage(&user, 2).await;
    let positive = balance(&s.app, &user).await;
    assert_eq!(positive, before - 1_000 * CREDIT + 2_000 * CREDIT - EXACT_COST);
    let intent = s.stripe.session(session["id"].as_str().unwrap())["payment_intent"].as_str().unwrap().to_owned();
    let charge = s.stripe.intents().into_iter().find(|p| p["id"] == intent.as_str()).unwrap()["latest_charge"]
        .as_str()
        .unwrap()
        .to_owned();
    let opened = s.stripe.dispute(&charge);
    assert_eq!(s.stripe.deliver(&opened).await, 200);
    assert_eq!(balance(&s.app, &user).await, positive - 2_000 * CREDIT);
    let dispute_id = opened["data"]["object"]["id"].as_str().unwrap();
    let won = s.stripe.close_dispute(dispute_id, "won");
    assert_eq!(s.stripe.deliver(&won).await, 200);
    assert_eq!(s.stripe.deliver(&won).await, 200, "a replay");
    assert_eq!(balance(&s.app, &user).await, positive, "won: the credits are back, once");
    assert_eq!(s.app.store().ledger_sum(user.id).await.unwrap().0, positive);
}

#[tokio::test]
async fn an_event_delivered_while_the_database_is_down_is_reconciled_after() {
    let Some(db) = layers_store::testing::TestDatabase::postgres().await else { return };
    db.store().await.close().await;
    let after = db.url.split('@').nth(1).unwrap();
    let target = after.split('/').next().unwrap().to_owned();
    let proxy = TcpProxy::start(target.parse().unwrap()).await;
    let proxied = db.url.replace(&target, &proxy.host_port());
    let s = shop_with(AppOptions::default().database_at(&proxied, true), "").await.unwrap();
    let user = s.app.create_user("outage@example.com", Tier::Free).await;
    let session = checkout(&s, &user, 1_500).await;
    let events = s.stripe.complete_checkout(session["id"].as_str().unwrap());
    let completed = find(&events, "checkout.session.completed").clone();

    proxy.cut();
    let status = s.stripe.deliver(&completed).await;
    assert_eq!(status, 503, "the database is down: Stripe is told to retry");
    proxy.restore();
    // Stripe gave up (or has not retried yet): the reconciliation lists what it could not
    // deliver and applies it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let report = loop {
        match payments(&s.app).reconcile().await {
            Ok(r) => break r,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("reconciliation failed: {e}"),
        }
    };
    // The purchase's three events were never delivered: its PaymentIntent (not an auto top-up:
    // ignored), the completed session (the credits) and its invoice.
    assert_eq!((report.listed, report.applied, report.ignored), (3, 2, 1), "{report:?}");
    assert_eq!(balance(&s.app, &user).await, 1_500 * CREDIT);
    let list = s.stripe.calls_to("GET", "/v1/events").pop().unwrap();
    assert!(list.query.contains("delivery_success=false"), "{}", list.query);
    assert!(list.query.contains("created%5Bgte%5D="), "{}", list.query);
    // Run again (every node runs it): nothing more.
    let again = payments(&s.app).reconcile().await.unwrap();
    assert_eq!(again.applied, 0);
    assert_eq!(balance(&s.app, &user).await, 1_500 * CREDIT);
}

/// The account's Stripe customer with a card saved, and auto top-up: below 1 credit, buy
/// `amount` credits.
async fn auto_topup_ready(s: &Shop, user: &User, customer: &str, amount: i64) {
    s.app.store().set_stripe_customer(user.id, customer, time::OffsetDateTime::now_utc()).await.unwrap();
    s.stripe.save_card(customer);
    payments(&s.app).set_auto_topup(user.id, true, 1, amount).await.unwrap();
}

#[tokio::test]
async fn twenty_requests_crossing_the_threshold_on_two_nodes_buy_once() {
    let Some(a) = shop_with(AppOptions::default().postgres(), "").await else { return };
    let b = TestApp::spawn_with(
        AppOptions::default()
            .second_node_of(&a.app)
            .with_mock(&a._mock)
            .config(EXACT_MODEL)
            .config(&a.stripe.config("")),
    )
    .await
    .unwrap();
    a.stripe.deliver_to(&format!("{}/webhooks/stripe", a.app.url), true);
    let user = a.app.create_user("auto@example.com", Tier::Pro).await;
    a.app.grant(&user, "1.5").await;
    let key = a.app.create_key(&user, KeyEnv::Live).await;
    auto_topup_ready(&a, &user, "cus_auto_two_nodes", 2_000).await;

    // 20 requests at once, half on each node: 1.0 credit spent, the balance falls to 0.5.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let url = if i % 2 == 0 { a.app.url.clone() } else { b.url.clone() };
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{url}/v1/chat/completions"))
                .bearer_auth(key)
                .json(&exact())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    // Both nodes' jobs see the low balance; one buys, and the webhook credits it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while balance(&a.app, &user).await < 2_000 * CREDIT {
        assert!(tokio::time::Instant::now() < deadline, "no auto top-up credited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A few more job rounds on both nodes: still one.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let charges = a.stripe.calls_to("POST", "/v1/payment_intents");
    assert_eq!(charges.len(), 1, "exactly one charge: {charges:?}");
    let c = &charges[0];
    assert!(c.idempotency_key.as_deref().unwrap().starts_with(&format!("layers-autotopup-{}-", user.id)));
    assert_eq!(c.param("amount"), Some("2000"));
    assert_eq!(c.param("currency"), Some("usd"));
    assert_eq!(c.param("customer"), Some("cus_auto_two_nodes"));
    assert_eq!(c.param("off_session"), Some("true"));
    assert_eq!(c.param("confirm"), Some("true"));
    assert_eq!(c.param("metadata[purpose]"), Some("auto_topup"));
    assert!(c.param("payment_method").unwrap().starts_with("pm_"));
    assert_eq!(balance(&a.app, &user).await, 1_500_000 - 20 * EXACT_COST + 2_000 * CREDIT);
    let audit = a.app.store().audit_events(user.id, 100).await.unwrap();
    assert_eq!(audit.iter().filter(|e| e.event_type == "auto_topup_started").count(), 1);
}

#[tokio::test]
async fn three_declined_auto_top_ups_turn_it_off_and_email_the_owner() {
    let s = shop().await;
    s.stripe.deliver_to(&format!("{}/webhooks/stripe", s.app.url), true);
    let user = s.app.create_user("declined@example.com", Tier::Pro).await;
    s.app.grant(&user, "1.2").await;
    let key = s.app.create_key(&user, KeyEnv::Live).await;
    auto_topup_ready(&s, &user, "cus_declining", 500).await;
    s.stripe.decline_cards_of("cus_declining");
    // Keep spending a little: each charged round tries again, until the third failure.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rule = s.app.store().auto_topup(user.id).await.unwrap().unwrap();
        if !rule.enabled {
            assert_eq!(rule.failures, 3);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "auto top-up still on after {} failures", rule.failures);
        assert_eq!(s.app.chat(&key, &exact()).send().await.unwrap().status(), 200);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let mail = s.mail.wait_for("declined@example.com", 1).await;
    assert!(mail.subject().contains("Auto top-up is off"), "{}", mail.subject());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let attempts = s.stripe.calls_to("POST", "/v1/payment_intents");
    assert_eq!(attempts.len(), 3, "three attempts, then none");
    let keys: std::collections::HashSet<_> = attempts.iter().map(|c| c.idempotency_key.clone()).collect();
    assert_eq!(keys.len(), 3, "each attempt its own trigger");
    let audit = s.app.store().audit_events(user.id, 100).await.unwrap();
    assert_eq!(audit.iter().filter(|e| e.event_type == "auto_topup_failed").count(), 3);
    assert_eq!(audit.iter().filter(|e| e.event_type == "auto_topup_disabled").count(), 1);
    assert!(balance(&s.app, &user).await < CREDIT, "nothing was credited");
}

#[tokio::test]
async fn the_billing_page_sells_credits_and_never_credits_on_the_redirect() {
    let s = shop().await;
    let mut b = signed_up(&s.app, &s.mail, "page@example.com").await;
    assert_eq!(log_in(&mut b, "page@example.com", PASSWORD, "").await.location(), Some("/dashboard"));
    let user = s.app.core.accounts.user_by_email("page@example.com").await.unwrap();
    let page = b.get("/dashboard/billing").await;
    assert_eq!(page.status, 200);
    for text in ["$10", "$25", "2,500 credits", "Choose Pro", "Auto top-up", "No invoices yet"] {
        assert!(page.body.contains(text), "{text}");
    }
    let csp = page.header("content-security-policy").unwrap().to_owned();
    assert!(csp.contains(&format!("form-action 'self' {}", s.stripe.url())), "{csp}");
    let nonce = page.input_value("nonce").unwrap();
    let bought =
        b.post("/dashboard/billing/buy", &[("csrf", &page.csrf()), ("nonce", &nonce), ("credits", "2500")]).await;
    assert_eq!(bought.status, 303);
    let session = s.stripe.last_session();
    assert_eq!(bought.location(), session["url"].as_str());
    // A custom amount out of bounds is a 422 with the reason, and reaches no Stripe.
    let calls = s.stripe.calls().len();
    let odd = b.post("/dashboard/billing/buy", &[("csrf", &page.csrf()), ("nonce", &nonce), ("amount", "1.00")]).await;
    assert_eq!(odd.status, 422);
    assert!(odd.body.contains("between the minimum and the maximum"), "{}", odd.body);
    assert_eq!(s.stripe.calls().len(), calls);
    // Without a CSRF token: refused.
    let forged = b.post("/dashboard/billing/buy", &[("csrf", "x"), ("nonce", &nonce), ("credits", "2500")]).await;
    assert_eq!(forged.status, 403);

    // Back from Checkout before the webhook: nothing credited, the page says so and refreshes.
    let id = session["id"].as_str().unwrap();
    let events = s.stripe.complete_checkout(id);
    let back = b.get(&format!("/dashboard/billing/checkout/success?session_id={id}")).await;
    assert_eq!(back.status, 200);
    assert!(back.body.contains("Payment received, credits on the way"), "{}", back.body);
    assert_eq!(back.header("refresh"), Some("3"));
    assert_eq!(balance(&s.app, &user).await, 0);
    for e in &events {
        s.stripe.deliver(e).await;
    }
    let done = b.get(&format!("/dashboard/billing/checkout/success?session_id={id}")).await;
    assert!(done.body.contains("Credits added"), "{}", done.body);
    assert!(done.header("refresh").is_none());
    assert_eq!(balance(&s.app, &user).await, 2_500 * CREDIT);
    // Someone else's session id, or a made-up one: not found.
    assert_eq!(b.get("/dashboard/billing/checkout/success?session_id=cs_test_other").await.status, 404);
    let billing = b.get("/dashboard/billing").await;
    assert!(billing.body.contains("MOCK-"), "the invoice is listed");
    assert!(billing.body.contains("Purchase"));
}

#[tokio::test]
async fn the_operator_reconciles_from_the_command_line() {
    let s = shop().await;
    let user = s.app.create_user("cli@example.com", Tier::Free).await;
    let session = checkout(&s, &user, 700).await;
    s.stripe.complete_checkout(session["id"].as_str().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("layers.toml");
    let toml = format!(
        "data_dir = \"{}\"\n[database]\nurl = \"{}\"\n[keys]\npepper = \"{}\"\n{}",
        dir.path().display(),
        s.app.db.url,
        layers_testkit::app::TEST_PEPPER,
        s.stripe.config("")
    );
    std::fs::write(&config, toml).unwrap();
    let run = || {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_layers"))
                .args(["admin", "stripe", "reconcile"])
                .env("LAYERS_CONFIG", &config)
                .env("LAYERS_LOG__LEVEL", "warn")
                .output()
                .unwrap()
        })
    };
    let out = run().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "listed 3 applied 2 already_applied 0 ignored 1 unreadable 0 failed 0"
    );
    assert_eq!(balance(&s.app, &user).await, 700 * CREDIT);
    // The events are still "undelivered" at Stripe: a second run finds them applied.
    let out = run().await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "listed 3 applied 0 already_applied 2 ignored 1 unreadable 0 failed 0"
    );
    assert_eq!(balance(&s.app, &user).await, 700 * CREDIT);
}

#[tokio::test]
async fn a_stripe_outage_during_auto_top_up_is_not_a_declined_card() {
    let s = shop().await;
    s.stripe.deliver_to(&format!("{}/webhooks/stripe", s.app.url), true);
    let user = s.app.create_user("outage-auto@example.com", Tier::Pro).await;
    s.app.grant(&user, "1.02").await;
    let key = s.app.create_key(&user, KeyEnv::Live).await;
    auto_topup_ready(&s, &user, "cus_outage", 500).await;
    // Stripe answers 500 to every try of this minute (the client retries twice itself).
    s.stripe.fail_next_intents(3);
    assert_eq!(s.app.chat(&key, &exact()).send().await.unwrap().status(), 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while s.stripe.calls_to("POST", "/v1/payment_intents").len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "no auto top-up tried");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rule = s.app.store().auto_topup(user.id).await.unwrap().unwrap();
    assert_eq!((rule.enabled, rule.failures), (true, 0), "an unanswered call is no failure");
    let first_key = s.stripe.calls_to("POST", "/v1/payment_intents")[0].idempotency_key.clone();
    // Two minutes later the same purchase is tried again, under the same idempotency key.
    s.app.core.clock.advance(Duration::from_secs(121));
    assert_eq!(s.app.chat(&key, &exact()).send().await.unwrap().status(), 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while balance(&s.app, &user).await < 500 * CREDIT {
        assert!(tokio::time::Instant::now() < deadline, "the retried purchase was not credited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let calls = s.stripe.calls_to("POST", "/v1/payment_intents");
    assert_eq!(calls.len(), 4);
    assert!(calls.iter().all(|c| c.idempotency_key == first_key), "one purchase, one key");
    assert_eq!(s.stripe.intents().len(), 1, "one PaymentIntent exists");
}

#[tokio::test]
async fn an_event_for_one_account_cannot_credit_another() {
    let s = shop().await;
    let alice = s.app.create_user("alice-pay@example.com", Tier::Free).await;
    let bob = s.app.create_user("bob-pay@example.com", Tier::Free).await;
    let session = checkout(&s, &alice, 1_000).await;
    let mut events = s.stripe.complete_checkout(session["id"].as_str().unwrap());
    // A signed event whose session names Bob while its customer is Alice's: not credited to
    // either (the customer decides the account, and the metadata must agree).
    let completed = events.iter_mut().find(|e| e["type"] == "checkout.session.completed").unwrap();
    completed["data"]["object"]["metadata"]["layers_user"] = json!(bob.id.to_string());
    completed["data"]["object"]["client_reference_id"] = json!(bob.id.to_string());
    let forged = completed.clone();
    assert_eq!(s.stripe.deliver(&forged).await, 200);
    assert_eq!(balance(&s.app, &bob).await, 0);
    assert_eq!(balance(&s.app, &alice).await, 0);
    // A customer no account has: acknowledged, nothing credited.
    let mut stranger = forged.clone();
    stranger["id"] = json!("evt_stranger");
    stranger["data"]["object"]["customer"] = json!("cus_nobody");
    assert_eq!(s.stripe.deliver(&stranger).await, 200);
    assert_eq!(balance(&s.app, &bob).await, 0);
}
