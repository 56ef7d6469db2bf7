//! The `anthropic` kind: Anthropic's native Messages API (`POST {base_url}/messages` with
//! `x-api-key` and `anthropic-version`), translated to and from the OpenAI chat shape.
//! Invariant: what the client receives is indistinguishable in shape from an OpenAI answer, and
//! usage counts cache reads and writes as prompt tokens, so billing stays exact.

mod body;
mod request;
mod response;
mod stream;
mod wire;

use secrecy::{ExposeSecret, SecretString};

use crate::adapter::ChatCall;
use crate::budget::Budget;
use crate::error::ProviderError;
use crate::reply::{ChunkStream, Completion};
use crate::timing::{self, Timeouts};
use crate::transport;

/// The API version sent unless the operator configures another.
pub const API_VERSION: &str = "2023-06-01";

#[derive(Debug)]
pub struct AnthropicAdapter {
    client: reqwest::Client,
    messages_url: String,
    api_key: Option<SecretString>,
    timeouts: Timeouts,
    /// The node's memory for upstream data, shared by every adapter.
    budget: Budget,
}

impl AnthropicAdapter {
    pub fn new(
        base_url: &str,
        api_key: Option<SecretString>,
        timeouts: Timeouts,
        budget: Budget,
    ) -> Result<Self, reqwest::Error> {
        Ok(AnthropicAdapter {
            client: transport::client(&timeouts)?,
            messages_url: format!("{}/messages", base_url.trim_end_matches('/')),
            api_key,
            timeouts,
            budget,
        })
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    pub async fn complete(&self, call: &ChatCall<'_>) -> Result<Completion, ProviderError> {
        let (resp, mode) = self.send(call, false).await?;
        let body = transport::read_body(resp, call.deadline, transport::MAX_BODY_BYTES, Some(&self.budget)).await?;
        let (body, usage) = response::completion(&body, call.request_id, &mode)?;
        Ok(Completion { body, usage: Some(usage) })
    }

    pub async fn stream(&self, call: &ChatCall<'_>) -> Result<ChunkStream, ProviderError> {
        let (resp, mode) = self.send(call, true).await?;
        let events = stream::AnthropicEvents::new(call.request_id, call.upstream_model, mode);
        Ok(timing::timed(crate::sse_stream::chunks(resp, events, self.budget.clone()), self.timeouts, call.deadline))
    }

    async fn send(
        &self,
        call: &ChatCall<'_>,
        stream: bool,
    ) -> Result<(reqwest::Response, request::Mode), ProviderError> {
        let (body, mode) = request::build(call.request, call.upstream_model, stream, call.model_output_cap)?;
        let body = body.encode()?;
        let mut rb = self
            .client
            .post(&self.messages_url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("anthropic-version", API_VERSION)
            .body(body);
        if stream {
            rb = rb.header(http::header::ACCEPT, "text/event-stream");
        }
        if let Some(key) = &self.api_key {
            rb = rb.header("x-api-key", key.expose_secret());
        }
        if let Some(beta) = &call.request.anthropic_beta {
            rb = rb.header("anthropic-beta", beta);
        }
        let timeouts = timing::within(self.timeouts, call.deadline);
        Ok((transport::send(rb, &timeouts).await?, mode))
    }
}
