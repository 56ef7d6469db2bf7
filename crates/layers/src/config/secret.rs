//! A secret setting: read from the environment, a file or the config file, never printed.
//! Invariant: `Debug` and `Serialize` show `[redacted]`; only `expose()` yields the value.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(SecretString::from(s))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn into_inner(self) -> SecretString {
        self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    /// Accepts any scalar: an environment value such as `12345` arrives as a number.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Scalar {
            S(String),
            I(i64),
            F(f64),
            B(bool),
        }
        let text = match Scalar::deserialize(d)? {
            Scalar::S(s) => s,
            Scalar::I(i) => i.to_string(),
            Scalar::F(f) => f.to_string(),
            Scalar::B(b) => b.to_string(),
        };
        Ok(Secret::new(text))
    }
}

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

pub fn serialize_url<S: Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(u) => s.serialize_some(&redact_url(u)),
        None => s.serialize_none(),
    }
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
