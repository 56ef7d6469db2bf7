//! A non-streamed chat completion: meter it and shape the body the client receives.
//! Invariant: the body's `model` is the public model name, its `usage` carries the detail fields
//! SPEC §2.1 requires, and `layers.credits_used` is exactly the request's debit, in decimal
//! (money never leaves as a binary float).

use bytes::Bytes;
use layers_domain::{MicroCredits, Usage};
use layers_providers::usage_json::usage_value;
use layers_providers::Completion;
use serde_json::{json, Map, Value};

use super::meter::{Ending, Meter};
use super::routing::Candidate;
use super::{ChatReply, Credits, ReplyBody, Route};

/// Meters a completion a route returned and shapes it. `client_gone`: nobody will read it (the
/// usage row says so), but it is charged, since the provider produced it.
pub(super) fn finish(
    route: &Route,
    candidate: &Candidate,
    completion: Completion,
    mut meter: Meter,
    mut credits: Credits,
    client_gone: bool,
    request_id: &str,
) -> ChatReply {
    let generated = generated_bytes(&completion.body);
    let upstream_usage = completion.body.get("usage").cloned();
    let (usage, generated_bytes) = (completion.usage, generated);
    let metered = meter.finish(if client_gone {
        Ending::ClientGone { usage, generated_bytes, complete: true }
    } else {
        Ending::Completed { usage, generated_bytes }
    });
    let latency_ms = route.started.elapsed().as_millis() as u64;
    let names = Names { request_id, provider: &candidate.provider, public_model: route.entry.name() };
    let body = shape_body(completion, &names, &metered.usage, upstream_usage.as_ref(), metered.charged, latency_ms);
    if credits.billed {
        credits.charged = Some(metered.charged);
        credits.remaining = metered.remaining;
    }
    ChatReply { provider: candidate.provider.clone(), credits, body: ReplyBody::Json(body) }
}

/// What the body names: its request (for its id), provider and public model.
struct Names<'a> {
    request_id: &'a str,
    provider: &'a str,
    public_model: &'a str,
}

fn shape_body(
    completion: Completion,
    names: &Names<'_>,
    usage: &Usage,
    upstream_usage: Option<&Value>,
    charged: MicroCredits,
    latency_ms: u64,
) -> Bytes {
    let mut body = completion.body;
    body.insert("id".into(), json!(answer_id(names.request_id)));
    body.insert("provider".into(), json!(names.provider));
    body.insert("model".into(), json!(names.public_model));
    let mut usage = usage_value(usage, upstream_usage);
    add_cost(&mut usage, charged);
    body.insert("usage".into(), usage);
    openrouter_choice_fields(&mut body, "message");
    let reasoning = reasoning_of(&body);
    body.insert("layers".into(), layers_object(charged, latency_ms, reasoning));
    // Serialising a map of JSON values cannot fail.
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

/// OpenRouter's fields of each choice: `native_finish_reason` (null: the provider's own reason
/// is translated away) and, in a message, `reasoning` (its reasoning text, or null).
pub(super) fn openrouter_choice_fields(body: &mut Map<String, Value>, message_key: &str) {
    let Some(Value::Array(choices)) = body.get_mut("choices") else { return };
    for choice in choices.iter_mut().filter_map(Value::as_object_mut) {
        choice.entry("native_finish_reason").or_insert(Value::Null);
        if let Some(Value::Object(m)) = choice.get_mut(message_key) {
            if !m.contains_key("reasoning") && message_key == "message" {
                let text = m.get("reasoning_content").cloned().unwrap_or(Value::Null);
                m.insert("reasoning".into(), text);
            }
        }
    }
}

/// The id of a chat answer, whichever provider made it: `gen-` and the request id, so
/// `GET /api/v1/generation?id=` finds it as OpenRouter's clients ask (by the answer's id).
pub(super) fn answer_id(request_id: &str) -> String {
    format!("gen-{request_id}")
}

/// OpenRouter's usage accounting: `cost`, the request's exact debit in US$ (a JSON number, as
/// OpenRouter's clients read it; the same figure as `layers.credits_used`), and `is_byok`.
pub(super) fn add_cost(usage: &mut Value, charged: MicroCredits) {
    if let Value::Object(u) = usage {
        u.insert("cost".into(), json!(charged.usd_number()));
        u.insert("is_byok".into(), json!(false));
        // What the provider itself charged is the operator's business, not the client's.
        u.insert("cost_details".into(), json!({"upstream_inference_cost": null}));
    }
}

/// The `layers` object of a response: the exact charge (decimal credits, and micro-credits),
/// the gateway's latency and the reasoning text when there is any.
pub(super) fn layers_object(charged: MicroCredits, latency_ms: u64, reasoning: Option<String>) -> Value {
    let mut layers = Map::new();
    layers.insert("credits_used".into(), json!(charged.to_string()));
    layers.insert("credits_used_micros".into(), json!(charged.0));
    layers.insert("latency_ms".into(), json!(latency_ms));
    if let Some(reasoning) = reasoning {
        layers.insert("reasoning".into(), json!(reasoning));
    }
    Value::Object(layers)
}

fn choices(body: &Map<String, Value>) -> impl Iterator<Item = &Value> {
    body.get("choices").and_then(Value::as_array).into_iter().flatten()
}

fn generated_bytes(body: &Map<String, Value>) -> usize {
    choices(body)
        .filter_map(|c| c.get("message"))
        .map(|m| {
            let text = m.get("content").and_then(Value::as_str).map_or(0, str::len);
            let calls = m.get("tool_calls").map_or(0, |t| t.to_string().len());
            text + calls
        })
        .sum()
}

/// Reasoning text some upstreams return beside the answer (`reasoning_content`, `reasoning`).
fn reasoning_of(body: &Map<String, Value>) -> Option<String> {
    let parts: Vec<&str> = choices(body)
        .filter_map(|c| c.get("message"))
        .filter_map(|m| m.get("reasoning_content").or_else(|| m.get("reasoning")).and_then(Value::as_str))
        .collect();
    (!parts.is_empty()).then(|| parts.join("\n"))
}
