//! Webhook signatures in Stripe's scheme, both ways: the alert webhooks Layers sends
//! (`Layers-Signature`) and the events Stripe sends us (`Stripe-Signature`). The header is
//! `t=<unix seconds>,v1=<hex HMAC-SHA-256>[,v1=…]` where each HMAC is keyed by an endpoint
//! secret over `<t>.<raw body>`. A receiver recomputes it over the bytes it received, compares
//! in constant time, accepts any `v1` under any of its current secrets (secrets rotate), ignores
//! other schemes (`v0`), and refuses a timestamp more than five minutes from its clock, either
//! way.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header name.
pub const HEADER: &str = "Layers-Signature";
/// How far a receiver should accept a timestamp from its clock, in seconds.
pub const TOLERANCE_SECS: i64 = 300;

/// The header value for `body` sent at `timestamp` (Unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", crate::hex::encode(&mac(secret, timestamp, body)))
}

/// Whether `header` signs `body` with `secret`, within the tolerance of `now` (Unix seconds).
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64) -> bool {
    verify_any(&[secret], header, body, now)
}

/// Whether `header` signs `body` with any of `secrets` (during a rotation, old and new), within
/// the tolerance of `now`. A header with more than one `t` is refused.
pub fn verify_any(secrets: &[&[u8]], header: &str, body: &[u8], now: i64) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) if timestamp.is_none() => timestamp = Some(v.parse::<i64>().ok()),
            // Two timestamps: which one was signed is ambiguous.
            Some(("t", _)) => return false,
            Some(("v1", v)) => signatures.extend(crate::hex::decode(v)),
            _ => {}
        }
    }
    let Some(Some(t)) = timestamp else { return false };
    // Checked: a crafted `t` at the edge of i64 must not overflow.
    let skew = now.checked_sub(t).and_then(i64::checked_abs);
    if skew.is_none_or(|s| s > TOLERANCE_SECS) || signatures.len() > 16 {
        return false;
    }
    secrets.iter().any(|secret| {
        signatures.iter().any(|candidate| {
            let mut m = keyed(secret);
            m.update(t.to_string().as_bytes());
            m.update(b".");
            m.update(body);
            m.verify_slice(candidate).is_ok()
        })
    })
}

fn keyed(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length.
    match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    }
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut m = keyed(secret);
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamp_at_the_edge_of_i64_is_refused_not_overflowed() {
        for t in [i64::MIN, i64::MAX] {
            let header = format!("t={t},v1={}", "00".repeat(32));
            assert!(!verify(b"secret", &header, b"{}", 1_764_601_200));
        }
    }

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let header = sign(b"whsec_test", 1_700_000_000, b"{\"a\":1}");
        assert!(header.starts_with("t=1700000000,v1="));
        assert!(verify(b"whsec_test", &header, b"{\"a\":1}", 1_700_000_010));
        assert!(!verify(b"whsec_test", &header, b"{\"a\":2}", 1_700_000_010));
        assert!(!verify(b"other", &header, b"{\"a\":1}", 1_700_000_010));
        let shifted = header.replace("t=1700000000", "t=1700000001");
        assert!(!verify(b"whsec_test", &shifted, b"{\"a\":1}", 1_700_000_010));
    }

    #[test]
    fn old_and_future_timestamps_are_refused() {
        let header = sign(b"s", 1_000, b"x");
        assert!(verify(b"s", &header, b"x", 1_000 + TOLERANCE_SECS));
        assert!(!verify(b"s", &header, b"x", 1_000 + TOLERANCE_SECS + 1));
        assert!(!verify(b"s", &header, b"x", 1_000 - TOLERANCE_SECS - 1));
    }

    #[test]
    fn any_current_secret_and_any_v1_verifies_and_other_schemes_do_not() {
        let body = b"{\"id\":\"evt_1\",\"object\":\"event\"}";
        let good = sign(b"whsec_new", 1_700_000_000, body);
        let v1 = good.split_once(",v1=").unwrap().1;
        // Stripe sends every signature of every active secret, and a v0 scheme we ignore.
        let header = format!("t=1700000000, v1={}, v0={v1}, v1={v1}", "ab".repeat(32));
        assert!(verify_any(&[b"whsec_old", b"whsec_new"], &header, body, 1_700_000_100));
        assert!(!verify_any(&[b"whsec_old"], &header, body, 1_700_000_100), "not the old secret alone");
        assert!(!verify_any(&[], &header, body, 1_700_000_100));
        let only_v0 = format!("t=1700000000,v0={v1}");
        assert!(!verify_any(&[b"whsec_new"], &only_v0, body, 1_700_000_100), "v0 is not trusted");
        let two_times = format!("t=1700000000,t=1600000000,v1={v1}");
        assert!(!verify_any(&[b"whsec_new"], &two_times, body, 1_700_000_100));
        assert!(!verify_any(&[b"whsec_new"], "", body, 0));
        assert!(!verify_any(&[b"whsec_new"], "t=abc,v1=00", body, 0));
        assert!(!verify_any(&[b"whsec_new"], &good, b"{\"id\":\"evt_2\"}", 1_700_000_000), "a tampered body");
    }

    #[test]
    fn a_known_vector_matches_an_independent_hmac() {
        // HMAC-SHA-256(key="key", "0.The quick brown fox jumps over the lazy dog") computed
        // with `printf '0.The quick…' | openssl dgst -sha256 -hmac key`.
        let header = sign(b"key", 0, b"The quick brown fox jumps over the lazy dog");
        assert_eq!(header, "t=0,v1=8511f28f7a1949f0c42772b447d68b2daf760f5f0439a20a17e3b4e7cd395763");
        assert!(verify(b"key", &header, b"The quick brown fox jumps over the lazy dog", 0));
        assert!(!verify(b"key", "t=0", b"", 0));
        assert!(!verify(b"key", "t=0,v1=zz", b"", 0));
    }
}
