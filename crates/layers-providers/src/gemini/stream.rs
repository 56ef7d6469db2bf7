//! Gemini's `streamGenerateContent?alt=sse` translated into OpenAI chunks. Gemini sends whole
//! `GenerateContentResponse`s as `data:` events and ends by closing the stream, with the
//! `finishReason` and final `usageMetadata` in its last event. Invariant: the stream finishes
//! cleanly only if a finish reason arrived before the close; otherwise it was cut.

use std::collections::VecDeque;

use serde_json::{json, Value};

use super::response::{call_id, finish_reason, parts, usage};
use super::wire::{GenerateContentResponse, UsageMetadata};
use crate::error::ProviderError;
use crate::reply::{envelope, StreamEvent};
use crate::sse::SseEvent;
use crate::sse_stream::{EventMapper, Item};
use crate::usage_json::usage_value;

pub(super) struct GeminiEvents {
    base: serde_json::Map<String, Value>,
    request_id: String,
    started: bool,
    tools: usize,
    usage: UsageMetadata,
    finished: bool,
}

impl GeminiEvents {
    pub(super) fn new(request_id: &str, model: &str) -> GeminiEvents {
        GeminiEvents {
            base: envelope(&format!("chatcmpl-{request_id}"), "chat.completion.chunk", model),
            request_id: request_id.to_owned(),
            started: false,
            tools: 0,
            usage: UsageMetadata::default(),
            finished: false,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Item {
        let mut c = self.base.clone();
        c.insert("choices".into(), json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]));
        Ok(StreamEvent::Chunk(c))
    }
}

impl EventMapper for GeminiEvents {
    fn map(&mut self, event: SseEvent, out: &mut VecDeque<Item>) {
        let Ok(resp) = serde_json::from_str::<GenerateContentResponse>(&event.data) else {
            out.push_back(Err(ProviderError::Protocol("stream event is not a GenerateContentResponse")));
            return;
        };
        if let Some(error) = &resp.error {
            let message = Some(error.message.chars().take(1000).collect()).filter(|m: &String| !m.is_empty());
            out.push_back(Err(ProviderError::MidStream { message }));
            return;
        }
        if let Some(meta) = resp.usage_metadata {
            self.usage = meta;
            out.push_back(Ok(StreamEvent::Usage(usage(&self.usage))));
        }
        if let Some(v) = &resp.model_version {
            self.base.insert("model".into(), json!(v));
        }
        if !self.started {
            self.started = true;
            out.push_back(self.chunk(json!({"role": "assistant", "content": ""}), None));
        }
        let p = parts(&resp);
        if p.finish.as_deref() == Some(super::response::MALFORMED_CALL) {
            out.push_back(Err(ProviderError::Protocol("the model produced a malformed function call")));
            return;
        }
        if !p.reasoning.is_empty() {
            out.push_back(self.chunk(json!({ "reasoning_content": p.reasoning }), None));
        }
        if !p.text.is_empty() {
            out.push_back(self.chunk(json!({ "content": p.text }), None));
        }
        for (name, args, id) in &p.calls {
            let i = self.tools;
            self.tools += 1;
            let delta = json!({"tool_calls": [{"index": i, "id": call_id(&self.request_id, i, id.as_deref()),
                "type": "function", "function": {"name": name, "arguments": args}}]});
            out.push_back(self.chunk(delta, None));
        }
        let finish = if p.blocked {
            Some("content_filter")
        } else {
            p.finish.as_deref().map(|f| finish_reason(f, self.tools > 0))
        };
        if let Some(f) = finish.filter(|_| !self.finished) {
            self.finished = true;
            out.push_back(self.chunk(json!({}), Some(f)));
        }
    }

    fn end(&mut self, out: &mut VecDeque<Item>) -> bool {
        if !self.finished {
            return false;
        }
        let mut c = self.base.clone();
        c.insert("choices".into(), json!([]));
        c.insert("usage".into(), usage_value(&usage(&self.usage), None));
        out.push_back(Ok(StreamEvent::Chunk(c)));
        out.push_back(Ok(StreamEvent::Done));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(m: &mut GeminiEvents, v: Value, out: &mut VecDeque<Item>) {
        m.map(SseEvent { event: None, data: v.to_string() }, out);
    }

    #[test]
    fn chunks_then_finish_at_the_close() {
        let mut m = GeminiEvents::new("r9", "gemini-x");
        let mut out = VecDeque::new();
        feed(
            &mut m,
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}}],
            "usageMetadata": {"promptTokenCount": 8}}),
            &mut out,
        );
        feed(
            &mut m,
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "lo"},
            {"functionCall": {"name": "f", "args": {"a": 1}}}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 3, "totalTokenCount": 11}}),
            &mut out,
        );
        assert!(m.end(&mut out));
        let all: Vec<_> = out.into_iter().map(|i| i.unwrap()).collect();
        // Usage as reported so far rides beside the chunks, growing.
        let reported: Vec<u32> = all
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Usage(u) => Some(u.completion_tokens),
                _ => None,
            })
            .collect();
        assert_eq!(reported.last(), Some(&3));
        let chunks: Vec<_> = all.into_iter().filter(|e| !matches!(e, StreamEvent::Usage(_))).collect();
        assert_eq!(chunks.len(), 7);
        let get = |i: usize| match &chunks[i] {
            StreamEvent::Chunk(c) => c.clone(),
            other => panic!("not a chunk: {other:?}"),
        };
        assert_eq!(get(0)["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(get(1)["choices"][0]["delta"]["content"], "Hel");
        assert_eq!(get(3)["choices"][0]["delta"]["tool_calls"][0]["id"], "call_r9_0");
        assert_eq!(get(4)["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(get(5)["usage"]["completion_tokens"], 3);
        assert!(matches!(chunks[6], StreamEvent::Done));
    }

    #[test]
    fn a_malformed_function_call_is_a_failure_not_an_empty_answer() {
        let mut m = GeminiEvents::new("r", "g");
        let mut out = VecDeque::new();
        feed(
            &mut m,
            json!({"candidates": [{"content": {"parts": []}, "finishReason": "MALFORMED_FUNCTION_CALL"}]}),
            &mut out,
        );
        assert!(matches!(out.pop_back(), Some(Err(ProviderError::Protocol(_)))));
    }

    #[test]
    fn a_close_without_a_finish_reason_is_a_cut() {
        let mut m = GeminiEvents::new("r", "g");
        let mut out = VecDeque::new();
        feed(&mut m, json!({"candidates": [{"content": {"parts": [{"text": "partial"}]}}]}), &mut out);
        assert!(!m.end(&mut out));
        feed(
            &mut m,
            json!({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}),
            &mut out,
        );
        assert!(matches!(out.pop_back(), Some(Err(ProviderError::MidStream { .. }))));
    }
}
