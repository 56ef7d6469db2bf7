//! The chat completion service: validate, resolve the model, call the provider, meter, and
//! shape the reply. Invariant: every request that reaches a provider produces exactly one usage
//! row, whichever way it ends.

pub(crate) mod answer;
mod complete;
pub(crate) mod dispatch;
pub(crate) mod meter;
pub mod preferences;
pub mod routing;
mod stream;
pub mod test_keys;
pub mod translated;
mod validate;

use std::sync::Arc;

use bytes::Bytes;
use layers_domain::limits::RequestLimits;
use layers_domain::{tokens, KeyEnv, MicroCredits, ModelKind, RequestId};
use layers_providers::{ChatRequest, ProviderError, Providers};
use layers_store::UsageRecord;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::meter::{Ending, Meter, Pricing};
use self::routing::{Answer, Candidate, Router};
pub use self::stream::ClientStream;
use self::stream::StreamSetup;
use self::test_keys::{DailyCounts, TestKeySettings};
use crate::auth::Principal;
use crate::billing::{Billing, BillingError, Reservation, ReserveRequest};
use crate::catalogue::{Catalogue, ModelEntry, Unresolved};
use crate::codes::ErrorCode;
pub use crate::failure::UpstreamFailure;
use crate::ratelimit::RateLimiter;
use crate::tasks::Tasks;

/// The provider that answers test keys.
pub const SANDBOX_PROVIDER: &str = "sandbox";

/// Who asks, and when.
#[derive(Clone, Debug)]
pub struct CallContext {
    pub principal: Principal,
    pub request_id: RequestId,
    pub started: Instant,
    pub endpoint: &'static str,
    /// The app the request says it came from (kept with its usage).
    pub app: layers_domain::attribution::App,
    /// What the request's access-log line will say.
    pub access: crate::access::AccessRecord,
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
    /// Exactly what was debited; `None` for a stream, whose cost is known only at its end (it
    /// is in the stream's usage chunk, and by request id from `/api/v1/generation`).
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
    Invalid { message: String, param: Option<String>, code: ErrorCode },
    #[error("{message}")]
    ModelNotFound { message: String },
    #[error("{}", .0.message)]
    Upstream(UpstreamFailure),
    #[error(transparent)]
    Billing(#[from] BillingError),
    /// The request's work ended without an answer (a task that panicked): a bug.
    #[error("{0}")]
    Internal(&'static str),
}

#[derive(Debug)]
pub struct ChatService {
    catalogue: Arc<Catalogue>,
    pub(crate) providers: Providers,
    pub(crate) limits: RequestLimits,
    pub(crate) billing: Billing,
    limiter: RateLimiter,
    pub(crate) router: Arc<Router>,
    pub(crate) tasks: Tasks,
    bytes_per_token: u32,
    pub(crate) test_keys: TestKeySettings,
    test_key_days: DailyCounts,
    /// Usage rows are dated by this clock (calendar limits and the dashboard follow it).
    clock: crate::clock::Clock,
}

/// What the chat service is built from.
#[derive(Debug)]
pub struct ChatParts {
    pub catalogue: Arc<Catalogue>,
    pub providers: Providers,
    pub limits: RequestLimits,
    pub billing: Billing,
    pub limiter: RateLimiter,
    pub router: Router,
    pub tasks: Tasks,
    /// Bytes of prompt text per token counted in a hold's bound (1: an exact upper bound).
    pub bytes_per_token: u32,
    pub clock: crate::clock::Clock,
}

/// Where one request may go: the model and its routes in order of preference.
pub(crate) struct Route {
    pub entry: Arc<ModelEntry>,
    pub candidates: Vec<Candidate>,
    pub started: Instant,
}

impl Route {
    /// The most each part of a prompt may cost, over every route that may serve it.
    fn ceilings(&self, bytes_per_token: u32) -> tokens::PromptCeilings {
        self.entry.ceilings(self.candidates.iter().map(|c| c.adapter.kind()), bytes_per_token)
    }
}

impl ChatService {
    pub fn new(parts: ChatParts) -> Self {
        ChatService {
            catalogue: parts.catalogue,
            providers: parts.providers,
            limits: parts.limits,
            billing: parts.billing,
            limiter: parts.limiter,
            router: Arc::new(parts.router),
            tasks: parts.tasks,
            bytes_per_token: parts.bytes_per_token,
            test_keys: TestKeySettings::default(),
            test_key_days: DailyCounts::default(),
            clock: parts.clock,
        }
    }

    /// Where test keys may go, counted on `redis` when there is one.
    pub fn with_test_keys(
        mut self,
        settings: TestKeySettings,
        redis: Option<crate::redis_conn::Redis>,
        clock: crate::clock::Clock,
    ) -> Self {
        self.test_keys = settings;
        self.test_key_days = DailyCounts::new(redis, clock);
        self
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The node's memory for upstream data.
    pub fn upstream_budget(&self) -> &layers_providers::Budget {
        self.providers.budget()
    }

    pub fn limits(&self) -> &RequestLimits {
        &self.limits
    }

    /// A chat request: its model, then each model of its `models` fallbacks until one answers.
    pub async fn chat(&self, ctx: &CallContext, mut req: ChatRequest) -> Result<ChatReply, ChatError> {
        let prefs = preferences::take(&mut req)?;
        if prefs.fallbacks.is_empty() {
            return self.chat_model(ctx, req, &prefs.provider).await;
        }
        let mut result = self.chat_model(ctx, req.clone(), &prefs.provider).await;
        for model in &prefs.fallbacks {
            match &result {
                Err(e) if falls_over(e) => {
                    tracing::info!(model = %model, "falling back to the next model of `models`");
                }
                _ => return result,
            }
            result = self.chat_model(ctx, ChatRequest { model: model.clone(), ..req.clone() }, &prefs.provider).await;
        }
        result
    }

    async fn chat_model(
        &self,
        ctx: &CallContext,
        mut req: ChatRequest,
        provider: &preferences::ProviderPreferences,
    ) -> Result<ChatReply, ChatError> {
        validate::check_limits(&req, &self.limits)?;
        let billed = ctx.principal.env == KeyEnv::Live;
        let entry = self.resolve(&req.model, billed)?;
        tracing::Span::current().record("model", entry.name());
        validate::check_against_model(&mut req, &entry)?;
        let fees = validate::search_fee(&req, &entry)?;
        let route = self.prefer(self.route(ctx, entry).await?, provider)?;
        let parts = req.prompt_parts();
        let prompt_bound = tokens::prompt_upper_bound(&parts, &route.ceilings(self.bytes_per_token));
        let choices = req.n.unwrap_or(1).max(1);
        let mut credits = Credits { billed, ..Credits::default() };
        let (reservation, covered_output) = if billed {
            let reserved = self
                .billing
                .reserve(ReserveRequest {
                    principal: &ctx.principal,
                    price: &route.entry.price,
                    prompt_tokens: prompt_bound,
                    requested_output: req.requested_max_tokens(),
                    choices,
                    model_output_cap: route.entry.spec.max_output_tokens,
                    images: 0,
                    fees,
                })
                .await?;
            if let Some(n) = reserved.lowered_to {
                req.lower_output_cap(n);
                credits.max_tokens_capped = Some(n);
            }
            (Some(reserved.reservation), reserved.max_output)
        } else {
            self.billing.admit_unbilled().await?;
            (None, req.output_cap().unwrap_or(route.entry.spec.max_output_tokens))
        };
        let pricing = Pricing {
            price: route.entry.price,
            fees,
            typical_prompt: tokens::typical_prompt(&parts),
            prompt_bound,
            held_output: covered_output.saturating_mul(choices),
        };
        let meter = self.meter_for(ctx, &route, ctx.endpoint, req.is_stream(), pricing, reservation);
        credits.remaining = billed.then(|| self.billing.remaining(&ctx.principal));
        let call = RouteCall {
            router: self.router.clone(),
            // The first route's total timeout bounds the whole request, fall-overs included.
            deadline: ctx.started + route.candidates[0].adapter.timeouts().total,
            route,
            req,
            request_id: ctx.request_id.as_str().to_owned(),
            meter,
            credits,
            tasks: self.tasks.clone(),
        };
        dispatch::detached(&self.tasks, |gone| call.run(gone)).await
    }

    fn resolve(&self, model: &str, served_only: bool) -> Result<Arc<ModelEntry>, ChatError> {
        self.resolve_kind(model, ModelKind::Chat, served_only)
    }

    pub(crate) fn resolve_kind(
        &self,
        model: &str,
        kind: ModelKind,
        served_only: bool,
    ) -> Result<Arc<ModelEntry>, ChatError> {
        let wanted = kind;
        self.catalogue.resolve(model, kind, served_only).cloned().map_err(|why| match why {
            Unresolved::Unknown => {
                ChatError::ModelNotFound { message: format!("The model `{}` does not exist", printable(model)) }
            }
            Unresolved::NotServed => ChatError::ModelNotFound {
                message: format!("The model `{}` is not available on this deployment", printable(model)),
            },
            Unresolved::WrongKind(kind) => ChatError::Invalid {
                message: format!(
                    "The model `{}` is a{} model, not a{} model",
                    printable(model),
                    kind_article(kind),
                    kind_article(wanted)
                ),
                param: Some("model".to_owned()),
                code: ErrorCode::ModelNotSupported,
            },
        })
    }

    pub(crate) async fn route(&self, ctx: &CallContext, entry: Arc<ModelEntry>) -> Result<Route, ChatError> {
        let not_served = || ChatError::ModelNotFound {
            message: format!("The model `{}` is not available on this deployment", entry.name()),
        };
        let real = || entry.routes.iter().map(|r| (r.provider.clone(), r.upstream_model.clone())).collect();
        let wanted: Vec<(String, String)> = match ctx.principal.env {
            KeyEnv::Live => real(),
            // Test keys reach a real upstream only where the operator allows it (SPEC §3.1).
            KeyEnv::Test if self.test_keys.real_routes && entry.is_served() => {
                self.test_key_days.take(ctx.principal.user_id, self.test_keys.daily_requests).await.map_err(
                    |wait| {
                        ChatError::Upstream(UpstreamFailure {
                            retry_after: Some(wait),
                            ..UpstreamFailure::new(
                                ErrorCode::TestKeyDailyLimit,
                                format!(
                                    "Test keys may make {} requests a day to real models; use a live key or the \
                                     sandbox",
                                    self.test_keys.daily_requests
                                ),
                            )
                        })
                    },
                )?;
                real()
            }
            KeyEnv::Test => vec![(SANDBOX_PROVIDER.to_owned(), entry.name().to_owned())],
        };
        let candidates: Vec<Candidate> = wanted
            .into_iter()
            .filter_map(|(provider, upstream_model)| {
                let adapter = self.providers.get(&provider)?.clone();
                Some(Candidate { provider, upstream_model, adapter })
            })
            .collect();
        if candidates.is_empty() {
            return Err(not_served());
        }
        Ok(Route { entry, candidates, started: ctx.started })
    }

    /// The route's candidates as the client's `provider` preferences arrange them.
    fn prefer(&self, mut route: Route, prefs: &preferences::ProviderPreferences) -> Result<Route, ChatError> {
        if let Err(param) = prefs.within_price(&route.entry.price) {
            return Err(ChatError::Invalid {
                message: format!("`{}` costs more than `{param}` allows", route.entry.name()),
                param: Some(param.to_owned()),
                code: ErrorCode::InvalidValue,
            });
        }
        let names: Vec<&str> = route.candidates.iter().map(|c| c.provider.as_str()).collect();
        let order = prefs.arrange(&names, |i| self.router.latency_ms(&route.candidates[i])).ok_or_else(|| {
            ChatError::Invalid {
                message: format!("No route of `{}` matches the `provider` preferences", route.entry.name()),
                param: Some("provider".to_owned()),
                code: ErrorCode::InvalidValue,
            }
        })?;
        let mut slots: Vec<Option<Candidate>> = route.candidates.into_iter().map(Some).collect();
        route.candidates = order.into_iter().filter_map(|i| slots.get_mut(i).and_then(Option::take)).collect();
        Ok(route)
    }

    pub(crate) fn meter_for(
        &self,
        ctx: &CallContext,
        route: &Route,
        endpoint: &str,
        streamed: bool,
        pricing: Pricing,
        reservation: Option<Reservation>,
    ) -> Meter {
        let row = UsageRecord {
            // Time-ordered, so usage inserts append to the index instead of scattering.
            id: uuid::Uuid::now_v7(),
            request_id: ctx.request_id.as_str().to_owned(),
            user_id: ctx.principal.user_id,
            key_id: Some(ctx.principal.key_id),
            model: route.entry.name().to_owned(),
            provider: route.candidates[0].provider.clone(),
            upstream_model: route.candidates[0].upstream_model.clone(),
            endpoint: endpoint.to_owned(),
            usage: Default::default(),
            cost: MicroCredits::ZERO,
            charged: MicroCredits::ZERO,
            held: MicroCredits::ZERO,
            shortfall: MicroCredits::ZERO,
            fees: MicroCredits::ZERO,
            rates: Default::default(),
            latency_ms: 0,
            status: 0,
            error_code: None,
            streamed,
            usage_estimated: false,
            created_at: self.clock.now(),
            app_title: ctx.app.title.clone(),
            app_origin: ctx.app.origin.clone(),
        };
        Meter::new(
            self.billing.sink().clone(),
            row,
            pricing,
            ctx.started,
            reservation,
            Some((self.limiter.clone(), ctx.principal.clone())),
        )
        .with_access(ctx.access.clone())
    }
}

/// One chat request's call to its routes, owned by the task that runs it.
struct RouteCall {
    router: Arc<Router>,
    route: Route,
    req: ChatRequest,
    request_id: String,
    meter: Meter,
    credits: Credits,
    tasks: Tasks,
    deadline: Instant,
}

impl RouteCall {
    async fn run(self, gone: CancellationToken) -> Result<ChatReply, ChatError> {
        let RouteCall { router, route, req, request_id, mut meter, credits, tasks, deadline } = self;
        let cap = route.entry.spec.max_output_tokens;
        // Everything the gateway did before calling the provider.
        let overhead = route.started.elapsed();
        router.observe_overhead(overhead);
        meter.overhead(overhead);
        let served = router.call(&route.candidates, &req, &request_id, cap, deadline, &gone).await;
        let candidate = &route.candidates[served.index];
        meter.served_by(&candidate.provider, &candidate.upstream_model);
        match served.result {
            Ok(Answer::Whole(completion)) => {
                Ok(complete::finish(&route, candidate, completion, meter, credits, gone.is_cancelled(), &request_id))
            }
            Ok(Answer::Stream(chunks, first)) => {
                let setup = StreamSetup {
                    public_model: route.entry.name().to_owned(),
                    provider: candidate.provider.clone(),
                    request_id,
                    show_usage: req.wants_stream_usage(),
                    started: route.started,
                    tasks,
                    deadline,
                };
                let body = ClientStream::new(chunks, first, setup, meter);
                Ok(ChatReply { provider: candidate.provider.clone(), credits, body: ReplyBody::Stream(Box::new(body)) })
            }
            Err(ProviderError::ClientGone) => {
                meter.finish(Ending::Abandoned);
                Err(ChatError::Upstream(crate::failure::describe(&ProviderError::ClientGone)))
            }
            Err(err) => Err(failed(candidate, meter, &err)),
        }
    }
}

/// Records a request no route could serve and says why, in the client's terms.
pub(crate) fn failed(candidate: &Candidate, mut meter: Meter, err: &ProviderError) -> ChatError {
    // Logged once, where the response is written (a 5xx with this cause; a 4xx is the
    // client's to read).
    let failure = crate::failure::describe(err);
    tracing::debug!(provider = %candidate.provider, code = %failure.code, "no route served the request");
    meter.finish(Ending::Failed { code: failure.code, usage: None, generated_bytes: 0, final_usage: false });
    ChatError::Upstream(failure)
}

/// Whether a failed model lets the next of `models` be tried: anything about the model or its
/// routes (not found, priced or arranged out, every route failed or refused the request), but
/// never the client's credit, limits or a malformed request, which every model would meet.
fn falls_over(e: &ChatError) -> bool {
    match e {
        ChatError::ModelNotFound { .. } => true,
        ChatError::Invalid { param, .. } => {
            param.as_deref().is_some_and(|p| p == "provider" || p.starts_with("provider.max_price") || p == "model")
        }
        ChatError::Upstream(f) => !matches!(f.code, ErrorCode::ClientClosed | ErrorCode::TestKeyDailyLimit),
        ChatError::Billing(_) | ChatError::Internal(_) => false,
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
