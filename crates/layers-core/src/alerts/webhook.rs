//! Delivering an alert to the webhook a person configured. Invariant: the gateway never becomes
//! a way into its own network: https only, the host must resolve to public addresses only and
//! the connection goes to the address checked (no second lookup), no redirects, bounded time.
//! `allow_private` exists for tests on loopback; production refuses it.

use std::net::SocketAddr;
use std::time::Duration;

use layers_domain::dashboard::signature;

use super::Alert;

const TIMEOUT: Duration = Duration::from_secs(10);
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
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err("the webhook URL has no host");
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
            "type": alert.kind,
            "created": now.unix_timestamp(),
            "subject": alert.subject,
            "data": alert.data,
        }))
        .map_err(|_| "the alert cannot be encoded")?;
        let mut last = Err("not sent");
        for pause in std::iter::once(Duration::ZERO).chain(RETRIES) {
            tokio::time::sleep(pause).await;
            // Signed at each try, so a late retry is not refused as old.
            let stamp = now.unix_timestamp() + i64::try_from(pause.as_secs()).unwrap_or(0);
            last = self.send_once(url, secret, &body, stamp).await;
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
        if !self.allow_private && addrs.iter().any(|a| !layers_providers::fetch::is_public(a.ip())) {
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
        assert!(WebhookPolicy { allow_private: true }.check_url("http://127.0.0.1:9/x").is_ok());
    }
}
