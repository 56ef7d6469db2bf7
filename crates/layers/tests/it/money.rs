//! Issue 11's money invariants seen from outside: every charge a client is told is its debit
//! (I6), caps hold with overage (I5), holds are upper bounds of what a provider bills (I5), and
//! every field that changes the provider's price is priced or refused.

use std::collections::HashMap;

use futures_util::StreamExt;
use layers_domain::MicroCredits;
use layers_store::{TransactionKind, UsageRecord};
use layers_testkit::{AppOptions, MockOpenAi, TestApp};
use serde_json::{json, Value};

use crate::billing::{app_with, at_rest, PRICED};
use crate::support::*;

/// Priced like a cheap PDF-capable model with a 200k window.
const PDF_MODEL: &str = r#"
[[models]]
name = "mock/pdf"
routes = [{ provider = "mock", model = "pdf" }]
input_per_mtok = 0.002
output_per_mtok = 0.002
context_window = 200000
max_output_tokens = 1000
"#;

/// A search model: Perplexity-like request fees by search context size.
const SEARCH_MODEL: &str = r#"
[[models]]
name = "mock/search"
routes = [{ provider = "mock", model = "search" }]
input_per_mtok = 1.0
output_per_mtok = 1.0
context_window = 127000
max_output_tokens = 1000
search_fee_low = 0.005
search_fee_medium = 0.008
search_fee_high = 0.012
searches_by_default = true
"#;

const IMAGE_MODEL: &str = r#"
[[models]]
name = "mock/image-q"
kind = "image"
routes = [{ provider = "mock", model = "gpt-image-1" }]
input_per_mtok = 5.0
per_image = 0.25
image_prices = [
    { quality = "low", size = "1024x1024", per_image = 0.011 },
    { quality = "medium", size = "1024x1024", per_image = 0.042 },
    { quality = "high", size = "1024x1024", per_image = 0.167 },
    { quality = "high", size = "1536x1024", per_image = 0.25 },
]
context_window = 32000
max_output_tokens = 0

[[models]]
name = "mock/dalle"
kind = "image"
routes = [{ provider = "mock", model = "dall-e-3" }]
per_image = 0.12
image_prices = [
    { quality = "standard", size = "1024x1024", per_image = 0.04 },
    { quality = "standard", size = "1792x1024", per_image = 0.08 },
    { quality = "hd", size = "1792x1024", per_image = 0.12 },
]
image_quality = "standard"
image_size = "1024x1024"
context_window = 4000
max_output_tokens = 0
"#;

async fn app_on(postgres: bool, extra: &str) -> Option<(TestApp, MockOpenAi)> {
    let opts = if postgres { AppOptions::default().postgres() } else { AppOptions::default() };
    app_with(opts.config(PDF_MODEL).config(SEARCH_MODEL).config(IMAGE_MODEL), extra).await
}

/// The charge a client was told, per request id: the header of a JSON answer, the `layers`
/// object of a stream's usage chunk, or (for a stream that did not ask for usage) the lookup.
async fn told(app: &TestApp, key: &str, resp: reqwest::Response) -> (String, Option<i64>) {
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let header = resp.headers().get("x-layers-credits-charged").map(|v| v.to_str().unwrap().to_owned());
    let streamed = resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream");
    if !streamed {
        let status = resp.status();
        let _ = resp.bytes().await;
        return (id, header.filter(|_| status == 200).map(|h| MicroCredits::parse_credits(&h).unwrap().0));
    }
    let events = sse_data(resp).await;
    let in_stream = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .find_map(|v| v["layers"]["credits_used_micros"].as_i64());
    let figure = match in_stream {
        Some(m) => Some(m),
        None => lookup(app, key, &id).await,
    };
    (id, figure)
}

/// `GET /api/v1/generation?id=`: the exact charge of one request, once it has ended.
async fn lookup(app: &TestApp, key: &str, id: &str) -> Option<i64> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let resp = app.get(&format!("/api/v1/generation?id={id}")).bearer_auth(key).send().await.unwrap();
        if resp.status() == 200 {
            let v: Value = resp.json().await.unwrap();
            let micros = v["data"]["credits_charged_micros"].as_i64().unwrap();
            assert_eq!(MicroCredits::parse_credits(v["data"]["credits_charged"].as_str().unwrap()).unwrap().0, micros);
            return Some(micros);
        }
        assert_eq!(resp.status(), 404);
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Every row's cost recomputed from its own columns.
fn assert_rows_reproduce_their_cost(rows: &[UsageRecord]) {
    for r in rows.iter().filter(|r| r.cost.is_positive()) {
        assert_eq!(r.rates.cost(&r.usage).saturating_add(r.fees), r.cost, "{r:?}");
        assert_eq!(r.charged.saturating_add(r.shortfall), r.cost, "charged + shortfall = cost: {r:?}");
    }
}

async fn told_equals_debited(postgres: bool) {
    let Some((app, _mock)) = app_on(postgres, "").await else { return };
    let (user, key) = app.user_with_key("i6@example.com", "5").await;
    let texts = [
        "mock:tokens=100",
        "mock:usage=50,300,250",
        "mock:usage=900,4000",
        "mock:cut",
        "mock:nodone",
        "mock:slow",
        "hi",
    ];
    let mut figures: HashMap<String, Option<i64>> = HashMap::new();
    for i in 0..50usize {
        let text = texts[i % texts.len()];
        let mut body = json!({"model": PRICED, "max_tokens": 100 + (i % 3) as u32 * 50,
                              "messages": [{"role": "user", "content": text}]});
        if i % 2 == 1 {
            body["stream"] = json!(true);
            if i % 4 == 1 {
                body["stream_options"] = json!({"include_usage": true});
            }
        }
        let resp = app.chat(&key, &body).send().await.unwrap();
        let (id, figure) = told(&app, &key, resp).await;
        figures.insert(id, figure);
    }
    let balance = at_rest(&app, &user).await;
    let rows = app.wait_for_usage(&user, 50).await;
    assert_eq!(rows.len(), 50);
    let mut sum_told = 0;
    for r in &rows {
        let figure = figures[&r.request_id];
        // A request the client was told nothing about (an upstream error before any output)
        // was charged nothing.
        assert_eq!(figure.unwrap_or(0), r.charged.0, "the charge told is the debit: {r:?}");
        sum_told += figure.unwrap_or(0);
    }
    assert_eq!(MicroCredits(5_000_000 - sum_told), balance, "the figures told add up to what the balance lost");
    assert!(rows.iter().any(|r| r.usage.reasoning_tokens == 250 && r.charged.is_positive()));
    assert_rows_reproduce_their_cost(&rows);
    let debits: i64 = app
        .store()
        .transactions(user.id, 1_000)
        .await
        .unwrap()
        .iter()
        .filter(|t| t.kind == TransactionKind::Usage)
        .map(|t| -t.amount.0)
        .sum();
    assert_eq!(debits, sum_told);
}

#[tokio::test]
async fn every_charge_told_is_the_debit_on_sqlite() {
    told_equals_debited(false).await;
}

#[tokio::test]
async fn every_charge_told_is_the_debit_on_postgres() {
    told_equals_debited(true).await;
}

#[tokio::test]
async fn overage_never_passes_the_per_request_cap() {
    let (app, _mock) = app_on(false, "[tiers.pro]\nmax_credits_per_request = 1").await.unwrap();
    let (user, key) = app.user_with_key("cap@example.com", "100").await;
    // The upstream ignores max_tokens and bills 4,000,000 output tokens (2,000 credits).
    let body =
        json!({"model": PRICED, "max_tokens": 20, "messages": [{"role": "user", "content": "mock:usage=10,4000000"}]});
    let resp = app.chat(&key, &body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let told = MicroCredits::parse_credits(resp.headers()["x-layers-credits-charged"].to_str().unwrap()).unwrap();
    assert!(told > MicroCredits(10_000) && told <= MicroCredits(1_000_000), "past the hold, within the cap: {told}");
    let balance = at_rest(&app, &user).await;
    assert_eq!(balance, MicroCredits(100_000_000 - told.0), "what was told is what was debited");
    let row = app.wait_for_usage(&user, 1).await.remove(0);
    assert_eq!((row.charged, row.shortfall.0), (told, row.cost.0 - told.0), "the rest is a recorded shortfall");
    assert_rows_reproduce_their_cost(&[row]);
}

#[tokio::test]
async fn a_pdf_is_held_at_its_ceiling_so_ten_at_once_cannot_overspend() {
    let (app, mock) = app_on(false, "").await.unwrap();
    let (user, key) = app.user_with_key("pdf@example.com", "0.05").await;
    let pdf = "data:application/pdf;base64,JVBERi0xLjcKJeLjz9MK";
    let body = json!({"model": "mock/pdf", "max_tokens": 100, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "mock:usage=200000,100"},
        {"type": "file", "file": {"filename": "a.pdf", "file_data": pdf}},
    ]}]});
    let sends = (0..10).map(|_| app.chat(&key, &body).send());
    let statuses: Vec<u16> =
        futures_util::future::join_all(sends).await.into_iter().map(|r| r.unwrap().status().as_u16()).collect();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!(statuses.iter().all(|s| *s == 200 || *s == 402), "{statuses:?}");
    // 200,000 prompt tokens at 0.2 µcr each: one request fits 0.05 credits, not two.
    assert_eq!(ok, 1, "{statuses:?}");
    assert_eq!(mock.requests().len(), 1, "refused requests never reached the provider");
    let balance = at_rest(&app, &user).await;
    assert!(balance.0 >= 0);
    let rows = app.wait_for_usage(&user, 1).await;
    assert!(rows.iter().all(|r| r.shortfall.0 == 0 && r.charged == r.cost && r.held >= r.cost), "{rows:?}");
    assert_eq!(app.core.billing.stats().shortfalls.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[tokio::test]
async fn fields_that_change_the_price_are_priced_or_refused() {
    let (app, mock) = app_on(false, "").await.unwrap();
    let (user, key) = app.user_with_key("fields@example.com", "10").await;
    let refused = [
        (json!({"anthropic": {"tools": [{"type": "web_search_20250305", "name": "web_search"}]}}), "anthropic.tools"),
        (json!({"openai": {"service_tier": "priority"}}), "openai.service_tier"),
        (json!({"service_tier": "priority"}), "service_tier"),
        (json!({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}), "modalities"),
        (json!({"web_search": true}), "web_search"),
        (json!({"web_search_options": {"search_context_size": "high"}}), "web_search_options"),
        (json!({"prediction": {"type": "content", "content": "a long draft"}}), "prediction"),
    ];
    for (extra, param) in refused {
        let mut body = chat_body(PRICED, "hi");
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let (status, err) = error_of(app.chat(&key, &body).send().await.unwrap()).await;
        assert_eq!((status, err["param"].as_str()), (400, Some(param)), "{err}");
    }
    for (part, param) in [
        (json!({"type": "file", "file": {"file_id": "file-abc123"}}), "messages[0].content[0].file.file_id"),
        (json!({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}), "messages[0].content[0]"),
    ] {
        let body = json!({"model": PRICED, "messages": [{"role": "user", "content": [part]}]});
        let (status, err) = error_of(app.chat(&key, &body).send().await.unwrap()).await;
        assert_eq!((status, err["param"].as_str()), (400, Some(param)), "{err}");
    }
    assert!(mock.requests().is_empty(), "nothing refused reached the provider");

    // A model that searches carries its request fee, held and charged, by context size.
    let body = json!({"model": "mock/search", "max_tokens": 100, "web_search_options": {"search_context_size": "high"},
                      "messages": [{"role": "user", "content": "mock:usage=10,100"}]});
    let resp = app.chat(&key, &body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // 110 tokens at 100 µcr + US$0.012 = 1.2 credits of fee.
    assert_eq!(resp.headers()["x-layers-credits-charged"], "1.211000");
    assert_eq!(mock.last_request().body["web_search_options"]["search_context_size"], "high");
    let body = json!({"model": "mock/search", "max_tokens": 100, "web_search": false,
                      "messages": [{"role": "user", "content": "mock:usage=10,100"}]});
    let resp = app.chat(&key, &body).send().await.unwrap();
    assert_eq!(resp.headers()["x-layers-credits-charged"], "0.011000", "no search, no fee");
    at_rest(&app, &user).await;
    let rows = app.wait_for_usage(&user, 2).await;
    assert!(rows.iter().any(|r| r.fees == MicroCredits(1_200_000)));
    assert_rows_reproduce_their_cost(&rows);
}

#[tokio::test]
async fn images_are_priced_by_quality_and_size() {
    let (app, mock) = app_on(false, "").await.unwrap();
    let (user, key) = app.user_with_key("images@example.com", "100").await;
    let post =
        |body: Value| app.http.post(format!("{}/v1/images/generations", app.url)).bearer_auth(&key).json(&body).send();
    let resp =
        post(json!({"model": "mock/image-q", "prompt": "a cat", "quality": "high", "size": "1536x1024", "n": 2}))
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    // Two images at US$0.25, and the 10-token prompt at US$5/Mtok.
    assert_eq!(resp.headers()["x-layers-credits-charged"], "50.005000");
    assert_eq!(mock.last_request().body["quality"], "high");
    // `auto`: held at the dearest, charged at what the provider says it made (medium, square).
    let resp = post(json!({"model": "mock/image-q", "prompt": "a dog", "quality": "auto"})).await.unwrap();
    assert_eq!(resp.headers()["x-layers-credits-charged"], "4.205000");
    // DALL·E says nothing of what it made: the provider's defaults (standard, square) apply,
    // and an aspect ratio is priced at the size it became on this route.
    let resp = post(json!({"model": "mock/dalle", "prompt": "a fox"})).await.unwrap();
    assert_eq!(resp.headers()["x-layers-credits-charged"], "4.000000");
    let resp = post(json!({"model": "mock/dalle", "prompt": "a fox", "aspect_ratio": "16:9"})).await.unwrap();
    assert_eq!(resp.headers()["x-layers-credits-charged"], "8.000000");
    assert_eq!(mock.last_request().body["size"], "1792x1024");
    at_rest(&app, &user).await;
    let rows = app.wait_for_usage(&user, 4).await;
    assert!(rows.iter().any(|r| r.held.0 >= 25_000_000 && r.charged.0 == 4_205_000), "{rows:?}");
    assert_rows_reproduce_their_cost(&rows);
}

#[tokio::test]
async fn both_output_caps_given_the_hold_and_the_forwarded_cap_agree() {
    let (app, mock) = app_on(false, "").await.unwrap();
    let (user, key) = app.user_with_key("caps2@example.com", "10").await;
    let body = json!({"model": PRICED, "max_tokens": 50, "max_completion_tokens": 30,
                      "messages": [{"role": "user", "content": "mock:tokens=30"}]});
    assert_eq!(app.chat(&key, &body).send().await.unwrap().status(), 200);
    let seen = mock.last_request().body;
    assert_eq!((seen["max_tokens"].as_u64(), seen["max_completion_tokens"].as_u64()), (Some(30), Some(30)));
    at_rest(&app, &user).await;
    let row = app.wait_for_usage(&user, 1).await.remove(0);
    // The hold covers exactly the 30 tokens forwarded (500 µcr each) and the prompt's bound
    // (its bytes and overhead, at 50 µcr a token).
    let prompt = row.held.0 - 30 * 500;
    assert!(prompt > 0 && prompt % 50 == 0 && prompt / 50 < 100, "{row:?}");
}

#[tokio::test]
async fn the_generation_lookup_reports_a_streams_exact_charge() {
    let (app, _mock) = app_on(false, "").await.unwrap();
    let (user, key) = app.user_with_key("lookup@example.com", "10").await;
    let resp = app.chat(&key, &stream_body(PRICED, "mock:tokens=100", true)).send().await.unwrap();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let events = sse_data(resp).await;
    let usage_chunk: Value =
        events.iter().filter_map(|e| serde_json::from_str::<Value>(e).ok()).find(|v| v["usage"].is_object()).unwrap();
    // 10 prompt tokens at 50 µcr and 100 output tokens at 500 µcr.
    assert_eq!(usage_chunk["layers"]["credits_used"], "0.050500", "in the stream: {usage_chunk}");
    assert_eq!(lookup(&app, &key, &id).await, Some(50_500));
    let (status, err) = error_of(app.get("/api/v1/generation?id=nope").bearer_auth(&key).send().await.unwrap()).await;
    assert_eq!((status, err["code"].as_str()), (404, Some("generation_not_found")));
    // Another account cannot look it up.
    let (_other, other_key) = app.user_with_key("other@example.com", "1").await;
    let resp = app.get(&format!("/api/v1/generation?id={id}")).bearer_auth(&other_key).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    at_rest(&app, &user).await;
    let mut s = app.chat(&key, &stream_body(PRICED, "hi", false)).send().await.unwrap().bytes_stream();
    while s.next().await.is_some() {}
}
