//! The binary's commands, run as a user would: scriptable admin output, exit codes.

use std::process::{Command, Output};

fn layers(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_layers"));
    cmd.current_dir(dir).args(args).env_remove("LAYERS_CONFIG").env("LAYERS_LOG__LEVEL", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "command failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap().trim_end().to_owned()
}

#[test]
fn admin_commands_print_only_the_value_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let id = stdout(&layers(d, &["admin", "user", "create", "--email", "Ops@Example.com", "--tier", "pro"], &[]));
    assert!(uuid_like(&id), "user id: {id:?}");
    let key = stdout(&layers(
        d,
        &["admin", "key", "create", "--email", "ops@example.com", "--env", "live", "--name", "ci"],
        &[],
    ));
    assert!(key.starts_with("lyr_live_sk_") && key.len() == 51 && !key.contains('\n'), "{key:?}");
    let test_key = stdout(&layers(d, &["admin", "key", "create", "--email", "ops@example.com", "--env", "test"], &[]));
    assert!(test_key.starts_with("lyr_test_sk_"));
    assert_eq!(
        stdout(&layers(
            d,
            &["admin", "credits", "grant", "--email", "ops@example.com", "--credits", "0.5", "--reason", "welcome"],
            &[]
        )),
        "0.500000"
    );
    assert_eq!(
        stdout(&layers(
            d,
            &["admin", "credits", "grant", "--email", "ops@example.com", "--credits", "12", "--reason", "top-up"],
            &[]
        )),
        "12.500000"
    );
    assert_eq!(
        stdout(&layers(
            d,
            &[
                "admin",
                "credits",
                "adjust",
                "--email",
                "ops@example.com",
                "--credits",
                "-2.25",
                "--reason",
                "correction"
            ],
            &[]
        )),
        "10.250000"
    );
    assert_eq!(stdout(&layers(d, &["admin", "credits", "show", "--email", "ops@example.com"], &[])), "10.250000");
    // Never below zero by adjustment.
    let o = layers(
        d,
        &["admin", "credits", "adjust", "--email", "ops@example.com", "--credits", "-100", "--reason", "x"],
        &[],
    );
    assert!(!o.status.success() && o.stdout.is_empty());

    let listed = stdout(&layers(d, &["admin", "key", "list", "--email", "ops@example.com"], &[]));
    assert_eq!(listed.lines().count(), 2);
    assert!(!listed.contains(&key), "the full key is never shown again");
    let prefix = &key[..16];
    assert!(listed.contains(&format!("{prefix}…{}", &key[47..])));
    let deactivated = stdout(&layers(d, &["admin", "key", "deactivate", "--prefix", prefix], &[]));
    assert!(uuid_like(&deactivated));
    let listed = stdout(&layers(d, &["admin", "key", "list", "--email", "ops@example.com"], &[]));
    assert!(listed.lines().any(|l| l.contains(prefix) && l.contains("\tdeactivated\t")));

    // Errors go to stderr with a non-zero exit, and do not echo the e-mail.
    let o = layers(d, &["admin", "credits", "show", "--email", "nobody@example.com"], &[]);
    assert!(!o.status.success() && o.stdout.is_empty());
    assert!(!String::from_utf8_lossy(&o.stderr).contains("nobody@example.com"));
}

#[tokio::test]
async fn set_rate_limit_overrides_and_restores_the_tier() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    stdout(&layers(d, &["admin", "user", "create", "--email", "rl@example.com"], &[]));
    let set = |args: &[&str]| {
        let mut all = vec!["admin", "user", "set-rate-limit", "--email", "rl@example.com"];
        all.extend_from_slice(args);
        layers(d, &all, &[])
    };
    assert!(uuid_like(&stdout(&set(&["--rpm", "120", "--tpm", "50000"]))));
    let rate = || async {
        let url = format!("sqlite://{}", d.join("data/layers.db").display());
        let store = layers_store::connect(&layers_store::ConnectOptions { url, max_connections: 1, app_role: None })
            .await
            .unwrap();
        let user = store.user_by_email("rl@example.com").await.unwrap().unwrap();
        store.close().await;
        (user.rate.requests_per_minute, user.rate.tokens_per_minute)
    };
    assert_eq!(rate().await, (Some(120), Some(50_000)));
    // Leaving a flag out keeps it; "default" goes back to the tier's.
    stdout(&set(&["--rpm", "default"]));
    assert_eq!(rate().await, (None, Some(50_000)));
    for bad in [["--rpm", "0"], ["--tpm", "lots"]] {
        let o = set(&bad);
        assert!(!o.status.success());
        assert!(String::from_utf8_lossy(&o.stderr).contains("greater than zero"), "{o:?}");
    }
    assert_eq!(rate().await, (None, Some(50_000)), "a refused change changes nothing");
}

#[test]
fn check_config_reports_every_problem_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("layers.toml");
    std::fs::write(&file, "listen = \"nope\"\n[limits]\nmax_messages = 0\n[[models]]\nname = \"sandbox/x\"\nroutes = [{ provider = \"sandbox\", model = \"x\" }]\ncontext_window = 10\n").unwrap();
    let o = layers(dir.path(), &["--config", file.to_str().unwrap(), "check-config"], &[]);
    assert_eq!(o.status.code(), Some(78));
    let err = String::from_utf8_lossy(&o.stderr);
    for path in ["listen:", "limits.max_messages:", "models.sandbox/x:"] {
        assert!(err.contains(path), "{path} not reported in:\n{err}");
    }
    let ok = layers(
        dir.path(),
        &["check-config", "--print"],
        &[("LAYERS_KEYS__PEPPER", "a-very-secret-pepper-of-at-least-32-bytes")],
    );
    assert_eq!(ok.status.code(), Some(0));
    let printed = String::from_utf8_lossy(&ok.stdout);
    assert!(printed.contains("[redacted]") && !printed.contains("a-very-secret-pepper"));
    // Production refuses the embedded defaults.
    let prod = layers(dir.path(), &["check-config"], &[("LAYERS_ENV", "production")]);
    assert_eq!(prod.status.code(), Some(78));
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}
