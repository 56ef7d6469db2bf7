//! Changing the account's e-mail address: asked with the password, confirmed by a link sent to
//! the new address, the old address told both times. Invariant: the answer is the same whether
//! the new address is free or already someone's (that owner is told instead), and the address
//! changes only when the link is used.

use layers_store::{EmailPurpose, Severity};
use secrecy::SecretString;

use super::{letters, Client, IdentityError, IdentityResult, IdentityService, SessionUser};
use crate::accounts::normalize_email;

impl IdentityService {
    /// Sends a confirmation link to `new_email`, if the password is right.
    pub async fn request_email_change(
        &self,
        s: &SessionUser,
        new_email: &str,
        password: &SecretString,
        client: &Client,
    ) -> IdentityResult<()> {
        let new_email = normalize_email(new_email).map_err(|_| IdentityError::InvalidEmail)?;
        self.check_password(s, password, client).await?;
        if new_email == s.email {
            return Ok(());
        }
        if self.store.credentials_by_email(&new_email).await?.is_some() {
            let base = &self.settings.public_url;
            self.mailer.send(letters::already_registered(
                &new_email,
                &format!("{base}/login"),
                &format!("{base}/forgot-password"),
            ));
        } else {
            let token = self
                .outgoing
                .token(s.user_id, EmailPurpose::ChangeEmail, Some(new_email.clone()), self.settings.confirm_ttl)
                .await?;
            let hours = self.settings.confirm_ttl.as_secs() / 3600;
            self.mailer.send(letters::confirm_new_address(
                &new_email,
                &self.outgoing.link("/auth/change-email", &token),
                hours,
            ));
        }
        self.mailer.send(letters::address_change_requested(&s.email));
        self.audit(Some(s.user_id), "email_change_requested", Severity::Info, client).await;
        Ok(())
    }

    /// Uses a link sent to a new address: the account moves to it.
    pub async fn confirm_email_change(&self, token: &str, client: &Client) -> IdentityResult<()> {
        let t = self.use_link(token, EmailPurpose::ChangeEmail).await?;
        let new_email = t.new_email.ok_or(IdentityError::InvalidLink)?;
        let old = self.store.user(t.user_id).await?.map(|u| u.email);
        match self.store.set_email(t.user_id, &new_email, self.now()).await {
            Ok(()) => {}
            // Taken since the link was sent.
            Err(e) if e.is_conflict_on("users_email_key") => return Err(IdentityError::InvalidLink),
            Err(e) => return Err(e.into()),
        }
        // Links sent to the old address (a reset, another change) end with it.
        self.store.revoke_email_tokens(t.user_id, self.now()).await?;
        if let Some(old) = old {
            self.mailer.send(letters::address_changed(&old, &new_email));
        }
        self.audit(Some(t.user_id), "email_changed", Severity::Warning, client).await;
        Ok(())
    }
}
