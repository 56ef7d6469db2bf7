//! A non-streamed chat completion: call, meter, and shape the body the client receives.
//! Invariant: the body's `model` is the public model name and its `usage` carries the detail
//! fields SPEC §2.1 requires.

use bytes::Bytes;
use layers_domain::{MicroCredits, Usage};
use layers_providers::usage_json::usage_value;
use layers_providers::Completion;
use serde_json::{json, Map, Value};

use super::meter::{Ending, Meter};
use super::routing::Candidate;
use super::{ChatReply, Credits, ReplyBody, Route};

/// Shapes a completion a route returned, after metering it.
pub(super) fn finish(
    route: &Route,
    candidate: &Candidate,
    completion: Completion,
    mut meter: Meter,
    mut credits: Credits,
) -> ChatReply {
    let generated = generated_bytes(&completion.body);
    let upstream_usage = completion.body.get("usage").cloned();
    let metered = meter.finish(Ending::Completed { usage: completion.usage, generated_bytes: generated });
    let latency_ms = route.started.elapsed().as_millis() as u64;
    let body = shape_body(
        completion,
        route.entry.name(),
        &metered.usage,
        upstream_usage.as_ref(),
        metered.charged,
        latency_ms,
    );
    if credits.billed {
        credits.charged = Some(metered.charged);
        credits.remaining = metered.remaining;
    }
    ChatReply { provider: candidate.provider.clone(), credits, body: ReplyBody::Json(body) }
}

fn shape_body(
    completion: Completion,
    public_model: &str,
    usage: &Usage,
    upstream_usage: Option<&Value>,
    cost: MicroCredits,
    latency_ms: u64,
) -> Bytes {
    let mut body = completion.body;
    body.insert("model".into(), json!(public_model));
    body.insert("usage".into(), usage_value(usage, upstream_usage));
    let mut layers = Map::new();
    layers.insert("credits_used".into(), credits_json(cost));
    layers.insert("latency_ms".into(), json!(latency_ms));
    if let Some(reasoning) = reasoning_of(&body) {
        layers.insert("reasoning".into(), json!(reasoning));
    }
    body.insert("layers".into(), Value::Object(layers));
    // Serialising a map of JSON values cannot fail.
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

/// Credits as a JSON number (display only; the ledger keeps exact integers).
pub(super) fn credits_json(cost: MicroCredits) -> Value {
    json!(cost.0 as f64 / layers_domain::money::MICROS_PER_CREDIT as f64)
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
