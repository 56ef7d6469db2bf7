//! The incident panel (issue 14): one confirmed action for the moment a person suspects a
//! leak. Every live key is deactivated (every node refuses them within a second) and every
//! session of the account ends, this one included.

use secrecy::SecretString;

use crate::identity::{Client, IdentityResult, SessionUser};
use crate::Core;

/// What a lock-down did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockedDown {
    pub keys_deactivated: usize,
    pub sessions_ended: u64,
}

impl Core {
    /// Deactivates every live key and ends every session, after the password.
    pub async fn lock_down(
        &self,
        s: &SessionUser,
        password: &SecretString,
        client: &Client,
    ) -> IdentityResult<LockedDown> {
        self.identity.check_password(s, password, client).await?;
        let keys = self.keys.for_client(client).deactivate_all(s.user_id).await?;
        let sessions_ended = self.identity.log_out_everywhere(s, client).await?;
        let done = LockedDown { keys_deactivated: keys.keys_deactivated, sessions_ended };
        self.identity
            .audit_lock_down(
                s.user_id,
                serde_json::json!({"keys_deactivated": done.keys_deactivated,
                                                           "sessions_ended": done.sessions_ended}),
                client,
            )
            .await;
        Ok(done)
    }
}
