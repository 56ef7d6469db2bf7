//! Application state: one value, cheap to clone, built once at start-up.

use std::sync::Arc;

use layers_core::Core;

use crate::middleware::client_ip::TrustedProxies;
use crate::middleware::cors::CorsPolicy;
use crate::middleware::metrics::RequestMetrics;

#[derive(Clone, Debug)]
pub struct AppState {
    pub core: Arc<Core>,
    pub cors: CorsPolicy,
    pub metrics: RequestMetrics,
    pub proxies: TrustedProxies,
}
