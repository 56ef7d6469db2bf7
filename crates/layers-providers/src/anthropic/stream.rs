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
use super::wire::{ContentBlock, Delta, StreamEvent as Event, WireUsage};
use crate::error::ProviderError;
use crate::reply::{envelope, StreamEvent};
use crate::sse::SseEvent;
use crate::sse_stream::{EventMapper, Item};
use crate::translate::ThinkingBlock;
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
    usage: WireUsage,
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
            usage: WireUsage::default(),
            thinking: String::new(),
            signature: None,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Item {
        let mut c = self.base.clone();
        c.insert("choices".into(), json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]));
        Ok(StreamEvent::Chunk(c))
    }

    fn handle(&mut self, ev: Event, out: &mut VecDeque<Item>) {
        match ev {
            Event::MessageStart { message } => {
                if let Some(model) = message.model {
                    self.base.insert("model".into(), json!(model));
                }
                self.usage.merge(&message.usage);
                out.push_back(Ok(StreamEvent::Usage(usage(&self.usage))));
                out.push_back(self.chunk(json!({"role": "assistant", "content": ""}), None));
            }
            Event::ContentBlockStart { index, content_block } => {
                let kind = self.block_started(&content_block, out);
                self.blocks.insert(index, kind);
            }
            Event::ContentBlockDelta { index, delta } => {
                let block = self.blocks.get(&index).copied().unwrap_or(Block::Other);
                self.block_delta(block, delta, out);
            }
            Event::MessageDelta { delta, usage: reported } => {
                self.usage.merge(&reported);
                out.push_back(Ok(StreamEvent::Usage(usage(&self.usage))));
                let finish = finish_reason(delta.stop_reason.as_deref(), &self.mode);
                out.push_back(self.chunk(json!({}), Some(finish)));
            }
            Event::MessageStop => {
                let usage = usage(&self.usage);
                let mut c = self.base.clone();
                c.insert("choices".into(), json!([]));
                c.insert("usage".into(), usage_value(&usage, None));
                out.push_back(Ok(StreamEvent::Chunk(c)));
                out.push_back(Ok(StreamEvent::Done));
            }
            Event::Error { error } => {
                let message = Some(error.message.chars().take(1000).collect()).filter(|m: &String| !m.is_empty());
                out.push_back(Err(ProviderError::MidStream { message }));
            }
            Event::ContentBlockStop { index } => {
                if matches!(self.blocks.get(&index), Some(Block::Thinking)) {
                    let text = std::mem::take(&mut self.thinking);
                    if let Some(sig) = self.signature.take() {
                        let block = ThinkingBlock::Thinking { thinking: text, signature: Some(sig) };
                        out.push_back(self.chunk(json!({ "thinking_blocks": [block] }), None));
                    }
                }
            }
            // ping and event types added later carry nothing to forward.
            Event::Other => {}
        }
    }

    /// What a new content block is, announcing the ones the client sees at their start.
    fn block_started(&mut self, block: &ContentBlock, out: &mut VecDeque<Item>) -> Block {
        match block {
            ContentBlock::Text { text } => {
                if !text.is_empty() {
                    out.push_back(self.chunk(json!({ "content": text }), None));
                }
                Block::Text
            }
            ContentBlock::Thinking { .. } => Block::Thinking,
            ContentBlock::RedactedThinking { .. } => {
                out.push_back(self.chunk(json!({ "thinking_blocks": [block.thinking_block()] }), None));
                Block::Other
            }
            ContentBlock::ToolUse { name, .. } if self.mode.json_tool && name == JSON_TOOL => Block::Json,
            ContentBlock::ToolUse { id, name, .. } => {
                let i = self.tools;
                self.tools += 1;
                out.push_back(self.chunk(
                    json!({"tool_calls": [{
                        "index": i, "id": id, "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }]}),
                    None,
                ));
                Block::Tool(i)
            }
            ContentBlock::Other => Block::Other,
        }
    }

    fn block_delta(&mut self, block: Block, delta: Delta, out: &mut VecDeque<Item>) {
        let piece = match (block, delta) {
            (Block::Text, Delta::Text { text }) => Some(json!({ "content": text })),
            (Block::Thinking, Delta::Thinking { thinking }) => {
                // The block is kept whole to hand on with its signature: bounded, whatever the
                // upstream sends.
                if self.thinking.len() + thinking.len() > MAX_THINKING_BYTES {
                    out.push_back(Err(ProviderError::Protocol("a thinking block exceeds 4 MiB")));
                    return;
                }
                self.thinking.push_str(&thinking);
                Some(json!({ "reasoning_content": thinking }))
            }
            (Block::Thinking, Delta::Signature { signature }) => {
                self.signature = Some(signature);
                None
            }
            (Block::Json, Delta::InputJson { partial_json }) => Some(json!({ "content": partial_json })),
            (Block::Tool(i), Delta::InputJson { partial_json }) => {
                Some(json!({"tool_calls": [{"index": i, "function": {"arguments": partial_json}}]}))
            }
            _ => None,
        };
        if let Some(d) = piece.filter(|d| !is_empty_text(d)) {
            out.push_back(self.chunk(d, None));
        }
    }
}

fn is_empty_text(delta: &Value) -> bool {
    ["content", "reasoning_content"].iter().any(|k| delta.get(*k).and_then(Value::as_str) == Some(""))
}

impl EventMapper for AnthropicEvents {
    fn map(&mut self, event: SseEvent, out: &mut VecDeque<Item>) {
        match serde_json::from_str::<Event>(&event.data) {
            Ok(ev) => self.handle(ev, out),
            Err(_) => out.push_back(Err(ProviderError::Protocol("stream event is not an Anthropic event"))),
        }
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
