//! OpenAI chat SSE (as the gateway writes it) translated, incrementally, into the Anthropic
//! Messages event stream: `message_start`, then per content block `content_block_start`,
//! deltas (`text_delta`, `thinking_delta`, `input_json_delta`) and `content_block_stop`, then
//! `message_delta` with the stop reason and usage, and `message_stop`. An error event of the
//! chat stream becomes `event: error`. Invariant: the output does not depend on how the input
//! bytes were split, and `message_stop` is written only after the chat stream's `[DONE]`.

use serde_json::{json, Value};

use super::{stop_reason, usage};
use crate::chat::answer::{ChatUsage, Chunk};
use crate::chat::translated::SseTranslator;
use layers_providers::sse::{self, SseDecoder};
use layers_providers::translate::ThinkingBlock;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text,
    Thinking,
    /// A tool call: the chat stream's tool index.
    Tool(u64),
}

pub struct MessagesSse {
    decoder: SseDecoder,
    id: String,
    model: String,
    started: bool,
    open: Open,
    index: usize,
    finish: Option<String>,
    usage: Option<ChatUsage>,
    done: bool,
}

impl MessagesSse {
    pub fn new(request_id: &str, model: &str) -> MessagesSse {
        MessagesSse {
            decoder: SseDecoder::new(),
            id: format!("msg_{request_id}"),
            model: model.to_owned(),
            started: false,
            open: Open::None,
            index: 0,
            finish: None,
            usage: None,
            done: false,
        }
    }

    /// Feeds bytes of the chat stream; returns the Anthropic events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<u8> {
        SseTranslator::push(self, bytes)
    }
}

impl SseTranslator for MessagesSse {
    fn decoder(&mut self) -> &mut SseDecoder {
        &mut self.decoder
    }

    fn event(&mut self, data: &str, out: &mut Vec<u8>) {
        MessagesSse::event(self, data, out);
    }

    fn unreadable(&mut self, out: &mut Vec<u8>) {
        self.error(out, "api_error", "The stream could not be read");
    }
}

impl MessagesSse {
    fn event(&mut self, data: &str, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if data == "[DONE]" {
            self.start(out);
            self.close(out);
            let u = usage(self.usage);
            write(
                out,
                "message_delta",
                &json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason(self.finish.as_deref()), "stop_sequence": null}, "usage": u}),
            );
            write(out, "message_stop", &json!({"type": "message_stop"}));
            self.done = true;
            return;
        }
        let Ok(chunk) = serde_json::from_str::<Chunk>(data) else {
            self.error(out, "api_error", "The stream could not be read");
            return;
        };
        if let Some(err) = chunk.error {
            let kind = match err.code.as_deref() {
                Some("upstream_overloaded" | "upstream_unavailable") => "overloaded_error",
                Some("upstream_rate_limited") => "rate_limit_error",
                Some("upstream_timeout") => "timeout_error",
                _ => "api_error",
            };
            self.error(out, kind, err.message.as_deref().unwrap_or("The upstream provider failed"));
            return;
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        let Some(choice) = chunk.choices.into_iter().next() else { return };
        self.start(out);
        let delta = choice.message;
        if let Some(r) = delta.reasoning_content.filter(|r| !r.is_empty()) {
            self.switch(Open::Thinking, json!({"type": "thinking", "thinking": "", "signature": ""}), out);
            self.delta(json!({"type": "thinking_delta", "thinking": r}), out);
        }
        for block in delta.thinking_blocks.into_iter().flatten() {
            match block {
                ThinkingBlock::Thinking { signature: Some(sig), .. } if !sig.is_empty() => {
                    self.switch(Open::Thinking, json!({"type": "thinking", "thinking": "", "signature": ""}), out);
                    self.delta(json!({"type": "signature_delta", "signature": sig}), out);
                }
                ThinkingBlock::Thinking { .. } => {}
                redacted @ ThinkingBlock::RedactedThinking { .. } => {
                    self.close(out);
                    write(
                        out,
                        "content_block_start",
                        &json!({"type": "content_block_start", "index": self.index, "content_block": redacted}),
                    );
                    write(out, "content_block_stop", &json!({"type": "content_block_stop", "index": self.index}));
                    self.index += 1;
                }
            }
        }
        if let Some(t) = delta.content.filter(|t| !t.is_empty()) {
            self.switch(Open::Text, json!({"type": "text", "text": ""}), out);
            self.delta(json!({"type": "text_delta", "text": t}), out);
        }
        for call in delta.tool_calls.into_iter().flatten() {
            if self.open != Open::Tool(call.index) {
                let block = json!({"type": "tool_use", "id": call.id, "name": call.function.name, "input": {}});
                self.switch(Open::Tool(call.index), block, out);
            }
            if let Some(args) = call.function.arguments.filter(|a| !a.is_empty()) {
                self.delta(json!({"type": "input_json_delta", "partial_json": args}), out);
            }
        }
        if let Some(f) = choice.finish_reason {
            self.finish = Some(f);
        }
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        write(
            out,
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0},
            }}),
        );
    }

    fn switch(&mut self, to: Open, block: Value, out: &mut Vec<u8>) {
        if self.open == to && !matches!(to, Open::Tool(_)) {
            return;
        }
        self.close(out);
        write(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": self.index, "content_block": block}),
        );
        self.open = to;
    }

    fn delta(&self, delta: Value, out: &mut Vec<u8>) {
        write(out, "content_block_delta", &json!({"type": "content_block_delta", "index": self.index, "delta": delta}));
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if self.open != Open::None {
            write(out, "content_block_stop", &json!({"type": "content_block_stop", "index": self.index}));
            self.index += 1;
            self.open = Open::None;
        }
    }

    fn error(&mut self, out: &mut Vec<u8>, kind: &str, message: &str) {
        self.done = true;
        write(out, "error", &json!({"type": "error", "error": {"type": kind, "message": message}}));
    }
}

fn write(out: &mut Vec<u8>, name: &str, data: &Value) {
    sse::write_event(out, name, data.to_string().as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(bytes: &[u8]) -> Vec<(String, Value)> {
        let mut d = SseDecoder::new();
        let mut ev = Vec::new();
        d.push(bytes, &mut ev).unwrap();
        ev.into_iter().map(|e| (e.event.unwrap_or_default(), serde_json::from_str(&e.data).unwrap())).collect()
    }

    const CHAT: &str = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi \u{6771}\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{}\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"prompt_tokens_details\":{\"cached_tokens\":0}}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn the_event_sequence_is_anthropics_under_any_split() {
        let whole = MessagesSse::new("r", "m").push(CHAT.as_bytes());
        let mut split = MessagesSse::new("r", "m");
        let mut pieces = Vec::new();
        for b in CHAT.as_bytes().chunks(3) {
            pieces.extend(split.push(b));
        }
        assert_eq!(whole, pieces);
        let ev = events(&whole);
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(ev[2].1["delta"]["text"], "Hi \u{6771}");
        assert_eq!(ev[4].1["content_block"]["id"], "c1");
        assert_eq!(ev[5].1["index"], 1);
        assert_eq!(ev[7].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(ev[7].1["usage"]["output_tokens"], 4);
        assert_eq!(ev[7].1["usage"]["input_tokens"], 9);
    }

    #[test]
    fn a_tool_call_whose_id_repeats_on_every_delta_is_one_block() {
        let mut s = MessagesSse::new("r", "m");
        let mut out = Vec::new();
        for args in ["{\"a\":", "1}"] {
            let chunk = json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1",
                "type": "function", "function": {"name": "f", "arguments": args}}]}}]});
            out.extend(s.push(format!("data: {chunk}\n\n").as_bytes()));
        }
        out.extend(s.push(b"data: [DONE]\n\n"));
        let starts = events(&out).into_iter().filter(|(n, _)| n == "content_block_start").count();
        assert_eq!(starts, 1);
    }

    #[test]
    fn an_overload_mid_stream_is_anthropics_overloaded_error() {
        let mut s = MessagesSse::new("r", "m");
        let mut out = s.push(b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n");
        out.extend(s.push(b"data: {\"error\":{\"message\":\"busy\",\"code\":\"upstream_overloaded\"}}\n\n"));
        assert_eq!(events(&out).last().unwrap().1["error"]["type"], "overloaded_error");
    }

    #[test]
    fn a_chat_error_becomes_an_error_event_without_message_stop() {
        let mut s = MessagesSse::new("r", "m");
        let mut out = s.push(b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n");
        out.extend(s.push(b"data: {\"error\":{\"message\":\"upstream died\",\"type\":\"api_error\"}}\n\n"));
        out.extend(s.push(b"data: [DONE]\n\n"));
        let ev = events(&out);
        assert_eq!(ev.last().unwrap().0, "error");
        assert!(ev.iter().all(|(n, _)| n != "message_stop"));
    }
}
