//! ARCHITECTURE.md names paths, types and functions; they must exist, so the document cannot
//! drift: a renamed type or a moved function fails this test.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn spans(text: &str) -> impl Iterator<Item = &str> {
    text.split('`').enumerate().filter(|(i, _)| i % 2 == 1).map(|(_, part)| part)
}

#[test]
fn every_path_named_in_architecture_md_exists() {
    let root = root();
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let mut checked = 0;
    for part in spans(&text).filter(|p| p.starts_with("crates/") || p.starts_with("bench")) {
        assert!(root.join(part).exists(), "ARCHITECTURE.md names {part}, which does not exist");
        checked += 1;
    }
    assert!(checked > 20, "only {checked} paths found");
}

/// Every Rust source file of the workspace, concatenated.
fn all_sources(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                all_sources(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&path).unwrap());
            out.push('\n');
        }
    }
}

/// `ApiError`, `Core::admit`, `REVOCATION_BOUND`: names in code, not prose.
fn is_rust_name(part: &str) -> bool {
    let first = part.split("::").next().unwrap_or("");
    let type_like = first.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && first.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && first.chars().any(|c| c.is_ascii_lowercase());
    let const_like = first.len() > 3 && first.chars().all(|c| c.is_ascii_uppercase() || c == '_');
    let rest_ok =
        part.split("::").skip(1).all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    (type_like || const_like) && rest_ok && part.split("::").count() <= 2
}

#[test]
fn every_type_and_function_named_in_architecture_md_is_defined() {
    let root = root();
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let mut code = String::new();
    all_sources(&root.join("crates"), &mut code);
    let mut checked = 0;
    for part in spans(&text).filter(|p| is_rust_name(p)) {
        let mut names = part.split("::");
        let ty = names.next().unwrap_or("");
        let defined = ["struct", "enum", "trait", "type", "const", "static"].iter().any(|kw| {
            code.contains(&format!("{kw} {ty} "))
                || code.contains(&format!("{kw} {ty}<"))
                || code.contains(&format!("{kw} {ty}:"))
                || code.contains(&format!("{kw} {ty};"))
                || code.contains(&format!("{kw} {ty}("))
        });
        assert!(defined, "ARCHITECTURE.md names `{ty}`, which is not defined anywhere");
        if let Some(member) = names.next() {
            let found = code.contains(&format!("fn {member}("))
                || code.contains(&format!("fn {member}<"))
                || code.contains(&format!("    {member},"))
                || code.contains(&format!("    {member} {{"))
                || code.contains(&format!("    {member}("));
            assert!(found, "ARCHITECTURE.md names `{part}`, but no `{member}` is defined");
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} names found");
}

#[test]
fn the_name_check_tells_names_from_prose() {
    assert!(is_rust_name("ApiError") && is_rust_name("Core::admit") && is_rust_name("REVOCATION_BOUND"));
    assert!(!is_rust_name("x-request-id") && !is_rust_name("sandbox/echo") && !is_rust_name("ON"));
    assert!(!is_rust_name("Invalid API key"));
}
