//! Embeddings, images, and the account endpoints (SPEC §2.1): routed, held and billed like
//! chat, with their input limits, on OpenAI-compatible, Gemini and sandbox routes.

use layers_domain::KeyEnv;
use layers_testkit::app::{MOCK_EMBED, MOCK_IMAGE};
use layers_testkit::{AppOptions, MockGemini, MockOpenAi, TestApp};
use serde_json::{json, Value};

use crate::support::*;

async fn app() -> (TestApp, MockOpenAi, MockGemini) {
    let (mock, gemini) = (MockOpenAi::start().await, MockGemini::start().await);
    let app = TestApp::spawn_with(AppOptions::default().with_mock(&mock).with_mock_gemini(&gemini)).await.unwrap();
    (app, mock, gemini)
}

fn post(app: &TestApp, path: &str, key: &str, body: &Value) -> reqwest::RequestBuilder {
    app.http.post(format!("{}{path}", app.url)).bearer_auth(key).json(body)
}

#[tokio::test]
async fn embeddings_are_routed_and_billed_by_input_tokens() {
    let (app, mock, gemini) = app().await;
    let (user, key) = app.user_with_key("embed@example.com", "10").await;
    let resp = post(&app, "/v1/embeddings", &key, &json!({"model": MOCK_EMBED, "input": ["a", "b"], "dimensions": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-layers-provider"], "mock");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], MOCK_EMBED);
    assert_eq!(v["data"][1]["embedding"], json!([0.25, -0.5, 0.75, 1.0]));
    assert_eq!(v["usage"], json!({"prompt_tokens": 10, "total_tokens": 10}));
    let seen = mock.last_request().body;
    assert_eq!((seen["model"].as_str(), seen["dimensions"].as_u64()), (Some("text-embedding-3-small"), Some(4)));
    let rows = app.wait_for_usage(&user, 1).await;
    // 10 tokens × 0.02 US$/Mtok = 2e-7 US$ = 20 micro-credits.
    assert_eq!((rows[0].usage.prompt_tokens, rows[0].cost.0, rows[0].endpoint.as_str()), (10, 20, "embeddings"));

    // Gemini: batchEmbedContents, base64 as the openai SDK asks by default, usage estimated.
    let v: Value = post(
        &app,
        "/v1/embeddings",
        &key,
        &json!({"model": "mock/gemini-embedding", "input": "hello world", "encoding_format": "base64"}),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(v["data"][0]["embedding"].is_string(), "{v}");
    let (path, seen) = gemini.last_request();
    assert_eq!(path, "models/gemini-embedding-001:batchEmbedContents");
    assert_eq!(seen.body["requests"][0]["content"]["parts"][0]["text"], "hello world");
    let rows = app.wait_for_usage(&user, 2).await;
    let g = rows.iter().find(|r| r.provider == "mock-gemini").unwrap();
    assert!(g.usage_estimated && g.usage.prompt_tokens > 0 && g.cost.0 > 0, "{g:?}");

    // Bad inputs: clear 400s naming the field; a chat model is not an embedding model.
    for (body, param) in [
        (json!({"model": MOCK_EMBED, "input": ""}), "input[0]"),
        (json!({"model": MOCK_EMBED, "input": []}), "input"),
        (json!({"model": MOCK_EMBED, "input": [1, "a"]}), "input"),
        (json!({"model": MOCK_EMBED, "input": "a", "encoding_format": "hex"}), "encoding_format"),
        (json!({"model": MOCK_MODEL, "input": "a"}), "model"),
    ] {
        let (status, err) = error_of(post(&app, "/v1/embeddings", &key, &body).send().await.unwrap()).await;
        assert_eq!((status, err["param"].as_str()), (400, Some(param)), "{body}");
    }
}

#[tokio::test]
async fn images_are_priced_per_image_with_their_limits() {
    let (app, mock, _gemini) = app().await;
    let (user, key) = app.user_with_key("images@example.com", "100").await;
    let resp = post(
        &app,
        "/v1/images/generations",
        &key,
        &json!({"model": MOCK_IMAGE, "prompt": "a lighthouse", "n": 2, "size": "1024x1024"}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-layers-credits-charged"], "8.000000");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert!(v["data"][0]["b64_json"].as_str().unwrap().starts_with("iVBOR"));
    let seen = mock.last_request().body;
    assert_eq!(
        (seen["model"].as_str(), seen["n"].as_u64(), seen["size"].as_str()),
        (Some("gpt-image-1"), Some(2), Some("1024x1024"))
    );

    // The reference path takes an aspect ratio.
    let resp =
        post(&app, "/api/v1/image", &key, &json!({"model": MOCK_IMAGE, "prompt": "wide", "aspect_ratio": "16:9"}))
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(mock.last_request().body["size"], "1536x1024");
    let rows = app.wait_for_usage(&user, 2).await;
    // US$0.04 per image = 4 credits = 4,000,000 micro-credits.
    assert!(rows.iter().any(|r| r.usage.images == 2 && r.cost.0 == 8_000_000), "{rows:?}");

    for (body, param) in [
        (json!({"model": MOCK_IMAGE, "prompt": "x", "n": 5}), "n"),
        (json!({"model": MOCK_IMAGE, "prompt": "x", "n": 0}), "n"),
        (json!({"model": MOCK_IMAGE, "prompt": "x".repeat(10_001)}), "prompt"),
        (json!({"model": MOCK_IMAGE, "prompt": ""}), "prompt"),
        (json!({"model": MOCK_IMAGE, "prompt": "x", "aspect_ratio": "5:4"}), "aspect_ratio"),
    ] {
        let (status, err) = error_of(post(&app, "/v1/images/generations", &key, &body).send().await.unwrap()).await;
        assert_eq!((status, err["param"].as_str()), (400, Some(param)));
    }
    // An upstream failure costs nothing.
    let (status, _) = error_of(
        post(&app, "/v1/images/generations", &key, &json!({"model": MOCK_IMAGE, "prompt": "mock:500"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 502);
    // Test keys get sandbox images, unbilled.
    let test_key = app.create_key(&user, KeyEnv::Test).await;
    let resp = post(&app, "/v1/images/generations", &test_key, &json!({"model": MOCK_IMAGE, "prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-layers-provider"], "sandbox");
}

#[tokio::test]
async fn pricing_balance_and_usage_endpoints() {
    let (app, _mock, _gemini) = app().await;
    let (_user, key) = app.user_with_key("account@example.com", "10").await;
    let pricing: Value = app.get("/api/v1/pricing").send().await.unwrap().json().await.unwrap();
    let chat = pricing["data"].as_array().unwrap().iter().find(|m| m["model"] == MOCK_MODEL).unwrap();
    // 0.15 US$/Mtok = 15 credits per million tokens.
    assert_eq!(chat["credits_per_million_input_tokens"], "15");
    assert_eq!(chat["credits_per_million_output_tokens"], "60");
    let image = pricing["data"].as_array().unwrap().iter().find(|m| m["model"] == MOCK_IMAGE).unwrap();
    assert_eq!((image["kind"].as_str(), image["credits_per_image"].as_str()), (Some("image"), Some("4")));

    let bal = |key: String| {
        let app = &app;
        async move { app.http.get(format!("{}/api/v1/balance", app.url)).bearer_auth(key).send().await.unwrap() }
    };
    let v: Value = bal(key.clone()).await.json().await.unwrap();
    assert_eq!((v["credits"].as_str(), v["usd"].as_str(), v["tier"].as_str()), (Some("10"), Some("0.1"), Some("pro")));
    assert_eq!(bal("lyr_live_sk_nope".into()).await.status(), 401);

    for i in 0..3 {
        assert_eq!(app.chat(&key, &chat_body(MOCK_MODEL, &format!("hi {i}"))).send().await.unwrap().status(), 200);
    }
    let usage = |q: &str| {
        let app = &app;
        let (url, key) = (format!("{}/api/v1/usage{q}", app.url), key.clone());
        async move { app.http.get(url).bearer_auth(key).send().await.unwrap() }
    };
    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    for _ in 0..30 {
        let v: Value = usage(&query).await.json().await.unwrap();
        seen.extend(v["data"].as_array().unwrap().iter().map(|r| r["request_id"].as_str().unwrap().to_owned()));
        if seen.len() >= 3 && !v["has_more"].as_bool().unwrap() {
            assert_eq!(v["data"][0]["credits"], "0.00054");
            break;
        }
        if v["has_more"].as_bool().unwrap() {
            query = format!("?limit=2&cursor={}", v["next_cursor"].as_str().unwrap());
        } else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            seen.clear();
            query = "?limit=2".to_owned();
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    let (status, err) = error_of(usage("?limit=1000").await).await;
    assert_eq!((status, err["param"].as_str()), (400, Some("limit")));
}
