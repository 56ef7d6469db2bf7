//! Time-based one-time passwords (RFC 6238 over RFC 4226: HMAC-SHA-1, 30-second steps, six
//! digits), the base32 of their secrets (RFC 4648) and the `otpauth://` URI authenticator apps
//! read. Invariant: a code is accepted for its step or one step either side (clock drift), and
//! never for a step at or before the last one used (no replay).

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Seconds per step.
pub const STEP_SECS: u64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Bytes of a secret (160 bits, RFC 4226's recommendation).
pub const SECRET_BYTES: usize = 20;

/// The step of a Unix time.
pub fn step_of(unix_secs: u64) -> u64 {
    unix_secs / STEP_SECS
}

/// The code of `secret` at `step`.
pub fn code_at(secret: &[u8], step: u64) -> u32 {
    let Ok(mut mac) = <Hmac<Sha1> as Mac>::new_from_slice(secret) else { return 0 };
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let bin = u32::from_be_bytes([digest[offset] & 0x7f, digest[offset + 1], digest[offset + 2], digest[offset + 3]]);
    bin % 10u32.pow(DIGITS)
}

/// The step `code` is valid for at `unix_secs` (±1 step), if later than `last_used`.
pub fn verify(secret: &[u8], code: &str, unix_secs: u64, last_used: Option<u64>) -> Option<u64> {
    let code = code.trim().replace([' ', '-'], "");
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let wanted: u32 = code.parse().ok()?;
    let now = step_of(unix_secs);
    let mut matched = None;
    // Every candidate is computed, so the time does not depend on which one matched.
    for step in [now.saturating_sub(1), now, now + 1] {
        if code_at(secret, step) == wanted && last_used.is_none_or(|last| step > last) {
            matched = Some(step);
        }
    }
    matched
}

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32, without padding (what authenticator apps take).
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            out.push(char::from(ALPHABET[((buffer >> (bits - 5)) & 31) as usize]));
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The `otpauth://totp/…` URI of a secret, for a QR code.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let esc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => char::from(b).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        esc(issuer),
        esc(account),
        base32(secret),
        esc(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 (the last six of its eight digits).
    #[test]
    fn rfc_6238_test_vectors() {
        let secret = b"12345678901234567890";
        for (t, code) in [
            (59, 287_082),
            (1_111_111_109, 81_804),
            (1_111_111_111, 50_471),
            (1_234_567_890, 5_924),
            (2_000_000_000, 279_037),
        ] {
            assert_eq!(code_at(secret, step_of(t)), code, "T={t}");
        }
    }

    #[test]
    fn a_code_is_valid_one_step_either_side_and_only_once() {
        let secret = b"12345678901234567890";
        let t = 1_111_111_109;
        let code = format!("{:06}", code_at(secret, step_of(t)));
        assert_eq!(verify(secret, &code, t, None), Some(step_of(t)));
        assert_eq!(verify(secret, &code, t + 30, None), Some(step_of(t)), "the next step still takes it");
        assert_eq!(verify(secret, &code, t + 60, None), None, "two steps later it is gone");
        assert_eq!(verify(secret, &code, t, Some(step_of(t))), None, "no replay");
        assert_eq!(verify(secret, "081 804", t, None), Some(step_of(t)), "spaces are fine");
        assert_eq!(verify(secret, "81804", t, None), None);
        assert_eq!(verify(secret, "abcdef", t, None), None);
    }

    #[test]
    fn base32_and_the_uri() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(b"12345678901234567890"), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        let uri = otpauth_uri("Layers", "ada@example.com", b"12345678901234567890");
        assert_eq!(
            uri,
            "otpauth://totp/Layers:ada@example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Layers&algorithm=SHA1&digits=6&period=30"
        );
    }
}
