//! Embeddings and image generation: the same pipeline as chat — resolve the model by kind, hold
//! the upper-bound cost, route with retries and fall-over, meter exactly once — with inputs
//! checked first (SPEC §2.1: `n` ≤ 4 images, prompt ≤ 10,000 characters). Invariant: a request
//! is billed from the provider's usage when it reports one (tokens for embeddings, images
//! returned for images, at the price of the quality and size made), else from a typical
//! estimate, flagged as estimated; the hold covers the dearest image the request allows.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use layers_domain::{tokens, KeyEnv, MicroCredits, ModelKind};
use layers_providers::media::{EmbedCall, ImageCall, MediaReply as ProviderMedia};
use layers_providers::ProviderError;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::billing::ReserveRequest;
use crate::chat::dispatch;
use crate::chat::meter::{Ending, Meter, Pricing};
use crate::chat::routing::{Candidate, Router};
use crate::chat::{CallContext, ChatError, ChatService, Credits, Route};

/// Most inputs in one embeddings request (OpenAI's limit).
const MAX_EMBED_INPUTS: usize = 2048;
/// Most images per request and longest prompt (SPEC §2.1).
pub const MAX_IMAGES: u32 = 4;
pub const MAX_IMAGE_PROMPT_CHARS: usize = 10_000;

/// `POST /v1/embeddings` as clients send it.
#[derive(Debug, Deserialize)]
pub struct EmbeddingRequest {
    pub model: String,
    pub input: Value,
    #[serde(default)]
    pub encoding_format: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `POST /v1/images/generations` (and `/api/v1/image`, which may give `aspect_ratio`).
#[derive(Debug, Deserialize)]
pub struct ImageRequest {
    pub model: String,
    pub prompt: String,
    #[serde(default)]
    pub n: Option<u32>,
    #[serde(default)]
    pub size: Option<String>,
    #[serde(default)]
    pub aspect_ratio: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A non-chat answer: the body and the facts for the response headers.
#[derive(Debug)]
pub struct MediaReply {
    pub provider: String,
    pub credits: Credits,
    pub body: Bytes,
}

fn invalid(param: &str, message: impl Into<String>) -> ChatError {
    ChatError::Invalid {
        message: message.into(),
        param: Some(param.to_owned()),
        code: crate::codes::ErrorCode::InvalidValue,
    }
}

/// The inputs as strings; token arrays are accepted (and counted one token each) but only
/// OpenAI-compatible routes can take them.
fn embed_inputs(input: &Value, max_chars: usize) -> Result<(Vec<String>, u32), ChatError> {
    let (texts, token_count): (Vec<String>, u32) = match input {
        Value::String(s) => (vec![s.clone()], 0),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            (items.iter().filter_map(Value::as_str).map(str::to_owned).collect(), 0)
        }
        Value::Array(items) if items.iter().all(Value::is_u64) => (Vec::new(), items.len() as u32),
        Value::Array(items) if items.iter().all(|i| i.as_array().is_some_and(|t| t.iter().all(Value::is_u64))) => {
            (Vec::new(), items.iter().filter_map(Value::as_array).map(|t| t.len() as u32).sum())
        }
        _ => return Err(invalid("input", "`input` must be a string, an array of strings, or token arrays")),
    };
    let count = if texts.is_empty() { input.as_array().map_or(1, Vec::len) } else { texts.len() };
    if count == 0 || count > MAX_EMBED_INPUTS {
        return Err(invalid("input", format!("`input` must hold 1 to {MAX_EMBED_INPUTS} items")));
    }
    for (i, t) in texts.iter().enumerate() {
        if t.is_empty() {
            return Err(invalid(&format!("input[{i}]"), "an input must not be empty"));
        }
        if t.chars().count() > max_chars {
            return Err(invalid(&format!("input[{i}]"), format!("an input may have at most {max_chars} characters")));
        }
    }
    Ok((texts, token_count))
}

/// `aspect_ratio` as an OpenAI `size` for the upstream model (DALL·E 3 and the gpt-image models
/// know different landscape and portrait sizes).
fn size_for(aspect: &str, upstream_model: &str) -> Result<&'static str, ChatError> {
    let dalle = upstream_model.starts_with("dall-e");
    match (aspect, dalle) {
        ("1:1", _) => Ok("1024x1024"),
        ("3:2" | "16:9", false) => Ok("1536x1024"),
        ("2:3" | "9:16", false) => Ok("1024x1536"),
        ("3:2" | "16:9", true) => Ok("1792x1024"),
        ("2:3" | "9:16", true) => Ok("1024x1792"),
        _ => Err(invalid("aspect_ratio", "`aspect_ratio` must be 1:1, 3:2, 16:9, 2:3 or 9:16")),
    }
}

/// What the hold of a media request covers.
struct MediaHold {
    /// Prompt tokens, as an upper bound.
    prompt_bound: u32,
    /// Typical prompt tokens, if the provider reports none.
    typical_prompt: u32,
    images: u32,
    /// The price of one image as asked (the dearest that matches, when the quality or size is
    /// left to the provider).
    per_image: Option<MicroCredits>,
}

impl ChatService {
    pub async fn embed(&self, ctx: &CallContext, mut req: EmbeddingRequest) -> Result<MediaReply, ChatError> {
        // OpenRouter's routing fields mean nothing for one embedding call; no upstream sees them.
        for key in crate::chat::preferences::OPENROUTER_FIELDS {
            req.extra.remove(key);
        }
        let (texts, token_inputs) = embed_inputs(&req.input, self.limits.max_message_chars)?;
        let base64 = match req.encoding_format.as_deref() {
            None | Some("float") => false,
            Some("base64") => true,
            Some(_) => return Err(invalid("encoding_format", "`encoding_format` must be float or base64")),
        };
        let bytes: usize = texts.iter().map(String::len).sum();
        let hold = MediaHold {
            prompt_bound: tokens::text_upper_bound(bytes).saturating_add(token_inputs),
            typical_prompt: tokens::estimate_generated(bytes).saturating_add(token_inputs).max(1),
            images: 0,
            per_image: None,
        };
        let req = Arc::new((req, texts));
        self.media(ctx, &req.0.model.clone(), ModelKind::Embedding, "embeddings", hold, move |route, deadline| {
            let req = req.clone();
            async move {
                let (req, texts) = &*req;
                let call = EmbedCall {
                    inputs: texts,
                    raw: &req.input,
                    upstream_model: &route.upstream_model,
                    extra: &req.extra,
                    base64,
                    deadline,
                };
                if texts.is_empty() && !matches!(*route.adapter, layers_providers::Adapter::OpenAi(_)) {
                    return Err(layers_providers::translate::unsupported(
                        "input",
                        "token-array inputs need an OpenAI-compatible route",
                    ));
                }
                route.adapter.embed(&call).await
            }
        })
        .await
    }

    pub async fn image(&self, ctx: &CallContext, req: ImageRequest) -> Result<MediaReply, ChatError> {
        let chars = req.prompt.chars().count();
        if chars == 0 || chars > MAX_IMAGE_PROMPT_CHARS {
            return Err(invalid("prompt", format!("`prompt` must have 1 to {MAX_IMAGE_PROMPT_CHARS} characters")));
        }
        let n = req.n.unwrap_or(1);
        if !(1..=MAX_IMAGES).contains(&n) {
            return Err(invalid("n", format!("`n` must be between 1 and {MAX_IMAGES}")));
        }
        if let Some(a) = &req.aspect_ratio {
            size_for(a, "")?;
        }
        let quality = req.extra.get("quality").and_then(Value::as_str).filter(|q| *q != "auto").map(str::to_owned);
        let hold = MediaHold {
            prompt_bound: tokens::text_upper_bound(req.prompt.len()),
            typical_prompt: tokens::estimate_generated(req.prompt.len()).max(1),
            images: n,
            per_image: None,
        };
        let request_id = ctx.request_id.as_str().to_owned();
        let req = Arc::new(req);
        let model = req.model.clone();
        let asked = Asked { quality, size: req.size.clone().filter(|s| s != "auto"), aspect: req.aspect_ratio.clone() };
        self.media_priced(ctx, &model, ModelKind::Image, "images", hold, Some(asked), move |route, deadline| {
            let (req, request_id) = (req.clone(), request_id.clone());
            async move {
                let size = match (req.size.as_deref(), req.aspect_ratio.as_deref()) {
                    (Some(s), _) => Some(s),
                    (None, Some(a)) => size_for(a, &route.upstream_model).ok(),
                    (None, None) => None,
                };
                let call = ImageCall {
                    prompt: &req.prompt,
                    n,
                    size,
                    upstream_model: &route.upstream_model,
                    extra: &req.extra,
                    request_id: &request_id,
                    deadline,
                };
                route.adapter.image(&call).await
            }
        })
        .await
    }

    async fn media<F, Fut>(
        &self,
        ctx: &CallContext,
        model: &str,
        kind: ModelKind,
        endpoint: &'static str,
        hold: MediaHold,
        attempt: F,
    ) -> Result<MediaReply, ChatError>
    where
        F: Fn(Candidate, Instant) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ProviderMedia, ProviderError>> + Send + 'static,
    {
        self.media_priced(ctx, model, kind, endpoint, hold, None, attempt).await
    }

    /// The shared pipeline. `asked`: the image quality and size the request named.
    #[allow(clippy::too_many_arguments)]
    async fn media_priced<F, Fut>(
        &self,
        ctx: &CallContext,
        model: &str,
        kind: ModelKind,
        endpoint: &'static str,
        mut hold: MediaHold,
        asked: Option<Asked>,
        attempt: F,
    ) -> Result<MediaReply, ChatError>
    where
        F: Fn(Candidate, Instant) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ProviderMedia, ProviderError>> + Send + 'static,
    {
        let billed = ctx.principal.env == KeyEnv::Live;
        let entry = self.resolve_kind(model, kind, billed)?;
        tracing::Span::current().record("model", entry.name());
        let route = self.route(ctx, entry).await?;
        let mut price = route.entry.price;
        if let Some(asked) = &asked {
            // The provider's default where the request names nothing; the dearest that matches
            // where it is left to the provider (`auto`, or a size that depends on the route).
            let spec = &route.entry.spec;
            let quality = asked.quality.as_deref().or(spec.image_default_quality.as_deref());
            let size = asked.size.as_deref().or(if asked.aspect.is_some() {
                None
            } else {
                spec.image_default_size.as_deref()
            });
            hold.per_image = Some(route.entry.image_price(quality, size));
            price.per_image = hold.per_image.unwrap_or(price.per_image);
        }
        let credits = Credits { billed, ..Credits::default() };
        let reservation = if billed {
            let reserved = self
                .billing
                .reserve(ReserveRequest {
                    principal: &ctx.principal,
                    price: &price,
                    prompt_tokens: hold.prompt_bound,
                    requested_output: Some(0),
                    choices: 1,
                    model_output_cap: 0,
                    images: hold.images,
                    fees: MicroCredits::ZERO,
                })
                .await?;
            Some(reserved.reservation)
        } else {
            self.billing.admit_unbilled().await?;
            None
        };
        let pricing = Pricing {
            price,
            fees: MicroCredits::ZERO,
            typical_prompt: hold.typical_prompt,
            prompt_bound: hold.prompt_bound,
            held_output: 0,
        };
        let meter = self.meter_for(ctx, &route, endpoint, false, pricing, reservation);
        let call = MediaCall {
            router: self.router.clone(),
            deadline: ctx.started + route.candidates[0].adapter.timeouts().total,
            route,
            meter,
            credits,
            kind,
            asked,
        };
        dispatch::detached(&self.tasks, move |gone| call.run(gone, attempt)).await
    }
}

/// One media request's call to its routes, owned by the task that runs it.
struct MediaCall {
    router: Arc<Router>,
    route: Route,
    meter: Meter,
    credits: Credits,
    kind: ModelKind,
    asked: Option<Asked>,
    deadline: Instant,
}

/// What an image request named of its quality and size.
#[derive(Clone, Debug)]
struct Asked {
    quality: Option<String>,
    size: Option<String>,
    aspect: Option<String>,
}

impl MediaCall {
    async fn run<F, Fut>(self, gone: CancellationToken, attempt: F) -> Result<MediaReply, ChatError>
    where
        F: Fn(Candidate, Instant) -> Fut,
        Fut: Future<Output = Result<ProviderMedia, ProviderError>>,
    {
        let MediaCall { router, route, mut meter, mut credits, kind, asked, deadline } = self;
        let candidates = &route.candidates;
        let served = router.run(candidates, deadline, &gone, |i| attempt(candidates[i].clone(), deadline)).await;
        let candidate = &route.candidates[served.index];
        meter.served_by(&candidate.provider, &candidate.upstream_model);
        let reply = match served.result {
            Ok(reply) => reply,
            Err(ProviderError::ClientGone) => {
                meter.finish(Ending::Abandoned);
                return Err(ChatError::Upstream(crate::failure::describe(&ProviderError::ClientGone)));
            }
            Err(err) => return Err(crate::chat::failed(candidate, meter, &err)),
        };
        if let Some(asked) = asked {
            // Priced at the quality and size the provider says it made, else as asked (the size
            // an aspect ratio became on this route), else the provider's defaults.
            let spec = &route.entry.spec;
            let answered = |k: &str| reply.body.get(k).and_then(Value::as_str).map(str::to_owned);
            let sent =
                asked.aspect.as_deref().and_then(|a| size_for(a, &candidate.upstream_model).ok()).map(str::to_owned);
            let quality = answered("quality").or(asked.quality).or(spec.image_default_quality.clone());
            let size = answered("size").or(asked.size).or(sent).or(spec.image_default_size.clone());
            meter.set_image_price(route.entry.image_price(quality.as_deref(), size.as_deref()));
        }
        let usage = reply.usage;
        let metered = meter.finish(if gone.is_cancelled() {
            Ending::ClientGone { usage, generated_bytes: 0, complete: true }
        } else {
            Ending::Completed { usage, generated_bytes: 0 }
        });
        let mut body = reply.body;
        if body.contains_key("model") {
            body.insert("model".into(), json!(route.entry.name()));
        }
        if kind == ModelKind::Embedding {
            let u = metered.usage.prompt_tokens;
            body.insert("usage".into(), json!({"prompt_tokens": u, "total_tokens": u}));
        }
        if credits.billed {
            credits.charged = Some(metered.charged);
            credits.remaining = metered.remaining;
        }
        Ok(MediaReply {
            provider: candidate.provider.clone(),
            credits,
            body: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_of_every_documented_shape() {
        assert_eq!(embed_inputs(&json!("a"), 10).unwrap().0, ["a"]);
        assert_eq!(embed_inputs(&json!(["a", "b"]), 10).unwrap().0.len(), 2);
        assert_eq!(embed_inputs(&json!([1, 2, 3]), 10).unwrap(), (vec![], 3));
        assert_eq!(embed_inputs(&json!([[1, 2], [3]]), 10).unwrap(), (vec![], 3));
        for bad in [json!(""), json!([]), json!(["a", 1]), json!({"x": 1}), json!("x".repeat(11))] {
            assert!(embed_inputs(&bad, 10).is_err(), "{bad}");
        }
        assert_eq!(size_for("16:9", "gpt-image-1").unwrap(), "1536x1024");
        assert_eq!(size_for("9:16", "dall-e-3").unwrap(), "1024x1792");
        assert!(size_for("4:3", "gpt-image-1").is_err());
    }
}
