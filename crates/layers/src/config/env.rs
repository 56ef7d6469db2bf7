//! Environment overlay: `LAYERS_*` variables on top of the TOML file (SPEC §1).
//! `LAYERS_SECTION__KEY` sets `section.key`; a few documented short names are aliases
//! (`LAYERS_DATABASE_URL`, `LAYERS_REDIS_URL`, …); `…_FILE` reads the value from a file, for
//! container secrets. Invariant: the environment is passed in as a map, never read here.

use std::collections::BTreeMap;

use super::Problem;

/// Short names documented for users, mapped to their setting paths.
const ALIASES: &[(&str, &str)] = &[
    ("DATABASE_URL", "database.url"),
    ("DATABASE_MIGRATE_URL", "database.migrate_url"),
    ("REDIS_URL", "redis.url"),
    ("KEY_PEPPER", "keys.pepper"),
];
/// Variables that are not settings.
const IGNORED: &[&str] = &["CONFIG"];
const IGNORED_PREFIXES: &[&str] = &["TEST_"];
/// Settings whose environment value is a comma-separated list.
const LISTS: &[&str] = &[
    "allowed_origins",
    "security.trusted_proxies",
    "stripe.webhook_secrets",
    "stripe.packs",
    "anomaly.expensive_models",
];
/// Lists whose items are numbers.
const NUMBER_LISTS: &[&str] = &["stripe.packs"];

/// Applies every `LAYERS_*` variable of `env` to `table`.
pub fn overlay(table: &mut toml::Table, env: &BTreeMap<String, String>, problems: &mut Vec<Problem>) {
    for (name, raw) in env {
        let Some(var) = name.strip_prefix("LAYERS_") else { continue };
        if IGNORED.contains(&var) || IGNORED_PREFIXES.iter().any(|p| var.starts_with(p)) {
            continue;
        }
        let (var, from_file) = match var.strip_suffix("_FILE") {
            Some(v) => (v, true),
            None => (var, false),
        };
        let path: Vec<String> = match ALIASES.iter().find(|(alias, _)| *alias == var) {
            Some((_, path)) => path.split('.').map(str::to_owned).collect(),
            None => var.split("__").map(|s| s.to_ascii_lowercase()).collect(),
        };
        let dotted = path.join(".");
        let text = if from_file {
            match std::fs::read_to_string(raw) {
                Ok(content) => content.trim_end_matches(['\n', '\r']).to_owned(),
                Err(err) => {
                    problems.push(Problem::new(&dotted, format!("cannot read {name} ({raw}): {err}")));
                    continue;
                }
            }
        } else {
            raw.clone()
        };
        let value = if LISTS.contains(&dotted.as_str()) {
            toml::Value::Array(
                text.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        if NUMBER_LISTS.contains(&dotted.as_str()) {
                            scalar(s)
                        } else {
                            toml::Value::String(s.into())
                        }
                    })
                    .collect(),
            )
        } else if from_file {
            toml::Value::String(text)
        } else {
            scalar(&text)
        };
        if let Err(msg) = set(table, &path, value) {
            problems.push(Problem::new(&dotted, format!("{name}: {msg}")));
        }
    }
}

/// Reads an environment value as a TOML number or boolean when it is one, else as a string.
fn scalar(text: &str) -> toml::Value {
    let parsed = toml::from_str::<toml::Table>(&format!("v = {text}")).ok().and_then(|mut t| t.remove("v"));
    match parsed {
        Some(v @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_))) => v,
        _ => toml::Value::String(text.to_owned()),
    }
}

fn set(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), &'static str> {
    let Some((last, parents)) = path.split_last() else { return Err("empty setting name") };
    let mut cur = table;
    for p in parents {
        let entry = cur.entry(p.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry.as_table_mut().ok_or("a parent of this setting is not a section")?;
    }
    cur.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(vars: &[(&str, &str)]) -> (toml::Table, Vec<Problem>) {
        let env = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let mut table = toml::Table::new();
        let mut problems = Vec::new();
        overlay(&mut table, &env, &mut problems);
        (table, problems)
    }

    #[test]
    fn maps_names_to_paths() {
        let (t, p) = apply(&[
            ("LAYERS_LISTEN", "0.0.0.0:9000"),
            ("LAYERS_DATABASE_URL", "postgres://x/y"),
            ("LAYERS_LIMITS__MAX_MESSAGES", "50"),
            ("LAYERS_BILLING__MARKUP_PERCENT", "12.5"),
            ("LAYERS_ALLOWED_ORIGINS", "https://a.example, https://b.example"),
            ("LAYERS_CONFIG", "ignored.toml"),
            ("LAYERS_TEST_POSTGRES_URL", "ignored"),
            ("OTHER", "ignored"),
        ]);
        assert!(p.is_empty());
        assert_eq!(t["listen"].as_str(), Some("0.0.0.0:9000"));
        assert_eq!(t["database"]["url"].as_str(), Some("postgres://x/y"));
        assert_eq!(t["limits"]["max_messages"].as_integer(), Some(50));
        assert_eq!(t["billing"]["markup_percent"].as_float(), Some(12.5));
        assert_eq!(t["allowed_origins"].as_array().map(Vec::len), Some(2));
        assert!(!t.contains_key("config") && !t.contains_key("test_postgres_url"));
    }

    #[test]
    fn reads_secrets_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pepper");
        std::fs::write(&path, "s3cr3t-from-file\n").unwrap();
        let (t, p) = apply(&[("LAYERS_KEYS__PEPPER_FILE", path.to_str().unwrap())]);
        assert!(p.is_empty());
        assert_eq!(t["keys"]["pepper"].as_str(), Some("s3cr3t-from-file"));
        let (_, p) = apply(&[("LAYERS_KEYS__PEPPER_FILE", "/nonexistent/file")]);
        assert_eq!(p[0].path, "keys.pepper");
    }
}
