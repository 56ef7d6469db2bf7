//! What a request's access-log line says beyond HTTP: who made it, what it cost, where it went.
//! The HTTP layer creates one `AccessRecord` per request and writes the line when the response
//! body ends (a stream included); the services fill it as they learn the facts. Invariant: it
//! holds ids, names and numbers only, never an e-mail, a key or a prompt.

use std::sync::{Arc, Mutex};

use layers_domain::{KeyId, MicroCredits, Usage, UserId};

#[derive(Clone, Debug, Default)]
pub struct AccessRecord(Arc<Mutex<AccessFacts>>);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessFacts {
    pub user_id: Option<UserId>,
    pub key_id: Option<KeyId>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub usage: Option<Usage>,
    pub credits: Option<MicroCredits>,
    /// Time the gateway spent before calling the provider (admission, limits, hold, routing).
    pub overhead_us: Option<u64>,
}

impl AccessRecord {
    fn with(&self, f: impl FnOnce(&mut AccessFacts)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }

    pub fn principal(&self, user: UserId, key: KeyId) {
        self.with(|f| {
            f.user_id = Some(user);
            f.key_id = Some(key);
        });
    }

    pub fn overhead(&self, us: u64) {
        self.with(|f| f.overhead_us = Some(us));
    }

    /// How a metered request ended.
    pub fn outcome(&self, model: &str, provider: &str, usage: Usage, charged: MicroCredits) {
        self.with(|f| {
            f.model = Some(model.to_owned());
            f.provider = Some(provider.to_owned());
            f.usage = Some(usage);
            f.credits = Some(charged);
        });
    }

    pub fn facts(&self) -> AccessFacts {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
