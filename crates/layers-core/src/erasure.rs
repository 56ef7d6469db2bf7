//! Deleting an account (GDPR erasure, SPEC §8.5): confirmed with the password; its keys are
//! deleted through the key service, so every node refuses them within a second; its personal
//! data is erased; the ledger and usage are kept, de-identified, as billing records.

use layers_store::KeyState;
use secrecy::SecretString;

use crate::identity::{Client, IdentityResult, SessionUser};
use crate::Core;

impl Core {
    pub async fn delete_account(
        &self,
        s: &SessionUser,
        password: &SecretString,
        client: &Client,
    ) -> IdentityResult<()> {
        self.identity.check_password(s, password, client).await?;
        for key in self.store.keys_of_user(s.user_id).await? {
            if key.state != KeyState::Deleted {
                self.keys.set_state(s.user_id, key.id, KeyState::Deleted).await?;
            }
        }
        self.store.erase_personal_data(s.user_id, time::OffsetDateTime::now_utc()).await?;
        self.accounts.announce(s.user_id).await;
        // After the erasure: the event keeps the account id, and no address or device.
        self.identity.audit_erased(s.user_id, client).await;
        Ok(())
    }
}
