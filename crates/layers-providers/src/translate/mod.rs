//! The OpenAI chat request as the native translations read it: refusals naming the parameter,
//! typed views of its pieces (`messages`, `options`), and the option objects (`anthropic`,
//! `google`, `openai`) with the fields the gateway decides. Invariant: a field is read through a
//! typed struct, never by a string key, so a renamed one is a compile error; a malformed piece is
//! a 400 naming where it is, never a guess. Messages never quote the client's values (they may be
//! prompt text).

mod messages;
mod options;

pub use messages::{image_url, push_turn, MessageFields, ThinkingBlock, ToolCall, Turn};
pub use options::{
    effort_budget, function_tools, number, response_format, stop_sequences, thinking, tool_choice, FunctionTool,
    ResponseFormat, Thinking, ToolChoice,
};

use serde::de::value::MapDeserializer;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::ProviderError;

/// A 400 naming the parameter the provider cannot honour.
pub fn unsupported(param: &str, message: &str) -> ProviderError {
    ProviderError::Unsupported { param: param.to_owned(), message: message.to_owned() }
}

/// Reads `de` as `T`; a missing or mistyped field is a 400 naming its path under `param`. The
/// message never quotes the client's value (it may be prompt text).
pub(crate) fn typed<'de, T, D>(de: D, param: &str) -> Result<T, ProviderError>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de, Error = serde_json::Error>,
{
    serde_path_to_error::deserialize(de).map_err(|e| {
        let inner = e.inner().to_string();
        let inner = inner.split(" at line ").next().unwrap_or_default();
        // A missing field is named itself; serde reports it at its parent.
        let missing = inner.strip_prefix("missing field `").and_then(|r| r.strip_suffix('`'));
        let mut here = match e.path().to_string().as_str() {
            "." => param.to_owned(),
            p if param.is_empty() || p.starts_with('[') => format!("{param}{p}"),
            p => format!("{param}.{p}"),
        };
        if let Some(name) = missing {
            here = if here.is_empty() { name.to_owned() } else { format!("{here}.{name}") };
        }
        let here = if here.is_empty() { "body".to_owned() } else { here };
        let message = match missing {
            Some(_) => format!("`{here}` is required"),
            // A tag the format does not know (names a kind, never content).
            None if inner.starts_with("unknown variant") => format!("`{here}`: {inner}"),
            None => format!("`{here}` is malformed or has the wrong type"),
        };
        unsupported(&here, &message)
    })
}

/// A JSON object's fields as a serde deserializer (to read a `Map` as a typed struct without
/// copying it).
pub(crate) fn map_de(
    map: &Map<String, Value>,
) -> MapDeserializer<'_, impl Iterator<Item = (&str, &Value)>, serde_json::Error> {
    MapDeserializer::new(map.iter().map(|(k, v)| (k.as_str(), v)))
}

/// The JSON of a request body, with a client's provider option object laid over it last by
/// `lay` (its fields win; one key goes out, never two). `None`: nothing to lay, the body as is.
pub(crate) fn encode_laid_over<T: serde::Serialize>(
    body: &T,
    lay: Option<impl FnOnce(&mut Map<String, Value>)>,
) -> Result<Vec<u8>, ProviderError> {
    let encoding = || ProviderError::Protocol("request could not be encoded");
    let Some(lay) = lay else { return serde_json::to_vec(body).map_err(|_| encoding()) };
    let Value::Object(mut map) = serde_json::to_value(body).map_err(|_| encoding())? else {
        return Err(encoding());
    };
    lay(&mut map);
    serde_json::to_vec(&map).map_err(|_| encoding())
}

/// Reads a request field's value as `T` (see [`typed`]).
pub fn field<T: DeserializeOwned>(value: &Value, param: &str) -> Result<T, ProviderError> {
    typed(value, param)
}

/// A `data:` URL split into media type and base64 data; `None` when `url` is not a data URL.
pub fn data_url<'a>(url: &'a str, param: &str) -> Option<Result<(&'a str, &'a str), ProviderError>> {
    let rest = url.strip_prefix("data:")?;
    Some(
        rest.split_once(";base64,")
            .ok_or_else(|| unsupported(param, "a `data:` image URL must be base64 (`data:image/png;base64,…`)")),
    )
}

/// Fields of a per-provider option object (`anthropic`, `openai`, `google`) that the gateway
/// decides: the model (what is billed), the output cap (what the hold covers), the content
/// (what the limits checked), the streaming mode, and anything the provider bills beside
/// tokens. An option object may not set them.
const PROTECTED: [&str; 28] = [
    "model",
    "messages",
    "system",
    "contents",
    "systemInstruction",
    "max_tokens",
    "max_completion_tokens",
    "maxOutputTokens",
    "stream",
    "stream_options",
    "n",
    "candidateCount",
    "generationConfig.maxOutputTokens",
    "generationConfig.candidateCount",
    "generationConfig.thinkingConfig",
    "generationConfig.responseModalities",
    // What the provider bills beside tokens, which the hold must have counted: server tools
    // (web search, code execution), search options and tiers of service.
    "tools",
    "tool_choice",
    "toolConfig",
    "service_tier",
    "web_search_options",
    "search_context_size",
    "modalities",
    "audio",
    "prediction",
    // Output the hold cannot bound, and content of the operator's account.
    "thinkingConfig",
    "cachedContent",
    "file_id",
];

/// The option object `name` as a map, refusing fields the gateway decides.
pub fn option_object<'a>(name: &str, value: &'a Value) -> Result<&'a serde_json::Map<String, Value>, ProviderError> {
    let opts = value
        .as_object()
        .ok_or_else(|| unsupported(name, &format!("`{name}` must be an object of provider fields")))?;
    for (k, v) in opts {
        let nested = v.as_object().into_iter().flat_map(|o| o.keys().map(move |inner| format!("{k}.{inner}")));
        if let Some(field) = std::iter::once(k.clone()).chain(nested).find(|f| PROTECTED.contains(&f.as_str())) {
            return Err(unsupported(
                &format!("{name}.{field}"),
                &format!(
                    "`{field}` is set by the gateway from the request itself and cannot be overridden in `{name}`"
                ),
            ));
        }
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_malformed_piece_is_named_by_its_path_without_quoting_it() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Call {
            id: String,
            function: Function,
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Function {
            name: String,
        }
        let secret = "my prompt text";
        match field::<Vec<Call>>(
            &json!([{"id": "a", "function": {"name": "f"}}, {"id": "b", "function": {"name": secret}},
            {"id": "c", "function": {"name": ["x", secret]}}]),
            "messages[3].tool_calls",
        ) {
            Err(ProviderError::Unsupported { param, message }) => {
                assert_eq!(param, "messages[3].tool_calls[2].function.name");
                assert!(!message.contains(secret), "{message}");
            }
            other => panic!("{other:?}"),
        }
        match field::<Call>(&json!({"function": {"name": "f"}}), "tool_calls[0]") {
            Err(ProviderError::Unsupported { param, message }) => {
                assert_eq!(param, "tool_calls[0].id");
                assert!(message.contains("is required"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn option_objects_cannot_override_what_is_billed_or_checked() {
        assert!(option_object("anthropic", &json!({"top_k": 5, "metadata": {"user_id": "u"}})).is_ok());
        for bad in [
            json!({"model": "claude-opus-4-1"}),
            json!({"max_tokens": 99999}),
            json!({"messages": []}),
            json!({"generationConfig": {"maxOutputTokens": 9}}),
            json!({"stream": false}),
            json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            json!({"tool_choice": "auto"}),
            json!({"service_tier": "priority"}),
            json!({"web_search_options": {}}),
            json!({"generationConfig": {"thinkingConfig": {"thinkingBudget": 90000}}}),
            json!({"cachedContent": "cachedContents/abc"}),
        ] {
            match option_object("x", &bad) {
                Err(ProviderError::Unsupported { param, .. }) => assert!(param.starts_with("x."), "{param}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(option_object("x", &json!(3)).is_err());
    }
}
