//! Checks of a chat request against the input limits and the model (SPEC §2.3), and of every
//! field that changes what the provider bills (SPEC §4.2: the hold must cover it). Invariant:
//! every refusal names the offending field in `param`; a field that would make the provider
//! bill something the hold did not count is priced or refused, never passed on.

use layers_domain::limits::RequestLimits;
use layers_domain::{MicroCredits, SearchContextSize};
use layers_providers::chat::MessageContent;
use layers_providers::ChatRequest;
use serde_json::Value;

use super::ChatError;
use crate::catalogue::ModelEntry;
use crate::codes::ErrorCode;

fn invalid(param: impl Into<String>, message: impl Into<String>) -> ChatError {
    ChatError::Invalid { message: message.into(), param: Some(param.into()), code: ErrorCode::InvalidValue }
}

fn unsupported(param: impl Into<String>, message: impl Into<String>) -> ChatError {
    ChatError::Invalid { message: message.into(), param: Some(param.into()), code: ErrorCode::UnsupportedParameter }
}

pub(super) fn check_limits(req: &ChatRequest, limits: &RequestLimits) -> Result<(), ChatError> {
    let violation = |v: layers_domain::limits::LimitViolation| invalid(v.param(), v.to_string());
    limits.check_message_count(req.messages.len()).map_err(violation)?;
    for (i, m) in req.messages.iter().enumerate() {
        limits.check_message_chars(i, m.text_chars()).map_err(violation)?;
    }
    Ok(())
}

pub(super) fn check_against_model(req: &mut ChatRequest, model: &ModelEntry) -> Result<(), ChatError> {
    let max = model.spec.max_output_tokens;
    let fields = [("max_tokens", req.max_tokens), ("max_completion_tokens", req.max_completion_tokens)];
    for (param, value) in fields {
        match value {
            Some(0) => return Err(invalid(param, format!("{param} must be at least 1"))),
            Some(v) if max > 0 && v > max => {
                return Err(invalid(
                    param,
                    format!("{param} is too large: {v}. {} supports at most {max} completion tokens", model.name()),
                ))
            }
            _ => {}
        }
    }
    // Both caps given: the smaller one is what the provider gets and what the hold covers.
    if let (Some(a), Some(b)) = (req.max_tokens, req.max_completion_tokens) {
        let n = a.min(b);
        req.max_tokens = Some(n);
        req.max_completion_tokens = Some(n);
    }
    if req.n.is_some_and(|n| n == 0 || n > 8) {
        return Err(invalid("n", "n must be between 1 and 8"));
    }
    check_parts(req)?;
    check_billed_fields(req)
}

/// Content parts the gateway can bound: text, images, and documents sent inline.
fn check_parts(req: &ChatRequest) -> Result<(), ChatError> {
    for (i, m) in req.messages.iter().enumerate() {
        let Some(MessageContent::Parts(parts)) = &m.content else { continue };
        for (j, part) in parts.iter().enumerate() {
            let here = format!("messages[{i}].content[{j}]");
            match part.kind.as_str() {
                "text" | "image_url" => {}
                "file" => {
                    let file = part.extra.get("file");
                    if file.and_then(|f| f.get("file_id")).is_some() {
                        return Err(unsupported(
                            format!("{here}.file.file_id"),
                            "files are sent inline (`file.file_data`); uploaded file ids are not accepted",
                        ));
                    }
                    if !file.and_then(|f| f.get("file_data")).is_some_and(Value::is_string) {
                        return Err(invalid(format!("{here}.file"), "a `file` part needs `file.file_data`"));
                    }
                }
                "input_audio" => {
                    return Err(unsupported(
                        &here,
                        "audio input is not offered: its price is not in this deployment's catalogue",
                    ))
                }
                other => {
                    return Err(unsupported(
                        &here,
                        format!("content parts of type `{}` are not supported", printable(other)),
                    ))
                }
            }
        }
    }
    Ok(())
}

/// Fields that make the provider bill more than tokens: audio output and service tiers are
/// refused; web search is priced by the model's search fees or refused.
fn check_billed_fields(req: &ChatRequest) -> Result<(), ChatError> {
    if let Some(tier) = req.extra.get("service_tier").filter(|v| !v.is_null()) {
        if !matches!(tier.as_str(), Some("auto" | "default")) {
            return Err(unsupported(
                "service_tier",
                "only the default service tier is offered (`auto` or `default`); other tiers are priced differently",
            ));
        }
    }
    // Option objects go only to their provider, but may never carry what the hold did not
    // count, whichever route serves the request.
    for name in ["anthropic", "openai", "google"] {
        if let Some(v) = req.extra.get(name).filter(|v| !v.is_null()) {
            layers_providers::translate::option_object(name, v).map_err(|e| match e {
                layers_providers::ProviderError::Unsupported { param, message } => unsupported(param, message),
                other => invalid(name, other.to_string()),
            })?;
        }
    }
    if req.extra.get("prediction").is_some_and(|v| !v.is_null()) {
        // Rejected prediction tokens are billed as output, beyond what max_tokens bounds.
        return Err(unsupported(
            "prediction",
            "predicted outputs are not offered: the hold cannot bound what they cost",
        ));
    }
    if let Some(beta) = &req.anthropic_beta {
        check_betas(beta)?;
    }
    let audio = req.extra.get("audio").is_some_and(|v| !v.is_null())
        || req.extra.get("modalities").and_then(Value::as_array).is_some_and(|m| m.iter().any(|x| x == "audio"));
    if audio {
        return Err(unsupported("modalities", "audio output is not offered: its price is not in the catalogue"));
    }
    Ok(())
}

/// Anthropic beta features passed on to Anthropic routes: only those that do not change what a
/// request can cost beyond its hold (a longer context window, one-hour cache writes at twice
/// the input rate, server tools, uploaded files would).
/// Claude Code sends `claude-code-`, `context-management-` and the thinking and streaming
/// betas on every call.
const PRICE_NEUTRAL_BETAS: [&str; 9] = [
    "interleaved-thinking-",
    "fine-grained-tool-streaming-",
    "token-efficient-tools-",
    "output-128k-",
    "claude-code-",
    "context-management-",
    "effort-",
    "structured-outputs-",
    "token-counting-",
];

fn check_betas(header: &str) -> Result<(), ChatError> {
    for beta in header.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        if !PRICE_NEUTRAL_BETAS.iter().any(|p| beta.starts_with(p)) {
            return Err(unsupported(
                "anthropic-beta",
                format!(
                    "the Anthropic beta `{}` is not offered: it changes what a request can cost beyond its hold",
                    printable(beta)
                ),
            ));
        }
    }
    Ok(())
}

/// The per-request fee of a request that searches the web on this model, or a refusal when it
/// asks to search and the model has no search price here.
pub(super) fn search_fee(req: &ChatRequest, model: &ModelEntry) -> Result<MicroCredits, ChatError> {
    let asked = req.extra.get("web_search").and_then(Value::as_bool);
    let options = req.extra.get("web_search_options").filter(|v| !v.is_null());
    let size = match options.and_then(|o| o.get("search_context_size")) {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_str().and_then(SearchContextSize::parse).ok_or_else(|| {
            invalid("web_search_options.search_context_size", "`search_context_size` must be low, medium or high")
        })?),
    };
    let by_default = model.search_fees.is_some_and(|f| f.by_default);
    let searches = match asked {
        Some(false) => false,
        Some(true) => true,
        None => by_default || options.is_some(),
    };
    if !searches {
        return Ok(MicroCredits::ZERO);
    }
    let param = if options.is_some() { "web_search_options" } else { "web_search" };
    let fees = model
        .search_fees
        .ok_or_else(|| unsupported(param, "web search is not offered on this model: it has no search price here"))?;
    Ok(fees.fee(size))
}

/// A name as the client sent it, safe to echo (bounded, printable).
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(v: Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    fn param_of(err: ChatError) -> String {
        match err {
            ChatError::Invalid { param, .. } => param.unwrap_or_default(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parts_a_hold_cannot_bound_are_refused_by_name() {
        let msg = |part: Value| req(json!({"model": "m", "messages": [{"role": "user", "content": [part]}]}));
        assert!(check_parts(&msg(json!({"type": "text", "text": "hi"}))).is_ok());
        assert!(check_parts(&msg(json!({"type": "file", "file": {"file_data": "data:application/pdf;base64,AAA"}})))
            .is_ok());
        let bad = [
            (json!({"type": "file", "file": {"file_id": "file-abc"}}), "messages[0].content[0].file.file_id"),
            (json!({"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}), "messages[0].content[0]"),
            (json!({"type": "video_url"}), "messages[0].content[0]"),
        ];
        for (part, param) in bad {
            assert_eq!(param_of(check_parts(&msg(part)).unwrap_err()), param);
        }
    }

    #[test]
    fn billed_fields_are_refused_unless_priced() {
        let with = |extra: Value| {
            let mut v = json!({"model": "m", "messages": []});
            v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            req(v)
        };
        assert!(check_billed_fields(&with(json!({"service_tier": "auto"}))).is_ok());
        assert_eq!(
            param_of(check_billed_fields(&with(json!({"service_tier": "priority"}))).unwrap_err()),
            "service_tier"
        );
        assert_eq!(
            param_of(check_billed_fields(&with(json!({"modalities": ["text", "audio"]}))).unwrap_err()),
            "modalities"
        );
    }
}
