//! The `openai` kind: any OpenAI-compatible Chat Completions upstream (OpenAI, OpenRouter,
//! Perplexity, Morph, Groq, vLLM, Ollama…). Invariant: streamed calls always ask the upstream
//! for usage, so every stream can be billed exactly.

mod media;
mod stream;
mod wire;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use crate::adapter::ChatCall;
use crate::budget::Budget;
use crate::error::ProviderError;
use crate::reply::{ChunkStream, Completion};
use crate::timing::{self, Timeouts};
use crate::transport;
use crate::usage_json::parse_usage;

#[derive(Debug)]
pub struct OpenAiAdapter {
    client: reqwest::Client,
    base_url: String,
    chat_url: String,
    api_key: Option<SecretString>,
    timeouts: Timeouts,
    /// The node's memory for upstream data, shared by every adapter.
    budget: Budget,
    /// Where this upstream's dialect differs (OpenAI itself, Perplexity, any other).
    flavor: wire::Flavor,
}

impl OpenAiAdapter {
    pub fn new(
        base_url: &str,
        api_key: Option<SecretString>,
        timeouts: Timeouts,
        budget: Budget,
    ) -> Result<Self, reqwest::Error> {
        Ok(OpenAiAdapter {
            client: transport::client(&timeouts)?,
            base_url: base_url.trim_end_matches('/').to_owned(),
            chat_url: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            api_key,
            timeouts,
            budget,
            flavor: wire::Flavor::of(base_url),
        })
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    pub async fn complete(&self, call: &ChatCall<'_>) -> Result<Completion, ProviderError> {
        let resp = self.send(call, false).await?;
        let body = transport::read_body(resp, call.deadline, transport::MAX_BODY_BYTES, Some(&self.budget)).await?;
        let body: Map<String, Value> =
            serde_json::from_slice(&body).map_err(|_| ProviderError::Protocol("response is not a JSON object"))?;
        if !body.get("choices").is_some_and(Value::is_array) {
            return Err(ProviderError::Protocol("response has no choices"));
        }
        let usage = body.get("usage").and_then(parse_usage);
        Ok(Completion { body, usage })
    }

    pub async fn stream(&self, call: &ChatCall<'_>) -> Result<ChunkStream, ProviderError> {
        let resp = self.send(call, true).await?;
        Ok(timing::timed(stream::chunks(resp, self.budget.clone()), self.timeouts, call.deadline))
    }

    async fn send(&self, call: &ChatCall<'_>, stream: bool) -> Result<reqwest::Response, ProviderError> {
        let body = wire::outgoing_body(call.request, call.upstream_model, stream, self.flavor)?;
        let mut rb = self.client.post(&self.chat_url).header(http::header::CONTENT_TYPE, "application/json").body(body);
        if stream {
            rb = rb.header(http::header::ACCEPT, "text/event-stream");
        }
        if let Some(key) = &self.api_key {
            rb = rb.bearer_auth(key.expose_secret());
        }
        transport::send(rb, &timing::within(self.timeouts, call.deadline)).await
    }
}
