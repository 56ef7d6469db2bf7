//! Delivering an alert to the webhook a person configured. Invariant: the gateway never becomes
//! a way into its own network: https only, the host must resolve to public addresses only and
//! the connection goes to the address checked (no second lookup), no redirects, bounded time.
//! `allow_private` exists for tests on loopback; production refuses it.

use std::net::SocketAddr;
use std::time::Duration;

use layers_domain::webhook_signature as signature;
use layers_providers::fetch::is_public;

use super::Alert;

/// Longest a name lookup, and then one try, may take.
const TIMEOUT: Duration = Duration::from_secs(5);
const MAX_URL_CHARS: usize = 2_000;
/// Tries per alert: at once, then after these pauses.
const RETRIES: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(5)];

#[derive(Clone, Copy, Debug, Default)]
pub struct WebhookPolicy {
    /// Allow http and private addresses (local tests only; production refuses it).
    pub allow_private: bool,
}

impl WebhookPolicy {
    /// Whether `url` may be a webhook (before any lookup).
    pub fn check_url(&self, url: &str) -> Result<(), &'static str> {
        if url.chars().count() > MAX_URL_CHARS {
            return Err("the webhook URL is too long");
        }
        let parsed = reqwest::Url::parse(url).map_err(|_| "the webhook URL is not a valid URL")?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_private => {}
            _ => return Err("the webhook URL must start with https://"),
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("the webhook URL must not contain a user name or password");
        }
        let host = parsed.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err("the webhook URL has no host");
        }
        let private_literal = host.parse::<std::net::IpAddr>().is_ok_and(|ip| !is_public(ip));
        let local_name = host == "localhost" || host.ends_with(".localhost");
        if !self.allow_private && (private_literal || local_name) {
            return Err("the webhook URL must be a public address");
        }
        Ok(())
    }

    /// POSTs the alert, signed; retried twice on failure.
    pub(super) async fn post(
        &self,
        url: &str,
        secret: &[u8],
        alert: &Alert,
        now: time::OffsetDateTime,
    ) -> Result<(), &'static str> {
        self.check_url(url)?;
        let body = serde_json::to_vec(&serde_json::json!({
            // One id per alert, the same on every try: a receiver drops a repeat by it.
            "id": format!("evt_{}", uuid::Uuid::new_v4().simple()),
            "type": alert.kind,
            "created": now.unix_timestamp(),
            "subject": alert.subject,
            "data": alert.data,
        }))
        .map_err(|_| "the alert cannot be encoded")?;
        let mut last = Err("not sent");
        let started = tokio::time::Instant::now();
        for pause in std::iter::once(Duration::ZERO).chain(RETRIES) {
            tokio::time::sleep(pause).await;
            // Signed at each try with the time of the try, so a late retry is not refused as old.
            let waited = i64::try_from(started.elapsed().as_secs()).unwrap_or(0);
            last = self.send_once(url, secret, &body, now.unix_timestamp() + waited).await;
            if last.is_ok() {
                break;
            }
        }
        last
    }

    async fn send_once(&self, url: &str, secret: &[u8], body: &[u8], stamp: i64) -> Result<(), &'static str> {
        let unreachable = "the webhook could not be reached";
        let parsed = reqwest::Url::parse(url).map_err(|_| unreachable)?;
        let host = parsed.host_str().ok_or(unreachable)?.trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = parsed.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = tokio::time::timeout(TIMEOUT, tokio::net::lookup_host((host.as_str(), port)))
            .await
            .map_err(|_| unreachable)?
            .map_err(|_| unreachable)?
            .collect();
        let addr = *addrs.first().ok_or(unreachable)?;
        if !self.allow_private && addrs.iter().any(|a| !is_public(a.ip())) {
            return Err("the webhook resolves to a private address");
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .resolve(&host, addr)
            .timeout(TIMEOUT)
            .build()
            .map_err(|_| unreachable)?;
        let resp = client
            .post(parsed)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::USER_AGENT, "Layers-Webhooks/1")
            .header(signature::HEADER, signature::sign(secret, stamp, body))
            .body(body.to_vec())
            .send()
            .await
            .map_err(|_| unreachable)?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err("the webhook answered with an error")
        }
    }
}

/// `scheme://host:port` of a URL, to tell one receiver from another.
pub(super) fn origin(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    Some(format!("{}://{}:{}", parsed.scheme(), parsed.host_str()?, parsed.port_or_known_default()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_urls_without_credentials_are_webhooks() {
        let strict = WebhookPolicy::default();
        assert!(strict.check_url("https://hooks.example.com/layers").is_ok());
        assert!(strict.check_url("http://hooks.example.com/layers").is_err());
        assert!(strict.check_url("https://user:pw@hooks.example.com/").is_err());
        assert!(strict.check_url("file:///etc/passwd").is_err());
        assert!(strict.check_url("not a url").is_err());
        assert!(strict.check_url("https://127.0.0.1/x").is_err(), "no loopback");
        assert!(strict.check_url("https://10.1.2.3/x").is_err(), "no private network");
        assert!(strict.check_url("https://[::1]/x").is_err());
        assert!(strict.check_url("https://169.254.169.254/latest").is_err(), "no cloud metadata");
        assert!(strict.check_url("https://localhost/x").is_err());
        assert!(strict.check_url("https://93.184.215.14/x").is_ok());
        assert!(WebhookPolicy { allow_private: true }.check_url("http://127.0.0.1:9/x").is_ok());
        assert_eq!(origin("https://a.example/x"), origin("https://a.example:443/y"));
        assert_ne!(origin("https://a.example/x"), origin("https://b.example/x"));
    }
}
