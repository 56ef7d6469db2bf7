//! Usage in OpenAI's JSON shape, read from upstream responses and written to clients.
//! Invariant: what is written always carries `prompt_tokens_details.cached_tokens` and
//! `completion_tokens_details.reasoning_tokens` (0 when none), as SPEC §2.1 requires.

use layers_domain::Usage;
use serde::Deserialize;
use serde_json::{json, Value};

/// OpenAI's `usage` object as upstreams send it: a field read here is a typed field, so a
/// renamed one is a compile error; a count that is not a number leaves it out.
#[derive(Debug, Deserialize)]
struct WireUsage {
    prompt_tokens: u64,
    #[serde(default, deserialize_with = "lenient")]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Debug, Deserialize)]
struct PromptDetails {
    #[serde(default, deserialize_with = "lenient")]
    cached_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct CompletionDetails {
    #[serde(default, deserialize_with = "lenient")]
    reasoning_tokens: Option<u64>,
}

/// A count, or nothing when the upstream sent `null` or something that is not a count.
fn lenient<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Value::deserialize(d)?.as_u64())
}

/// Reads an OpenAI `usage` object; `None` when absent, not an object or without a prompt count.
pub fn parse_usage(v: &Value) -> Option<Usage> {
    let u = WireUsage::deserialize(v).ok()?;
    let clamp = |n: Option<u64>| n.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX));
    Some(Usage {
        prompt_tokens: clamp(Some(u.prompt_tokens)),
        completion_tokens: clamp(u.completion_tokens),
        cached_tokens: clamp(u.prompt_tokens_details.and_then(|d| d.cached_tokens)),
        cache_write_tokens: 0,
        reasoning_tokens: clamp(u.completion_tokens_details.and_then(|d| d.reasoning_tokens)),
        images: 0,
    })
}

/// Writes usage in OpenAI's shape, keeping any extra detail fields the upstream sent.
pub fn usage_value(usage: &Usage, upstream: Option<&Value>) -> Value {
    let mut v = upstream.filter(|u| u.is_object()).cloned().unwrap_or_else(|| json!({}));
    // What an upstream (OpenRouter, say) charged the operator is not the client's figure: the
    // gateway writes its own `cost` where it knows the debit.
    if let Some(m) = v.as_object_mut() {
        for key in ["cost", "cost_details", "is_byok"] {
            m.remove(key);
        }
    }
    v["prompt_tokens"] = json!(usage.prompt_tokens);
    v["completion_tokens"] = json!(usage.completion_tokens);
    v["total_tokens"] = json!(usage.total_tokens());
    ensure_object(&mut v, "prompt_tokens_details")["cached_tokens"] = json!(usage.cached_tokens);
    if usage.cache_write_tokens > 0 {
        // Not in OpenAI's schema (its SDKs keep unknown fields); Anthropic bills these apart.
        v["prompt_tokens_details"]["cache_creation_tokens"] = json!(usage.cache_write_tokens);
    }
    ensure_object(&mut v, "completion_tokens_details")["reasoning_tokens"] = json!(usage.reasoning_tokens);
    // The other detail counts OpenAI (and OpenRouter) document, 0 unless the upstream said more.
    let zero_unless_sent = |details: &mut Value, keys: &[&str]| {
        for key in keys {
            if details.get(*key).is_none() {
                details[*key] = json!(0);
            }
        }
    };
    zero_unless_sent(&mut v["prompt_tokens_details"], &["audio_tokens"]);
    zero_unless_sent(
        &mut v["completion_tokens_details"],
        &["audio_tokens", "accepted_prediction_tokens", "rejected_prediction_tokens", "image_tokens"],
    );
    v
}

fn ensure_object<'a>(v: &'a mut Value, key: &str) -> &'a mut Value {
    if !v.get(key).is_some_and(Value::is_object) {
        v[key] = json!({});
    }
    &mut v[key]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_details() {
        let upstream = json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                              "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0}});
        let u = parse_usage(&upstream).unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens, u.cached_tokens, u.reasoning_tokens), (10, 5, 4, 0));
        let out = usage_value(&u, Some(&upstream));
        assert_eq!(out["completion_tokens_details"]["reasoning_tokens"], 0);
        assert_eq!(out["prompt_tokens_details"]["audio_tokens"], 0);
        assert_eq!(out["total_tokens"], 15);
        assert!(parse_usage(&Value::Null).is_none());
        assert!(parse_usage(&json!({"completion_tokens": 3})).is_none(), "no prompt count");
        let odd = parse_usage(&json!({"prompt_tokens": 7, "completion_tokens": null,
            "prompt_tokens_details": {"cached_tokens": "x"}}))
        .unwrap();
        assert_eq!((odd.prompt_tokens, odd.completion_tokens, odd.cached_tokens), (7, 0, 0));
        let bare = usage_value(&u, None);
        assert_eq!(bare["prompt_tokens_details"]["cached_tokens"], 4);
    }
}
