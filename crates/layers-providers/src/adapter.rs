//! Adapters by kind, and the registry of configured providers.
//! Invariant: a provider is reached only through its adapter; callers never build upstream
//! requests themselves.

use std::collections::HashMap;
use std::sync::Arc;

use secrecy::SecretString;
use tokio::time::Instant;

use crate::anthropic::AnthropicAdapter;
use crate::budget::{Budget, UpstreamLimits};
use crate::chat::ChatRequest;
use crate::error::ProviderError;
use crate::gemini::GeminiAdapter;
use crate::media::{not_offered, EmbedCall, ImageCall, MediaReply};
use crate::openai::OpenAiAdapter;
use crate::reply::{ChunkStream, Completion};
use crate::sandbox::SandboxAdapter;
use crate::timing::Timeouts;

/// The wire protocol a provider speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderKind {
    OpenAi,
    Anthropic,
    Gemini,
    Sandbox,
}

/// A configured provider, as the config hands it over.
#[derive(Clone, Debug)]
pub struct ProviderSettings {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    pub api_key: Option<SecretString>,
    pub timeouts: Timeouts,
    /// Fetch image URLs that resolve to private addresses (tests with local mocks only).
    pub allow_private_image_urls: bool,
}

/// One chat call to one route.
#[derive(Debug)]
pub struct ChatCall<'a> {
    pub request: &'a ChatRequest,
    pub upstream_model: &'a str,
    /// Used in ids the sandbox makes up; never sent upstream.
    pub request_id: &'a str,
    /// The whole call (all attempts) must end by then.
    pub deadline: Instant,
    /// The model's output cap, for providers that require one when the client set none.
    pub model_output_cap: u32,
}

#[derive(Debug)]
pub enum Adapter {
    OpenAi(OpenAiAdapter),
    Anthropic(AnthropicAdapter),
    Gemini(GeminiAdapter),
    Sandbox(SandboxAdapter),
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("provider {name}: cannot build its HTTP client")]
    Client {
        name: String,
        #[source]
        source: reqwest::Error,
    },
}

/// Every configured provider, by name.
#[derive(Debug, Default, Clone)]
pub struct Providers {
    by_name: HashMap<String, Arc<Adapter>>,
    budget: Budget,
}

// === impl Adapter ===

impl Adapter {
    pub fn build(s: &ProviderSettings, budget: &Budget) -> Result<Adapter, BuildError> {
        let budget = budget.clone();
        match s.kind {
            ProviderKind::OpenAi => OpenAiAdapter::new(&s.base_url, s.api_key.clone(), s.timeouts, budget)
                .map(Adapter::OpenAi)
                .map_err(|source| BuildError::Client { name: s.name.clone(), source }),
            ProviderKind::Anthropic => AnthropicAdapter::new(&s.base_url, s.api_key.clone(), s.timeouts, budget)
                .map(Adapter::Anthropic)
                .map_err(|source| BuildError::Client { name: s.name.clone(), source }),
            ProviderKind::Gemini => {
                GeminiAdapter::new(&s.base_url, s.api_key.clone(), s.timeouts, s.allow_private_image_urls, budget)
                    .map(Adapter::Gemini)
                    .map_err(|source| BuildError::Client { name: s.name.clone(), source })
            }
            ProviderKind::Sandbox => Ok(Adapter::Sandbox(SandboxAdapter)),
        }
    }

    pub fn kind(&self) -> ProviderKind {
        match self {
            Adapter::OpenAi(_) => ProviderKind::OpenAi,
            Adapter::Anthropic(_) => ProviderKind::Anthropic,
            Adapter::Gemini(_) => ProviderKind::Gemini,
            Adapter::Sandbox(_) => ProviderKind::Sandbox,
        }
    }

    pub fn timeouts(&self) -> Timeouts {
        match self {
            Adapter::OpenAi(a) => a.timeouts(),
            Adapter::Anthropic(a) => a.timeouts(),
            Adapter::Gemini(a) => a.timeouts(),
            Adapter::Sandbox(_) => Timeouts::default(),
        }
    }

    pub async fn complete(&self, call: &ChatCall<'_>) -> Result<Completion, ProviderError> {
        match self {
            Adapter::OpenAi(a) => a.complete(call).await,
            Adapter::Anthropic(a) => a.complete(call).await,
            Adapter::Gemini(a) => a.complete(call).await,
            Adapter::Sandbox(a) => a.complete(call).await,
        }
    }

    pub async fn embed(&self, call: &EmbedCall<'_>) -> Result<MediaReply, ProviderError> {
        match self {
            Adapter::OpenAi(a) => a.embed(call).await,
            Adapter::Gemini(a) => a.embed(call).await,
            Adapter::Sandbox(a) => a.embed(call).await,
            Adapter::Anthropic(_) => Err(not_offered("Anthropic", "embeddings")),
        }
    }

    pub async fn image(&self, call: &ImageCall<'_>) -> Result<MediaReply, ProviderError> {
        match self {
            Adapter::OpenAi(a) => a.image(call).await,
            Adapter::Sandbox(a) => a.image(call).await,
            Adapter::Anthropic(_) => Err(not_offered("Anthropic", "image generation")),
            Adapter::Gemini(_) => Err(not_offered("This Gemini route", "image generation")),
        }
    }

    /// Starts a streamed call; returns once the upstream accepted it (response headers in).
    pub async fn stream(&self, call: &ChatCall<'_>) -> Result<ChunkStream, ProviderError> {
        match self {
            Adapter::OpenAi(a) => a.stream(call).await,
            Adapter::Anthropic(a) => a.stream(call).await,
            Adapter::Gemini(a) => a.stream(call).await,
            Adapter::Sandbox(a) => a.stream(call).await,
        }
    }
}

// === impl Providers ===

impl Providers {
    pub fn build(settings: &[ProviderSettings], limits: UpstreamLimits) -> Result<Providers, BuildError> {
        let budget = Budget::new(limits);
        let mut by_name = HashMap::new();
        for s in settings {
            by_name.insert(s.name.clone(), Arc::new(Adapter::build(s, &budget)?));
        }
        Ok(Providers { by_name, budget })
    }

    /// The node's memory for upstream data.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Adapter>> {
        self.by_name.get(name)
    }
}
