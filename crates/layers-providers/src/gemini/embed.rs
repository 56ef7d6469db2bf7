//! Embeddings on Gemini: `models/{model}:batchEmbedContents`, one request per input, in batches
//! of at most 100 (Gemini's limit), answered in OpenAI's list shape. Gemini reports no token
//! usage here, so the caller estimates it.

use serde::{Deserialize, Serialize};

use super::GeminiAdapter;
use crate::error::ProviderError;
use crate::media::{embedding_list, EmbedCall, MediaReply};
use crate::timing;
use crate::translate::{map_de, unsupported};
use crate::transport;

/// The client's embedding options Gemini can honour; any other is refused by name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    #[serde(default)]
    dimensions: Option<u32>,
    #[serde(default, rename = "user")]
    _user: serde::de::IgnoredAny,
    #[serde(default, rename = "encoding_format")]
    _encoding_format: serde::de::IgnoredAny,
}

/// `batchEmbedContents` (https://ai.google.dev/api/embeddings#method:-models.batchembedcontents).
#[derive(Serialize)]
struct BatchRequest<'a> {
    requests: Vec<EmbedRequest<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EmbedRequest<'a> {
    model: &'a str,
    content: EmbedContent<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimensionality: Option<u32>,
}

#[derive(Serialize)]
struct EmbedContent<'a> {
    parts: [TextPart<'a>; 1],
}

#[derive(Serialize)]
struct TextPart<'a> {
    text: &'a str,
}

#[derive(Deserialize)]
struct BatchAnswer {
    embeddings: Vec<Embedding>,
}

#[derive(Deserialize)]
struct Embedding {
    #[serde(default)]
    values: Vec<f32>,
}

/// Most inputs Gemini embeds in one batch.
const BATCH: usize = 100;

impl GeminiAdapter {
    pub async fn embed(&self, call: &EmbedCall<'_>) -> Result<MediaReply, ProviderError> {
        let dims = match Options::deserialize(map_de(call.extra)) {
            Ok(options) => options.dimensions,
            Err(_) => return Err(refusal(call)),
        };
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
        dims: Option<u32>,
    ) -> Result<Vec<Vec<f32>>, ProviderError> {
        let requests = batch
            .iter()
            .map(|text| EmbedRequest {
                model,
                content: EmbedContent { parts: [TextPart { text }] },
                output_dimensionality: dims,
            })
            .collect();
        let body = serde_json::to_vec(&BatchRequest { requests })
            .map_err(|_| ProviderError::Protocol("request could not be encoded"))?;
        let rb = self.post(format!("{}/{model}:batchEmbedContents", self.base_url), body);
        let resp = transport::send(rb, &timing::within(self.timeouts, call.deadline)).await?;
        let raw = transport::read_body(resp, call.deadline, transport::MAX_BODY_BYTES, Some(&self.budget)).await?;
        let answer: BatchAnswer =
            serde_json::from_slice(&raw).map_err(|_| ProviderError::Protocol("response has no embeddings"))?;
        let vectors: Vec<Vec<f32>> = answer.embeddings.into_iter().map(|e| e.values).collect();
        if vectors.len() != batch.len() {
            return Err(ProviderError::Protocol("response has the wrong number of embeddings"));
        }
        Ok(vectors)
    }
}

/// The refusal of options Gemini cannot honour: the first one it does not know, or a
/// `dimensions` that is not a count.
fn refusal(call: &EmbedCall<'_>) -> ProviderError {
    match call.extra.keys().find(|k| !matches!(k.as_str(), "dimensions" | "user" | "encoding_format")) {
        Some(key) => unsupported(key, &format!("`{key}` is not supported by Gemini embeddings")),
        None => unsupported("dimensions", "`dimensions` must be an integer"),
    }
}
