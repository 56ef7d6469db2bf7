//! The official `openai` Python SDK against Layers, the way users' code meets it.

use layers_domain::KeyEnv;
use layers_store::KeyState;
use layers_testkit::python::{run_script, sdk_python};
use layers_testkit::{AppOptions, MockOpenAi, TestApp};

use crate::support::MOCK_MODEL;

#[tokio::test]
async fn the_openai_sdk_works_unmodified() {
    let Some(python) = sdk_python() else { return };
    let mock = MockOpenAi::start().await;
    let app = TestApp::spawn_with(AppOptions::default().with_mock(&mock)).await.unwrap();
    let (user, key) = app.user_with_key("sdk@example.com", "10").await;
    let dead = app.create_key(&user, KeyEnv::Live).await;
    let dead_id = app
        .core
        .keys
        .list(user.id)
        .await
        .unwrap()
        .into_iter()
        .find(|k| dead.starts_with(&k.display_prefix) && dead.ends_with(&k.last4))
        .unwrap()
        .id;
    app.core.keys.set_state(user.id, dead_id, KeyState::Deactivated).await.unwrap();
    let unknown = layers_domain::ApiKey::from_entropy(KeyEnv::Live, &[5; 24]);
    let broke = app.create_user("unfunded@example.com", layers_domain::Tier::Free).await;
    let unfunded = app.create_key(&broke, KeyEnv::Live).await;

    let out = run_script(
        &python,
        include_str!("sdk/openai_chat.py"),
        &[
            ("BASE_URL", format!("{}/v1", app.url)),
            ("API_KEY", key),
            ("MODEL", MOCK_MODEL.to_owned()),
            ("EXPECTED_TEXT", "Hello from the mock upstream!".to_owned()),
            ("UNKNOWN_KEY", unknown.expose().to_owned()),
            ("DEACTIVATED_KEY", dead),
            ("UNFUNDED_KEY", unfunded),
        ],
    )
    .await;
    assert!(out.contains("all checks passed"), "{out}");
    // Three non-streamed and two streamed completions were billed.
    let rows = app.wait_for_usage(&user, 5).await;
    assert!(rows.iter().all(|r| r.status == 200 && r.cost.0 > 0));
}

#[tokio::test]
async fn the_openai_sdk_retries_a_429_after_retry_after_ms() {
    let Some(python) = sdk_python() else { return };
    let window_ms = 3_000;
    let app = TestApp::spawn_with(AppOptions::default().config(&format!("[limits]\nrate_window_ms = {window_ms}")))
        .await
        .unwrap();
    let (user, key) = app.user_with_key("retry@example.com", "10").await;
    let one = layers_store::RateOverrides { requests_per_minute: Some(1), tokens_per_minute: None };
    app.core.accounts.set_rate(user.id, one).await.unwrap();
    let out = run_script(
        &python,
        include_str!("sdk/openai_rate_limit.py"),
        &[
            ("BASE_URL", format!("{}/v1", app.url)),
            ("API_KEY", key),
            ("MODEL", "sandbox/echo".to_owned()),
            ("WINDOW_MS", window_ms.to_string()),
        ],
    )
    .await;
    println!("{out}");
    assert!(out.contains("all checks passed"), "{out}");
    // Two refusals reached the server (the unretried one and the first attempt), no more.
    let metrics = app.get("/metrics").send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("layers_rate_limit_rejections_total 2"), "{metrics}");
}

/// The SDK script against one native adapter, with the usage its mock reports.
async fn through_native(opts: AppOptions, model: &str, expected: &str, usage: (u32, u32)) {
    let Some(python) = sdk_python() else { return };
    let app = TestApp::spawn_with(opts).await.unwrap();
    let (user, key) = app.user_with_key("sdk-native@example.com", "100").await;
    let out = run_script(
        &python,
        include_str!("sdk/openai_via_native.py"),
        &[
            ("BASE_URL", format!("{}/v1", app.url)),
            ("API_KEY", key),
            ("MODEL", model.to_owned()),
            ("EXPECTED_TEXT", expected.to_owned()),
            ("PROMPT_TOKENS", usage.0.to_string()),
            ("COMPLETION_TOKENS", usage.1.to_string()),
        ],
    )
    .await;
    assert!(out.contains("all checks passed"), "{out}");
    let rows = app.wait_for_usage(&user, 7).await;
    assert!(rows.iter().filter(|r| r.status == 200).all(|r| r.cost.0 > 0));
}

#[tokio::test]
async fn the_openai_sdk_through_the_native_anthropic_adapter() {
    let mock = layers_testkit::MockAnthropic::start().await;
    let opts = AppOptions::default().with_mock_anthropic(&mock);
    through_native(opts, layers_testkit::app::MOCK_CLAUDE, layers_testkit::mock_anthropic::ANSWER, (21, 9)).await;
}

#[tokio::test]
async fn the_openai_sdk_through_the_native_gemini_adapter() {
    let mock = layers_testkit::MockGemini::start().await;
    let opts = AppOptions::default().with_mock_gemini(&mock);
    // Thoughts are output: 8 candidate tokens + 5 thought tokens.
    through_native(opts, layers_testkit::app::MOCK_GEMINI, layers_testkit::mock_gemini::ANSWER, (17, 13)).await;
}

#[tokio::test]
async fn the_openai_sdk_for_embeddings_and_images() {
    let Some(python) = sdk_python() else { return };
    let (mock, gemini) = (MockOpenAi::start().await, layers_testkit::MockGemini::start().await);
    let app = TestApp::spawn_with(AppOptions::default().with_mock(&mock).with_mock_gemini(&gemini)).await.unwrap();
    let (user, key) = app.user_with_key("sdk-media@example.com", "100").await;
    let out = run_script(
        &python,
        include_str!("sdk/openai_media.py"),
        &[
            ("BASE_URL", format!("{}/v1", app.url)),
            ("API_KEY", key),
            ("EMBED_MODEL", layers_testkit::app::MOCK_EMBED.to_owned()),
            ("GEMINI_EMBED_MODEL", "mock/gemini-embedding".to_owned()),
            ("IMAGE_MODEL", layers_testkit::app::MOCK_IMAGE.to_owned()),
        ],
    )
    .await;
    assert!(out.contains("all checks passed"), "{out}");
    let rows = app.wait_for_usage(&user, 5).await;
    assert!(rows.iter().all(|r| r.status == 200 && r.cost.0 > 0), "{rows:?}");
}

#[tokio::test]
async fn the_openai_sdk_on_the_sandbox_with_a_test_key() {
    let Some(python) = sdk_python() else { return };
    let app = TestApp::spawn().await;
    let user = app.create_user("sandbox-sdk@example.com", layers_domain::Tier::Free).await;
    let key = app.create_key(&user, KeyEnv::Test).await;
    let out = run_script(
        &python,
        include_str!("sdk/openai_sandbox.py"),
        &[("BASE_URL", format!("{}/v1", app.url)), ("API_KEY", key)],
    )
    .await;
    assert!(out.contains("all checks passed"), "{out}");
}
