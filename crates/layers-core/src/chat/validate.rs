//! Checks of a chat request against the input limits and the model (SPEC §2.3).
//! Invariant: every refusal names the offending field in `param`.

use layers_domain::limits::RequestLimits;
use layers_providers::ChatRequest;

use super::ChatError;
use crate::catalogue::ModelEntry;

pub(super) fn check_limits(req: &ChatRequest, limits: &RequestLimits) -> Result<(), ChatError> {
    let invalid = |v: layers_domain::limits::LimitViolation| ChatError::Invalid {
        message: v.to_string(),
        param: Some(v.param()),
        code: "invalid_value",
    };
    limits.check_message_count(req.messages.len()).map_err(invalid)?;
    for (i, m) in req.messages.iter().enumerate() {
        limits.check_message_chars(i, m.text_chars()).map_err(invalid)?;
    }
    Ok(())
}

pub(super) fn check_against_model(req: &ChatRequest, model: &ModelEntry) -> Result<(), ChatError> {
    let max = model.spec.max_output_tokens;
    let fields = [("max_tokens", req.max_tokens), ("max_completion_tokens", req.max_completion_tokens)];
    for (param, value) in fields {
        match value {
            Some(0) => {
                return Err(ChatError::Invalid {
                    message: format!("{param} must be at least 1"),
                    param: Some(param.to_owned()),
                    code: "invalid_value",
                })
            }
            Some(v) if max > 0 && v > max => {
                return Err(ChatError::Invalid {
                    message: format!(
                        "{param} is too large: {v}. {} supports at most {max} completion tokens",
                        model.name()
                    ),
                    param: Some(param.to_owned()),
                    code: "invalid_value",
                })
            }
            _ => {}
        }
    }
    if req.n.is_some_and(|n| n == 0 || n > 8) {
        return Err(ChatError::Invalid {
            message: "n must be between 1 and 8".to_owned(),
            param: Some("n".to_owned()),
            code: "invalid_value",
        });
    }
    Ok(())
}
