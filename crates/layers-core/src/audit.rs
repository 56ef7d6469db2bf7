//! Writing audit events. Invariant: metadata never carries e-mails, keys, tokens or prompts;
//! a failure to write an audit event is logged, never fails the action it describes.

use std::net::IpAddr;
use std::sync::Arc;

use layers_domain::UserId;
use layers_store::{AuditEvent, Severity, Store};
use time::OffsetDateTime;

#[derive(Clone, Debug)]
pub struct Audit {
    store: Arc<dyn Store>,
}

impl Audit {
    pub fn new(store: Arc<dyn Store>) -> Audit {
        Audit { store }
    }

    pub async fn info(&self, user: Option<UserId>, event_type: &str, metadata: serde_json::Value) {
        self.record(user, event_type, metadata, Severity::Info, None).await;
    }

    pub async fn record(
        &self,
        user: Option<UserId>,
        event_type: &str,
        metadata: serde_json::Value,
        severity: Severity,
        ip: Option<IpAddr>,
    ) {
        self.from_client(user, event_type, metadata, severity, ip, None).await;
    }

    /// An event caused by a person at a browser: with their address and user agent.
    pub async fn from_client(
        &self,
        user: Option<UserId>,
        event_type: &str,
        metadata: serde_json::Value,
        severity: Severity,
        ip: Option<IpAddr>,
        user_agent: Option<&str>,
    ) {
        let event = AuditEvent {
            id: uuid::Uuid::new_v4(),
            created_at: OffsetDateTime::now_utc(),
            user_id: user,
            event_type: event_type.to_owned(),
            ip_address: ip,
            // Bounded: the header is the client's to fill.
            user_agent: user_agent.map(|ua| ua.chars().take(256).collect()),
            metadata,
            severity,
        };
        if let Err(err) = self.store.record_audit(&event).await {
            tracing::error!(error = %crate::error::chain(&err), event_type, "could not write audit event");
        }
    }
}
