//! `GET /openapi.json`: the OpenAPI 3.1 document of every public endpoint, built by utoipa from
//! the body types of `openapi_schema` and the operation table below, each operation with its
//! error responses. Invariant: every route of the data plane is in the table (a test compares
//! it with the router), and every JSON response the test suite receives validates against the
//! document (scripts/openapi-check).

use std::sync::OnceLock;

use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use utoipa::openapi::path::{OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, HttpMethod, InfoBuilder, OpenApi, PathsBuilder, Ref, Required};
use utoipa::OpenApi as _;

use super::openapi_schema::*;

#[derive(utoipa::OpenApi)]
#[openapi(components(schemas(
    ErrorResponse,
    ErrorObject,
    AnthropicErrorResponse,
    AnthropicErrorObject,
    ChatCompletionRequest,
    ChatMessage,
    ChatCompletion,
    ChatChoice,
    AssistantMessage,
    ChatCompletionChunk,
    ChatUsage,
    PromptTokensDetails,
    CompletionTokensDetails,
    LayersObject,
    ResponsesRequest,
    ResponseObject,
    ResponseUsage,
    MessagesRequest,
    AnthropicMessage,
    AnthropicUsage,
    CountTokensRequest,
    TokenCount,
    EmbeddingsRequest,
    EmbeddingList,
    Embedding,
    ImagesRequest,
    ImagesResponse,
    ModelList,
    Model,
    PriceList,
    Balance,
    UsagePage,
    Generation,
    GenerationData,
    KeyInfo,
    KeyData,
    Health,
)))]
struct Components;

/// Which error envelope an endpoint answers in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    OpenAi,
    Anthropic,
}

/// One operation of the public API.
struct Op {
    method: HttpMethod,
    /// Its paths (aliases share the operation).
    paths: &'static [&'static str],
    tag: &'static str,
    summary: &'static str,
    /// Needs an API key.
    keyed: bool,
    request: Option<&'static str>,
    /// The JSON answer's schema.
    ok: &'static str,
    /// The schema of each event, when the endpoint can stream.
    events: Option<&'static str>,
    query: &'static [(&'static str, bool, &'static str)],
    dialect: Dialect,
}

const OPS: &[Op] = &[
    Op {
        method: HttpMethod::Post,
        paths: &["/v1/chat/completions", "/api/v1/chat/completions", "/api/v1/chat"],
        tag: "Chat",
        summary: "OpenAI Chat Completions on any model (streamed with `stream: true`)",
        keyed: true,
        request: Some("ChatCompletionRequest"),
        ok: "ChatCompletion",
        events: Some("ChatCompletionChunk"),
        query: &[],
        dialect: Dialect::OpenAi,
    },
    Op {
        method: HttpMethod::Post,
        paths: &["/v1/responses", "/api/v1/responses"],
        tag: "Chat",
        summary: "OpenAI Responses API, stateless, on any model",
        keyed: true,
        request: Some("ResponsesRequest"),
        ok: "ResponseObject",
        events: Some("ResponseObject"),
        query: &[],
        dialect: Dialect::OpenAi,
    },
    Op {
        method: HttpMethod::Post,
        paths: &["/v1/messages"],
        tag: "Anthropic",
        summary: "Anthropic Messages API on any model",
        keyed: true,
        request: Some("MessagesRequest"),
        ok: "AnthropicMessage",
        events: Some("AnthropicMessage"),
        query: &[],
        dialect: Dialect::Anthropic,
    },
    Op {
        method: HttpMethod::Post,
        paths: &["/v1/messages/count_tokens"],
        tag: "Anthropic",
        summary: "The prompt's tokens as Layers counts them, without calling a provider",
        keyed: true,
        request: Some("CountTokensRequest"),
        ok: "TokenCount",
        events: None,
        query: &[],
        dialect: Dialect::Anthropic,
    },
    Op {
        method: HttpMethod::Post,
        paths: &["/v1/embeddings", "/api/v1/embeddings"],
        tag: "Media",
        summary: "OpenAI embeddings",
        keyed: true,
        request: Some("EmbeddingsRequest"),
        ok: "EmbeddingList",
        events: None,
        query: &[],
        dialect: Dialect::OpenAi,
    },
    Op {
        method: HttpMethod::Post,
        paths: &["/v1/images/generations", "/api/v1/image"],
        tag: "Media",
        summary: "Image generation, priced per image",
        keyed: true,
        request: Some("ImagesRequest"),
        ok: "ImagesResponse",
        events: None,
        query: &[],
        dialect: Dialect::OpenAi,
    },
    Op {
        method: HttpMethod::Get,
        paths: &["/v1/models", "/api/v1/models"],
        tag: "Models",
        summary: "Served models: OpenAI Model objects that are also OpenRouter model objects",
        keyed: false,
        request: None,
        ok: "ModelList",
        events: None,
        query: &[],
        dialect: Dialect::OpenAi,
    },
    Op {
        method: HttpMethod::Get,
        paths: &["/api/v1/pricing"],
        tag: "Models",
        summary: "The public price list, in credits",
        keyed: false,
        request: None,
        ok: "PriceList",
        events: None,
        query: &[],
        dialect: Dialect::OpenAi,
    },
    Op {
        method: HttpMethod::Get,
        paths: &["/api/v1/balance"],
        tag: "Account",
        summary: "The account's balance and tier",
        keyed: true,
        request: None,
        ok: "Balance",
        events: None,
        query: &[],
        dialect: Dialect::OpenAi,
    },
    Op {
        method: HttpMethod::Get,
        paths: &["/api/v1/usage"],
        tag: "Account",
        summary: "The account's recent requests, newest first",
        keyed: true,
        request: None,
        ok: "UsagePage",
        events: None,
        query: &[("limit", false, "1 to 200 (50)"), ("cursor", false, "`next_cursor` of the previous page")],
        dialect: Dialect::OpenAi,
    },
    Op {
        method: HttpMethod::Get,
        paths: &["/api/v1/generation"],
        tag: "Account",
        summary: "One request by its answer's id or its request id: the exact charge, tokens, latency",
        keyed: true,
        request: None,
        ok: "Generation",
        events: None,
        query: &[("id", true, "`gen-…`, `resp_…`, `msg_…` or the `x-request-id`")],
        dialect: Dialect::OpenAi,
    },
    Op {
        method: HttpMethod::Get,
        paths: &["/api/v1/key"],
        tag: "Account",
        summary: "The calling key: label, limit, usage, rate limit (OpenRouter's shape)",
        keyed: true,
        request: None,
        ok: "KeyInfo",
        events: None,
        query: &[],
        dialect: Dialect::OpenAi,
    },
    Op {
        method: HttpMethod::Get,
        paths: &["/healthz"],
        tag: "Operations",
        summary: "Liveness: the process answers",
        keyed: false,
        request: None,
        ok: "Health",
        events: None,
        query: &[],
        dialect: Dialect::OpenAi,
    },
    Op {
        method: HttpMethod::Get,
        paths: &["/readyz"],
        tag: "Operations",
        summary: "Readiness: the database answers (Redis reported, `degraded` when it is down); 503 when not ready",
        keyed: false,
        request: None,
        ok: "Health",
        events: None,
        query: &[],
        dialect: Dialect::OpenAi,
    },
];

/// `/readyz` says why it is not ready in its own body, not an error envelope.
const READINESS: &str = "/readyz";

/// The error statuses of an operation, with when each happens.
fn errors(op: &Op) -> Vec<(&'static str, &'static str)> {
    let mut out = vec![("400", "A malformed request or field (`param` names it)")];
    if op.keyed {
        out.extend([
            ("401", "Missing, malformed, unknown or deactivated API key"),
            ("402", "Not enough credits"),
            ("403", "Suspended account, or an address blocked after failed authentications"),
            ("429", "Rate limit (`retry-after`, `retry-after-ms`), spend limit or the provider's own"),
        ]);
    }
    if op.request.is_some() {
        out.extend([("408", "The body did not arrive in time"), ("413", "Body too large"), ("415", "Not JSON")]);
    }
    if op.dialect == Dialect::Anthropic {
        out.push(("529", "The provider is overloaded (Anthropic's status for it)"));
    }
    out.extend([
        ("404", "Unknown model or path"),
        ("500", "Internal error (only `request_id` says more, in the server's log)"),
        ("502", "Every route failed; nothing is charged"),
        ("503", "Overloaded, or billing unavailable (`retry-after`)"),
        ("504", "The provider did not answer in time; nothing is charged"),
    ]);
    out
}

fn json_body(schema: &str) -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(Ref::from_schema_name(schema))).build()
}

fn operation(op: &Op) -> utoipa::openapi::path::Operation {
    let mut ok = ResponseBuilder::new().description("The answer").content("application/json", json_body(op.ok));
    if let Some(events) = op.events {
        ok = ok.content("text/event-stream", json_body(events));
    }
    let error_schema = match op.dialect {
        Dialect::OpenAi => "ErrorResponse",
        Dialect::Anthropic => "AnthropicErrorResponse",
    };
    let mut b = OperationBuilder::new().tag(op.tag).summary(Some(op.summary)).response("200", ok.build());
    for (status, why) in errors(op) {
        let schema = if op.paths == [READINESS] && status == "503" { "Health" } else { error_schema };
        b = b.response(status, ResponseBuilder::new().description(why).content("application/json", json_body(schema)));
    }
    if let Some(request) = op.request {
        let body =
            RequestBodyBuilder::new().content("application/json", json_body(request)).required(Some(Required::True));
        b = b.request_body(Some(body.build()));
    }
    for (name, required, about) in op.query {
        let p = ParameterBuilder::new()
            .name(*name)
            .parameter_in(ParameterIn::Query)
            .required(if *required { Required::True } else { Required::False })
            .description(Some(*about))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)));
        b = b.parameter(p);
    }
    if op.keyed {
        let schemes: &[&str] = match op.dialect {
            Dialect::OpenAi => &["bearer"],
            Dialect::Anthropic => &["bearer", "x-api-key"],
        };
        for scheme in schemes {
            b = b.security(SecurityRequirement::new(*scheme, Vec::<String>::new()));
        }
    }
    b.build()
}

/// The document.
pub fn document() -> OpenApi {
    let mut paths = PathsBuilder::new();
    for op in OPS {
        for path in op.paths {
            paths = paths.path(*path, PathItem::new(op.method.clone(), operation(op)));
        }
    }
    let mut doc = Components::openapi();
    doc.info = InfoBuilder::new()
        .title("Layers")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "The metered LLM gateway: OpenAI, Anthropic and OpenRouter clients unchanged, on every provider. \
             Keys are `lyr_live_sk_…` (billed) or `lyr_test_sk_…` (the sandbox).",
        ))
        .build();
    doc.paths = paths.build();
    if let Some(components) = doc.components.as_mut() {
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components
            .add_security_scheme("x-api-key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))));
    }
    doc
}

/// Every path and method the document describes (for the test that compares it with the router).
pub fn described() -> Vec<(&'static str, &'static str)> {
    OPS.iter()
        .flat_map(|op| {
            let method = if op.method == HttpMethod::Get { "GET" } else { "POST" };
            op.paths.iter().map(move |p| (method, *p))
        })
        .collect()
}

pub async fn openapi_json() -> Response {
    static JSON: OnceLock<String> = OnceLock::new();
    let body = JSON.get_or_init(|| document().to_json().unwrap_or_default());
    let mut resp = body.clone().into_response();
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
