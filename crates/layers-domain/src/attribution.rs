//! App attribution: the app a request came from, as OpenRouter's headers name it
//! (`HTTP-Referer`, `X-Title` or `X-OpenRouter-Title`), kept with its usage and shown on the
//! dashboard. Invariant: what is kept is bounded and printable, and of the referrer only its
//! origin (scheme, host, port): a path or query may carry a user's data or a token.

/// The most characters of a title kept.
pub const MAX_TITLE_CHARS: usize = 80;
/// The longest origin kept.
pub const MAX_ORIGIN_CHARS: usize = 200;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct App {
    pub title: Option<String>,
    pub origin: Option<String>,
}

impl App {
    /// The attribution of a request from its headers' values (absent or unusable: `None`).
    pub fn from_headers(referer: Option<&str>, title: Option<&str>) -> App {
        App { title: title.and_then(clean_title), origin: referer.and_then(origin_of) }
    }

    pub fn is_empty(&self) -> bool {
        self.title.is_none() && self.origin.is_none()
    }
}

/// A title without control characters or surrounding space, cut to [`MAX_TITLE_CHARS`].
fn clean_title(raw: &str) -> Option<String> {
    let words: Vec<&str> = raw.split(|c: char| c.is_control() || c.is_whitespace()).filter(|w| !w.is_empty()).collect();
    let title: String = words.join(" ").chars().take(MAX_TITLE_CHARS).collect();
    (!title.is_empty()).then_some(title)
}

/// `scheme://host[:port]` of an http(s) URL; `None` for anything else (or with credentials).
fn origin_of(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let (scheme, rest) = raw.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let valid = authority.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '[' | ']'));
    let origin = format!("{scheme}://{}", authority.to_ascii_lowercase());
    (valid && origin.len() <= MAX_ORIGIN_CHARS).then_some(origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_origin_and_a_clean_title() {
        let app =
            App::from_headers(Some("https://My.App.example:8443/chat?token=secret#x"), Some("  My\tApp \u{7}v2 "));
        assert_eq!(app.origin.as_deref(), Some("https://my.app.example:8443"));
        assert_eq!(app.title.as_deref(), Some("My App v2"));
        let long = "x".repeat(500);
        assert_eq!(App::from_headers(None, Some(&long)).title.map(|t| t.len()), Some(MAX_TITLE_CHARS));
    }

    #[test]
    fn refuses_what_is_not_an_http_origin() {
        for bad in [
            "javascript:alert(1)",
            "ftp://x.example",
            "https://user:pw@x.example/",
            "https://",
            "x.example",
            "https://a b.example",
        ] {
            assert_eq!(App::from_headers(Some(bad), None).origin, None, "{bad}");
        }
        assert!(App::from_headers(Some(""), Some(" \n ")).is_empty());
    }
}
