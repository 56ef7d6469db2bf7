//! Usage in OpenAI's JSON shape, read from upstream responses and written to clients.
//! Invariant: what is written always carries `prompt_tokens_details.cached_tokens` and
//! `completion_tokens_details.reasoning_tokens` (0 when none), as SPEC §2.1 requires.

use layers_domain::Usage;
use serde_json::{json, Value};

/// Reads an OpenAI `usage` object; `None` when absent or not an object.
pub fn parse_usage(v: &Value) -> Option<Usage> {
    let obj = v.as_object()?;
    let num = |v: Option<&Value>| v.and_then(Value::as_u64).map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    let prompt = num(obj.get("prompt_tokens"))?;
    let completion = num(obj.get("completion_tokens")).unwrap_or(0);
    let cached = num(obj.get("prompt_tokens_details").and_then(|d| d.get("cached_tokens"))).unwrap_or(0);
    let reasoning = num(obj.get("completion_tokens_details").and_then(|d| d.get("reasoning_tokens"))).unwrap_or(0);
    Some(Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        cached_tokens: cached,
        cache_write_tokens: 0,
        reasoning_tokens: reasoning,
        images: 0,
    })
}

/// Writes usage in OpenAI's shape, keeping any extra detail fields the upstream sent.
pub fn usage_value(usage: &Usage, upstream: Option<&Value>) -> Value {
    let mut v = upstream.filter(|u| u.is_object()).cloned().unwrap_or_else(|| json!({}));
    v["prompt_tokens"] = json!(usage.prompt_tokens);
    v["completion_tokens"] = json!(usage.completion_tokens);
    v["total_tokens"] = json!(usage.total_tokens());
    ensure_object(&mut v, "prompt_tokens_details")["cached_tokens"] = json!(usage.cached_tokens);
    if usage.cache_write_tokens > 0 {
        // Not in OpenAI's schema (its SDKs keep unknown fields); Anthropic bills these apart.
        v["prompt_tokens_details"]["cache_creation_tokens"] = json!(usage.cache_write_tokens);
    }
    ensure_object(&mut v, "completion_tokens_details")["reasoning_tokens"] = json!(usage.reasoning_tokens);
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
        let bare = usage_value(&u, None);
        assert_eq!(bare["prompt_tokens_details"]["cached_tokens"], 4);
    }
}
