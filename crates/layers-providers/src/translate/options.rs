//! The options of an OpenAI chat request as types: `tools`, `tool_choice`, `response_format`,
//! `thinking`, `stop`, sampling numbers and `reasoning_effort`.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{field, unsupported};
use crate::error::ProviderError;

/// One tool of the request's `tools`, all of which must be functions.
#[derive(Deserialize)]
struct WireTool {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    function: Option<FunctionTool>,
}

/// A function tool of the request.
#[derive(Deserialize)]
pub struct FunctionTool {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The JSON schema of its arguments (`{"type":"object"}` when none was given).
    #[serde(default = "object_schema", deserialize_with = "schema_or_default")]
    pub parameters: Value,
}

fn object_schema() -> Value {
    json!({"type": "object"})
}

fn schema_or_default<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Value, D::Error> {
    let v = Value::deserialize(de)?;
    Ok(if v.is_object() { v } else { object_schema() })
}

/// The request's `tools`.
pub fn function_tools(value: &Value) -> Result<Vec<FunctionTool>, ProviderError> {
    let tools: Vec<WireTool> = field(value, "tools")?;
    tools
        .into_iter()
        .enumerate()
        .map(|(i, t)| match t {
            WireTool { kind, function: Some(f) } if kind == "function" => Ok(f),
            WireTool { kind, .. } if kind == "function" => {
                Err(unsupported(&format!("tools[{i}].function"), "a function tool needs `function`"))
            }
            _ => Err(unsupported(&format!("tools[{i}].type"), "only `function` tools are supported")),
        })
        .collect()
}

/// `tool_choice`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    None,
    Required,
    Function(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WireToolChoice {
    Mode(String),
    Named {
        #[serde(rename = "type")]
        kind: String,
        function: Named,
    },
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

/// The request's `tool_choice`.
pub fn tool_choice(value: &Value) -> Result<ToolChoice, ProviderError> {
    let bad = || unsupported("tool_choice", "`tool_choice` must be auto, none, required or a function");
    match field::<WireToolChoice>(value, "tool_choice").map_err(|_| bad())? {
        WireToolChoice::Mode(mode) => match mode.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            _ => Err(bad()),
        },
        WireToolChoice::Named { kind, function } if kind == "function" => Ok(ToolChoice::Function(function.name)),
        WireToolChoice::Named { .. } => Err(bad()),
    }
}

/// `response_format`.
pub enum ResponseFormat {
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON valid against `schema`.
    JsonSchema {
        schema: Value,
        description: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: WireSchema },
}

#[derive(Deserialize)]
struct WireSchema {
    #[serde(default)]
    schema: Option<Value>,
    #[serde(default)]
    description: Option<String>,
}

/// The request's `response_format`.
pub fn response_format(value: &Value) -> Result<ResponseFormat, ProviderError> {
    let format = field::<WireFormat>(value, "response_format").map_err(|_| {
        unsupported("response_format", "`response_format.type` must be text, json_object or json_schema")
    })?;
    Ok(match format {
        WireFormat::Text => ResponseFormat::Text,
        WireFormat::JsonObject => ResponseFormat::JsonObject,
        WireFormat::JsonSchema { json_schema: WireSchema { schema: Some(schema @ Value::Object(_)), description } } => {
            ResponseFormat::JsonSchema { schema, description }
        }
        WireFormat::JsonSchema { .. } => {
            return Err(unsupported("response_format.json_schema.schema", "a JSON schema object is required"))
        }
    })
}

/// `thinking: {"type": "enabled", "budget_tokens": N}` (Anthropic's shape, accepted on every
/// route that can think).
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
pub struct Thinking {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u32>,
}

/// The request's `thinking`.
pub fn thinking(value: &Value) -> Result<Thinking, ProviderError> {
    field(value, "thinking")
}

/// `stop` as a list of sequences.
pub fn stop_sequences(value: &Value) -> Result<Vec<String>, ProviderError> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stop {
        One(String),
        Many(Vec<String>),
    }
    match field::<Stop>(value, "stop") {
        Ok(Stop::One(s)) => Ok(vec![s]),
        Ok(Stop::Many(list)) => Ok(list),
        Err(_) => Err(unsupported("stop", "`stop` must be a string or an array of strings")),
    }
}

/// A sampling number (`temperature`, `top_p`, penalties).
pub fn number(value: &Value, param: &str) -> Result<f64, ProviderError> {
    value.as_f64().ok_or_else(|| unsupported(param, &format!("`{param}` must be a number")))
}

/// `reasoning_effort` as a thinking budget in tokens.
pub fn effort_budget(value: &Value) -> Result<u32, ProviderError> {
    match value.as_str() {
        Some("minimal" | "low") => Ok(1024),
        Some("medium") => Ok(4096),
        Some("high") => Ok(16384),
        _ => Err(unsupported("reasoning_effort", "`reasoning_effort` must be minimal, low, medium or high")),
    }
}
