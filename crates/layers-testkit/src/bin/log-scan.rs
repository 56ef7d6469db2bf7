//! The privacy scan (issue 16, SPEC §8.5): reads every log line the test suite's processes
//! wrote (`LAYERS_TEST_LOG_DIR`, see `layers_testkit::logs`) and fails on anything that must
//! never be logged: an e-mail address, an API key, a Stripe or webhook secret, a test password,
//! a session cookie, a TOTP secret, or prompt text. The console mailer's development mail is the
//! one documented exception (production refuses that mailer).
//!
//! Usage: log-scan <dir>   (exit 1 with the findings, 0 when clean)

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;

/// Passwords the suite types into forms; none may reach a log.
const PASSWORDS: &[&str] = &[
    "tulip lantern harbour",
    "brand new passphrase",
    "another passphrase x",
    "attacker chosen passphrase",
    "compiler nanoseconds",
    "analytical engine notes",
    "not the password",
    "nope nope nope",
    "a much newer passphrase",
    "a fresh long passphrase",
    "not it at all",
];
/// Text only secrets, tokens and prompts contain.
const MARKERS: &[(&str, &str)] = &[
    ("whsec_", "a webhook signing secret"),
    ("sk_test_layers_mock", "a Stripe secret key"),
    ("sk-mock-upstream", "a provider key"),
    ("sk-ant-mock-operator-key", "a provider key"),
    ("AIza-mock-operator-key", "a provider key"),
    ("layers_session=", "a session cookie"),
    ("otpauth://", "a TOTP secret"),
    ("mock:tokens", "prompt text"),
    ("Say hello", "prompt text"),
    ("test-pepper-0123456789", "the key pepper"),
];

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: log-scan <dir>");
        std::process::exit(2);
    };
    let mut lines = 0usize;
    let mut findings = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(err) => {
            eprintln!("log-scan: cannot read {dir}: {err}");
            std::process::exit(2);
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        for line in text.lines() {
            lines += 1;
            if is_development_mail(line) {
                continue;
            }
            for what in scan(line) {
                findings.push(format!("{}: {what}: {}", file_name(&path), excerpt(line)));
            }
        }
    }
    if lines == 0 {
        eprintln!("log-scan: no log lines in {dir}: was LAYERS_TEST_LOG_DIR set for the suite?");
        std::process::exit(1);
    }
    if findings.is_empty() {
        println!("log-scan: {lines} log lines, nothing private in them");
        return;
    }
    eprintln!("log-scan: {} log lines leak what must never be logged:", findings.len());
    for f in findings.iter().take(50) {
        eprintln!("  {f}");
    }
    std::process::exit(1);
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn excerpt(line: &str) -> String {
    line.chars().take(300).collect()
}

/// The console mailer's development mail (its message says so).
fn is_development_mail(line: &str) -> bool {
    line.contains("DEVELOPMENT MAIL (console mailer, not sent)")
}

/// What a line leaks.
fn scan(line: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    if has_email(line) {
        out.push("an e-mail address");
    }
    if has_full_key(line) {
        out.push("an API key");
    }
    for p in PASSWORDS {
        if line.contains(p) {
            out.push("a password");
        }
    }
    for (marker, what) in MARKERS {
        if line.contains(marker) {
            out.push(what);
        }
    }
    out
}

/// `local@domain.tld` with an alphabetic top-level domain (so `postgres@127.0.0.1` is not one).
fn has_email(line: &str) -> bool {
    let bytes = line.as_bytes();
    let local = |b: u8| b.is_ascii_alphanumeric() || b"._%+-".contains(&b);
    let domain = |b: u8| b.is_ascii_alphanumeric() || b".-".contains(&b);
    for (i, b) in bytes.iter().enumerate() {
        if *b != b'@' || i == 0 || !local(bytes[i - 1]) {
            continue;
        }
        let end = bytes[i + 1..].iter().position(|b| !domain(*b)).map_or(bytes.len(), |p| i + 1 + p);
        let host = &line[i + 1..end];
        let host = host.trim_end_matches('.');
        if let Some((name, tld)) = host.rsplit_once('.') {
            if !name.is_empty() && tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()) {
                return true;
            }
        }
    }
    false
}

/// A whole key (`lyr_live_sk_` + more than a display prefix's four characters).
fn has_full_key(line: &str) -> bool {
    ["lyr_live_sk_", "lyr_test_sk_"].iter().any(|prefix| {
        line.match_indices(prefix)
            .any(|(at, _)| line[at + prefix.len()..].bytes().take_while(u8::is_ascii_alphanumeric).count() > 8)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_finds_what_it_must() {
        assert!(has_email(r#"{"to":"ada@example.com"}"#));
        assert!(!has_email("postgres://postgres@127.0.0.1:5432/x"));
        assert!(!has_email("user_id=5f2b@ no"));
        assert!(has_full_key("key=lyr_live_sk_0123456789abcdefghij"));
        assert!(!has_full_key("prefix=lyr_live_sk_ab12 last4=wxyz"));
        assert_eq!(scan("password=tulip lantern harbour"), vec!["a password"]);
        assert!(scan(r#"{"message":"request done","user_id":"3c0f…"}"#).is_empty());
    }
}
