//! The client's IP: the socket's peer, unless the peer is a trusted proxy, in which case the
//! configured forwarded header says (SPEC §8.4). Invariant: a header is believed only from the
//! proxies the operator named; anyone else could forge it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderName;

/// The IP a request is attributed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Which proxies to believe, and which header they set.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    header: Option<HeaderName>,
    nets: Arc<Vec<(IpAddr, u8)>>,
}

#[derive(Debug, thiserror::Error)]
pub enum BadProxies {
    #[error("{0:?} is not an IP address or CIDR range")]
    Cidr(String),
    #[error("{0:?} is not a header name")]
    Header(String),
    #[error("the Forwarded header (RFC 7239) is not supported; use x-forwarded-for or x-real-ip")]
    Forwarded,
}

impl TrustedProxies {
    /// Believes `header` from the proxies in `cidrs` (IPs or CIDR ranges).
    pub fn new(header: &str, cidrs: &[String]) -> Result<TrustedProxies, BadProxies> {
        let name =
            HeaderName::try_from(header.to_ascii_lowercase()).map_err(|_| BadProxies::Header(header.to_owned()))?;
        if name == http::header::FORWARDED {
            return Err(BadProxies::Forwarded);
        }
        let nets =
            cidrs.iter().map(|c| parse_cidr(c).ok_or_else(|| BadProxies::Cidr(c.clone()))).collect::<Result<_, _>>()?;
        Ok(TrustedProxies { header: Some(name), nets: Arc::new(nets) })
    }

    /// A `/0` range: every peer could forge the header.
    pub fn trusts_everyone(&self) -> bool {
        self.nets.iter().any(|(_, bits)| *bits == 0)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|(net, bits)| contains(*net, *bits, ip))
    }

    /// The client of a request that came from `peer` with `headers`.
    ///
    /// The forwarded header lists every hop, appended left to right, possibly over several
    /// header lines (some proxies add a line rather than extend one). Walking from the right,
    /// trusted proxies are skipped; the first address that is not one of ours is the client.
    /// Anything left of an entry that does not parse was written by someone we cannot vouch
    /// for, so the walk stops there and the request is attributed to the last hop we trust.
    pub fn client_ip(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        let Some(name) = &self.header else { return peer };
        if !self.trusts(peer) {
            return peer;
        }
        let mut last_trusted = peer;
        let lines: Vec<&http::HeaderValue> = headers.get_all(name).iter().collect();
        for line in lines.into_iter().rev() {
            let Ok(text) = line.to_str() else { return last_trusted };
            for entry in text.rsplit(',') {
                let Some(ip) = parse_hop(entry) else { return last_trusted };
                if !self.trusts(ip) {
                    return ip;
                }
                last_trusted = ip;
            }
        }
        last_trusted
    }
}

/// One entry of X-Forwarded-For: `203.0.113.5`, `203.0.113.5:4711`, `2001:db8::1` or
/// `[2001:db8::1]:4711`, canonical (`::ffff:10.0.0.1` is `10.0.0.1`).
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let s = entry.trim();
    let ip = if let Ok(ip) = s.parse::<IpAddr>() {
        ip
    } else if let Some(rest) = s.strip_prefix('[') {
        rest.split_once(']')?.0.parse().ok()?
    } else {
        s.rsplit_once(':').filter(|(host, _)| !host.contains(':'))?.0.parse().ok()?
    };
    Some(ip.to_canonical())
}

pub async fn client_ip(State(proxies): State<TrustedProxies>, mut req: Request, next: Next) -> Response {
    let peer =
        req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let ip = proxies.client_ip(peer, req.headers());
    req.extensions_mut().insert(ClientIp(ip));
    next.run(req).await
}

fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, bits) = match s.split_once('/') {
        Some((ip, bits)) => (ip.parse::<IpAddr>().ok()?, bits.parse::<u8>().ok()?),
        None => {
            let ip = s.parse::<IpAddr>().ok()?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((ip, bits))
}

fn contains(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - u32::from(bits)) };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - u32::from(bits)) };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[&str]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for line in lines {
            h.append("x-forwarded-for", line.parse().unwrap());
        }
        h
    }

    #[test]
    fn believes_only_trusted_proxies() {
        let p = TrustedProxies::new("X-Forwarded-For", &["10.0.0.0/8".into(), "::1".into()]).unwrap();
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "198.51.100.9".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // From a trusted proxy, the rightmost untrusted hop is the client (spoofed left entries ignored).
        assert_eq!(p.client_ip(proxy, &headers(&["1.1.1.1, 203.0.113.5, 10.9.9.9"])), ip("203.0.113.5"));
        // From anyone else, the header is ignored.
        assert_eq!(p.client_ip(stranger, &headers(&["203.0.113.5"])), stranger);
        assert_eq!(TrustedProxies::default().client_ip(proxy, &headers(&["203.0.113.5"])), proxy);
        assert!(TrustedProxies::new("x-forwarded-for", &["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::new("bad header", &["10.0.0.0/8".into()]).is_err());
        assert!(TrustedProxies::new("Forwarded", &["10.0.0.0/8".into()]).is_err());
        assert!(contains(ip("0.0.0.0"), 0, ip("8.8.8.8")));
    }

    #[test]
    fn forged_entries_cannot_choose_the_address() {
        let p = TrustedProxies::new("x-forwarded-for", &["10.0.0.0/8".into()]).unwrap();
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // A proxy that adds its own line after the client's forged one: the last line counts.
        assert_eq!(p.client_ip(proxy, &headers(&["192.0.2.66", "203.0.113.5"])), ip("203.0.113.5"));
        assert_eq!(p.client_ip(proxy, &headers(&["192.0.2.66", "203.0.113.5, 10.0.0.9"])), ip("203.0.113.5"));
        // An entry that does not parse stops the walk: nothing left of it is believed.
        assert_eq!(p.client_ip(proxy, &headers(&["192.0.2.66, garbage"])), proxy);
        assert_eq!(p.client_ip(proxy, &headers(&["192.0.2.66, garbage, 10.0.0.9"])), ip("10.0.0.9"));
        // Ports and brackets are understood, not skipped.
        assert_eq!(p.client_ip(proxy, &headers(&["192.0.2.66, 203.0.113.5:4711"])), ip("203.0.113.5"));
        assert_eq!(p.client_ip(proxy, &headers(&["[2001:db8::7]:443"])), ip("2001:db8::7"));
        // Only proxies in the chain: the one furthest from us is what we know.
        assert_eq!(p.client_ip(proxy, &headers(&["10.0.0.7, 10.0.0.8"])), ip("10.0.0.7"));
        assert_eq!(p.client_ip(proxy, &http::HeaderMap::new()), proxy);
    }

    #[test]
    fn v4_mapped_addresses_are_canonical() {
        let p = TrustedProxies::new("x-forwarded-for", &["10.0.0.0/8".into()]).unwrap();
        // A node listening on [::] sees IPv4 peers as ::ffff:a.b.c.d; they are still trusted.
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(p.client_ip(mapped, &headers(&["::ffff:203.0.113.5"])), "203.0.113.5".parse::<IpAddr>().unwrap());
        assert_eq!(
            TrustedProxies::default().client_ip(mapped, &http::HeaderMap::new()),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
    }
}
