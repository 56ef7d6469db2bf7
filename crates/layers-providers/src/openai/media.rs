//! Embeddings (`POST {base}/embeddings`) and images (`POST {base}/images/generations`) on an
//! OpenAI-compatible upstream: the client's body with the upstream model id, the answer as is.

use serde_json::{json, Map, Value};

use super::OpenAiAdapter;
use crate::error::ProviderError;
use crate::media::{EmbedCall, ImageCall, MediaReply};
use crate::timing;
use crate::transport;
use crate::usage_json::parse_usage;

impl OpenAiAdapter {
    pub async fn embed(&self, call: &EmbedCall<'_>) -> Result<MediaReply, ProviderError> {
        let mut body = call.extra.clone();
        body.insert("model".into(), json!(call.upstream_model));
        body.insert("input".into(), call.raw.clone());
        if call.base64 {
            body.insert("encoding_format".into(), json!("base64"));
        }
        let reply = self.post_json("embeddings", &body, call.deadline).await?;
        if !reply.get("data").is_some_and(Value::is_array) {
            return Err(ProviderError::Protocol("embeddings response has no data"));
        }
        let usage = reply.get("usage").and_then(|u| {
            let prompt = u.get("prompt_tokens")?.as_u64()?;
            parse_usage(&json!({"prompt_tokens": prompt, "completion_tokens": 0}))
        });
        Ok(MediaReply { body: reply, usage })
    }

    pub async fn image(&self, call: &ImageCall<'_>) -> Result<MediaReply, ProviderError> {
        let mut body = call.extra.clone();
        body.insert("model".into(), json!(call.upstream_model));
        body.insert("prompt".into(), json!(call.prompt));
        body.insert("n".into(), json!(call.n));
        if let Some(size) = call.size {
            body.insert("size".into(), json!(size));
        }
        // DALL·E answers with URLs unless asked; the gateway's contract is `b64_json`
        // (gpt-image models always answer so, and refuse the parameter).
        if call.upstream_model.starts_with("dall-e") && !body.contains_key("response_format") {
            body.insert("response_format".into(), json!("b64_json"));
        }
        let reply = self.post_json("images/generations", &body, call.deadline).await?;
        let images = reply
            .get("data")
            .and_then(Value::as_array)
            .map(Vec::len)
            .ok_or(ProviderError::Protocol("image response has no data"))?;
        // gpt-image models report the prompt's tokens (billed at the model's input rate).
        let prompt_tokens = reply
            .get("usage")
            .and_then(|u| u.get("input_tokens"))
            .and_then(Value::as_u64)
            .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX));
        let usage = layers_domain::Usage {
            images: u32::try_from(images).unwrap_or(u32::MAX),
            prompt_tokens,
            ..Default::default()
        };
        Ok(MediaReply { body: reply, usage: Some(usage) })
    }

    async fn post_json(
        &self,
        path: &str,
        body: &Map<String, Value>,
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
