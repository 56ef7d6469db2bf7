//! Admission of a data-plane request: who is calling, whether their network is blocked, and
//! whether their key's rate limit lets this request in (SPEC §3, §5, §8.4). One call for the
//! edge, so the order of these checks lives here and not in an HTTP extractor.
//! Invariant: a blocked network is refused for unknown credentials only; a key known valid is
//! served (and looked up again when its cache entry is stale), and any other key is looked up
//! at most once a second per blocked network, so a paying user behind a guesser's address
//! keeps working and the guesser costs almost nothing.

use std::net::IpAddr;

use crate::auth::{AuthError, Principal};
use crate::ipguard::Blocked;
use crate::ratelimit::Admission;
use crate::Core;

/// Why a request is not admitted.
#[derive(Debug)]
pub enum Refused {
    Auth(AuthError),
    /// The caller's network is blocked and the credential is not known valid.
    Blocked(Blocked),
    /// The key's rate limit: the decision (for the headers) and when to retry.
    RateLimited(Admission),
}

impl Core {
    /// Authenticates `header` from `ip`, counts a failed credential towards the network's
    /// block, and takes one request from the key's rate limit.
    pub async fn admit(&self, header: Option<&str>, ip: IpAddr) -> Result<(Principal, Admission), Refused> {
        let principal = match self.ip_guard.check(ip) {
            Ok(()) => match self.auth.authenticate(header).await {
                Ok(p) => p,
                Err(err) => {
                    if let Some(reason) = err.is_failed_credential() {
                        self.ip_guard.failed(ip, reason).await;
                    }
                    return Err(Refused::Auth(err));
                }
            },
            Err(blocked) => {
                match self.auth.authenticate_with(header, |was_valid| was_valid || self.ip_guard.may_look_up(ip)).await
                {
                    Ok(p) => p,
                    // The database being down is not the caller's fault, blocked or not.
                    Err(err @ AuthError::Unavailable(_)) => return Err(Refused::Auth(err)),
                    Err(_) => {
                        self.ip_guard.refused();
                        return Err(Refused::Blocked(blocked));
                    }
                }
            }
        };
        let admission = self.limiter.admit(&principal).await;
        if !admission.allowed() {
            return Err(Refused::RateLimited(admission));
        }
        Ok((principal, admission))
    }
}
