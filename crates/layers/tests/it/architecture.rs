//! ARCHITECTURE.md names paths; they must exist, so the document cannot drift.

#[test]
fn every_path_named_in_architecture_md_exists() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let mut checked = 0;
    for (i, part) in text.split('`').enumerate() {
        let looks_like_path = i % 2 == 1 && (part.starts_with("crates/") || part.starts_with("bench"));
        if looks_like_path {
            assert!(root.join(part).exists(), "ARCHITECTURE.md names {part}, which does not exist");
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} paths found");
}
