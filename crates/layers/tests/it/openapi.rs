//! `GET /openapi.json` (issue 17): an OpenAPI 3.1 document of every public endpoint with its
//! error responses. That every response of the suite validates against it is checked after the
//! suite by scripts/openapi-check; here, that the document is served and that every operation
//! it describes is routed.

use layers_testkit::TestApp;
use serde_json::Value;

#[tokio::test]
async fn the_document_is_served_and_every_operation_in_it_is_routed() {
    let app = TestApp::spawn().await;
    let doc: Value = app.get("/openapi.json").send().await.unwrap().json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let described = layers_server::api::openapi::described();
    assert!(described.len() >= 20, "{described:?}");
    for (method, path) in described {
        let op = &doc["paths"][path][method.to_lowercase()];
        assert!(op["responses"]["200"].is_object() && op["responses"]["400"].is_object(), "{method} {path}");
        let resp = match method {
            "GET" => app.get(path).send().await.unwrap(),
            _ => app.http.post(format!("{}{path}", app.url)).json(&serde_json::json!({})).send().await.unwrap(),
        };
        // Routed: answered by its handler (200, or 400/401 without a key or a body), never the
        // fallback's 404 or 405.
        let status = resp.status().as_u16();
        assert!(![404, 405].contains(&status), "{method} {path} is not routed ({status})");
        if op.get("security").is_some() {
            assert!(op["responses"]["401"].is_object(), "{method} {path}");
            assert_eq!(status, 401, "{method} {path} needs a key");
        }
    }
    // Error bodies are described as they are: the OpenAI envelope, Anthropic's under /v1/messages.
    let schema = |path: &str| {
        doc["paths"][path]["post"]["responses"]["401"]["content"]["application/json"]["schema"]["$ref"].clone()
    };
    assert_eq!(schema("/v1/chat/completions"), "#/components/schemas/ErrorResponse");
    assert_eq!(schema("/v1/messages"), "#/components/schemas/AnthropicErrorResponse");
}
