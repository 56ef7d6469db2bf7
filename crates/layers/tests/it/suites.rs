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
