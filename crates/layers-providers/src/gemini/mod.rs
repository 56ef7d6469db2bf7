//! The `gemini` kind: Google's native Gemini API (`models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`, key in `x-goog-api-key`), translated to and from the OpenAI
//! chat shape. Invariant: what the client receives is indistinguishable in shape from an OpenAI
//! answer, and usage counts thoughts as output, so billing stays exact.

mod body;
mod embed;
mod request;
mod response;
mod stream;
mod wire;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::adapter::ChatCall;
use crate::budget::Budget;
use crate::error::ProviderError;
use crate::reply::{envelope, ChunkStream, Completion};
use crate::timing::{self, Timeouts};
use crate::transport;
use crate::usage_json::usage_value;

#[derive(Debug)]
pub struct GeminiAdapter {
    client: reqwest::Client,
    base_url: String,
    api_key: Option<SecretString>,
    timeouts: Timeouts,
    /// The node's memory for upstream data, shared by every adapter.
    budget: Budget,
    allow_private_image_urls: bool,
}

impl GeminiAdapter {
    pub fn new(
        base_url: &str,
        api_key: Option<SecretString>,
        timeouts: Timeouts,
        allow_private_image_urls: bool,
        budget: Budget,
    ) -> Result<Self, reqwest::Error> {
        Ok(GeminiAdapter {
            client: transport::client(&timeouts)?,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            timeouts,
            budget,
            allow_private_image_urls,
        })
    }

    /// Gemini takes images only inline: images given by http(s) URL are fetched first (safely,
    /// see `fetch`), each URL once, at most four at a time, at most 16 URLs and 20 MB in all,
    /// within the call's deadline.
    async fn fetch_images(
        &self,
        req: &crate::chat::ChatRequest,
        deadline: tokio::time::Instant,
    ) -> Result<request::Fetched, ProviderError> {
        use futures_util::StreamExt;
        const MAX_URLS: usize = 16;
        /// 20 MB of images, as base64.
        const MAX_TOTAL_B64: usize = 20 * 1024 * 1024 / 3 * 4;
        let mut urls = request::image_urls(req);
        let mut seen = std::collections::HashSet::new();
        urls.retain(|(url, _)| seen.insert(url.clone()));
        if let Some((_, param)) = urls.get(MAX_URLS) {
            return Err(crate::translate::unsupported(param, "at most 16 images by URL per request"));
        }
        let allow = self.allow_private_image_urls;
        let budget = &self.budget;
        let fetch_all = async {
            let mut fetched = request::Fetched::new();
            let mut total = 0;
            let mut results = futures_util::stream::iter(urls)
                .map(|(url, param)| async move {
                    crate::fetch::image(&url, &param, allow, budget).await.map(|img| (url, param, img))
                })
                .buffer_unordered(4);
            while let Some(result) = results.next().await {
                let (url, param, image) = result?;
                total += image.1.len();
                if total > MAX_TOTAL_B64 {
                    return Err(crate::translate::unsupported(&param, "images given by URL add up to more than 20 MB"));
                }
                fetched.insert(url, image);
            }
            Ok(fetched)
        };
        tokio::time::timeout_at(deadline, fetch_all)
            .await
            .map_err(|_| ProviderError::Timeout(crate::error::TimeoutPhase::Total))?
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    pub async fn complete(&self, call: &ChatCall<'_>) -> Result<Completion, ProviderError> {
        let resp = self.send(call, false).await?;
        let body = transport::read_body(resp, call.deadline, transport::MAX_BODY_BYTES, Some(&self.budget)).await?;
        let v: wire::GenerateContentResponse = serde_json::from_slice(&body)
            .map_err(|_| ProviderError::Protocol("response is not a GenerateContentResponse"))?;
        let p = response::parts(&v);
        if !p.blocked && v.candidates.is_empty() {
            return Err(ProviderError::Protocol("response has no candidates"));
        }
        if p.finish.as_deref() == Some(response::MALFORMED_CALL) {
            return Err(ProviderError::Protocol("the model produced a malformed function call"));
        }
        let finish = if p.blocked {
            "content_filter"
        } else {
            response::finish_reason(p.finish.as_deref().unwrap_or("STOP"), !p.calls.is_empty())
        };
        let usage = response::usage(&v.usage_metadata.unwrap_or_default());
        let model = v.model_version.as_deref().unwrap_or(call.upstream_model);
        let mut out = envelope(&format!("chatcmpl-{}", call.request_id), "chat.completion", model);
        out.insert(
            "choices".into(),
            json!([{"index": 0, "message": response::message(&p, call.request_id), "logprobs": null, "finish_reason": finish}]),
        );
        out.insert("usage".into(), usage_value(&usage, None));
        Ok(Completion { body: out, usage: Some(usage) })
    }

    pub async fn stream(&self, call: &ChatCall<'_>) -> Result<ChunkStream, ProviderError> {
        let resp = self.send(call, true).await?;
        let events = stream::GeminiEvents::new(call.request_id, call.upstream_model);
        Ok(timing::timed(crate::sse_stream::chunks(resp, events, self.budget.clone()), self.timeouts, call.deadline))
    }

    async fn send(&self, call: &ChatCall<'_>, stream: bool) -> Result<reqwest::Response, ProviderError> {
        let images = self.fetch_images(call.request, call.deadline).await?;
        let body = request::build(call.request, &images)?;
        let body = body.encode()?;
        let url = if stream {
            format!("{}/models/{}:streamGenerateContent?alt=sse", self.base_url, call.upstream_model)
        } else {
            format!("{}/models/{}:generateContent", self.base_url, call.upstream_model)
        };
        let mut rb = self.post(url, body);
        if stream {
            rb = rb.header(http::header::ACCEPT, "text/event-stream");
        }
        transport::send(rb, &timing::within(self.timeouts, call.deadline)).await
    }

    /// A JSON POST to Gemini with the operator's key.
    fn post(&self, url: String, body: Vec<u8>) -> reqwest::RequestBuilder {
        let rb = self.client.post(url).header(http::header::CONTENT_TYPE, "application/json").body(body);
        match &self.api_key {
            Some(key) => rb.header("x-goog-api-key", key.expose_secret()),
            None => rb,
        }
    }
}
