//! The Response object (https://platform.openai.com/docs/api-reference/responses/object): made
//! from a chat completion, or assembled item by item from a chat stream. Invariant: what the
//! openai SDKs receive has every field their `Response` type requires, whichever provider
//! answered.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::chat::answer::{AnswerMessage, ChatUsage, Choice, Completion};

/// What every Response object of one request shares: its id, time, model and the request fields
/// it repeats.
pub struct Shell {
    pub request_id: String,
    pub created_at: u64,
    pub model: String,
    pub echo: Map<String, Value>,
}

/// How a response ended.
pub enum Ending<'a> {
    InProgress,
    /// By the chat finish reason.
    Finished(Option<&'a str>),
    Failed {
        code: &'a str,
        message: &'a str,
    },
}

impl Shell {
    pub fn new(request_id: &str, model: &str, echo: Map<String, Value>) -> Shell {
        let created_at =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Shell { request_id: request_id.to_owned(), created_at, model: model.to_owned(), echo }
    }

    pub fn id(&self) -> String {
        format!("resp_{}", self.request_id)
    }

    /// The id of the message item at `index` of the output (unique within the response).
    pub fn message_id(&self, index: usize) -> String {
        format!("msg_{}_{index}", self.request_id)
    }

    pub fn reasoning_id(&self, index: usize) -> String {
        format!("rs_{}_{index}", self.request_id)
    }

    /// The Response object with `output` and `usage`, in the state `ending` gives.
    pub(crate) fn object(&self, ending: Ending<'_>, output: Vec<Value>, usage: Option<ChatUsage>) -> Value {
        let (status, incomplete, error) = match ending {
            Ending::InProgress => ("in_progress", Value::Null, Value::Null),
            Ending::Finished(Some("length")) => ("incomplete", json!({"reason": "max_output_tokens"}), Value::Null),
            Ending::Finished(Some("content_filter")) => {
                ("incomplete", json!({"reason": "content_filter"}), Value::Null)
            }
            Ending::Finished(_) => ("completed", Value::Null, Value::Null),
            Ending::Failed { code, message } => ("failed", Value::Null, json!({"code": code, "message": message})),
        };
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id()));
        m.insert("object".into(), json!("response"));
        m.insert("created_at".into(), json!(self.created_at));
        m.insert("status".into(), json!(status));
        m.insert("error".into(), error);
        m.insert("incomplete_details".into(), incomplete);
        m.insert("model".into(), json!(self.model));
        m.insert("output".into(), Value::Array(output));
        m.insert("usage".into(), usage.map_or(Value::Null, usage_object));
        for (k, v) in &self.echo {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }
}

/// The Responses usage object for chat usage (`input_tokens` includes cached tokens, as
/// OpenAI counts them).
pub(crate) fn usage_object(u: ChatUsage) -> Value {
    let (cached, written) = u.prompt_tokens_details.map_or((0, 0), |d| (d.cached_tokens, d.cache_creation_tokens));
    let reasoning = u.completion_tokens_details.map_or(0, |d| d.reasoning_tokens);
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

pub fn reasoning_item(id: &str, text: &str) -> Value {
    let summary = if text.is_empty() { json!([]) } else { json!([{"type": "summary_text", "text": text}]) };
    json!({"type": "reasoning", "id": id, "summary": summary, "status": "completed"})
}

pub fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

pub fn message_item(id: &str, text: &str, status: &str) -> Value {
    let content = if status == "in_progress" { json!([]) } else { json!([text_part(text)]) };
    json!({"type": "message", "id": id, "status": status, "role": "assistant", "content": content})
}

pub fn function_call_item(call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": format!("fc_{call_id}"), "call_id": call_id, "name": name,
           "arguments": arguments, "status": status})
}

/// The Response object for a completion body (with the gateway's `layers` object kept).
pub fn to_response(completion: &Value, shell: &Shell) -> Value {
    let layers = completion.get("layers").cloned();
    let completion = Completion::deserialize(completion).unwrap_or_default();
    let (msg, finish) = match completion.choices.into_iter().next() {
        Some(Choice { message, finish_reason }) => (message, finish_reason),
        None => (AnswerMessage::default(), None),
    };
    let mut output = Vec::new();
    if let Some(r) = msg.reasoning_content.filter(|r| !r.is_empty()) {
        output.push(reasoning_item(&shell.reasoning_id(output.len()), &r));
    }
    if let Some(t) = msg.content.filter(|t| !t.is_empty()) {
        output.push(message_item(&shell.message_id(output.len()), &t, "completed"));
    }
    for call in msg.tool_calls.into_iter().flatten() {
        let id = call.id.unwrap_or_default();
        let name = call.function.name.unwrap_or_default();
        output.push(function_call_item(&id, &name, call.function.arguments.as_deref().unwrap_or("{}"), "completed"));
    }
    let mut object = shell.object(Ending::Finished(finish.as_deref()), output, completion.usage);
    if let (Some(layers), Value::Object(m)) = (layers, &mut object) {
        m.insert("layers".into(), layers);
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_reasoning_tools_and_usage() {
        let shell = Shell::new("r1", "sandbox/echo", Map::new());
        let r = to_response(
            &json!({"model": "x", "layers": {"credits_used": "0.01"},
                "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "On it.", "reasoning_content": "hmm",
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 60},
                          "completion_tokens_details": {"reasoning_tokens": 3}}}),
            &shell,
        );
        assert_eq!(r["id"], "resp_r1");
        assert_eq!(r["status"], "completed");
        assert_eq!(r["model"], "sandbox/echo");
        let types: Vec<&str> = r["output"].as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["reasoning", "message", "function_call"]);
        assert_eq!(r["output"][1]["content"][0]["text"], "On it.");
        assert_eq!(r["output"][2]["call_id"], "call_1");
        assert_eq!(r["output"][2]["arguments"], "{\"a\":1}");
        assert_eq!(r["usage"]["input_tokens"], 100);
        assert_eq!(r["usage"]["input_tokens_details"]["cached_tokens"], 60);
        assert_eq!(r["usage"]["output_tokens_details"]["reasoning_tokens"], 3);
        assert_eq!(r["usage"]["total_tokens"], 107);
        assert_eq!(r["layers"]["credits_used"], "0.01");
    }

    #[test]
    fn a_cut_answer_is_incomplete() {
        let shell = Shell::new("r2", "m", Map::new());
        let r = to_response(&json!({"choices": [{"finish_reason": "length", "message": {"content": "Hel"}}]}), &shell);
        assert_eq!(r["status"], "incomplete");
        assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
    }
}
