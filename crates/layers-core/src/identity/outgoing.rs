//! What the accounts send by e-mail, and the work done after an answer. Invariant: work whose
//! cost depends on whether an address is registered (looking it up, writing a link, queueing a
//! message) runs after the answer, so neither the answer nor its time tells.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use layers_domain::UserId;
use layers_store::{EmailPurpose, EmailToken, Store};
use time::OffsetDateTime;

use super::mailer::Mailer;
use super::{letters, tokens, IdentityResult};
use crate::audit::Audit;
use crate::clock::Clock;
use crate::tasks::Tasks;

#[derive(Clone, Debug)]
pub(super) struct Outgoing {
    pub store: Arc<dyn Store>,
    pub mailer: Mailer,
    pub audit: Audit,
    pub clock: Clock,
    pub tasks: Tasks,
    pub public_url: String,
    pub confirm_ttl: Duration,
    pub reset_ttl: Duration,
}

impl Outgoing {
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    pub fn link(&self, path: &str, token: &str) -> String {
        format!("{}{path}?token={token}", self.public_url)
    }

    /// A new single-use link of `purpose` for `user` (only its hash is stored).
    pub async fn token(
        &self,
        user: UserId,
        purpose: EmailPurpose,
        new_email: Option<String>,
        ttl: Duration,
    ) -> IdentityResult<String> {
        let token = tokens::fresh()?;
        let now = self.now();
        let row = EmailToken {
            token_hash: tokens::digest(&token),
            user_id: user,
            purpose,
            new_email,
            created_at: now,
            expires_at: now + ttl,
        };
        self.store.create_email_token(&row).await?;
        Ok(token)
    }

    /// Mails a confirmation link for `email`.
    pub async fn confirmation(&self, user: UserId, email: &str) -> IdentityResult<()> {
        let token = self.token(user, EmailPurpose::Confirm, None, self.confirm_ttl).await?;
        let hours = self.confirm_ttl.as_secs() / 3600;
        self.mailer.send(letters::confirm(email, &self.link("/auth/confirm", &token), hours));
        Ok(())
    }

    /// Runs `work` after the answer; a failure is logged (the person was already answered).
    pub fn later<F>(&self, name: &'static str, work: F)
    where
        F: Future<Output = IdentityResult<()>> + Send + 'static,
    {
        self.tasks.spawn_work(name, async move {
            if let Err(err) = work.await {
                tracing::error!(error = %crate::error::chain(&err), task = name, "account work after the answer failed");
            }
        });
    }
}
