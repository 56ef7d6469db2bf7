//! The chat completion service: validate, resolve the model, call the provider, meter, and
//! shape the reply. Invariant: every request that reaches a provider produces exactly one usage
//! row, whichever way it ends.

mod complete;
pub mod errors;
mod meter;
mod stream;
mod validate;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use layers_domain::limits::RequestLimits;
use layers_domain::{tokens, KeyEnv, MicroCredits, ModelKind, RequestId};
use layers_providers::{Adapter, ChatCall, ChatRequest, Providers, StreamEvent};
use layers_store::UsageRecord;
use time::OffsetDateTime;
use tokio::time::Instant;

pub use self::errors::UpstreamFailure;
use self::meter::{Ending, Meter};
pub use self::stream::ClientStream;
use crate::auth::Principal;
use crate::billing::{Billing, BillingError, Reservation, ReserveRequest};
use crate::catalogue::{Catalogue, ModelEntry, Unresolved};
use crate::ratelimit::RateLimiter;

/// The provider that answers test keys.
pub const SANDBOX_PROVIDER: &str = "sandbox";

/// Who asks, and when.
#[derive(Clone, Debug)]
pub struct CallContext {
    pub principal: Principal,
    pub request_id: RequestId,
    pub started: Instant,
    pub endpoint: &'static str,
}

#[derive(Debug)]
pub struct ChatReply {
    /// The provider that served the request (`x-layers-provider`).
    pub provider: String,
    pub credits: Credits,
    pub body: ReplyBody,
}

/// Billing facts for the response headers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Credits {
    /// Whether the request is billed (live key).
    pub billed: bool,
    /// What was charged; `None` for a stream, whose cost is known only at its end.
    pub charged: Option<MicroCredits>,
    /// Approximately what the account still has available.
    pub remaining: Option<MicroCredits>,
    /// The output cap the gateway lowered `max_tokens` to, to fit the credit or the caps.
    pub max_tokens_capped: Option<u32>,
}

#[derive(Debug)]
pub enum ReplyBody {
    Json(Bytes),
    Stream(Box<ClientStream>),
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("{message}")]
    Invalid { message: String, param: Option<String>, code: &'static str },
    #[error("{message}")]
    ModelNotFound { message: String },
    #[error("{}", .0.message)]
    Upstream(UpstreamFailure),
    #[error(transparent)]
    Billing(#[from] BillingError),
}

#[derive(Debug)]
pub struct ChatService {
    catalogue: Arc<Catalogue>,
    providers: Providers,
    limits: RequestLimits,
    billing: Billing,
    limiter: RateLimiter,
}

/// Where one request goes.
pub(crate) struct Route {
    pub entry: Arc<ModelEntry>,
    pub adapter: Arc<Adapter>,
    pub provider: String,
    pub upstream_model: String,
    pub started: Instant,
}

impl ChatService {
    pub fn new(
        catalogue: Arc<Catalogue>,
        providers: Providers,
        limits: RequestLimits,
        billing: Billing,
        limiter: RateLimiter,
    ) -> Self {
        ChatService { catalogue, providers, limits, billing, limiter }
    }

    pub fn limits(&self) -> &RequestLimits {
        &self.limits
    }

    pub async fn chat(&self, ctx: &CallContext, mut req: ChatRequest) -> Result<ChatReply, ChatError> {
        validate::check_limits(&req, &self.limits)?;
        let billed = ctx.principal.env == KeyEnv::Live;
        let entry = self.resolve(&req.model, billed)?;
        tracing::Span::current().record("model", entry.name());
        validate::check_against_model(&req, &entry)?;
        let route = self.route(ctx, entry)?;
        let mut credits = Credits { billed, ..Credits::default() };
        let reservation = if billed {
            let (bytes, images) = req.prompt_size();
            let reserved = self
                .billing
                .reserve(ReserveRequest {
                    principal: &ctx.principal,
                    price: &route.entry.price,
                    prompt_tokens: tokens::estimate_prompt(req.messages.len(), bytes, images),
                    requested_output: req.requested_max_tokens(),
                    choices: req.n.unwrap_or(1),
                    model_output_cap: route.entry.spec.max_output_tokens,
                })
                .await?;
            if let Some(n) = reserved.lowered_to {
                req.lower_output_cap(n);
                credits.max_tokens_capped = Some(n);
            }
            Some(reserved.reservation)
        } else {
            None
        };
        let meter = self.meter(ctx, &route, &req, reservation);
        credits.remaining = billed.then(|| self.billing.remaining(&ctx.principal));
        let deadline = ctx.started + route.adapter.timeouts().total;
        let call = ChatCall {
            request: &req,
            upstream_model: &route.upstream_model,
            request_id: ctx.request_id.as_str(),
            deadline,
            model_output_cap: route.entry.spec.max_output_tokens,
        };
        if req.is_stream() {
            self.stream(ctx, &route, &call, meter, req.wants_stream_usage(), credits).await
        } else {
            complete::run(&route, &call, meter, credits).await
        }
    }

    async fn stream(
        &self,
        ctx: &CallContext,
        route: &Route,
        call: &ChatCall<'_>,
        meter: Meter,
        show_usage: bool,
        credits: Credits,
    ) -> Result<ChatReply, ChatError> {
        let failed = |mut meter: Meter, err: &layers_providers::ProviderError| {
            let failure = errors::describe(err);
            tracing::warn!(provider = %route.provider, error = %err, status = failure.status, "upstream stream failed to start");
            meter.finish(Ending::Failed {
                status: failure.status,
                code: failure.code,
                usage: None,
                generated_bytes: 0,
            });
            ChatError::Upstream(failure)
        };
        let mut chunks = match route.adapter.stream(call).await {
            Ok(s) => s,
            Err(err) => return Err(failed(meter, &err)),
        };
        // Nothing is sent to the client until the upstream produced its first chunk, so a
        // stream that fails or is empty is answered with a real error status.
        let first = match chunks.next().await {
            Some(Ok(StreamEvent::Chunk(first))) => first,
            Some(Err(err)) => return Err(failed(meter, &err)),
            Some(Ok(StreamEvent::Done)) | None => {
                let err = layers_providers::ProviderError::Protocol("the stream ended without any content");
                return Err(failed(meter, &err));
            }
        };
        let body = ClientStream::new(chunks, first, route.entry.name(), ctx.request_id.as_str(), show_usage, meter);
        Ok(ChatReply { provider: route.provider.clone(), credits, body: ReplyBody::Stream(Box::new(body)) })
    }

    fn resolve(&self, model: &str, served_only: bool) -> Result<Arc<ModelEntry>, ChatError> {
        self.catalogue.resolve(model, ModelKind::Chat, served_only).cloned().map_err(|why| match why {
            Unresolved::Unknown => {
                ChatError::ModelNotFound { message: format!("The model `{}` does not exist", printable(model)) }
            }
            Unresolved::NotServed => ChatError::ModelNotFound {
                message: format!("The model `{}` is not available on this deployment", printable(model)),
            },
            Unresolved::WrongKind(kind) => ChatError::Invalid {
                message: format!("The model `{}` is a{} model, not a chat model", printable(model), kind_article(kind)),
                param: Some("model".to_owned()),
                code: "model_not_supported",
            },
        })
    }

    fn route(&self, ctx: &CallContext, entry: Arc<ModelEntry>) -> Result<Route, ChatError> {
        let (provider, upstream_model) = match ctx.principal.env {
            // Test keys never reach a paid upstream (SPEC §3.1).
            KeyEnv::Test => (SANDBOX_PROVIDER.to_owned(), entry.name().to_owned()),
            KeyEnv::Live => {
                let first = entry.routes.first().ok_or_else(|| ChatError::ModelNotFound {
                    message: format!("The model `{}` is not available on this deployment", entry.name()),
                })?;
                (first.provider.clone(), first.upstream_model.clone())
            }
        };
        let adapter = self.providers.get(&provider).cloned().ok_or_else(|| ChatError::ModelNotFound {
            message: format!("The model `{}` is not available on this deployment", entry.name()),
        })?;
        Ok(Route { entry, adapter, provider, upstream_model, started: ctx.started })
    }

    fn meter(&self, ctx: &CallContext, route: &Route, req: &ChatRequest, reservation: Option<Reservation>) -> Meter {
        let (bytes, images) = req.prompt_size();
        let row = UsageRecord {
            // Time-ordered, so usage inserts append to the index instead of scattering.
            id: uuid::Uuid::now_v7(),
            request_id: ctx.request_id.as_str().to_owned(),
            user_id: ctx.principal.user_id,
            key_id: Some(ctx.principal.key_id),
            model: route.entry.name().to_owned(),
            provider: route.provider.clone(),
            upstream_model: route.upstream_model.clone(),
            endpoint: ctx.endpoint.to_owned(),
            usage: Default::default(),
            cost: MicroCredits::ZERO,
            charged: MicroCredits::ZERO,
            latency_ms: 0,
            status: 0,
            error_code: None,
            streamed: req.is_stream(),
            usage_estimated: false,
            created_at: OffsetDateTime::now_utc(),
        };
        Meter::new(
            self.billing.sink().clone(),
            row,
            route.entry.price,
            ctx.started,
            tokens::typical_prompt(req.messages.len(), bytes, images),
            reservation,
            Some((self.limiter.clone(), ctx.principal.clone())),
        )
    }
}

/// A model name as the client sent it, safe to echo (bounded, printable).
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

fn kind_article(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::Chat => " chat",
        ModelKind::Embedding => "n embedding",
        ModelKind::Image => "n image",
    }
}
