//! How pages write times, amounts, devices and events for people. Times are UTC everywhere
//! (said on every page that shows one).

use layers_domain::MicroCredits;
use time::OffsetDateTime;

/// A date and time as people read it, short: `Dec 1, 12:56` this year, else `Dec 1, 2025` (UTC).
pub fn when(t: OffsetDateTime) -> String {
    let month = &t.month().to_string()[..3];
    if t.year() == OffsetDateTime::now_utc().year() {
        format!("{month} {}, {:02}:{:02}", t.day(), t.hour(), t.minute())
    } else {
        format!("{month} {}, {}", t.day(), t.year())
    }
}

pub fn address(ip: Option<std::net::IpAddr>) -> String {
    ip.map_or_else(|| "unknown address".to_owned(), |ip| ip.to_string())
}

/// "Firefox on Linux" from a user agent, or what is known.
pub fn device(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent else { return "Unknown device".to_owned() };
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map_or("A browser", |(_, name)| name);
    let os = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| *name);
    match os {
        Some(os) => format!("{browser} on {os}"),
        None => browser.to_owned(),
    }
}

/// What an audit event means, for people.
pub fn event_label(kind: &str) -> &str {
    match kind {
        "account_created" => "Account created",
        "email_confirmed" => "E-mail address confirmed",
        "login_succeeded" => "Logged in",
        "login_failed" => "Failed login",
        "login_throttled" => "Logins paused after failed attempts",
        "logout" => "Logged out",
        "password_reset_requested" => "Password reset requested",
        "password_reset" => "Password reset",
        "password_changed" => "Password changed",
        "session_revoked" => "Session revoked",
        "sessions_revoked" => "Logged out everywhere",
        "two_factor_enabled" => "Two-factor login turned on",
        "two_factor_disabled" => "Two-factor login turned off",
        "two_factor_failed" => "Wrong two-factor code",
        "recovery_code_used" => "Recovery code used",
        "key_created" => "API key created",
        "key_deactivated" => "API key deactivated",
        "key_deleted" => "API key deleted",
        "data_exported" => "Data exported",
        "email_change_requested" => "E-mail change requested",
        "email_changed" => "E-mail address changed",
        "identity_linked" => "Google sign-in linked",
        "key_reactivated" => "API key reactivated",
        "key_rotated" => "API key rotated",
        "key_old_secret_retired" => "Old secret of a rotated key refused",
        "key_limits_changed" => "API key limits changed",
        "key_expiry_reminder" => "Key expiry reminder sent",
        "alerts_changed" => "Alerts changed",
        "alert_sent" => "Alert sent",
        "incident_lockdown" => "Lock-down: keys off, sessions ended",
        "account_deleted" => "Account deleted",
        "tier_changed" => "Plan changed",
        "spend_caps_changed" => "Spend limits changed",
        "rate_limits_changed" => "Rate limits changed",
        "credits_granted" => "Credits added",
        "credits_adjusted" => "Credits adjusted",
        "rate_limit_exceeded" => "Rate limit reached",
        "billing_shortfall" => "Charge above a limit (not billed)",
        "late_settlement_refused" => "Late charge refused",
        "login_refused_suspended" => "Login refused: account suspended",
        "password_check_failed" => "Wrong password for a sensitive action",
        "checkout_started" => "Checkout started",
        "credits_purchased" => "Credits purchased",
        "credits_refunded" => "Credits removed by a refund or dispute",
        "balance_negative" => "Balance below zero: live keys paused",
        "plan_changed" => "Plan changed",
        "payment_failed" => "Payment failed",
        "invoice_payment_failed" => "Invoice payment failed",
        "account_flagged_for_review" => "Account flagged for review",
        "auto_topup_changed" => "Auto top-up changed",
        "auto_topup_started" => "Auto top-up charged",
        "auto_topup_failed" => "Auto top-up payment failed",
        "auto_topup_disabled" => "Auto top-up turned off after failures",
        "expensive_request_refused" => "Request refused: above the per-request limit",
        "anomaly_rapid_key_creation" => "Many keys created in an hour (flagged)",
        "anomaly_usage_spike" => "Usage spike: rate limit lowered for a while",
        "anomaly_hold_released" => "Usage spike hold ended",
        "anomaly_expensive_models" => "High spend on high-cost models today",
        "account_suspended" => "Account suspended by the operator",
        "account_unsuspended" => "Account suspension lifted",
        other => other,
    }
}

/// A full timestamp: `2026-12-01 15:04:05 UTC`.
pub fn timestamp(t: OffsetDateTime) -> String {
    format!(
        "{}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A date: `Dec 1` (or `Dec 1, 2025` another year).
pub fn date(t: OffsetDateTime) -> String {
    let month = &t.month().to_string()[..3];
    if t.year() == OffsetDateTime::now_utc().year() {
        format!("{month} {}", t.day())
    } else {
        format!("{month} {}, {}", t.day(), t.year())
    }
}

/// `yyyy-mm-dd`, as date inputs take it.
pub fn iso_date(t: OffsetDateTime) -> String {
    format!("{}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// Credits with at least two decimals, exact.
pub fn credits(m: MicroCredits) -> String {
    m.credits_display()
}

/// Credits to two decimals, cut toward zero (a balance never shown larger than it is), for the
/// big figures; the exact amount goes next to them.
pub fn credits_short(m: MicroCredits) -> String {
    MicroCredits(m.0 / 10_000 * 10_000).credits_display()
}

/// What an amount of credits is in US dollars, to the cent (cut toward zero): `≈ $14.92`.
pub fn usd_approx(m: MicroCredits) -> String {
    let cents = m.0 / 1_000_000;
    let sign = if m.0 < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("≈ {sign}${}.{:02}", layers_domain::money::group_thousands(&(abs / 100).to_string()), abs % 100)
}

/// A whole number with thousands separated.
pub fn count(n: i64) -> String {
    let grouped = layers_domain::money::group_thousands(&n.unsigned_abs().to_string());
    if n < 0 {
        format!("-{grouped}")
    } else {
        grouped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn numbers_and_times_read_well() {
        assert_eq!(count(0), "0");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(-1_000), "-1,000");
        assert_eq!(credits_short(MicroCredits(1_492_332_333)), "1,492.33");
        assert_eq!(credits_short(MicroCredits(-5_559_999)), "-5.55");
        assert_eq!(usd_approx(MicroCredits(1_492_332_333)), "≈ $14.92");
        assert_eq!(usd_approx(MicroCredits(-300_000_000)), "≈ -$3.00");
        assert_eq!(timestamp(datetime!(2026-12-01 05:04:03 UTC)), "2026-12-01 05:04:03 UTC");
        assert_eq!(iso_date(datetime!(2026-02-09 23:00 UTC)), "2026-02-09");
        assert_eq!(device(Some("Mozilla/5.0 (X11; Linux x86_64) Chrome/120")), "Chrome on Linux");
    }
}
