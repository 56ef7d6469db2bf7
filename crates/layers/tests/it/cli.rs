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

/// Settings changed (`Some`) or removed (`None`).
type Changes<'a> = &'a [(&'a str, Option<&'a str>)];

/// A production configuration `check-config` accepts, as environment variables.
const PRODUCTION: &[(&str, &str)] = &[
    ("LAYERS_ENV", "production"),
    ("LAYERS_PUBLIC_URL", "https://layers.example"),
    ("LAYERS_DATABASE_URL", "postgres://layers:db-password-x@db.internal/layers"),
    ("LAYERS_KEYS__PEPPER", "0123456789abcdef0123456789abcdef-long-enough"),
    ("LAYERS_EMAIL__SMTP_URL", "smtps://resend:re_secret@smtp.resend.com:465"),
    ("LAYERS_EMAIL__FROM", "Layers <no-reply@layers.example>"),
];

/// `layers check-config` with the production settings, one changed (`Some`) or removed
/// (`None`): exit code and everything printed.
fn check_production(changes: Changes) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_layers"));
    cmd.current_dir(dir.path()).arg("check-config").env_remove("LAYERS_CONFIG");
    for (k, v) in PRODUCTION {
        if !changes.iter().any(|(c, _)| c == k) {
            cmd.env(k, v);
        }
    }
    for (k, v) in changes {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let out = cmd.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

#[test]
fn production_refuses_each_weak_setting_naming_it_and_the_fix() {
    let (code, text) = check_production(&[]);
    assert_eq!(code, Some(0), "the base is a valid production configuration: {text}");
    // (what is weak, the change, the setting named, words of the fix)
    let cases: &[(&str, Changes, &str, &str)] = &[
        ("no pepper", &[("LAYERS_KEYS__PEPPER", None)], "keys.pepper", "LAYERS_KEYS__PEPPER"),
        ("a short pepper", &[("LAYERS_KEYS__PEPPER", Some("short"))], "keys.pepper", "32"),
        ("SQLite", &[("LAYERS_DATABASE_URL", Some("sqlite://./data/layers.db"))], "database.url", "PostgreSQL"),
        ("the console mailer", &[("LAYERS_EMAIL__SMTP_URL", None)], "email.smtp_url", "smtp"),
        (
            "SMTP in clear",
            &[("LAYERS_EMAIL__SMTP_URL", Some("smtp://u:p@smtp.example.com:587"))],
            "email.smtp_url",
            "tls",
        ),
        ("no sender", &[("LAYERS_EMAIL__FROM", None)], "email.from", "no-reply@"),
        ("a plain-HTTP public URL", &[("LAYERS_PUBLIC_URL", Some("http://layers.example"))], "public_url", "https://"),
        ("no public URL", &[("LAYERS_PUBLIC_URL", None)], "public_url", "https://"),
        ("any origin", &[("LAYERS_ALLOWED_ORIGINS", Some("*"))], "allowed_origins[0]", "list each origin"),
        (
            "trusting every proxy",
            &[("LAYERS_SECURITY__TRUSTED_PROXIES", Some("0.0.0.0/0"))],
            "security.trusted_proxies",
            "/0",
        ),
        (
            "private alert webhooks",
            &[("LAYERS_ALERTS__ALLOW_PRIVATE_WEBHOOKS", Some("true"))],
            "alerts.allow_private_webhooks",
            "false",
        ),
        (
            "a clock ahead",
            &[("LAYERS_TESTING__CLOCK_AHEAD_SECS", Some("60"))],
            "testing.clock_ahead_secs",
            "must not be set",
        ),
        (
            "Stripe without a webhook secret",
            &[("LAYERS_STRIPE__SECRET_KEY", Some("sk_live_0123456789"))],
            "stripe.webhook_secrets",
            "whsec_",
        ),
        (
            "a Stripe test key",
            &[
                ("LAYERS_STRIPE__SECRET_KEY", Some("sk_test_0123456789")),
                ("LAYERS_STRIPE__WEBHOOK_SECRETS", Some("whsec_0123456789abcdef")),
            ],
            "stripe.secret_key",
            "sk_live_",
        ),
        (
            "a Stripe that is not Stripe",
            &[
                ("LAYERS_STRIPE__SECRET_KEY", Some("sk_live_0123456789")),
                ("LAYERS_STRIPE__WEBHOOK_SECRETS", Some("whsec_0123456789abcdef")),
                ("LAYERS_STRIPE__API_BASE", Some("https://stripe.evil.example")),
            ],
            "stripe.api_base",
            "https://api.stripe.com",
        ),
    ];
    for (what, changes, setting, fix) in cases {
        let (code, text) = check_production(changes);
        assert_eq!(code, Some(78), "{what}: refused with the configuration exit code: {text}");
        let line = text
            .lines()
            .find(|l| l.contains(setting))
            .unwrap_or_else(|| panic!("{what}: {setting} not named in {text}"));
        assert!(line.contains(fix) || text.contains(fix), "{what}: the fix ({fix}) is said: {text}");
        assert!(!text.contains("db-password-x") && !text.contains("re_secret"), "{what}: no secret printed: {text}");
    }
}
