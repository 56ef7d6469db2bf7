//! Secrets kept out of output: URLs shown with their passwords replaced.
//! Invariant: `Debug`, logs and printed configuration show a URL only through [`redact_url`].

/// A URL with any password replaced by `[redacted]` (`postgres://user:[redacted]@host/db`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') { format!("{user}:[redacted]") } else { user.to_owned() };
            // A password may also hide in the query string (`?password=`).
            format!("{scheme}://{masked}@{host}{}", redact_query(path))
        }
        None => format!("{scheme}://{authority}{}", redact_query(path)),
    }
}

fn redact_query(path: &str) -> String {
    let Some((base, query)) = path.split_once('?') else { return path.to_owned() };
    let parts: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=[redacted]"),
            _ => kv.to_owned(),
        })
        .collect();
    format!("{base}?{}", parts.join("&"))
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://layers:s3cret@db:5432/layers"),
            "postgres://layers:[redacted]@db:5432/layers"
        );
        assert_eq!(redact_url("postgres://layers@db/layers"), "postgres://layers@db/layers");
        assert_eq!(
            redact_url("postgres://db/layers?user=x&password=s3cret"),
            "postgres://db/layers?user=x&password=[redacted]"
        );
        assert_eq!(redact_url("sqlite://./data/layers.db"), "sqlite://./data/layers.db");
    }
}
