//! The official `anthropic` Python SDK against `/v1/messages`, served by each kind of route:
//! Anthropic natively, Gemini and an OpenAI-compatible upstream translated.

use layers_testkit::app::{MOCK_CLAUDE, MOCK_GEMINI, MOCK_MODEL};
use layers_testkit::python::{run_script, sdk_python};
use layers_testkit::{AppOptions, MockAnthropic, MockGemini, MockOpenAi, TestApp};

async fn run(opts: AppOptions, model: &str, expected: &str, usage: (u32, u32), tools: bool) {
    let Some(python) = sdk_python() else { return };
    let app = TestApp::spawn_with(opts).await.unwrap();
    let (user, key) = app.user_with_key("anthropic-sdk@example.com", "100").await;
    let out = run_script(
        &python,
        include_str!("sdk/anthropic_messages.py"),
        &[
            ("BASE_URL", app.url.clone()),
            ("API_KEY", key),
            ("MODEL", model.to_owned()),
            ("EXPECTED_TEXT", expected.to_owned()),
            ("PROMPT_TOKENS", usage.0.to_string()),
            ("COMPLETION_TOKENS", usage.1.to_string()),
            ("TOOLS", if tools { "1" } else { "0" }.to_owned()),
            ("ANTHROPIC_ROUTE", if model == MOCK_CLAUDE { "1" } else { "0" }.to_owned()),
        ],
    )
    .await;
    assert!(out.contains("all checks passed"), "{out}");
    // Every successful call was metered and billed under the messages endpoint.
    let rows = app.wait_for_usage(&user, if tools { 6 } else { 3 }).await;
    let ok: Vec<_> = rows.iter().filter(|r| r.status == 200).collect();
    assert!(ok.iter().all(|r| r.cost.0 > 0 && r.endpoint == "messages"), "{rows:?}");
}

#[tokio::test]
async fn the_anthropic_sdk_on_a_native_anthropic_route() {
    let mock = MockAnthropic::start().await;
    run(
        AppOptions::default().with_mock_anthropic(&mock),
        MOCK_CLAUDE,
        layers_testkit::mock_anthropic::ANSWER,
        (21, 9),
        true,
    )
    .await;
}

#[tokio::test]
async fn the_anthropic_sdk_on_a_gemini_route() {
    let mock = MockGemini::start().await;
    run(
        AppOptions::default().with_mock_gemini(&mock),
        MOCK_GEMINI,
        layers_testkit::mock_gemini::ANSWER,
        (17, 13),
        true,
    )
    .await;
}

#[tokio::test]
async fn the_anthropic_sdk_on_an_openai_compatible_route() {
    let mock = MockOpenAi::start().await;
    run(AppOptions::default().with_mock(&mock), MOCK_MODEL, "Hello from the mock upstream!", (12, 6), false).await;
}

#[tokio::test]
async fn the_anthropic_sdk_with_todays_fields_on_the_sandbox_with_a_test_key() {
    let Some(python) = sdk_python() else { return };
    let app = TestApp::spawn().await;
    let user = app.create_user("anthropic-today@example.com", layers_domain::Tier::Free).await;
    let key = app.create_key(&user, layers_domain::KeyEnv::Test).await;
    let out = run_script(
        &python,
        include_str!("sdk/anthropic_current.py"),
        &[("BASE_URL", app.url.clone()), ("API_KEY", key)],
    )
    .await;
    assert!(out.contains("all checks passed"), "{out}");
}
