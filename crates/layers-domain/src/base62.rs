//! Fixed-width base62 (`0-9A-Za-z`) encoding of big-endian byte strings.
//! Invariant: the width is chosen by the caller so that every input value fits.

pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Encodes `bytes` (a big-endian unsigned integer) as exactly `width` base62 digits,
/// left-padded with `0`. Returns `None` when the value does not fit in `width` digits.
pub fn encode_fixed(bytes: &[u8], width: usize) -> Option<String> {
    let mut num = bytes.to_vec();
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        let mut rem: u32 = 0;
        for b in num.iter_mut() {
            let acc = (rem << 8) | u32::from(*b);
            *b = (acc / 62) as u8;
            rem = acc % 62;
        }
        *slot = ALPHABET[rem as usize];
    }
    if num.iter().any(|b| *b != 0) {
        return None;
    }
    String::from_utf8(out).ok()
}

/// True when every byte of `s` is a base62 digit.
pub fn is_base62(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Number of base62 digits needed to hold any value of `bytes` bytes.
pub const fn width_for_bytes(bytes: usize) -> usize {
    // log(256)/log(62) = 1.3436..., rounded up per byte count with integer math.
    (bytes * 13436).div_ceil(10000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_known_values() {
        assert_eq!(encode_fixed(&[0], 2).as_deref(), Some("00"));
        assert_eq!(encode_fixed(&[61], 1).as_deref(), Some("z"));
        assert_eq!(encode_fixed(&[62], 2).as_deref(), Some("10"));
        assert_eq!(encode_fixed(&[1, 0], 2).as_deref(), Some("48")); // 256 = 4*62 + 8
        assert_eq!(encode_fixed(&[62], 1), None);
    }

    #[test]
    fn max_values_fit_their_width() {
        for n in 1..=32 {
            let max = vec![0xff; n];
            assert!(encode_fixed(&max, width_for_bytes(n)).is_some(), "{n} bytes");
        }
        assert_eq!(width_for_bytes(24), 33);
        assert_eq!(width_for_bytes(4), 6);
    }

    #[test]
    fn charset_check() {
        assert!(is_base62("abcXYZ019"));
        assert!(!is_base62("abc-"));
        assert!(!is_base62("é"));
    }
}
