//! The README's getting-started part runs as written (issue 12, item 15): its shell snippet and
//! its Python snippet are taken from README.md and run against `layers serve` started as a new
//! user would, in an empty directory with no configuration. Only the port (a free one instead
//! of 8080) and the binary (the one this test build made instead of `cargo run --release`)
//! differ.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const README: &str = include_str!("../../../../README.md");

/// The body of the first fenced block of `lang` after `heading`.
fn snippet(heading: &str, lang: &str) -> String {
    let section = README.split_once(heading).unwrap_or_else(|| panic!("no {heading:?} in README.md")).1;
    let open = format!("```{lang}\n");
    let start = section.find(&open).unwrap_or_else(|| panic!("no {lang} block under {heading:?}")) + open.len();
    let len = section[start..].find("```").expect("an unterminated block");
    section[start..start + len].to_owned()
}

#[tokio::test]
async fn the_getting_started_snippets_run_as_written() {
    let binary = env!("CARGO_BIN_EXE_layers");
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    // `cargo run --release -- serve`, in a fresh directory with nothing configured.
    let mut serve = Command::new(binary);
    serve.current_dir(dir.path()).arg("serve").env("LAYERS_LISTEN", &addr).env("LAYERS_LOG__LEVEL", "warn");
    serve.env_remove("LAYERS_CONFIG").stdout(Stdio::null()).stderr(Stdio::inherit());
    let _server = Serve(serve.spawn().unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("http://{addr}/healthz")).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "layers serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let shell = snippet("## Your first call", "sh")
        .replace("cargo run --release --quiet --", binary)
        .replace("127.0.0.1:8080", &addr);
    assert!(shell.contains(binary), "the snippet no longer runs the binary through `layers`");
    let script = format!("set -euo pipefail\n{shell}\nprintf '%s' \"$KEY\" > key.txt\n");
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env_remove("LAYERS_CONFIG")
        .env("LAYERS_LOG__LEVEL", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the shell snippet failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let answer = stdout.lines().last().unwrap_or("");
    let v: serde_json::Value =
        serde_json::from_str(answer).unwrap_or_else(|e| panic!("curl did not print a completion ({e}): {stdout}"));
    assert_eq!(v["object"], "chat.completion", "{v}");
    assert!(v["choices"][0]["message"]["content"].as_str().is_some_and(|c| !c.is_empty()), "{v}");
    let key = std::fs::read_to_string(dir.path().join("key.txt")).unwrap();
    assert!(key.starts_with("lyr_live_sk_"), "KEY was not a live key: {key:?}");

    let Some(python) = layers_testkit::python::sdk_python() else { return };
    let code = snippet("## Your first call", "python").replace("127.0.0.1:8080", &addr);
    let printed = layers_testkit::python::run_script(&python, &code, &[("KEY", key)]).await;
    assert!(!printed.trim().is_empty(), "the Python snippet printed nothing");
    println!("README snippets ran; the Python one printed {:?}", printed.trim());
}
