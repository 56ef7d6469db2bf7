//! Application state: one value, cheap to clone, built once at start-up.

use std::sync::Arc;

use layers_core::Core;

use crate::api::metrics::MetricsAccess;
use crate::connections::{EdgeSettings, Registry};
use crate::middleware::client_ip::TrustedProxies;
use crate::middleware::cors::CorsPolicy;
use crate::middleware::metrics::RequestMetrics;
use crate::middleware::overload::Shedding;
use crate::pages::session::Cookies;

#[derive(Clone, Debug)]
pub struct AppState {
    pub core: Arc<Core>,
    pub cors: CorsPolicy,
    pub metrics: RequestMetrics,
    pub proxies: TrustedProxies,
    pub edge: EdgeSettings,
    /// Requests in flight on this node, against `edge.max_in_flight`.
    pub shedding: Shedding,
    /// Connections open on this node, against `edge.max_connections`.
    pub connections: Arc<Registry>,
    /// Who may read `/metrics` on the public listener.
    pub metrics_access: MetricsAccess,
    /// The pages' cookie names and attributes.
    pub cookies: Cookies,
    /// The pages' content security policy.
    pub csp: http::HeaderValue,
    /// Where vulnerabilities are reported (`/.well-known/security.txt`), when published.
    pub disclosure_contact: Option<Arc<str>>,
    /// Test runs only: every response, for the OpenAPI check.
    pub recorder: Option<Arc<crate::middleware::record::ResponseRecorder>>,
}

impl AppState {
    /// Where this deployment is reached (links, snippets).
    pub fn public_url(&self) -> &str {
        &self.core.identity.settings().public_url
    }

    pub fn new(core: Arc<Core>, cors: CorsPolicy, proxies: TrustedProxies, edge: EdgeSettings) -> Self {
        let identity = core.identity.settings();
        let cookies = Cookies {
            secure: identity.public_url.starts_with("https://"),
            max_age_secs: identity.sessions.absolute.as_secs(),
        };
        let mut continue_to: Vec<String> = identity.oidc.iter().map(|o| o.issuer.clone()).collect();
        if let Some(payments) = &core.payments {
            continue_to.extend(payments.page_origins());
        }
        let continue_to: Vec<&str> = continue_to.iter().map(String::as_str).collect();
        let csp = crate::pages::content_security_policy(&continue_to);
        AppState {
            csp,
            disclosure_contact: None,
            recorder: None,
            cookies,
            core,
            cors,
            metrics: RequestMetrics::default(),
            proxies,
            shedding: Shedding::new(edge.max_in_flight),
            connections: Registry::new(edge.max_connections),
            edge,
            metrics_access: MetricsAccess::Open,
        }
    }

    /// Records every response into a file of `dir` (`testing.record_responses_dir`).
    pub fn with_response_recorder(mut self, dir: Option<&std::path::Path>) -> std::io::Result<Self> {
        if let Some(dir) = dir {
            self.recorder = Some(crate::middleware::record::ResponseRecorder::create(dir)?);
        }
        Ok(self)
    }

    pub fn with_metrics_access(mut self, access: MetricsAccess) -> Self {
        self.metrics_access = access;
        self
    }

    pub fn with_disclosure_contact(mut self, contact: Option<String>) -> Self {
        self.disclosure_contact = contact.map(Arc::from);
        self
    }
}
