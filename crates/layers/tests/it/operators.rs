//! What operators run and read (issue 17): the access log, Prometheus metrics that pass
//! `promtool check metrics`, shell completions, the man page and the JSON Schema of the config.

use std::process::{Command, Stdio};
use std::time::Duration;

use layers_testkit::TestApp;
use serde_json::Value;

use crate::support::*;

fn layers(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_layers")).args(args).env_remove("LAYERS_CONFIG").output().unwrap();
    assert!(out.status.success(), "layers {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn one_access_line_per_request_with_its_facts_and_nothing_private() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("layers.toml");
    std::fs::write(&config, format!("data_dir = \"{}\"\n", dir.path().display())).unwrap();
    let bin = env!("CARGO_BIN_EXE_layers");
    let run = |args: &[&str]| {
        let out =
            Command::new(bin).arg("--config").arg(&config).args(args).env_remove("LAYERS_CONFIG").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    run(&["admin", "user", "create", "--email", "access@example.com"]);
    let key = run(&["admin", "key", "create", "--email", "access@example.com", "--env", "test"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = dir.path().join("serve.log");
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env_remove("LAYERS_CONFIG")
        .env("LAYERS_LISTEN", format!("127.0.0.1:{port}"))
        .env("LAYERS_LOG__FORMAT", "json")
        .env("LAYERS_LOG__LEVEL", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let prompt = "a secret prompt about the quarterly numbers";
    let plain =
        http.post(format!("{base}/v1/chat/completions")).bearer_auth(&key).json(&chat_body("sandbox/echo", prompt));
    let plain = plain.send().await.unwrap();
    let plain_id = plain.headers()["x-request-id"].to_str().unwrap().to_owned();
    let streamed = http.post(format!("{base}/v1/chat/completions")).bearer_auth(&key).json(&stream_body(
        "sandbox/echo",
        prompt,
        false,
    ));
    let streamed = streamed.send().await.unwrap();
    let stream_id = streamed.headers()["x-request-id"].to_str().unwrap().to_owned();
    let events = sse_data(streamed).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let refused =
        http.get(format!("{base}/api/v1/balance?token=secret-in-query")).bearer_auth("nope").send().await.unwrap();
    assert_eq!(refused.status(), 401);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "access")
        .collect();
    let by_id = |id: &str| lines.iter().filter(|l| l["fields"]["request_id"] == id).collect::<Vec<_>>();
    for id in [&plain_id, &stream_id] {
        let found = by_id(id);
        assert_eq!(found.len(), 1, "one line for {id}: {text}");
        let f = &found[0]["fields"];
        assert_eq!(
            (f["status"].as_u64(), f["model"].as_str(), f["provider"].as_str()),
            (Some(200), Some("sandbox/echo"), Some("sandbox"))
        );
        assert!(f["prompt_tokens"].as_u64().unwrap() > 0 && f["completion_tokens"].as_u64().unwrap() > 0, "{f}");
        assert!(!f["user_id"].as_str().unwrap().is_empty() && !f["key_id"].as_str().unwrap().is_empty(), "{f}");
        assert!(f["overhead_us"].as_u64().unwrap() > 0 && f["duration_us"].as_u64().unwrap() > 0, "{f}");
        assert_eq!(f["credits"], "0", "test keys are never billed");
    }
    let refusal = lines.iter().find(|l| l["fields"]["status"] == 401).expect("the refusal's line");
    assert_eq!(refusal["fields"]["path"], "/api/v1/balance", "no query string");
    for private in [prompt, "access@example.com", key.as_str(), "secret-in-query"] {
        assert!(!text.contains(private), "the log holds something private");
    }
}

#[tokio::test]
async fn metrics_have_latency_histograms_no_key_labels_and_pass_promtool() {
    let app = TestApp::spawn().await;
    let (_, key) = app.user_with_key("metrics@example.com", "10").await;
    for _ in 0..3 {
        assert_eq!(app.chat(&key, &chat_body("sandbox/echo", "hi")).send().await.unwrap().status(), 200);
    }
    let text = app.get("/metrics").send().await.unwrap().text().await.unwrap();
    assert!(text.contains("# TYPE layers_gateway_overhead_seconds histogram"), "{text}");
    assert!(text.contains("layers_gateway_overhead_seconds_count 3"), "{text}");
    assert!(text.contains("layers_upstream_latency_seconds_count{provider=\"sandbox\"} 3"), "{text}");
    assert!(text.contains("layers_upstream_latency_seconds_bucket{provider=\"sandbox\",le=\"+Inf\"} 3"), "{text}");
    assert!(!text.contains("key_id") && !text.contains("key=\""), "no per-key labels");
    let promtool = std::env::var_os("LAYERS_TEST_PROMTOOL").or_else(|| {
        Command::new("promtool")
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|_| "promtool".into())
    });
    let Some(promtool) = promtool else {
        assert_ne!(
            std::env::var("LAYERS_TEST_REQUIRE_ALL").as_deref(),
            Ok("1"),
            "promtool is missing: run ./scripts/test"
        );
        eprintln!("SKIPPED: promtool is missing (run ./scripts/test)");
        return;
    };
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(check.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}");
}

#[test]
fn completions_the_man_page_and_the_config_schema() {
    assert!(layers(&["completions", "bash"]).contains("_layers()"));
    assert!(layers(&["completions", "zsh"]).contains("#compdef layers"));
    assert!(layers(&["completions", "fish"]).contains("complete -c layers"));
    let man = layers(&["man"]);
    assert!(man.starts_with(".ie") || man.contains(".TH layers"), "{}", &man[..man.len().min(200)]);
    assert!(man.contains("check\\-config") || man.contains("check-config"));
    let schema: Value = serde_json::from_str(&layers(&["check-config", "--schema"])).unwrap();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    let config = &schema["$defs"]["Config"];
    assert_eq!(config["additionalProperties"], false, "a misspelt setting is flagged by the editor");
    for setting in ["listen", "public_url", "database", "keys", "limits", "redis", "stripe", "providers", "models"] {
        assert!(config["properties"][setting].is_object(), "{setting} missing from the schema");
    }
    // Doc comments become descriptions, and nested sections are defined.
    let text = schema.to_string();
    assert!(
        text.contains("#/$defs/DatabaseConfig") && schema["$defs"]["DatabaseConfig"]["properties"]["url"].is_object()
    );
    assert!(!text.contains("#/components/"), "every reference points into $defs");
}
