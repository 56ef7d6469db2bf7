//! The Python interpreter of the venv that holds the official `openai` and `anthropic` SDKs
//! (created by `scripts/test`). Invariant: without it, SDK tests fail when the run requires
//! them (`LAYERS_TEST_REQUIRE_ALL=1`) and otherwise skip loudly, never pass silently.

use std::path::PathBuf;
use std::process::Command;

/// The venv's python, or `None` after printing why the test is skipped.
pub fn sdk_python() -> Option<PathBuf> {
    let found = std::env::var_os("LAYERS_TEST_PYTHON").map(PathBuf::from).filter(|p| p.exists());
    if found.is_none() {
        let msg = "the SDK venv is missing: run ./scripts/test (it sets LAYERS_TEST_PYTHON)";
        if std::env::var("LAYERS_TEST_REQUIRE_ALL").as_deref() == Ok("1") {
            panic!("{msg}");
        }
        eprintln!("SKIPPED ({msg})");
    }
    found
}

/// Runs a Python script with the given environment; panics with its output if it fails.
pub async fn run_script(python: &PathBuf, script: &str, env: &[(&str, String)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sdk_test.py");
    std::fs::write(&path, script).unwrap();
    let mut cmd = Command::new(python);
    cmd.arg(&path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "python script failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}", out.status);
    stdout
}
