//! What a password must be (SPEC §6.1, NIST SP 800-63B §5.1.1.2): at least 12 characters, at
//! most 256, and not a common password; no other composition rule. Invariant: the check looks
//! through the usual disguises of a common password (case, a repetition, digits or symbols
//! added at either end), so `Password1234!` is as refused as `password`.

use std::collections::HashSet;
use std::sync::OnceLock;

/// Fewest characters a password may have.
pub const MIN_CHARS: usize = 12;
/// Most characters a password may have (the hash's work does not depend on it, but a bound
/// keeps a request's cost bounded).
pub const MAX_CHARS: usize = 256;

/// Why a password is refused; the message is shown on the form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weak {
    TooShort,
    TooLong,
    Common,
}

impl Weak {
    pub fn message(self) -> &'static str {
        match self {
            Weak::TooShort => "Use at least 12 characters.",
            Weak::TooLong => "Use at most 256 characters.",
            Weak::Common => "This password is too common. A few unrelated words make a strong one.",
        }
    }
}

/// The bundled list, read once.
fn common() -> &'static HashSet<&'static str> {
    static LIST: OnceLock<HashSet<&'static str>> = OnceLock::new();
    LIST.get_or_init(|| {
        include_str!("common_passwords.txt").lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
    })
}

/// Checks a new password.
pub fn check(password: &str) -> Result<(), Weak> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(Weak::TooShort);
    }
    if chars > MAX_CHARS {
        return Err(Weak::TooLong);
    }
    if is_common(password) {
        return Err(Weak::Common);
    }
    Ok(())
}

fn is_common(password: &str) -> bool {
    let lower = password.to_lowercase();
    let list = common();
    // A common password with digits or symbols before or after it.
    let core = lower.trim_matches(|c: char| c.is_ascii_digit() || c.is_ascii_punctuation() || c.is_whitespace());
    if list.contains(lower.as_str()) || (core.chars().count() >= 4 && list.contains(core)) {
        return true;
    }
    // A number, a date or a time, or one short unit repeated.
    let numeric = lower.chars().all(|c| c.is_ascii_digit() || " -/.:".contains(c));
    numeric || repeats_a_short_unit(&lower) || (!core.is_empty() && repeats_a_short_unit(core))
}

/// Whether `s` is one unit of at most half its length, repeated (`abcabcabcabc`).
fn repeats_a_short_unit(s: &str) -> bool {
    let chars: Vec<char> = s.chars().collect();
    (1..=chars.len() / 2)
        .any(|unit| chars.len().is_multiple_of(unit) && chars.chunks(unit).all(|c| c == &chars[..unit]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_is_the_only_composition_rule() {
        assert_eq!(check("short pass"), Err(Weak::TooShort));
        assert_eq!(check("elevenchars"), Err(Weak::TooShort));
        assert_eq!(check(&"x".repeat(257)), Err(Weak::TooLong));
        assert_eq!(check("correct horse battery staple"), Ok(()));
        assert_eq!(check("tulip lantern 42"), Ok(()), "no symbol, digit or capital needed");
        assert_eq!(check("ÿüéàçôñ日本語のパス"), Ok(()), "characters, not bytes");
    }

    #[test]
    fn common_passwords_are_refused_in_their_disguises() {
        for weak in [
            "qwerty123456",
            "1qaz2wsx3edc",
            "Password1234",
            "password1234!",
            "!!2024password2024",
            "passwordpassword",
            "abcabcabcabc",
            "123456789012",
            "2024-01-01 12:00",
            "ILOVEYOU12345",
            "Sunshine2024!",
        ] {
            assert_eq!(check(weak), Err(Weak::Common), "{weak}");
        }
        // A common word inside a longer passphrase is fine.
        assert_eq!(check("password is a dragon of brass"), Ok(()));
        assert_eq!(check("8#4!92@0$7^3&1"), Ok(()), "random symbols and digits are not a common password");
    }

    #[test]
    fn the_bundled_list_is_there() {
        assert!(common().len() > 29_000);
        assert!(common().contains("password") && common().contains("1qaz2wsx3edc"));
    }
}
