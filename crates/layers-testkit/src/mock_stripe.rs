//! A stateful mock of the parts of Stripe's API Layers uses: customers, Checkout Sessions
//! (with a hosted page a browser can "pay" on), subscriptions, the customer portal (with a page
//! to switch plans or cancel), PaymentIntents (off-session, with cards that decline on
//! request), charges with refunds and disputes, invoices, and the events list with delivery
//! state. It records every call (form fields and `Idempotency-Key`) so tests assert exactly
//! what Layers sent, honours idempotency keys like Stripe (same key and same fields → the same
//! answer; same key, other fields → 400), and signs webhooks exactly as Stripe does.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::mock_server::{MockServer, Recorder};

pub const SECRET_KEY: &str = "sk_test_layers_mock_0123456789";
pub const WEBHOOK_SECRET: &str = "whsec_layers_mock_0123456789abcdef";

/// One API call as received.
#[derive(Clone, Debug)]
pub struct StripeCall {
    pub method: String,
    pub path: String,
    pub query: String,
    pub form: Vec<(String, String)>,
    pub idempotency_key: Option<String>,
    pub authorization: Option<String>,
    pub stripe_version: Option<String>,
}

impl StripeCall {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// An idempotent call's fields and answer (status, body).
type Remembered = (Vec<(String, String)>, u16, Value);

#[derive(Default)]
struct World {
    base: String,
    next: u64,
    customers: BTreeMap<String, Value>,
    sessions: BTreeMap<String, Value>,
    subscriptions: BTreeMap<String, Value>,
    intents: BTreeMap<String, Value>,
    charges: BTreeMap<String, Value>,
    disputes: BTreeMap<String, Value>,
    portals: BTreeMap<String, (String, String)>,
    cards: HashMap<String, Vec<String>>,
    declining: HashSet<String>,
    prices: HashMap<String, i64>,
    /// Every event, oldest first, and whether a delivery of it succeeded.
    events: Vec<(Value, bool)>,
    idempotency: HashMap<String, Remembered>,
    webhook: Option<String>,
    auto_deliver: bool,
    delay: Option<std::time::Duration>,
    /// PaymentIntent creations still to fail with a 500 (Stripe having a bad minute).
    failing_intents: usize,
    now_offset: i64,
}

impl World {
    fn id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}_mock{:06}", self.next)
    }

    fn now(&self) -> i64 {
        unix_now() + self.now_offset
    }

    fn event(&mut self, kind: &str, object: Value) -> Value {
        let event = json!({
            "id": self.id("evt"),
            "object": "event",
            "api_version": "2024-06-20",
            "created": self.now(),
            "type": kind,
            "livemode": false,
            "pending_webhooks": 1,
            "data": {"object": object},
        });
        self.events.push((event.clone(), false));
        event
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[derive(Clone)]
struct Ctx {
    rec: Recorder<StripeCall>,
    world: Arc<Mutex<World>>,
}

pub struct MockStripe {
    server: MockServer<StripeCall>,
    world: Arc<Mutex<World>>,
}

fn error(status: StatusCode, kind: &str, code: Option<&str>, message: &str) -> Response {
    (status, Json(json!({"error": {"type": kind, "code": code, "message": message}}))).into_response()
}

fn metadata(form: &[(String, String)], prefix: &str) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in form {
        if let Some(rest) = k.strip_prefix(prefix).and_then(|r| r.strip_suffix(']')) {
            if !rest.contains('[') {
                m.insert(rest.to_owned(), Value::String(v.clone()));
            }
        }
    }
    Value::Object(m)
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

impl MockStripe {
    pub async fn start() -> MockStripe {
        let world = Arc::new(Mutex::new(World::default()));
        {
            let mut w = world.lock().unwrap();
            for (price, amount) in
                [("price_starter_mock", 1_900), ("price_pro_mock", 4_900), ("price_team_mock", 19_900)]
            {
                w.prices.insert(price.into(), amount);
            }
        }
        let w = world.clone();
        let server = MockServer::start(move |rec| {
            let ctx = Ctx { rec, world: w };
            Router::new()
                .route("/v1/customers", post(create_customer))
                .route("/v1/customers/{id}/payment_methods", get(payment_methods))
                .route("/v1/checkout/sessions", post(create_session))
                .route("/v1/billing_portal/sessions", post(create_portal))
                .route("/v1/subscriptions/{id}", get(get_subscription))
                .route("/v1/charges/{id}", get(get_charge))
                .route("/v1/payment_intents", post(create_intent))
                .route("/v1/events", get(list_events))
                .route("/pay/{id}", get(pay_page).post(pay))
                .route("/portal/{id}", get(portal_page))
                .route("/portal/{id}/switch", post(portal_switch))
                .route("/portal/{id}/cancel", post(portal_cancel))
                .with_state(ctx)
        })
        .await;
        let base = server.url("");
        world.lock().unwrap().base = base;
        MockStripe { server, world }
    }

    /// The API base to configure (`[stripe] api_base`).
    pub fn url(&self) -> String {
        self.server.url("")
    }

    /// The `[stripe]` section for a Layers pointed at this mock.
    pub fn config(&self, extra: &str) -> String {
        format!(
            "[stripe]\nsecret_key = \"{SECRET_KEY}\"\nwebhook_secrets = [\"{WEBHOOK_SECRET}\"]\napi_base = \"{}\"\n\
             plans = {{ starter = \"price_starter_mock\", pro = \"price_pro_mock\", team = \"price_team_mock\" }}\n{extra}\n",
            self.url()
        )
    }

    /// Where events go when they are delivered (`{layers}/webhooks/stripe`), and whether the
    /// mock delivers each event as it happens (like Stripe) or only when a test says so.
    pub fn deliver_to(&self, url: &str, automatically: bool) {
        let mut w = self.world.lock().unwrap();
        w.webhook = Some(url.to_owned());
        w.auto_deliver = automatically;
    }

    /// Automatic deliveries wait this long after the call that caused them.
    pub fn delay_deliveries(&self, by: std::time::Duration) {
        self.world.lock().unwrap().delay = Some(by);
    }

    pub fn calls(&self) -> Vec<StripeCall> {
        self.server.requests()
    }

    pub fn calls_to(&self, method: &str, path: &str) -> Vec<StripeCall> {
        self.calls().into_iter().filter(|c| c.method == method && c.path == path).collect()
    }

    /// The next `n` PaymentIntent creations answer 500 without creating anything.
    pub fn fail_next_intents(&self, n: usize) {
        self.world.lock().unwrap().failing_intents = n;
    }

    /// Cards of this customer decline from now on.
    pub fn decline_cards_of(&self, customer: &str) {
        self.world.lock().unwrap().declining.insert(customer.to_owned());
    }

    /// Gives a customer a saved card (as a Checkout with `setup_future_usage` does).
    pub fn save_card(&self, customer: &str) -> String {
        let mut w = self.world.lock().unwrap();
        let pm = w.id("pm");
        w.cards.entry(customer.to_owned()).or_default().push(pm.clone());
        pm
    }

    pub fn session(&self, id: &str) -> Value {
        self.world.lock().unwrap().sessions[id].clone()
    }

    pub fn last_session(&self) -> Value {
        self.world.lock().unwrap().sessions.values().last().cloned().expect("no Checkout Session")
    }

    pub fn subscription(&self, id: &str) -> Value {
        self.world.lock().unwrap().subscriptions[id].clone()
    }

    pub fn intents(&self) -> Vec<Value> {
        self.world.lock().unwrap().intents.values().cloned().collect()
    }

    pub fn events(&self) -> Vec<Value> {
        self.world.lock().unwrap().events.iter().map(|(e, _)| e.clone()).collect()
    }

    /// Pays a Checkout Session as the hosted page would: its events, not yet delivered.
    pub fn complete_checkout(&self, session_id: &str) -> Vec<Value> {
        complete(&mut self.world.lock().unwrap(), session_id)
    }

    /// Sets a subscription's status (and price): `customer.subscription.updated` (or `deleted`).
    pub fn update_subscription(&self, id: &str, status: &str, price: Option<&str>) -> Value {
        let mut w = self.world.lock().unwrap();
        set_subscription(&mut w, id, status, price)
    }

    /// Refunds `cents` more of a charge: `charge.refunded` with the cumulative amount.
    pub fn refund(&self, charge: &str, cents: i64) -> Value {
        let mut w = self.world.lock().unwrap();
        let c = w.charges.get_mut(charge).expect("no such charge");
        let total = (c["amount_refunded"].as_i64().unwrap() + cents).min(c["amount"].as_i64().unwrap());
        c["amount_refunded"] = json!(total);
        c["refunded"] = json!(total == c["amount"].as_i64().unwrap());
        let object = c.clone();
        w.event("charge.refunded", object)
    }

    /// Opens a dispute of a whole charge: `charge.dispute.created`.
    pub fn dispute(&self, charge: &str) -> Value {
        let mut w = self.world.lock().unwrap();
        let c = w.charges[charge].clone();
        let id = w.id("dp");
        let d = json!({"id": id, "object": "dispute", "amount": c["amount"], "charge": charge,
                       "payment_intent": c["payment_intent"], "status": "needs_response", "currency": "usd"});
        w.disputes.insert(id, d.clone());
        w.event("charge.dispute.created", d)
    }

    /// Closes a dispute with `status` (`won`, `lost`): `charge.dispute.closed`.
    pub fn close_dispute(&self, id: &str, status: &str) -> Value {
        let mut w = self.world.lock().unwrap();
        let d = w.disputes.get_mut(id).expect("no such dispute");
        d["status"] = json!(status);
        let object = d.clone();
        w.event("charge.dispute.closed", object)
    }

    /// An event of any type (for unknown-event tests).
    pub fn raw_event(&self, kind: &str, object: Value) -> Value {
        self.world.lock().unwrap().event(kind, object)
    }

    /// The `Stripe-Signature` header for `body` at `t`, signed with `secret`.
    pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
        layers_domain::webhook_signature::sign(secret.as_bytes(), t, body)
    }

    /// Delivers an event to the configured webhook, signed now; marks it delivered on a 2xx.
    pub async fn deliver(&self, event: &Value) -> u16 {
        let url = self.world.lock().unwrap().webhook.clone().expect("call deliver_to first");
        let status = post_event(&url, event).await;
        if (200..300).contains(&status) {
            mark_delivered(&self.world, event);
        }
        status
    }
}

fn mark_delivered(world: &Arc<Mutex<World>>, event: &Value) {
    let mut w = world.lock().unwrap();
    for (e, delivered) in w.events.iter_mut() {
        if e["id"] == event["id"] {
            *delivered = true;
        }
    }
}

async fn post_event(url: &str, event: &Value) -> u16 {
    let body = serde_json::to_vec(event).unwrap();
    let header = MockStripe::sign(WEBHOOK_SECRET, unix_now(), &body);
    match reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("stripe-signature", header)
        .body(body)
        .send()
        .await
    {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// Delivers events in order when the mock delivers automatically (like Stripe, after the API
/// call that caused them has answered).
fn deliver_later(ctx: &Ctx, events: Vec<Value>) {
    let (url, auto, delay) = {
        let w = ctx.world.lock().unwrap();
        (w.webhook.clone(), w.auto_deliver, w.delay.unwrap_or(std::time::Duration::from_millis(50)))
    };
    let (Some(url), true) = (url, auto) else { return };
    let world = ctx.world.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        for e in events {
            if (200..300).contains(&post_event(&url, &e).await) {
                mark_delivered(&world, &e);
            }
        }
    });
}

fn record(ctx: &Ctx, method: &str, path: &str, query: &str, headers: &HeaderMap, form: &[(String, String)]) {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    ctx.rec.record(StripeCall {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        form: form.to_vec(),
        idempotency_key: h("idempotency-key"),
        authorization: h("authorization"),
        stripe_version: h("stripe-version"),
    });
}

/// Authorisation, then the idempotency rules: `Ok(form)` to go on, or the answer.
fn begin(
    ctx: &Ctx,
    path: &str,
    headers: &HeaderMap,
    form: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, Box<Response>> {
    record(ctx, "POST", path, "", headers, &form);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {SECRET_KEY}")) {
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            "Invalid API Key provided",
        )));
    }
    let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) else { return Ok(form) };
    let w = ctx.world.lock().unwrap();
    if let Some((sent, status, answer)) = w.idempotency.get(&format!("{path} {key}")) {
        if *sent != form {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                "idempotency_error",
                None,
                "Keys for idempotent requests can only be used with the same parameters they were first used with.",
            )));
        }
        return Err(Box::new((StatusCode::from_u16(*status).unwrap(), Json(answer.clone())).into_response()));
    }
    Ok(form)
}

fn remember(ctx: &Ctx, path: &str, headers: &HeaderMap, form: Vec<(String, String)>, status: u16, answer: &Value) {
    if let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
        ctx.world.lock().unwrap().idempotency.insert(format!("{path} {key}"), (form, status, answer.clone()));
    }
}

async fn create_customer(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let path = "/v1/customers";
    let form = match begin(&ctx, path, &headers, form) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let customer = {
        let mut w = ctx.world.lock().unwrap();
        let id = w.id("cus");
        let c = json!({"id": id, "object": "customer", "email": field(&form, "email"), "metadata": metadata(&form, "metadata[")});
        w.customers.insert(id, c.clone());
        c
    };
    remember(&ctx, path, &headers, form, 200, &customer);
    Json(customer).into_response()
}

async fn create_session(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let path = "/v1/checkout/sessions";
    let form = match begin(&ctx, path, &headers, form) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let mut w = ctx.world.lock().unwrap();
    let mode = field(&form, "mode").unwrap_or_default().to_owned();
    let customer = field(&form, "customer").map(str::to_owned);
    if customer.as_ref().is_none_or(|c| !w.customers.contains_key(c)) {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", Some("resource_missing"), "No such customer");
    }
    let amount = match mode.as_str() {
        "payment" => field(&form, "line_items[0][price_data][unit_amount]").and_then(|a| a.parse::<i64>().ok()),
        "subscription" => field(&form, "line_items[0][price]").and_then(|p| w.prices.get(p).copied()),
        _ => None,
    };
    let Some(amount) = amount else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_missing"),
            "Missing line items",
        );
    };
    let id = w.id("cs_test");
    let session = json!({
        "id": id, "object": "checkout.session", "url": format!("{}/pay/{id}", w.base), "mode": mode,
        "status": "open", "payment_status": "unpaid", "amount_total": amount, "currency": "usd",
        "customer": customer, "client_reference_id": field(&form, "client_reference_id"),
        "metadata": metadata(&form, "metadata["), "payment_intent": null, "subscription": null,
        "success_url": field(&form, "success_url"), "cancel_url": field(&form, "cancel_url"),
        "price": field(&form, "line_items[0][price]"),
        "save_card": field(&form, "payment_intent_data[setup_future_usage]") == Some("off_session"),
        "invoice_creation": field(&form, "invoice_creation[enabled]") == Some("true"),
        "intent_metadata": metadata(&form, "payment_intent_data[metadata]["),
    });
    w.sessions.insert(id, session.clone());
    drop(w);
    remember(&ctx, path, &headers, form, 200, &session);
    Json(session).into_response()
}

/// What paying a session does: the payment (or subscription), and Stripe's events for it.
fn complete(w: &mut World, session_id: &str) -> Vec<Value> {
    let mut session = w.sessions[session_id].clone();
    let customer = session["customer"].as_str().unwrap_or_default().to_owned();
    let amount = session["amount_total"].as_i64().unwrap_or(0);
    let now = w.now();
    let pi = w.id("pi");
    let ch = w.id("ch");
    let mut events = Vec::new();
    let intent = json!({"id": pi, "object": "payment_intent", "amount": amount, "amount_received": amount,
                        "currency": "usd", "customer": customer, "status": "succeeded",
                        "metadata": session["intent_metadata"], "latest_charge": ch});
    w.intents.insert(pi.clone(), intent.clone());
    w.charges.insert(
        ch.clone(),
        json!({"id": ch, "object": "charge", "amount": amount, "amount_refunded": 0,
                                        "refunded": false, "customer": customer, "payment_intent": pi}),
    );
    session["status"] = json!("complete");
    session["payment_status"] = json!("paid");
    if session["mode"] == "subscription" {
        let sub = w.id("sub");
        let price = session["price"].as_str().unwrap_or_default().to_owned();
        let s = json!({"id": sub, "object": "subscription", "status": "active", "customer": customer,
                       "current_period_end": now + 30 * 86_400,
                       "items": {"object": "list", "has_more": false,
                                 "data": [{"price": {"id": price}, "current_period_end": now + 30 * 86_400}]}});
        w.subscriptions.insert(sub.clone(), s.clone());
        session["subscription"] = json!(sub);
        events.push(w.event("customer.subscription.created", s));
        session["payment_intent"] = Value::Null;
        w.sessions.insert(session_id.to_owned(), session.clone());
        events.push(w.event("checkout.session.completed", session));
        let inv = invoice(w, &customer, amount, Some(&sub), "subscription_create", &pi, &ch);
        events.push(w.event("invoice.paid", inv));
    } else {
        session["payment_intent"] = json!(pi);
        if session["save_card"] == true {
            let pm = w.id("pm");
            w.cards.entry(customer.clone()).or_default().push(pm);
        }
        w.sessions.insert(session_id.to_owned(), session.clone());
        events.push(w.event("payment_intent.succeeded", intent));
        events.push(w.event("checkout.session.completed", session.clone()));
        if session["invoice_creation"] == true {
            let inv = invoice(w, &customer, amount, None, "manual", &pi, &ch);
            events.push(w.event("invoice.paid", inv));
        }
    }
    events
}

fn invoice(w: &mut World, customer: &str, amount: i64, sub: Option<&str>, reason: &str, pi: &str, ch: &str) -> Value {
    let id = w.id("in");
    let number = format!("MOCK-{:04}", w.next);
    json!({"id": id, "object": "invoice", "number": number, "customer": customer, "amount_paid": amount,
           "currency": "usd", "status": "paid", "created": w.now(),
           "hosted_invoice_url": format!("{}/invoices/{id}", w.base), "invoice_pdf": format!("{}/invoices/{id}.pdf", w.base),
           "subscription": sub, "billing_reason": reason, "payment_intent": pi, "charge": ch})
}

fn set_subscription(w: &mut World, id: &str, status: &str, price: Option<&str>) -> Value {
    let s = w.subscriptions.get_mut(id).expect("no such subscription");
    s["status"] = json!(status);
    if let Some(p) = price {
        s["items"]["data"][0]["price"]["id"] = json!(p);
    }
    let object = s.clone();
    let kind = if status == "canceled" { "customer.subscription.deleted" } else { "customer.subscription.updated" };
    w.event(kind, object)
}

async fn pay_page(State(ctx): State<Ctx>, Path(id): Path<String>) -> Response {
    let w = ctx.world.lock().unwrap();
    let Some(s) = w.sessions.get(&id) else { return StatusCode::NOT_FOUND.into_response() };
    let amount = s["amount_total"].as_i64().unwrap_or(0);
    Html(format!(
        "<!doctype html><html><head><title>Mock Checkout</title></head><body style=\"font-family:sans-serif;max-width:480px;margin:40px auto\">\
         <h1>Pay ${}.{:02}</h1><p>Mock Stripe Checkout ({})</p>\
         <form method=\"post\" action=\"/pay/{id}\"><button id=\"pay\" type=\"submit\">Pay</button></form>\
         <p><a id=\"cancel\" href=\"{}\">Cancel</a></p></body></html>",
        amount / 100,
        amount % 100,
        s["mode"].as_str().unwrap_or_default(),
        s["cancel_url"].as_str().unwrap_or_default(),
    ))
    .into_response()
}

async fn pay(State(ctx): State<Ctx>, Path(id): Path<String>) -> Response {
    let (events, success) = {
        let mut w = ctx.world.lock().unwrap();
        if !w.sessions.contains_key(&id) {
            return StatusCode::NOT_FOUND.into_response();
        }
        let events = complete(&mut w, &id);
        let success = w.sessions[&id]["success_url"].as_str().unwrap_or_default().replace("{CHECKOUT_SESSION_ID}", &id);
        (events, success)
    };
    deliver_later(&ctx, events);
    Redirect::to(&success).into_response()
}

async fn create_portal(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let path = "/v1/billing_portal/sessions";
    let form = match begin(&ctx, path, &headers, form) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let mut w = ctx.world.lock().unwrap();
    let id = w.id("bps");
    let customer = field(&form, "customer").unwrap_or_default().to_owned();
    let back = field(&form, "return_url").unwrap_or_default().to_owned();
    w.portals.insert(id.clone(), (customer, back));
    let answer = json!({"id": id, "object": "billing_portal.session", "url": format!("{}/portal/{id}", w.base)});
    drop(w);
    remember(&ctx, path, &headers, form, 200, &answer);
    Json(answer).into_response()
}

fn subscription_of(w: &World, customer: &str) -> Option<String> {
    w.subscriptions
        .iter()
        .rev()
        .find(|(_, s)| s["customer"] == customer && s["status"] != "canceled")
        .map(|(id, _)| id.clone())
}

async fn portal_page(State(ctx): State<Ctx>, Path(id): Path<String>) -> Response {
    let w = ctx.world.lock().unwrap();
    let Some((customer, back)) = w.portals.get(&id) else { return StatusCode::NOT_FOUND.into_response() };
    let mut buttons = String::new();
    for (price, label) in [("price_starter_mock", "Starter"), ("price_pro_mock", "Pro"), ("price_team_mock", "Team")] {
        buttons.push_str(&format!(
            "<form method=\"post\" action=\"/portal/{id}/switch?price={price}\"><button id=\"switch-{}\" type=\"submit\">Switch to {label}</button></form>",
            label.to_lowercase()
        ));
    }
    let current = subscription_of(&w, customer).unwrap_or_else(|| "none".into());
    Html(format!(
        "<!doctype html><html><head><title>Mock billing portal</title></head><body style=\"font-family:sans-serif;max-width:480px;margin:40px auto\">\
         <h1>Billing portal</h1><p>Subscription: {current}</p>{buttons}\
         <form method=\"post\" action=\"/portal/{id}/cancel\"><button id=\"cancel-plan\" type=\"submit\">Cancel plan</button></form>\
         <p><a id=\"return\" href=\"{back}\">Return to Layers</a></p></body></html>"
    ))
    .into_response()
}

#[derive(serde::Deserialize)]
struct SwitchQuery {
    price: String,
}

async fn portal_switch(State(ctx): State<Ctx>, Path(id): Path<String>, Query(q): Query<SwitchQuery>) -> Response {
    let (event, back) = {
        let mut w = ctx.world.lock().unwrap();
        let Some((customer, back)) = w.portals.get(&id).cloned() else { return StatusCode::NOT_FOUND.into_response() };
        let Some(sub) = subscription_of(&w, &customer) else { return StatusCode::BAD_REQUEST.into_response() };
        (set_subscription(&mut w, &sub, "active", Some(&q.price)), back)
    };
    deliver_later(&ctx, vec![event]);
    Redirect::to(&back).into_response()
}

async fn portal_cancel(State(ctx): State<Ctx>, Path(id): Path<String>) -> Response {
    let (event, back) = {
        let mut w = ctx.world.lock().unwrap();
        let Some((customer, back)) = w.portals.get(&id).cloned() else { return StatusCode::NOT_FOUND.into_response() };
        let Some(sub) = subscription_of(&w, &customer) else { return StatusCode::BAD_REQUEST.into_response() };
        (set_subscription(&mut w, &sub, "canceled", None), back)
    };
    deliver_later(&ctx, vec![event]);
    Redirect::to(&back).into_response()
}

fn authorised(ctx: &Ctx, path: &str, query: &str, headers: &HeaderMap) -> Option<Response> {
    record(ctx, "GET", path, query, headers, &[]);
    (headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {SECRET_KEY}")))
        .then(|| error(StatusCode::UNAUTHORIZED, "invalid_request_error", None, "Invalid API Key provided"))
}

async fn get_subscription(State(ctx): State<Ctx>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Some(denied) = authorised(&ctx, &format!("/v1/subscriptions/{id}"), "", &headers) {
        return denied;
    }
    match ctx.world.lock().unwrap().subscriptions.get(&id) {
        Some(s) => Json(s.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, "invalid_request_error", Some("resource_missing"), "No such subscription"),
    }
}

async fn get_charge(State(ctx): State<Ctx>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Some(denied) = authorised(&ctx, &format!("/v1/charges/{id}"), "", &headers) {
        return denied;
    }
    match ctx.world.lock().unwrap().charges.get(&id) {
        Some(c) => Json(c.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, "invalid_request_error", Some("resource_missing"), "No such charge"),
    }
}

async fn payment_methods(State(ctx): State<Ctx>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Some(denied) = authorised(&ctx, &format!("/v1/customers/{id}/payment_methods"), "", &headers) {
        return denied;
    }
    let w = ctx.world.lock().unwrap();
    let data: Vec<Value> = w
        .cards
        .get(&id)
        .map(|cards| {
            cards.iter().rev().map(|pm| json!({"id": pm, "object": "payment_method", "type": "card"})).collect()
        })
        .unwrap_or_default();
    Json(json!({"object": "list", "data": data, "has_more": false})).into_response()
}

async fn create_intent(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let path = "/v1/payment_intents";
    let form = match begin(&ctx, path, &headers, form) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let (status, answer, events) = {
        let mut w = ctx.world.lock().unwrap();
        if w.failing_intents > 0 {
            w.failing_intents -= 1;
            return error(StatusCode::INTERNAL_SERVER_ERROR, "api_error", None, "An unknown error occurred");
        }
        let customer = field(&form, "customer").unwrap_or_default().to_owned();
        let amount: i64 = field(&form, "amount").and_then(|a| a.parse().ok()).unwrap_or(0);
        let pm = field(&form, "payment_method").unwrap_or_default().to_owned();
        if !w.cards.get(&customer).is_some_and(|c| c.contains(&pm)) {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("resource_missing"),
                "No such PaymentMethod",
            );
        }
        let id = w.id("pi");
        let declined = w.declining.contains(&customer);
        let mut intent = json!({"id": id, "object": "payment_intent", "amount": amount,
                                "amount_received": if declined { 0 } else { amount }, "currency": "usd",
                                "customer": customer, "payment_method": pm,
                                "status": if declined { "requires_payment_method" } else { "succeeded" },
                                "metadata": metadata(&form, "metadata[")});
        let mut events = Vec::new();
        if declined {
            intent["last_payment_error"] = json!({"code": "card_declined", "decline_code": "insufficient_funds"});
            w.intents.insert(id.clone(), intent.clone());
            events.push(w.event("payment_intent.payment_failed", intent.clone()));
            let answer = json!({"error": {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
                                          "message": "Your card has insufficient funds.", "payment_intent": intent}});
            (402, answer, events)
        } else {
            let ch = w.id("ch");
            intent["latest_charge"] = json!(ch);
            w.charges.insert(
                ch.clone(),
                json!({"id": ch, "object": "charge", "amount": amount, "amount_refunded": 0,
                                                "refunded": false, "customer": customer, "payment_intent": id}),
            );
            w.intents.insert(id.clone(), intent.clone());
            events.push(w.event("payment_intent.succeeded", intent.clone()));
            (200, intent, events)
        }
    };
    remember(&ctx, path, &headers, form, status, &answer);
    deliver_later(&ctx, events);
    (StatusCode::from_u16(status).unwrap(), Json(answer)).into_response()
}

#[derive(serde::Deserialize)]
struct EventsQuery {
    #[serde(default)]
    delivery_success: Option<String>,
    #[serde(rename = "created[gte]", default)]
    created_gte: Option<i64>,
    #[serde(default)]
    starting_after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn list_events(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    raw: axum::extract::RawQuery,
    Query(q): Query<EventsQuery>,
) -> Response {
    if let Some(denied) = authorised(&ctx, "/v1/events", raw.0.as_deref().unwrap_or_default(), &headers) {
        return denied;
    }
    let w = ctx.world.lock().unwrap();
    // Newest first, like Stripe.
    let mut matching: Vec<&Value> = w
        .events
        .iter()
        .rev()
        .filter(|(_, delivered)| q.delivery_success.as_deref() != Some("false") || !*delivered)
        .filter(|(e, _)| q.created_gte.is_none_or(|t| e["created"].as_i64().unwrap_or(0) >= t))
        .map(|(e, _)| e)
        .collect();
    if let Some(after) = &q.starting_after {
        if let Some(pos) = matching.iter().position(|e| e["id"] == after.as_str()) {
            matching.drain(..=pos);
        }
    }
    let limit = q.limit.unwrap_or(10).clamp(1, 100);
    let has_more = matching.len() > limit;
    let data: Vec<Value> = matching.into_iter().take(limit).cloned().collect();
    Json(json!({"object": "list", "data": data, "has_more": has_more})).into_response()
}
