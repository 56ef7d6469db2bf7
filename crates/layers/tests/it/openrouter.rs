//! The OpenRouter superset (issue 17): a client switches from OpenRouter by changing the base
//! URL and the key. `models` fallbacks, usage accounting (`usage.cost`), `/api/v1/key`,
//! `/api/v1/generation` by the answer's id, `/api/v1/models`, and app attribution kept with the
//! usage and shown on the dashboard.

use layers_domain::{KeyEnv, MicroCredits};
use layers_testkit::app::MOCK_CLAUDE;
use layers_testkit::mock_openai::Reply;
use layers_testkit::{AppOptions, MockAnthropic, MockOpenAi, TestApp};
use serde_json::{json, Value};

use crate::support::*;

/// US$ of a `credits_used` decimal string (1 credit = US$0.01), as the exact decimal text.
fn usd_of_credits(credits: &str) -> f64 {
    let micros: i64 = MicroCredits::parse_credits(credits).expect("a credit amount").0;
    MicroCredits(micros).usd_number()
}

/// `GET /api/v1/generation?id=` with the key.
async fn generation(app: &TestApp, key: &str, id: &str) -> Value {
    let resp = app.get(&format!("/api/v1/generation?id={id}")).bearer_auth(key).send().await.unwrap();
    resp.json().await.unwrap()
}

#[tokio::test]
async fn models_fall_back_to_the_next_model_and_the_failed_one_costs_nothing() {
    let (openai, anthropic) = (MockOpenAi::start().await, MockAnthropic::start().await);
    openai.reply_with(Reply::Status { status: 500, message: "down".into(), retry_after: None });
    let app =
        TestApp::spawn_with(AppOptions::default().with_mock(&openai).with_mock_anthropic(&anthropic)).await.unwrap();
    let (user, key) = app.user_with_key("fallback@example.com", "10").await;
    let mut body = chat_body(MOCK_MODEL, "hello");
    body["models"] = json!([MOCK_CLAUDE]);
    let resp = app.chat(&key, &body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["model"], MOCK_CLAUDE, "the fallback answered");
    assert_eq!(v["id"], format!("gen-{request_id}"));
    assert!(anthropic.requests().iter().all(|r| r.body.get("models").is_none()), "no upstream sees `models`");
    // The usage object has the exact cost in US$, the same figure as the debit.
    let credits_used = v["layers"]["credits_used"].as_str().unwrap();
    assert_eq!(v["usage"]["cost"].as_f64().unwrap(), usd_of_credits(credits_used));
    assert_eq!(v["usage"]["is_byok"], false);
    let rows = app.wait_for_usage(&user, 2).await;
    let failed = rows.iter().find(|r| r.model == MOCK_MODEL).expect("the failed model's row");
    assert_eq!((failed.status, failed.charged), (502, MicroCredits::ZERO));
    // The generation is found by the answer's id and reports the answering model.
    let g = generation(&app, &key, &format!("gen-{request_id}")).await;
    assert_eq!(g["data"]["model"], MOCK_CLAUDE);
    assert_eq!(g["data"]["total_cost"], v["usage"]["cost"]);
    assert_eq!(usd_of_credits(g["data"]["credits_charged"].as_str().unwrap()), usd_of_credits(credits_used));

    // The client's own mistakes never fall back: every model would meet them.
    let mut bad = chat_body(MOCK_MODEL, "x");
    bad["models"] = json!([MOCK_CLAUDE]);
    bad["max_tokens"] = json!(0);
    let (status, err) = error_of(app.chat(&key, &bad).send().await.unwrap()).await;
    assert_eq!((status, err["param"].as_str()), (400, Some("max_tokens")));
}

#[tokio::test]
async fn the_openrouter_fields_are_refused_by_name_when_they_cannot_be_honoured() {
    let app = TestApp::spawn().await;
    let (_, key) = app.user_with_key("fields@example.com", "10").await;
    for (field, value, param) in [
        ("transforms", json!(["middle-out"]), "transforms"),
        ("provider", json!({"zdr": true}), "provider.zdr"),
        ("provider", json!({"only": ["nobody"]}), "provider"),
        ("provider", json!({"max_price": {"prompt": 0.01}}), "provider.max_price.prompt"),
        ("models", json!(vec!["a/b"; 9]), "models"),
    ] {
        let mut body = chat_body("sandbox/echo", "x");
        body[field] = value;
        let (status, err) = error_of(app.chat(&key, &body).send().await.unwrap()).await;
        assert_eq!((status, err["param"].as_str()), (400, Some(param)), "{field}: {err}");
    }
}

#[tokio::test]
async fn usage_include_shows_the_cost_at_the_end_of_a_stream() {
    let app = TestApp::spawn().await;
    let (_, key) = app.user_with_key("stream-cost@example.com", "10").await;
    let mut body = stream_body("sandbox/echo", "hello", false);
    body["usage"] = json!({"include": true});
    let events = sse_data(app.chat(&key, &body).send().await.unwrap()).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    let credits_used = last["layers"]["credits_used"].as_str().unwrap();
    assert!(last["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(last["usage"]["cost"].as_f64().unwrap(), usd_of_credits(credits_used));
    assert!(usd_of_credits(credits_used) > 0.0);
}

#[tokio::test]
async fn the_key_endpoint_describes_the_calling_key() {
    let app = TestApp::spawn().await;
    let (user, key) = app.user_with_key("key-info@example.com", "10").await;
    let test_key = app.create_key(&user, KeyEnv::Test).await;
    let resp = app.chat(&key, &chat_body("sandbox/echo", "spend a little")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    app.wait_for_usage(&user, 1).await;
    let get = |k: &str| app.get("/api/v1/key").bearer_auth(k.to_owned()).send();
    let v: Value = get(&key).await.unwrap().json().await.unwrap();
    let d = &v["data"];
    assert!(d["label"].is_string(), "{v}");
    assert_eq!(d["limit"], Value::Null);
    assert!(d["usage"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(d["is_test"], false);
    assert_eq!(d["is_free_tier"], false, "a pro account");
    assert_eq!(d["rate_limit"], json!({"requests": 300, "interval": "1m"}));
    let t: Value = get(&test_key).await.unwrap().json().await.unwrap();
    assert_eq!((t["data"]["is_test"].as_bool(), t["data"]["usage"].as_f64()), (Some(true), Some(0.0)));
    assert_eq!(t["data"]["rate_limit"]["requests"], 300);
    let (status, _) = error_of(app.get("/api/v1/key").send().await.unwrap()).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn openrouter_paths_and_models_schema() {
    let app = TestApp::spawn().await;
    let (_, key) = app.user_with_key("paths@example.com", "10").await;
    let resp = app
        .http
        .post(format!("{}/api/v1/chat/completions", app.url))
        .bearer_auth(&key)
        .json(&chat_body("sandbox/echo", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let models: Value = app.get("/api/v1/models").send().await.unwrap().json().await.unwrap();
    let echo = models["data"].as_array().unwrap().iter().find(|m| m["id"] == "sandbox/echo").unwrap();
    for field in [
        "name",
        "canonical_slug",
        "description",
        "context_length",
        "architecture",
        "pricing",
        "top_provider",
        "supported_parameters",
        "created",
        "object",
        "owned_by",
    ] {
        assert!(echo.get(field).is_some(), "{field} missing from {echo}");
    }
    assert_eq!(echo["architecture"]["output_modalities"], json!(["text"]));
    assert!(echo["pricing"]["prompt"].is_string(), "prices are exact decimal strings, as OpenRouter writes them");
    assert!(echo["supported_parameters"].as_array().unwrap().iter().any(|p| p == "tools"));
    let embed = models["data"].as_array().unwrap().iter().find(|m| m["id"] == "sandbox/embed").unwrap();
    assert_eq!(embed["architecture"]["output_modalities"], json!(["embeddings"]));
}

#[tokio::test]
async fn the_app_a_request_came_from_is_kept_and_shown() {
    let app = TestApp::spawn().await;
    let (user, key) = app.user_with_key("attribution@example.com", "10").await;
    let resp = app
        .chat(&key, &chat_body("sandbox/echo", "hi"))
        .header("HTTP-Referer", "https://myapp.example/path?session=secret")
        .header("X-Title", "My App")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let rows = app.wait_for_usage(&user, 1).await;
    assert_eq!(rows[0].app_title.as_deref(), Some("My App"));
    assert_eq!(rows[0].app_origin.as_deref(), Some("https://myapp.example"), "only the origin is kept");
    let g = generation(&app, &key, &request_id).await;
    assert_eq!(
        (g["data"]["app_title"].as_str(), g["data"]["origin"].as_str()),
        (Some("My App"), Some("https://myapp.example"))
    );
    // The other spelling of the title header.
    app.chat(&key, &chat_body("sandbox/echo", "again")).header("X-OpenRouter-Title", "Other App").send().await.unwrap();
    let rows = app.wait_for_usage(&user, 2).await;
    assert!(rows.iter().any(|r| r.app_title.as_deref() == Some("Other App")));
}

/// The fields a run of `sdk/openrouter_switch.py` saw, per endpoint: path → JSON type.
fn seen_fields(out: &str) -> serde_json::Map<String, Value> {
    let line = out.lines().find_map(|l| l.strip_prefix("FIELDS ")).expect("the script prints its fields");
    serde_json::from_str(line).unwrap()
}

#[tokio::test]
async fn a_client_written_for_openrouter_sees_the_same_fields_on_layers() {
    let Some(python) = layers_testkit::python::sdk_python() else { return };
    let script = include_str!("sdk/openrouter_switch.py");
    let openrouter = layers_testkit::MockOpenRouter::start().await;
    let theirs = layers_testkit::python::run_script(
        &python,
        script,
        &[
            ("BASE_URL", openrouter.base_url.clone()),
            ("API_KEY", "sk-or-v1-mock".to_owned()),
            ("MODEL", "openai/gpt-4o-mini".to_owned()),
        ],
    )
    .await;
    let app = TestApp::spawn().await;
    let (user, key) = app.user_with_key("switcher@example.com", "10").await;
    let ours = layers_testkit::python::run_script(
        &python,
        script,
        &[("BASE_URL", format!("{}/api/v1", app.url)), ("API_KEY", key), ("MODEL", "sandbox/echo".to_owned())],
    )
    .await;
    let (theirs, ours) = (seen_fields(&theirs), seen_fields(&ours));
    let mut missing = Vec::new();
    for (endpoint, fields) in &theirs {
        let Some(Value::Object(mine)) = ours.get(endpoint) else {
            missing.push(format!("{endpoint}: not reached"));
            continue;
        };
        for (path, kind) in fields.as_object().unwrap() {
            match mine.get(path) {
                None => missing.push(format!("{endpoint}: {path}")),
                // A field one side leaves null (unknown there) is still the same field.
                Some(k) if k != kind && k != "null" && kind != "null" => {
                    missing.push(format!("{endpoint}: {path} is {k} here, {kind} on OpenRouter"))
                }
                Some(_) => {}
            }
        }
    }
    assert!(missing.is_empty(), "fields an OpenRouter client reads that Layers lacks:\n{}", missing.join("\n"));
    // And the app the client named is on its usage.
    let rows = app.wait_for_usage(&user, 2).await;
    assert!(rows.iter().all(|r| r.app_title.as_deref() == Some("My App")));
    assert!(openrouter.requests().len() == 2);
}
