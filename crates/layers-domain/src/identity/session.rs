//! When a dashboard session is alive (SPEC §6.2): an idle timeout and an absolute lifetime,
//! and a recent login for sensitive actions. Invariant: time is passed in; a session is judged
//! by the same rule on every node.

use std::time::Duration;

use time::OffsetDateTime;

/// The session rules of a deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Ended after this long without a request.
    pub idle: Duration,
    /// Ended this long after login, however active.
    pub absolute: Duration,
    /// Sensitive actions ask for the password again when the login is older than this.
    pub reauth_after: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            idle: Duration::from_secs(24 * 3600),
            absolute: Duration::from_secs(7 * 24 * 3600),
            reauth_after: Duration::from_secs(15 * 60),
        }
    }
}

/// The times that decide a session's state.
#[derive(Clone, Copy, Debug)]
pub struct SessionTimes {
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    /// When the password (or a second factor, or the identity provider) was last checked.
    pub authenticated_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    Live,
    Revoked,
    Idle,
    Expired,
}

impl SessionPolicy {
    pub fn state(&self, t: &SessionTimes, now: OffsetDateTime) -> SessionState {
        if t.revoked_at.is_some() {
            SessionState::Revoked
        } else if now - t.created_at >= self.absolute {
            SessionState::Expired
        } else if now - t.last_seen_at >= self.idle {
            SessionState::Idle
        } else {
            SessionState::Live
        }
    }

    /// When the session ends at the latest, if used continuously.
    pub fn expires_at(&self, created_at: OffsetDateTime) -> OffsetDateTime {
        created_at + self.absolute
    }

    /// Whether a sensitive action must ask for the password again.
    pub fn needs_reauth(&self, t: &SessionTimes, now: OffsetDateTime) -> bool {
        now - t.authenticated_at > self.reauth_after
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn idle_absolute_and_revoked() {
        let p = SessionPolicy::default();
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let mut t = SessionTimes { created_at: t0, last_seen_at: t0, authenticated_at: t0, revoked_at: None };
        assert_eq!(p.state(&t, t0 + Duration::from_secs(3600)), SessionState::Live);
        assert_eq!(p.state(&t, t0 + Duration::from_secs(24 * 3600)), SessionState::Idle);
        t.last_seen_at = t0 + Duration::from_secs(6 * 24 * 3600 + 23 * 3600);
        assert_eq!(p.state(&t, t.last_seen_at + Duration::from_secs(60)), SessionState::Live);
        assert_eq!(p.state(&t, t0 + Duration::from_secs(7 * 24 * 3600)), SessionState::Expired);
        t.revoked_at = Some(t0);
        assert_eq!(p.state(&t, t0), SessionState::Revoked);
        assert!(!p.needs_reauth(&t, t0 + Duration::from_secs(15 * 60)));
        assert!(p.needs_reauth(&t, t0 + Duration::from_secs(15 * 60 + 1)));
    }
}
