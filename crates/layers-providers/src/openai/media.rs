//! Embeddings (`POST {base}/embeddings`) and images (`POST {base}/images/generations`) on an
//! OpenAI-compatible upstream: the client's body with the upstream model id, the answer as is.

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::OpenAiAdapter;
use crate::error::ProviderError;
use crate::media::{EmbedCall, ImageCall, MediaReply};
use crate::timing;
use crate::translate::map_de;
use crate::transport;

/// `POST /embeddings` (https://platform.openai.com/docs/api-reference/embeddings/create).
#[derive(Serialize)]
struct EmbeddingsRequest<'a> {
    model: &'a str,
    input: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding_format: Option<&'static str>,
    /// `dimensions`, `user`, … as the client sent them.
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

/// `POST /images/generations` (https://platform.openai.com/docs/api-reference/images/create).
#[derive(Serialize)]
struct ImagesRequest<'a> {
    model: &'a str,
    prompt: &'a str,
    n: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<&'static str>,
    /// `quality`, `style`, `response_format`, `background`… as the client sent them.
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

/// What the gateway reads of an embeddings or images answer (the client gets it whole).
#[derive(Deserialize)]
struct Answer {
    data: Vec<IgnoredAny>,
    #[serde(default)]
    usage: Option<AnswerUsage>,
}

/// Embeddings report `prompt_tokens`; gpt-image models report `input_tokens`.
#[derive(Deserialize)]
struct AnswerUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    input_tokens: Option<u64>,
}

fn answer(reply: &Map<String, Value>, missing: &'static str) -> Result<Answer, ProviderError> {
    Answer::deserialize(map_de(reply)).map_err(|_| ProviderError::Protocol(missing))
}

fn tokens(n: Option<u64>) -> u32 {
    n.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
}

impl OpenAiAdapter {
    pub async fn embed(&self, call: &EmbedCall<'_>) -> Result<MediaReply, ProviderError> {
        let body = EmbeddingsRequest {
            model: call.upstream_model,
            input: call.raw,
            encoding_format: call.base64.then_some("base64"),
            extra: call.extra,
        };
        let reply = self.post_json("embeddings", &body, call.deadline).await?;
        let usage = answer(&reply, "embeddings response has no data")?
            .usage
            .and_then(|u| u.prompt_tokens)
            .map(|n| layers_domain::Usage { prompt_tokens: tokens(Some(n)), ..Default::default() });
        Ok(MediaReply { body: reply, usage })
    }

    pub async fn image(&self, call: &ImageCall<'_>) -> Result<MediaReply, ProviderError> {
        // DALL·E answers with URLs unless asked; the gateway's contract is `b64_json`
        // (gpt-image models always answer so, and refuse the parameter).
        let ask_b64 = call.upstream_model.starts_with("dall-e") && !call.extra.contains_key("response_format");
        let body = ImagesRequest {
            model: call.upstream_model,
            prompt: call.prompt,
            n: call.n,
            size: call.size,
            response_format: ask_b64.then_some("b64_json"),
            extra: call.extra,
        };
        let reply = self.post_json("images/generations", &body, call.deadline).await?;
        let answer = answer(&reply, "image response has no data")?;
        // gpt-image models report the prompt's tokens (billed at the model's input rate).
        let usage = layers_domain::Usage {
            images: u32::try_from(answer.data.len()).unwrap_or(u32::MAX),
            prompt_tokens: tokens(answer.usage.and_then(|u| u.input_tokens)),
            ..Default::default()
        };
        Ok(MediaReply { body: reply, usage: Some(usage) })
    }

    async fn post_json(
        &self,
        path: &str,
        body: &impl Serialize,
        deadline: tokio::time::Instant,
    ) -> Result<Map<String, Value>, ProviderError> {
        let bytes = serde_json::to_vec(body).map_err(|_| ProviderError::Protocol("request could not be encoded"))?;
        let mut rb = self
            .client
            .post(format!("{}/{path}", self.base_url))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(bytes);
        if let Some(key) = &self.api_key {
            rb = rb.bearer_auth(secrecy::ExposeSecret::expose_secret(key));
        }
        let resp = transport::send(rb, &timing::within(self.timeouts, deadline)).await?;
        let raw = transport::read_body(resp, deadline, transport::MAX_BODY_BYTES, Some(&self.budget)).await?;
        serde_json::from_slice(&raw).map_err(|_| ProviderError::Protocol("response is not a JSON object"))
    }
}
