//! `GET /v1/models`: OpenAI `Model` objects plus OpenRouter-style pricing and limits.

use axum::extract::State;
use axum::Json;
use layers_domain::Rate;
use serde_json::{json, Value};

use crate::state::AppState;

pub async fn list_models(State(state): State<AppState>) -> Json<Value> {
    let data: Vec<Value> = state
        .core
        .catalogue
        .served()
        .map(|m| {
            let p = &m.price;
            json!({
                "id": m.name(),
                "object": "model",
                "created": m.spec.created,
                "owned_by": m.spec.name.owner(),
                "context_length": m.spec.context_window,
                "pricing": {
                    "prompt": usd_per_token(p.input),
                    "completion": usd_per_token(p.output),
                    "input_cache_read": usd_per_token(p.cached_input),
                    "image": usd_per_image(p.per_image.0),
                },
                "top_provider": {
                    "context_length": m.spec.context_window,
                    "max_completion_tokens": m.spec.max_output_tokens,
                    "is_moderated": false,
                },
            })
        })
        .collect();
    Json(json!({"object": "list", "data": data}))
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
