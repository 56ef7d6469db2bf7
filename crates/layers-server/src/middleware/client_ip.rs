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
}

impl TrustedProxies {
    /// Believes `header` from the proxies in `cidrs` (IPs or CIDR ranges).
    pub fn new(header: &str, cidrs: &[String]) -> Result<TrustedProxies, BadProxies> {
        let name =
            HeaderName::try_from(header.to_ascii_lowercase()).map_err(|_| BadProxies::Header(header.to_owned()))?;
        let nets =
            cidrs.iter().map(|c| parse_cidr(c).ok_or_else(|| BadProxies::Cidr(c.clone()))).collect::<Result<_, _>>()?;
        Ok(TrustedProxies { header: Some(name), nets: Arc::new(nets) })
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|(net, bits)| contains(*net, *bits, ip))
    }

    /// The client of a request that came from `peer` with `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        let Some(name) = &self.header else { return peer };
        if !self.trusts(peer) {
            return peer;
        }
        let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) else { return peer };
        // X-Forwarded-For lists every hop: the client is the rightmost address not one of ours.
        value
            .rsplit(',')
            .map(str::trim)
            .filter_map(|s| s.parse::<IpAddr>().ok())
            .find(|ip| !self.trusts(*ip))
            .unwrap_or(peer)
    }
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

    fn headers(xff: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn believes_only_trusted_proxies() {
        let p = TrustedProxies::new("X-Forwarded-For", &["10.0.0.0/8".into(), "::1".into()]).unwrap();
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "198.51.100.9".parse().unwrap();
        // From a trusted proxy, the rightmost untrusted hop is the client (spoofed left entries ignored).
        assert_eq!(
            p.client_ip(proxy, &headers("1.1.1.1, 203.0.113.5, 10.9.9.9")),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
        // From anyone else, the header is ignored.
        assert_eq!(p.client_ip(stranger, &headers("203.0.113.5")), stranger);
        assert_eq!(p.client_ip(proxy, &headers("garbage")), proxy);
        assert_eq!(TrustedProxies::default().client_ip(proxy, &headers("203.0.113.5")), proxy);
        assert!(TrustedProxies::new("x-forwarded-for", &["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::new("bad header", &["10.0.0.0/8".into()]).is_err());
        assert!(contains("0.0.0.0".parse().unwrap(), 0, "8.8.8.8".parse().unwrap()));
    }
}
