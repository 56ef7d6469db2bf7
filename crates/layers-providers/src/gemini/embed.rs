//! Embeddings on Gemini: `models/{model}:batchEmbedContents`, one request per input, in batches
//! of at most 100 (Gemini's limit), answered in OpenAI's list shape. Gemini reports no token
//! usage here, so the caller estimates it.

use serde_json::{json, Value};

use super::GeminiAdapter;
use crate::error::ProviderError;
use crate::media::{embedding_list, EmbedCall, MediaReply};
use crate::timing;
use crate::translate::unsupported;
use crate::transport;

/// Most inputs Gemini embeds in one batch.
const BATCH: usize = 100;

impl GeminiAdapter {
    pub async fn embed(&self, call: &EmbedCall<'_>) -> Result<MediaReply, ProviderError> {
        let dims = match call.extra.get("dimensions") {
            None | Some(Value::Null) => None,
            Some(d) => Some(d.as_u64().ok_or_else(|| unsupported("dimensions", "`dimensions` must be an integer"))?),
        };
        for key in call.extra.keys() {
            if !matches!(key.as_str(), "dimensions" | "user" | "encoding_format") {
                return Err(unsupported(key, &format!("`{key}` is not supported by Gemini embeddings")));
            }
        }
        let model = format!("models/{}", call.upstream_model);
        let mut vectors: Vec<Vec<f32>> = Vec::with_capacity(call.inputs.len());
        for batch in call.inputs.chunks(BATCH) {
            vectors.extend(self.embed_batch(call, &model, batch, dims).await?);
        }
        Ok(MediaReply { body: embedding_list(vectors, call.upstream_model, call.base64, None), usage: None })
    }

    async fn embed_batch(
        &self,
        call: &EmbedCall<'_>,
        model: &str,
        batch: &[String],
        dims: Option<u64>,
    ) -> Result<Vec<Vec<f32>>, ProviderError> {
        let requests: Vec<Value> = batch
            .iter()
            .map(|text| {
                let mut r = json!({"model": model, "content": {"parts": [{"text": text}]}});
                if let Some(d) = dims {
                    r["outputDimensionality"] = json!(d);
                }
                r
            })
            .collect();
        let body = serde_json::to_vec(&json!({ "requests": requests }))
            .map_err(|_| ProviderError::Protocol("request could not be encoded"))?;
        let rb = self.post(format!("{}/{model}:batchEmbedContents", self.base_url), body);
        let resp = transport::send(rb, &timing::within(self.timeouts, call.deadline)).await?;
        let raw = transport::read_body(resp, call.deadline, transport::MAX_BODY_BYTES, Some(&self.budget)).await?;
        let v: Value = serde_json::from_slice(&raw).map_err(|_| ProviderError::Protocol("response is not JSON"))?;
        let vectors: Vec<Vec<f32>> = v["embeddings"]
            .as_array()
            .ok_or(ProviderError::Protocol("response has no embeddings"))?
            .iter()
            .map(|e| e["values"].as_array().into_iter().flatten().filter_map(Value::as_f64).map(|x| x as f32).collect())
            .collect();
        if vectors.len() != batch.len() {
            return Err(ProviderError::Protocol("response has the wrong number of embeddings"));
        }
        Ok(vectors)
    }
}
