//! Where a page may send the browser after login (`redirectTo`): a path of this site, never
//! another origin (SPEC §6.2, no open redirects). Invariant: anything a browser could read as
//! another host, a scheme or a protocol-relative URL — `//evil`, `/\evil`, `https:evil`,
//! `%2F%2Fevil`, `javascript:`, control characters — falls back to the default.

/// Longest target kept.
const MAX_LEN: usize = 512;

/// `target` when it is a same-site path, else `None`.
pub fn same_site_path(target: &str) -> Option<&str> {
    let ok = target.len() <= MAX_LEN
        && target.starts_with('/')
        && !target.starts_with("//")
        && !target.contains('\\')
        && !target.chars().any(|c| c.is_control() || c.is_whitespace())
        && !decoded_prefix_escapes(target);
    ok.then_some(target)
}

/// Whether percent-decoding the first characters could give `//` or `/\` (a browser or a
/// proxy that decodes once must not find another host there either).
fn decoded_prefix_escapes(target: &str) -> bool {
    let head: String = target.chars().take(12).collect::<String>().to_ascii_lowercase();
    let decoded =
        head.replace("%2f", "/").replace("%5c", "\\").replace("%09", "").replace("%0a", "").replace("%0d", "");
    decoded.starts_with("//") || decoded.starts_with("/\\") || target.to_ascii_lowercase().contains("%00")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_of_this_site_are_kept() {
        for good in ["/dashboard", "/dashboard/settings", "/dashboard/usage?model=a%2Fb&page=2", "/"] {
            assert_eq!(same_site_path(good), Some(good), "{good}");
        }
        for evil in [
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https:evil.example",
            "https://evil.example",
            "%2F%2Fevil.example",
            "/%2F/evil.example",
            "/%2f%2fevil.example",
            "/%5Cevil.example",
            "javascript:alert(1)",
            "/\tevil",
            "/dash\nboard",
            " /dashboard",
            "",
            "dashboard",
        ] {
            assert_eq!(same_site_path(evil), None, "{evil:?}");
        }
        assert_eq!(same_site_path(&format!("/{}", "a".repeat(600))), None);
    }
}
