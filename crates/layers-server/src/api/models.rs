//! `GET /v1/models` and `GET /api/v1/models`: one list, each model an OpenAI `Model` object
//! (`id`, `object`, `created`, `owned_by`) that is also an OpenRouter model object (`name`,
//! `canonical_slug`, `description`, `context_length`, `architecture`, `pricing` as exact
//! decimal strings of US$ per token, `top_provider`, `per_request_limits`,
//! `supported_parameters`), so clients of either read it unchanged.

use axum::extract::State;
use axum::Json;
use layers_core::catalogue::ModelEntry;
use layers_domain::{ModelKind, Rate};
use serde_json::{json, Value};

use crate::state::AppState;

/// The request parameters every chat model takes here (translated where the provider's API
/// differs; a provider that cannot honour one answers a 400 naming it).
const CHAT_PARAMETERS: [&str; 12] = [
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "reasoning_effort",
    "frequency_penalty",
    "presence_penalty",
];

pub async fn list_models(State(state): State<AppState>) -> Json<Value> {
    let data: Vec<Value> = state.core.catalogue.served().map(|m| model_object(m)).collect();
    Json(json!({"object": "list", "data": data}))
}

fn model_object(m: &ModelEntry) -> Value {
    let p = &m.price;
    let (inputs, outputs): (Vec<&str>, Vec<&str>) = match m.spec.kind {
        ModelKind::Chat => {
            let mut inputs = vec!["text"];
            if m.spec.image_input_tokens.is_some() {
                inputs.push("image");
            }
            if m.spec.file_tokens.is_some() {
                inputs.push("file");
            }
            (inputs, vec!["text"])
        }
        ModelKind::Embedding => (vec!["text"], vec!["embeddings"]),
        ModelKind::Image => (vec!["text"], vec!["image"]),
    };
    let modality = format!("{}->{}", inputs.join("+"), outputs.join("+"));
    let parameters: &[&str] = match m.spec.kind {
        ModelKind::Chat => &CHAT_PARAMETERS,
        ModelKind::Embedding | ModelKind::Image => &[],
    };
    json!({
        "id": m.name(),
        "object": "model",
        "created": m.spec.created,
        "owned_by": m.spec.name.owner(),
        "canonical_slug": m.name(),
        "hugging_face_id": null,
        "name": m.name(),
        "description": format!("{} through Layers", m.name()),
        "context_length": m.spec.context_window,
        "architecture": {
            "modality": modality,
            "input_modalities": inputs,
            "output_modalities": outputs,
            "tokenizer": "Other",
            "instruct_type": null,
        },
        "pricing": {
            "prompt": usd_per_token(p.input),
            "completion": usd_per_token(p.output),
            "request": "0",
            "image": usd_per_image(p.per_image.0),
            // The fee of one search at the model's default context size (with markup).
            "web_search": m.search_fees.map_or_else(|| "0".to_owned(), |f| f.fee(None).usd_text()),
            "internal_reasoning": usd_per_token(p.output),
            "input_cache_read": usd_per_token(p.cached_input),
            "input_cache_write": usd_per_token(p.cache_write_input),
        },
        "top_provider": {
            "context_length": m.spec.context_window,
            "max_completion_tokens": m.spec.max_output_tokens,
            "is_moderated": false,
        },
        "per_request_limits": null,
        "supported_parameters": parameters,
        "default_parameters": {},
    })
}

/// US$ per token as an exact decimal string (OpenRouter's convention).
fn usd_per_token(rate: Rate) -> String {
    rate.usd_per_token_text()
}

fn usd_per_image(micros: i64) -> String {
    layers_domain::MicroCredits(micros).usd_text()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_as_exact_decimals() {
        // $0.15 per Mtok = 0.00000015 per token.
        assert_eq!(usd_per_token(Rate::from_usd_per_mtok(0.15).unwrap()), "0.00000015");
        assert_eq!(usd_per_token(Rate::from_usd_per_mtok(15.0).unwrap()), "0.000015");
        assert_eq!(usd_per_token(Rate::ZERO), "0");
        assert_eq!(usd_per_image(4_000_000), "0.04");
    }
}
