//! Fetching an image a client gave by URL, for providers that only take images inline
//! (Gemini). Invariant: the gateway never becomes a way into its own network — the host must
//! resolve to public addresses only, the connection goes to the address that was checked (no
//! second lookup), redirects are not followed, and size and time are bounded.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use base64::Engine;
use futures_util::StreamExt;

use crate::error::ProviderError;
use crate::translate::unsupported;

/// Largest image fetched (Gemini's inline limit is 20 MB for the whole request).
const MAX_IMAGE_BYTES: usize = 15 * 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(10);
const MEDIA_TYPES: [&str; 6] = ["image/png", "image/jpeg", "image/webp", "image/heic", "image/heif", "image/gif"];

/// Fetches `url` and returns its media type and base64 data. `allow_private` lets tests fetch
/// from loopback mock servers; production refuses the setting.
pub async fn image(
    url: &str,
    param: &str,
    allow_private: bool,
    budget: &crate::budget::Budget,
) -> Result<(String, String), ProviderError> {
    // A place among the node's concurrent fetches, and the bytes held against its budget.
    let _slot = budget.image_fetch().await;
    let mut held = crate::budget::Held::default();
    let refuse = |why: &str| unsupported(param, &format!("the image URL cannot be used: {why}"));
    let parsed = reqwest::Url::parse(url).map_err(|_| refuse("not a valid URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(refuse("only http and https URLs are fetched"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(refuse("URLs with credentials are not fetched"));
    }
    // One answer for every way a fetch can fail, so the gateway cannot be used to learn which
    // internal names exist or which hosts answer.
    let unreachable = || refuse("it could not be fetched");
    let host = parsed.host_str().ok_or_else(|| refuse("no host"))?.to_owned();
    let bare_host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = parsed.port_or_known_default().unwrap_or(443);
    if !allow_private && !matches!(port, 80 | 443) {
        return Err(refuse("only the standard ports 80 and 443 are fetched"));
    }
    let addrs: Vec<SocketAddr> = tokio::time::timeout(TIMEOUT, tokio::net::lookup_host((bare_host.as_str(), port)))
        .await
        .map_err(|_| unreachable())?
        .map_err(|_| unreachable())?
        .collect();
    let addr = *addrs.first().ok_or_else(unreachable)?;
    if !allow_private && addrs.iter().any(|a| !is_public(a.ip())) {
        return Err(unreachable());
    }
    // No proxy from the environment: the connection must go to the address checked above.
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .resolve(&bare_host, addr)
        .timeout(TIMEOUT)
        .build()
        .map_err(|_| refuse("no HTTP client"))?;
    let resp = client.get(parsed).send().await.map_err(|_| unreachable())?;
    if !resp.status().is_success() {
        return Err(unreachable());
    }
    let media = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .filter(|m| MEDIA_TYPES.contains(&m.as_str()))
        .ok_or_else(|| refuse("it is not a PNG, JPEG, WebP, HEIC or GIF image"))?;
    if resp.content_length().is_some_and(|n| n > MAX_IMAGE_BYTES as u64) {
        return Err(refuse("it is larger than 15 MB"));
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| refuse("it could not be read"))?;
        if body.len() + chunk.len() > MAX_IMAGE_BYTES {
            return Err(refuse("it is larger than 15 MB"));
        }
        budget.cover(&mut held, body.len() + chunk.len())?;
        body.extend_from_slice(&chunk);
    }
    Ok((media, base64::engine::general_purpose::STANDARD.encode(body)))
}

/// Whether an address is on the public internet (not loopback, private, link-local, CGNAT,
/// documentation, multicast, unspecified, or an IPv4 address hidden in IPv6).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return public_v4(v4);
            }
            // Only global unicast (2000::/3), minus the ranges that tunnel or embed IPv4
            // (6to4, Teredo) and documentation; NAT64, IPv4-compatible, unique-local,
            // link-local and site-local addresses are all outside 2000::/3.
            let seg = v6.segments();
            (seg[0] & 0xe000) == 0x2000
                && seg[0] != 0x2002
                && !(seg[0] == 0x2001 && (seg[1] == 0x0000 || seg[1] == 0x0db8))
                && v6 != Ipv6Addr::UNSPECIFIED
        }
    }
}

fn public_v4(v4: Ipv4Addr) -> bool {
    let o = v4.octets();
    !(v4.is_private()
        || v4.is_loopback()
        || v4.is_link_local()
        || v4.is_broadcast()
        || v4.is_documentation()
        || v4.is_unspecified()
        || v4.is_multicast()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // CGNAT 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || o[0] >= 240)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "2001:0:4136:e378::1",
            "::a9fe:a9fe",
            "fec0::1",
            "2001:db8::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn a_url_to_the_gateways_own_network_is_refused_before_any_connection() {
        for url in [
            "http://127.0.0.1:9/x.png",
            "http://169.254.169.254/latest/meta-data",
            "http://localhost/x.png",
            "file:///etc/passwd",
            "http://user:pw@example.com/x.png",
            "https://example.com:22/x.png",
        ] {
            assert!(
                matches!(
                    image(url, "p", false, &crate::budget::Budget::default()).await,
                    Err(ProviderError::Unsupported { .. })
                ),
                "{url}"
            );
        }
    }
}
