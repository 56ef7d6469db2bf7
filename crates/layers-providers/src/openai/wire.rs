//! The request body sent to an OpenAI-compatible upstream: the client's request with the
//! upstream model id and, when streaming, `stream_options.include_usage = true`; the gateway's
//! own chat extras (SPEC §2.1) become what this upstream understands, or a 400 naming them.

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::chat::{ChatMessage, ChatRequest, StreamOptions};
use crate::error::ProviderError;
use crate::translate::unsupported;

/// Which OpenAI-compatible upstream this is, where their dialects differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flavor {
    /// api.openai.com: `max_completion_tokens`, `web_search_options`.
    OpenAi,
    /// api.perplexity.ai: searches by default, `search_domain_filter`, `disable_search`.
    Perplexity,
    Generic,
}

impl Flavor {
    pub(super) fn of(base_url: &str) -> Flavor {
        if base_url.contains("://api.openai.com") {
            Flavor::OpenAi
        } else if base_url.contains("perplexity.ai") {
            Flavor::Perplexity
        } else {
            Flavor::Generic
        }
    }
}

/// The client's extra fields as this upstream should get them.
pub(super) fn upstream_extras(extra: &Map<String, Value>, flavor: Flavor) -> Result<Map<String, Value>, ProviderError> {
    let mut out = Map::new();
    for (key, value) in extra {
        match key.as_str() {
            // Prompt caching is automatic (or absent) on OpenAI-compatible upstreams.
            "cache" | "anthropic" | "google" => {}
            "openai" => {
                out.extend(crate::translate::option_object("openai", value)?.clone());
            }
            "thinking" if value.is_null() => {}
            "thinking" => {
                let budget = match crate::translate::thinking(value) {
                    Ok(t) if t.kind == "disabled" => continue,
                    Ok(crate::translate::Thinking { kind, budget_tokens: Some(budget) }) if kind == "enabled" => budget,
                    _ => {
                        return Err(unsupported(
                            "thinking",
                            "`thinking` must be {\"type\":\"enabled\",\"budget_tokens\":N}",
                        ))
                    }
                };
                if !extra.contains_key("reasoning_effort") {
                    let effort = match budget {
                        0..=2048 => "low",
                        2049..=8192 => "medium",
                        _ => "high",
                    };
                    out.insert("reasoning_effort".into(), json!(effort));
                }
            }
            "web_search" => match (value, flavor) {
                (Value::Null, _) | (Value::Bool(false), Flavor::OpenAi | Flavor::Generic) => {}
                // Perplexity searches unless told not to.
                (Value::Bool(true), Flavor::Perplexity) => {}
                (Value::Bool(false), Flavor::Perplexity) => {
                    out.insert("disable_search".into(), json!(true));
                }
                (Value::Bool(true), Flavor::OpenAi) => {
                    out.insert("web_search_options".into(), json!({}));
                }
                (Value::Bool(true), Flavor::Generic) => {
                    return Err(unsupported("web_search", "web search is not available on this model's provider"))
                }
                _ => return Err(unsupported("web_search", "`web_search` must be true or false")),
            },
            "search_domains" => {
                if flavor != Flavor::Perplexity {
                    return Err(unsupported("search_domains", "`search_domains` is supported on Perplexity models"));
                }
                let ok = value.as_array().is_some_and(|a| a.len() <= 20 && a.iter().all(Value::is_string));
                if !ok {
                    return Err(unsupported("search_domains", "`search_domains` must be up to 20 domain strings"));
                }
                out.insert("search_domain_filter".into(), value.clone());
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(out)
}

#[derive(Serialize)]
struct Outgoing<'a> {
    model: &'a str,
    messages: std::borrow::Cow<'a, [ChatMessage]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<u32>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

/// The messages without Anthropic's signed `thinking_blocks` (carried for Anthropic routes;
/// OpenAI-compatible servers refuse fields they do not know).
fn without_thinking_blocks(messages: &[ChatMessage]) -> std::borrow::Cow<'_, [ChatMessage]> {
    if !messages.iter().any(|m| m.extra.contains_key("thinking_blocks")) {
        return std::borrow::Cow::Borrowed(messages);
    }
    let mut owned = messages.to_vec();
    for m in &mut owned {
        m.extra.remove("thinking_blocks");
    }
    std::borrow::Cow::Owned(owned)
}

/// The request body. A cap the gateway set goes out as `max_completion_tokens` to OpenAI itself
/// (its reasoning models refuse `max_tokens`) and as `max_tokens` elsewhere (what every
/// OpenAI-compatible server understands).
pub(super) fn outgoing_body(
    req: &ChatRequest,
    upstream_model: &str,
    stream: bool,
    flavor: Flavor,
) -> Result<Vec<u8>, ProviderError> {
    let prefer_completion_tokens = flavor == Flavor::OpenAi;
    let (mut max_tokens, mut max_completion_tokens) = (req.max_tokens, req.max_completion_tokens);
    if let Some(cap) = req.gateway_output_cap.filter(|_| max_tokens.is_none() && max_completion_tokens.is_none()) {
        if prefer_completion_tokens {
            max_completion_tokens = Some(cap);
        } else {
            max_tokens = Some(cap);
        }
    }
    let stream_options = if stream {
        let mut opts = req.stream_options.clone().unwrap_or_default();
        opts.include_usage = Some(true);
        Some(opts)
    } else {
        None
    };
    serde_json::to_vec(&Outgoing {
        model: upstream_model,
        messages: without_thinking_blocks(&req.messages),
        stream: stream.then_some(true),
        stream_options,
        max_tokens,
        max_completion_tokens,
        n: req.n,
        extra: upstream_extras(&req.extra, flavor)?,
    })
    .map_err(|_| ProviderError::Protocol("request could not be encoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_model_and_asks_for_usage() {
        let req: ChatRequest = serde_json::from_str(
            r#"{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true,"temperature":0.5}"#,
        )
        .unwrap();
        let body: Value =
            serde_json::from_slice(&outgoing_body(&req, "gpt-4o-mini", true, Flavor::Generic).unwrap()).unwrap();
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["temperature"], 0.5);
        let plain: Value =
            serde_json::from_slice(&outgoing_body(&req, "gpt-4o-mini", false, Flavor::Generic).unwrap()).unwrap();
        assert!(plain.get("stream").is_none() && plain.get("stream_options").is_none());
        assert!(plain.get("max_tokens").is_none());
    }

    #[test]
    fn a_gateway_cap_uses_the_upstreams_parameter() {
        let mut req: ChatRequest =
            serde_json::from_str(r#"{"model":"a/b","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        req.lower_output_cap(100);
        let other: Value = serde_json::from_slice(&outgoing_body(&req, "m", false, Flavor::Generic).unwrap()).unwrap();
        assert_eq!((other["max_tokens"].as_u64(), other.get("max_completion_tokens")), (Some(100), None));
        let openai: Value = serde_json::from_slice(&outgoing_body(&req, "m", false, Flavor::OpenAi).unwrap()).unwrap();
        assert_eq!((openai.get("max_tokens"), openai["max_completion_tokens"].as_u64()), (None, Some(100)));
        let mut explicit: ChatRequest =
            serde_json::from_str(r#"{"model":"a/b","max_tokens":500,"messages":[{"role":"user","content":"hi"}]}"#)
                .unwrap();
        explicit.lower_output_cap(200);
        let v: Value = serde_json::from_slice(&outgoing_body(&explicit, "m", false, Flavor::OpenAi).unwrap()).unwrap();
        assert_eq!(v["max_tokens"], 200, "the client's own field is lowered");
    }

    #[test]
    fn the_gateways_extras_become_each_upstreams_dialect() {
        let extra = |v: Value| v.as_object().unwrap().clone();
        let out = upstream_extras(
            &extra(json!({"cache": true, "anthropic": {"top_k": 1}, "openai": {"store": false, "seed": 4},
                          "thinking": {"type": "enabled", "budget_tokens": 5000}, "temperature": 0.1})),
            Flavor::OpenAi,
        )
        .unwrap();
        assert_eq!(
            Value::Object(out),
            json!({"store": false, "seed": 4, "reasoning_effort": "medium", "temperature": 0.1})
        );
        let px =
            upstream_extras(&extra(json!({"web_search": true, "search_domains": ["arxiv.org"]})), Flavor::Perplexity)
                .unwrap();
        assert_eq!(Value::Object(px), json!({"search_domain_filter": ["arxiv.org"]}));
        let off = upstream_extras(&extra(json!({"web_search": false})), Flavor::Perplexity).unwrap();
        assert_eq!(Value::Object(off), json!({"disable_search": true}));
        let oa = upstream_extras(&extra(json!({"web_search": true})), Flavor::OpenAi).unwrap();
        assert_eq!(Value::Object(oa), json!({"web_search_options": {}}));
        let refused = |v: Value, f| match upstream_extras(&extra(v), f) {
            Err(ProviderError::Unsupported { param, .. }) => param,
            other => panic!("{other:?}"),
        };
        assert_eq!(refused(json!({"web_search": true}), Flavor::Generic), "web_search");
        assert_eq!(refused(json!({"search_domains": ["a.com"]}), Flavor::OpenAi), "search_domains");
        assert_eq!(refused(json!({"openai": 3}), Flavor::Generic), "openai");
    }
}
