//! Client libraries' own test suites against Layers (issue 17): what their users' tests meet.
//! Each suite's interpreter or runtime is installed by `scripts/test` under `target/` (pinned
//! versions), found here through an environment variable; without it the test fails when the
//! run requires everything and otherwise skips loudly.

use std::path::{Path, PathBuf};
use std::process::Command;

use layers_domain::{KeyEnv, Tier};
use layers_testkit::TestApp;

/// The program `var` names, or `None` after saying why the test is skipped.
fn tool(var: &str, what: &str) -> Option<PathBuf> {
    let found = std::env::var_os(var).map(PathBuf::from).filter(|p| p.exists());
    if found.is_none() {
        let msg = format!("{what} is missing: run ./scripts/test (it sets {var})");
        if std::env::var("LAYERS_TEST_REQUIRE_ALL").as_deref() == Ok("1") {
            panic!("{msg}");
        }
        eprintln!("SKIPPED ({msg})");
    }
    found
}

fn repo_dir(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

/// Runs `cmd`; its output, or a panic with it when it fails.
async fn run(mut cmd: Command) -> String {
    let out = tokio::task::spawn_blocking(move || cmd.output()).await.unwrap().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the suite failed ({}):\n{text}", out.status);
    text
}

/// A new account's test key, at default settings: the suites run on what a new user has.
async fn test_key(app: &TestApp, email: &str) -> String {
    let user = app.create_user(email, Tier::Free).await;
    app.create_key(&user, KeyEnv::Test).await
}

#[tokio::test]
async fn langchains_standard_suites_pass_on_the_sandbox_with_a_test_key() {
    let Some(python) = tool("LAYERS_TEST_LANGCHAIN_PYTHON", "the LangChain venv") else { return };
    let app = TestApp::spawn().await;
    let key = test_key(&app, "langchain@example.com").await;
    let mut cmd = Command::new(python);
    cmd.args(["-m", "pytest", "-q"])
        .current_dir(repo_dir("tests/langchain"))
        .env("LAYERS_BASE_URL", &app.url)
        .env("LAYERS_TEST_KEY", key);
    let out = run(cmd).await;
    println!("{out}");
    let summary = out.lines().rev().find(|l| l.contains(" passed")).unwrap_or_default().to_owned();
    assert!(!summary.contains("failed") && !summary.contains("error"), "{summary}");
    // Both suites ran: ChatOpenAI's and ChatAnthropic's, each about fifty tests.
    let passed: u32 = summary.split(" passed").next().and_then(|n| n.trim().parse().ok()).unwrap_or(0);
    assert!(passed >= 90, "{summary}");
}

/// The directory `scripts/test` installed the JavaScript clients into, with the scripts of
/// `tests/node` copied beside them (so they resolve the pinned packages).
fn node_clients() -> Option<PathBuf> {
    let dir = tool("LAYERS_TEST_NODE_CLIENTS", "the JavaScript clients (npm)")?;
    for entry in std::fs::read_dir(repo_dir("tests/node")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "mjs") {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    Some(dir)
}

fn node(dir: &Path, script: &str, base_url: &str, key: &str) -> Command {
    let mut cmd = Command::new("node");
    cmd.arg(script).current_dir(dir).env("BASE_URL", base_url).env("API_KEY", key).env("AI_SDK_LOG_WARNINGS", "false");
    cmd
}

async fn node_script_passes(script: &str, email: &str) {
    let Some(dir) = node_clients() else { return };
    let app = TestApp::spawn().await;
    let key = test_key(&app, email).await;
    let out = run(node(&dir, script, &app.url, &key)).await;
    assert!(out.contains("all checks passed"), "{out}");
}

#[tokio::test]
async fn the_openai_node_sdk_on_the_sandbox() {
    node_script_passes("openai.mjs", "openai-node@example.com").await;
}

#[tokio::test]
async fn the_anthropic_typescript_sdk_with_both_ways_of_sending_the_key() {
    node_script_passes("anthropic.mjs", "anthropic-ts@example.com").await;
}

#[tokio::test]
async fn the_vercel_ai_sdk_through_each_of_its_providers() {
    node_script_passes("ai-sdk.mjs", "ai-sdk@example.com").await;
}

/// `name`'s value in the Prometheus text (0 when absent).
fn metric(text: &str, name: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or(0)
}

#[tokio::test]
async fn every_client_sends_a_refusal_once_and_retries_a_429_when_told() {
    let (Some(dir), Some(python)) = (node_clients(), layers_testkit::python::sdk_python()) else { return };
    let python_script = repo_dir("crates/layers/tests/it/sdk/retry_contract.py");
    let clients = ["node openai", "node anthropic", "node ai-sdk", "python openai", "python anthropic"];
    let runs = clients.map(|client| {
        let (dir, python, script) = (dir.clone(), python.clone(), python_script.clone());
        async move {
            let config = "[limits]\ntest_key_requests_per_minute = 1\nrate_window_ms = 3000";
            let app = TestApp::spawn_with(layers_testkit::AppOptions::default().config(config)).await.unwrap();
            let key = test_key(&app, "retry@example.com").await;
            let cmd = match client.split_once(' ') {
                Some(("node", sdk)) => {
                    let mut cmd = node(&dir, "retry.mjs", &app.url, &key);
                    cmd.arg(sdk);
                    cmd
                }
                Some((_, sdk)) => {
                    let mut cmd = Command::new(&python);
                    cmd.arg(&script).env("SDK", sdk).env("BASE_URL", &app.url).env("API_KEY", &key);
                    cmd
                }
                None => unreachable!(),
            };
            let out = run(cmd).await;
            let metrics = app.get("/metrics").send().await.unwrap().text().await.unwrap();
            // What the server saw: the refusal once, the 429 once, then the answer.
            assert_eq!(metric(&metrics, "layers_requests_total{status=\"400\"}"), 1, "{client}: {out}");
            assert_eq!(metric(&metrics, "layers_rate_limit_rejections_total"), 1, "{client}: {out}");
            assert_eq!(metric(&metrics, "layers_requests_total{status=\"200\"}"), 1, "{client}: {out}");
            let measured = out.lines().find(|l| l.contains("retried after")).unwrap_or_default();
            format!("{client}: {measured}")
        }
    });
    for line in futures_util::future::join_all(runs).await {
        println!("{line}");
    }
}
