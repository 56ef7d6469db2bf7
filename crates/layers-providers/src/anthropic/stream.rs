//! Anthropic's streamed Messages events translated into OpenAI `chat.completion.chunk`s:
//! `message_start` → the role chunk, `text_delta` → `content`, `thinking_delta` →
//! `reasoning_content`, `tool_use` blocks and `input_json_delta` → `tool_calls` deltas (indexed
//! from 0 in order), `message_delta` → `finish_reason`, `message_stop` → the usage chunk and
//! the end. Invariant: only `message_stop` finishes the stream; an `error` event or a cut ends
//! it with an error.

use std::collections::{HashMap, VecDeque};

use serde_json::{json, Map, Value};

use super::request::{Mode, JSON_TOOL};
use super::response::{finish_reason, usage};
use crate::error::ProviderError;
use crate::reply::{envelope, StreamEvent};
use crate::sse::SseEvent;
use crate::sse_stream::{EventMapper, Item};
use crate::transport::error_message;
use crate::usage_json::usage_value;

/// Largest thinking block kept while it streams.
const MAX_THINKING_BYTES: usize = 4 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    Text,
    Thinking,
    /// A tool call, with its index among the message's tool calls.
    Tool(usize),
    /// The forced JSON answer of `response_format`.
    Json,
    Other,
}

pub(super) struct AnthropicEvents {
    base: Map<String, Value>,
    mode: Mode,
    blocks: HashMap<u64, Block>,
    tools: usize,
    /// The message's usage so far: `message_start` gives the input side, `message_delta` the
    /// cumulative output (and, on newer API versions, updated input counts).
    usage: Map<String, Value>,
    /// The thinking block being streamed: its text so far and signature, handed on whole (the
    /// signature covers the text) when the block ends.
    thinking: String,
    signature: Option<String>,
}

impl AnthropicEvents {
    pub(super) fn new(request_id: &str, model: &str, mode: Mode) -> AnthropicEvents {
        AnthropicEvents {
            base: envelope(&format!("chatcmpl-{request_id}"), "chat.completion.chunk", model),
            mode,
            blocks: HashMap::new(),
            tools: 0,
            usage: Map::new(),
            thinking: String::new(),
            signature: None,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Item {
        let mut c = self.base.clone();
        c.insert("choices".into(), json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]));
        Ok(StreamEvent::Chunk(c))
    }

    fn merge_usage(&mut self, u: &Value) {
        if let Some(u) = u.as_object() {
            for (k, v) in u {
                if v.is_u64() {
                    self.usage.insert(k.clone(), v.clone());
                }
            }
        }
    }

    fn handle(&mut self, kind: &str, ev: &Value, out: &mut VecDeque<Item>) {
        match kind {
            "message_start" => {
                if let Some(model) = ev["message"]["model"].as_str() {
                    self.base.insert("model".into(), json!(model));
                }
                self.merge_usage(&ev["message"]["usage"]);
                out.push_back(Ok(StreamEvent::Usage(usage(&Value::Object(self.usage.clone())))));
                out.push_back(self.chunk(json!({"role": "assistant", "content": ""}), None));
            }
            "content_block_start" => {
                let index = ev["index"].as_u64().unwrap_or(0);
                let block = &ev["content_block"];
                let kind = match block["type"].as_str() {
                    Some("text") => Block::Text,
                    Some("thinking") => Block::Thinking,
                    Some("redacted_thinking") => {
                        out.push_back(self.chunk(json!({ "thinking_blocks": [block] }), None));
                        Block::Other
                    }
                    Some("tool_use") if self.mode.json_tool && block["name"] == JSON_TOOL => Block::Json,
                    Some("tool_use") => {
                        let i = self.tools;
                        self.tools += 1;
                        out.push_back(self.chunk(
                            json!({"tool_calls": [{
                                "index": i, "id": block["id"], "type": "function",
                                "function": {"name": block["name"], "arguments": ""},
                            }]}),
                            None,
                        ));
                        Block::Tool(i)
                    }
                    _ => Block::Other,
                };
                if let (Block::Text, Some(text)) = (kind, block["text"].as_str().filter(|t| !t.is_empty())) {
                    out.push_back(self.chunk(json!({ "content": text }), None));
                }
                self.blocks.insert(index, kind);
            }
            "content_block_delta" => {
                let index = ev["index"].as_u64().unwrap_or(0);
                let delta = &ev["delta"];
                let block = self.blocks.get(&index).copied().unwrap_or(Block::Other);
                // The block is kept whole to hand on with its signature: bounded, whatever the
                // upstream sends.
                let growth = delta["thinking"].as_str().map_or(0, str::len);
                if block == Block::Thinking && self.thinking.len() + growth > MAX_THINKING_BYTES {
                    out.push_back(Err(ProviderError::Protocol("a thinking block exceeds 4 MiB")));
                    return;
                }
                let piece = match (block, delta["type"].as_str()) {
                    (Block::Text, Some("text_delta")) => delta["text"].as_str().map(|t| json!({ "content": t })),
                    (Block::Thinking, Some("thinking_delta")) => delta["thinking"].as_str().map(|t| {
                        self.thinking.push_str(t);
                        json!({ "reasoning_content": t })
                    }),
                    (Block::Thinking, Some("signature_delta")) => {
                        self.signature = delta["signature"].as_str().map(str::to_owned);
                        None
                    }
                    (Block::Json, Some("input_json_delta")) => {
                        delta["partial_json"].as_str().map(|t| json!({ "content": t }))
                    }
                    (Block::Tool(i), Some("input_json_delta")) => delta["partial_json"]
                        .as_str()
                        .map(|t| json!({"tool_calls": [{"index": i, "function": {"arguments": t}}]})),
                    _ => None,
                };
                if let Some(d) = piece.filter(|d| !is_empty_text(d)) {
                    out.push_back(self.chunk(d, None));
                }
            }
            "message_delta" => {
                self.merge_usage(&ev["usage"]);
                out.push_back(Ok(StreamEvent::Usage(usage(&Value::Object(self.usage.clone())))));
                let finish = finish_reason(ev["delta"]["stop_reason"].as_str(), &self.mode);
                out.push_back(self.chunk(json!({}), Some(finish)));
            }
            "message_stop" => {
                let usage = usage(&Value::Object(self.usage.clone()));
                let mut c = self.base.clone();
                c.insert("choices".into(), json!([]));
                c.insert("usage".into(), usage_value(&usage, None));
                out.push_back(Ok(StreamEvent::Chunk(c)));
                out.push_back(Ok(StreamEvent::Done));
            }
            "error" => {
                let message = error_message(ev.to_string().as_bytes());
                out.push_back(Err(ProviderError::MidStream { message }));
            }
            "content_block_stop" => {
                let index = ev["index"].as_u64().unwrap_or(0);
                if matches!(self.blocks.get(&index), Some(Block::Thinking)) {
                    let text = std::mem::take(&mut self.thinking);
                    if let Some(sig) = self.signature.take() {
                        let block = json!({"type": "thinking", "thinking": text, "signature": sig});
                        out.push_back(self.chunk(json!({ "thinking_blocks": [block] }), None));
                    }
                }
            }
            // ping and event types added later carry nothing to forward.
            _ => {}
        }
    }
}

fn is_empty_text(delta: &Value) -> bool {
    ["content", "reasoning_content"].iter().any(|k| delta.get(*k).and_then(Value::as_str) == Some(""))
}

impl EventMapper for AnthropicEvents {
    fn map(&mut self, event: SseEvent, out: &mut VecDeque<Item>) {
        let Ok(ev) = serde_json::from_str::<Value>(&event.data) else {
            out.push_back(Err(ProviderError::Protocol("stream event is not JSON")));
            return;
        };
        // The event name is in both the `event:` field and the payload's `type`.
        let kind = ev["type"].as_str().map(str::to_owned).or(event.event).unwrap_or_default();
        self.handle(&kind, &ev, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(events: &[(&str, Value)], mode: Mode) -> Vec<Item> {
        run_all(events, mode).into_iter().filter(|i| !matches!(i, Ok(StreamEvent::Usage(_)))).collect()
    }

    fn run_all(events: &[(&str, Value)], mode: Mode) -> Vec<Item> {
        let mut m = AnthropicEvents::new("r1", "claude", mode);
        let mut out = VecDeque::new();
        for (name, data) in events {
            m.map(SseEvent { event: Some((*name).to_owned()), data: data.to_string() }, &mut out);
        }
        out.into_iter().collect()
    }

    #[test]
    fn input_usage_is_reported_at_message_start() {
        let items = run_all(
            &[
                (
                    "message_start",
                    json!({"type": "message_start", "message": {"model": "claude",
                    "usage": {"input_tokens": 1200, "cache_read_input_tokens": 100, "output_tokens": 1}}}),
                ),
                (
                    "message_delta",
                    json!({"type": "message_delta", "delta": {"stop_reason": null},
                    "usage": {"output_tokens": 40}}),
                ),
            ],
            Mode::default(),
        );
        let reported: Vec<(u32, u32)> = items
            .iter()
            .filter_map(|i| match i {
                Ok(StreamEvent::Usage(u)) => Some((u.prompt_tokens, u.completion_tokens)),
                _ => None,
            })
            .collect();
        // A stream cut after these is billed at least this much.
        assert_eq!(reported, [(1300, 1), (1300, 40)]);
    }

    fn chunk(item: &Item) -> &Map<String, Value> {
        match item {
            Ok(StreamEvent::Chunk(c)) => c,
            other => panic!("not a chunk: {other:?}"),
        }
    }

    #[test]
    fn text_tool_calls_usage_and_end() {
        let items = run(
            &[
                (
                    "message_start",
                    json!({"type": "message_start", "message": {"id": "msg_1", "model": "claude-x",
                    "usage": {"input_tokens": 25, "cache_read_input_tokens": 5, "output_tokens": 1}}}),
                ),
                (
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}),
                ),
                ("ping", json!({"type": "ping"})),
                (
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": "Hi"}}),
                ),
                ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
                (
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 1,
                    "content_block": {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}}}),
                ),
                (
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": "{\"a\":"}}),
                ),
                (
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
                ),
                (
                    "message_delta",
                    json!({"type": "message_delta",
                    "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 17}}),
                ),
                ("message_stop", json!({"type": "message_stop"})),
            ],
            Mode::default(),
        );
        assert_eq!(items.len(), 8);
        assert_eq!(chunk(&items[0])["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunk(&items[0])["model"], "claude-x");
        assert_eq!(chunk(&items[1])["choices"][0]["delta"]["content"], "Hi");
        let start = &chunk(&items[2])["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!((start["index"].as_u64(), start["id"].as_str()), (Some(0), Some("toolu_9")));
        assert_eq!(chunk(&items[4])["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"], "1}");
        assert_eq!(chunk(&items[5])["choices"][0]["finish_reason"], "tool_calls");
        let usage = &chunk(&items[6])["usage"];
        assert_eq!((usage["prompt_tokens"].as_u64(), usage["completion_tokens"].as_u64()), (Some(30), Some(17)));
        assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 5);
        assert!(matches!(items[7], Ok(StreamEvent::Done)));
    }

    #[test]
    fn thinking_json_mode_and_errors() {
        let items = run(
            &[
                ("message_start", json!({"type": "message_start", "message": {"usage": {"input_tokens": 1}}})),
                (
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "thinking", "thinking": ""}}),
                ),
                (
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
                ),
                (
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "signature_delta", "signature": "x"}}),
                ),
                ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
                (
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 1,
                    "content_block": {"type": "tool_use", "id": "t", "name": JSON_TOOL, "input": {}}}),
                ),
                (
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
                ),
                ("error", json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})),
            ],
            Mode { json_tool: true },
        );
        assert_eq!(items.len(), 5);
        assert_eq!(chunk(&items[1])["choices"][0]["delta"]["reasoning_content"], "hmm");
        let block = &chunk(&items[2])["choices"][0]["delta"]["thinking_blocks"][0];
        assert_eq!(
            (block["signature"].as_str(), block["thinking"].as_str()),
            (Some("x"), Some("hmm")),
            "whole, as signed"
        );
        assert_eq!(chunk(&items[3])["choices"][0]["delta"]["content"], "{}");
        match &items[4] {
            Err(ProviderError::MidStream { message }) => assert_eq!(message.as_deref(), Some("Overloaded")),
            other => panic!("{other:?}"),
        }
    }
}
