//! The messages the accounts send, in plain text and HTML. Invariant: a link is the only
//! secret a message carries; HTML escapes everything it interpolates.

use super::mailer::Mail;

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn letter(to: &str, subject: &str, lines: &[&str], link: Option<(&str, &str)>, footer: &str) -> Mail {
    let mut text = String::new();
    let mut html = String::from(
        "<!doctype html><html><body style=\"font-family:system-ui,sans-serif;color:#1b1f24;max-width:560px;\
         margin:0 auto;padding:24px\"><p style=\"font-weight:700;font-size:18px\">Layers</p>",
    );
    for line in lines {
        text.push_str(line);
        text.push_str("\n\n");
        html.push_str(&format!("<p>{}</p>", esc(line)));
    }
    if let Some((label, url)) = link {
        text.push_str(&format!("{label}: {url}\n\n"));
        html.push_str(&format!(
            "<p><a href=\"{u}\" style=\"display:inline-block;background:#3346d3;color:#fff;padding:10px 18px;\
             border-radius:6px;text-decoration:none\">{l}</a></p><p style=\"font-size:13px;color:#57606a\">\
             Or paste this address into your browser: {u}</p>",
            u = esc(url),
            l = esc(label)
        ));
    }
    text.push_str(footer);
    text.push('\n');
    html.push_str(&format!("<p style=\"font-size:13px;color:#57606a\">{}</p></body></html>", esc(footer)));
    Mail { to: to.to_owned(), subject: subject.to_owned(), text, html }
}

const IGNORE: &str = "If you did not ask for this, you can ignore this message.";

pub fn confirm(to: &str, link: &str, valid_hours: u64) -> Mail {
    letter(
        to,
        "Confirm your e-mail address for Layers",
        &[
            "Welcome to Layers. Confirm your e-mail address to finish creating your account.",
            &format!("The link works once, for {valid_hours} hours."),
        ],
        Some(("Confirm my address", link)),
        IGNORE,
    )
}

/// Sent when someone signs up with an address that already has an account: the answer on the
/// page is the same, and the owner learns of it here.
pub fn already_registered(to: &str, login: &str, reset: &str) -> Mail {
    letter(
        to,
        "You already have a Layers account",
        &[
            "Someone (probably you) tried to create a Layers account with this address, which already has one.",
            &format!("To get in, log in at {login}, or set a new password at {reset}."),
        ],
        None,
        IGNORE,
    )
}

pub fn reset(to: &str, link: &str, valid_minutes: u64) -> Mail {
    letter(
        to,
        "Set a new password for Layers",
        &[
            "Someone (probably you) asked to set a new password for your Layers account.",
            &format!(
                "The link works once, for {valid_minutes} minutes. Setting a new password logs out every session."
            ),
        ],
        Some(("Set a new password", link)),
        IGNORE,
    )
}

pub fn confirm_new_address(to: &str, link: &str, valid_hours: u64) -> Mail {
    letter(
        to,
        "Confirm your new e-mail address for Layers",
        &[
            "Someone (probably you) asked to move a Layers account to this address.",
            &format!("Confirm it to finish. The link works once, for {valid_hours} hours."),
        ],
        Some(("Confirm my new address", link)),
        IGNORE,
    )
}

pub fn address_change_requested(to: &str) -> Mail {
    letter(
        to,
        "A change of e-mail address was requested for your Layers account",
        &["Someone logged in to your Layers account asked to move it to another address. Nothing changes until the link sent to that address is used."],
        None,
        "If this was not you, change your password at once: someone knows it.",
    )
}

pub fn address_changed(to: &str, new_address: &str) -> Mail {
    letter(
        to,
        "Your Layers account moved to another e-mail address",
        &[&format!("Your Layers account now uses {new_address}. This address will get no more messages about it.")],
        None,
        "If this was not you, write to support at once.",
    )
}

pub fn identity_linked(to: &str) -> Mail {
    letter(
        to,
        "Google sign-in was added to your Layers account",
        &["You can now log in to your Layers account with Google. If your account also has a password, it keeps working."],
        None,
        "If this was not you, or you never set a password for Layers, set a new one now from \"Forgot your password?\" on the login page.",
    )
}

pub fn password_changed(to: &str) -> Mail {
    letter(
        to,
        "Your Layers password was changed",
        &["The password of your Layers account was just changed, and every other session was logged out."],
        None,
        "If this was not you, reset your password at once and write to support.",
    )
}

/// An alert the person asked for (low balance, a key's share of its limit).
pub fn alert(to: &str, subject: &str, lines: &[&str], dashboard: &str) -> Mail {
    letter(
        to,
        subject,
        lines,
        Some(("Open the dashboard", dashboard)),
        "You get this because you set this alert on your Layers dashboard; change it under Keys › Alerts.",
    )
}

/// A key expires soon.
pub fn key_expiring(to: &str, key_label: &str, expires: &str, days: i32, keys_page: &str) -> Mail {
    let when = if days <= 1 { "within a day".to_owned() } else { format!("in {days} days") };
    letter(
        to,
        &format!("Your Layers API key {key_label} expires {when}"),
        &[
            &format!("The API key {key_label} expires at {expires} (UTC). From then on every request with it is refused."),
            "To keep your code working, rotate the key (a new secret, the same limits and history) or create a new one, and give it to your code before then.",
        ],
        Some(("Manage your keys", keys_page)),
        "You get this reminder 7 days and 1 day before a key expires.",
    )
}

/// Auto top-up turned itself off after repeated failed payments.
pub fn auto_topup_off(to: &str, failures: i32, billing_page: &str) -> Mail {
    letter(
        to,
        "Auto top-up is off: your card was declined",
        &[
            &format!("Layers tried {failures} times in a row to buy credits with your saved card, and each payment failed, so auto top-up is now off."),
            "When your balance runs out, requests with your live keys are refused. Update your card in the billing portal, then turn auto top-up on again, or buy credits now.",
        ],
        Some(("Open billing", billing_page)),
        "You get this because auto top-up was on for your Layers account.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_have_both_parts_and_escape_html() {
        let m = confirm("a@example.com", "https://layers.example/auth/confirm?token=abc&x=<b>", 24);
        assert!(m.text.contains("https://layers.example/auth/confirm?token=abc&x=<b>"));
        assert!(m.html.contains("token=abc&amp;x=&lt;b&gt;") && !m.html.contains("<b>"));
        assert!(m.text.contains("24 hours"));
    }
}
