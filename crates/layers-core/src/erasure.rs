//! Deleting an account (GDPR erasure, SPEC §8.5): confirmed with the password; its keys are
//! deleted through the key service, so every node refuses them within a second; its personal
//! data is erased; the ledger and usage are kept, de-identified, as billing records.

use layers_domain::UserId;
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
        self.erase(s.user_id).await?;
        // After the erasure: the event keeps the account id, and no address or device.
        self.identity.audit_erased(s.user_id, client).await;
        Ok(())
    }

    /// Deletes an account an operator was asked to delete (`layers admin user delete`): the
    /// same erasure, audited as the operator's; a second time changes nothing.
    pub async fn delete_account_for_operator(&self, user: UserId) -> IdentityResult<()> {
        self.erase(user).await?;
        self.identity.audit_erased(user, &Client::default()).await;
        Ok(())
    }

    async fn erase(&self, user: UserId) -> IdentityResult<()> {
        for key in self.store.keys_of_user(user).await? {
            if key.state != KeyState::Deleted {
                self.keys.set_state(user, key.id, KeyState::Deleted).await?;
            }
        }
        self.store.erase_personal_data(user, time::OffsetDateTime::now_utc()).await?;
        self.accounts.announce(user).await;
        Ok(())
    }
}
