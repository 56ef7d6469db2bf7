//! Every input limit of SPEC §2.3 answers a clear 4xx naming the field, and loses nothing.

use layers_testkit::{AppOptions, MockOpenAi, TestApp};
use serde_json::{json, Value};

use crate::support::*;

async fn app() -> (TestApp, MockOpenAi, String) {
    let mock = MockOpenAi::start().await;
    let app = TestApp::spawn_with(
        AppOptions::default()
            .with_mock(&mock)
            .config("[limits]\nmax_body_bytes = 65536\nmax_messages = 5\nmax_message_chars = 50"),
    )
    .await
    .unwrap();
    let (_, key) = app.user_with_key("limits@example.com", "10").await;
    (app, mock, key)
}

fn raw(app: &TestApp, key: &str, content_type: &str, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
    app.http
        .post(format!("{}/v1/chat/completions", app.url))
        .bearer_auth(key)
        .header("content-type", content_type)
        .body(body)
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let (app, mock, key) = app().await;
    let big = json!({"model": MOCK_MODEL, "messages": [{"role": "user", "content": "x".repeat(70_000)}]});
    let resp = app.chat(&key, &big).send().await.unwrap();
    let (status, err) = error_of(resp).await;
    assert_eq!(status, 413);
    assert_eq!(err["code"], "request_too_large");
    // Without a Content-Length (chunked), the limit holds while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..20).map(|_| Ok(vec![b' '; 8192])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let resp = raw(&app, &key, "application/json", body).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn non_json_content_types_get_415() {
    let (app, _mock, key) = app().await;
    for ct in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        let resp = raw(&app, &key, ct, chat_body(MOCK_MODEL, "hi").to_string()).send().await.unwrap();
        let (status, err) = error_of(resp).await;
        assert_eq!(status, 415, "{ct}");
        assert_eq!(err["code"], "unsupported_media_type");
    }
    let resp =
        app.http.post(format!("{}/v1/chat/completions", app.url)).bearer_auth(&key).body("{}").send().await.unwrap();
    assert_eq!(resp.status(), 415, "a missing Content-Type is refused too");
    let ok = raw(&app, &key, "application/json; charset=utf-8", chat_body(MOCK_MODEL, "hi").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn message_limits_name_the_field() {
    let (app, mock, key) = app().await;
    let many: Vec<Value> = (0..6).map(|i| json!({"role": "user", "content": format!("m{i}")})).collect();
    let (status, err) =
        error_of(app.chat(&key, &json!({"model": MOCK_MODEL, "messages": many})).send().await.unwrap()).await;
    assert_eq!((status, err["param"].as_str()), (400, Some("messages")));
    assert!(err["message"].as_str().unwrap().contains("at most 5"));

    let long = json!({"model": MOCK_MODEL, "messages": [
        {"role": "system", "content": "short"},
        {"role": "user", "content": [{"type": "text", "text": "y".repeat(30)}, {"type": "text", "text": "z".repeat(30)}]}
    ]});
    let (status, err) = error_of(app.chat(&key, &long).send().await.unwrap()).await;
    assert_eq!((status, err["param"].as_str()), (400, Some("messages[1].content")));

    // Characters, not bytes: 50 CJK characters are 150 bytes and still allowed.
    let cjk = chat_body(MOCK_MODEL, &"字".repeat(50));
    assert_eq!(app.chat(&key, &cjk).send().await.unwrap().status(), 200);

    let empty = json!({"model": MOCK_MODEL, "messages": []});
    let (status, err) = error_of(app.chat(&key, &empty).send().await.unwrap()).await;
    assert_eq!((status, err["param"].as_str()), (400, Some("messages")));
    assert_eq!(mock.requests().len(), 1, "only the valid request reached the upstream");
}

#[tokio::test]
async fn malformed_json_and_schema_errors_name_the_field() {
    let (app, _mock, key) = app().await;
    let cases: &[(&str, &str, &str)] = &[
        (r#"{"model": "#, "body", "invalid_json"),
        (r#"{"messages": [{"role":"user","content":"x"}]}"#, "model", "invalid_value"),
        (
            r#"{"model":"mock/gpt-4o-mini","messages":[{"role":"wizard","content":"x"}]}"#,
            "messages[0].role",
            "invalid_value",
        ),
        (
            r#"{"model":"mock/gpt-4o-mini","messages":[{"role":"user","content":"x"}],"max_tokens":-5}"#,
            "max_tokens",
            "invalid_value",
        ),
        (
            r#"{"model":"mock/gpt-4o-mini","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#,
            "stream",
            "invalid_value",
        ),
        (
            r#"{"model":"mock/gpt-4o-mini","messages":[{"role":"user","content":42}]}"#,
            "messages[0].content",
            "invalid_value",
        ),
    ];
    for (body, param, code) in cases {
        let (status, err) = error_of(raw(&app, &key, "application/json", body.to_string()).send().await.unwrap()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(err["param"].as_str(), Some(*param), "{body}: {err}");
        assert_eq!(err["code"].as_str(), Some(*code), "{body}");
    }
    let too_many =
        json!({"model": MOCK_MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 1_000_000});
    let (status, err) = error_of(app.chat(&key, &too_many).send().await.unwrap()).await;
    assert_eq!((status, err["param"].as_str()), (400, Some("max_tokens")));
}

#[tokio::test]
async fn unknown_models_get_404() {
    let (app, _mock, key) = app().await;
    for model in ["nobody/nothing", "openai/gpt-4o", "gpt-9"] {
        let resp = app.chat(&key, &chat_body(model, "x")).send().await.unwrap();
        assert_eq!(resp.headers()["x-should-retry"], "false");
        let (status, err) = error_of(resp).await;
        assert_eq!((status, err["code"].as_str()), (404, Some("model_not_found")), "{model}");
        assert_eq!(err["type"], "invalid_request_error");
    }
    let (status, err) =
        error_of(app.chat(&key, &chat_body("openai/text-embedding-3-small", "x")).send().await.unwrap()).await;
    // Known but its provider is not configured here: still not found.
    assert_eq!(status, 404, "{err}");
}

#[tokio::test]
async fn unknown_routes_and_methods_use_the_error_shape() {
    let (app, _mock, _key) = app().await;
    let (status, err) = error_of(app.get("/v1/nope").send().await.unwrap()).await;
    assert_eq!((status, err["code"].as_str()), (404, Some("not_found")));
    let (status, _) = error_of(app.get("/v1/chat/completions").send().await.unwrap()).await;
    assert_eq!(status, 405);
}
