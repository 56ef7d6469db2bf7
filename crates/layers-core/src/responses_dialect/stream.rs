//! OpenAI chat SSE (as the gateway writes it) translated, incrementally, into the Responses
//! event stream: `response.created` and `response.in_progress`, then per output item
//! `response.output_item.added`, its part and deltas (`response.output_text.delta`,
//! `response.function_call_arguments.delta`, `response.reasoning_summary_text.delta`), their
//! `…done` events and `response.output_item.done`, then `response.completed` (or
//! `response.incomplete`) with the whole response and its usage. An error of the chat stream
//! becomes `response.failed`. Invariant: the output does not depend on how the input bytes
//! were split, every event has a `sequence_number` one above the last, and
//! `response.completed` is written only after the chat stream's `[DONE]`.

use serde_json::{json, Map, Value};

use super::response::{function_call_item, message_item, reasoning_item, text_part, Ending, Shell};
use crate::chat::answer::{ChatUsage, Chunk};
use crate::chat::translated::SseTranslator;
use layers_providers::sse::{self, SseDecoder};

/// The output item being written.
#[derive(Clone, PartialEq, Eq)]
enum Open {
    None,
    Reasoning,
    Message,
    /// A function call: the chat stream's tool index, its call id and name.
    Call {
        index: u64,
        call_id: String,
        name: String,
    },
}

pub struct ResponsesSse {
    decoder: SseDecoder,
    shell: Shell,
    sequence: u64,
    started: bool,
    open: Open,
    /// What the open item has said so far.
    said: String,
    /// The finished items.
    output: Vec<Value>,
    finish: Option<String>,
    usage: Option<ChatUsage>,
    layers: Option<Value>,
    done: bool,
}

impl SseTranslator for ResponsesSse {
    fn decoder(&mut self) -> &mut SseDecoder {
        &mut self.decoder
    }

    fn event(&mut self, data: &str, out: &mut Vec<u8>) {
        ResponsesSse::event(self, data, out);
    }

    fn unreadable(&mut self, out: &mut Vec<u8>) {
        self.fail(out, "server_error", "The stream could not be read");
    }
}

impl ResponsesSse {
    pub fn new(shell: Shell) -> ResponsesSse {
        ResponsesSse {
            decoder: SseDecoder::new(),
            shell,
            sequence: 0,
            started: false,
            open: Open::None,
            said: String::new(),
            output: Vec::new(),
            finish: None,
            usage: None,
            layers: None,
            done: false,
        }
    }

    fn event(&mut self, data: &str, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if data == "[DONE]" {
            self.start(out);
            self.close(out);
            let mut response = self.shell.object(
                Ending::Finished(self.finish.as_deref()),
                std::mem::take(&mut self.output),
                self.usage,
            );
            if let (Some(layers), Value::Object(m)) = (self.layers.take(), &mut response) {
                m.insert("layers".into(), layers);
            }
            let kind = if response["status"] == "incomplete" { "response.incomplete" } else { "response.completed" };
            self.emit(out, kind, json!({"response": response}));
            self.done = true;
            return;
        }
        let Ok(chunk) = serde_json::from_str::<Chunk>(data) else {
            self.fail(out, "server_error", "The stream could not be read");
            return;
        };
        if let Some(err) = chunk.error {
            let code = match err.code.as_deref() {
                Some("upstream_rate_limited") => "rate_limit_exceeded",
                _ => "server_error",
            };
            self.fail(out, code, err.message.as_deref().unwrap_or("The upstream provider failed"));
            return;
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        if chunk.layers.is_some() {
            self.layers = chunk.layers;
        }
        self.start(out);
        let Some(choice) = chunk.choices.into_iter().next() else { return };
        let delta = choice.message;
        if let Some(r) = delta.reasoning_content.filter(|r| !r.is_empty()) {
            self.switch(Open::Reasoning, out);
            self.said.push_str(&r);
            let index = self.output.len();
            let id = self.shell.reasoning_id(index);
            self.emit(
                out,
                "response.reasoning_summary_text.delta",
                json!({"item_id": id, "output_index": index, "summary_index": 0, "delta": r}),
            );
        }
        if let Some(t) = delta.content.filter(|t| !t.is_empty()) {
            self.switch(Open::Message, out);
            self.said.push_str(&t);
            let index = self.output.len();
            let id = self.shell.message_id(index);
            self.emit(
                out,
                "response.output_text.delta",
                json!({"item_id": id, "output_index": index, "content_index": 0, "delta": t, "logprobs": []}),
            );
        }
        for call in delta.tool_calls.into_iter().flatten() {
            let continues = matches!(&self.open, Open::Call { index, .. } if *index == call.index);
            if !continues {
                let call_id =
                    call.id.clone().unwrap_or_else(|| format!("call_{}_{}", self.shell.request_id, call.index));
                let name = call.function.name.clone().unwrap_or_default();
                self.switch(Open::Call { index: call.index, call_id, name }, out);
            }
            if let Some(args) = call.function.arguments.filter(|a| !a.is_empty()) {
                self.said.push_str(&args);
                let (id, index) = (self.item_id(), self.output.len());
                self.emit(
                    out,
                    "response.function_call_arguments.delta",
                    json!({"item_id": id, "output_index": index, "delta": args}),
                );
            }
        }
        if let Some(f) = choice.finish_reason {
            self.finish = Some(f);
        }
    }

    /// The open item's id (items are numbered by their place in the output).
    fn item_id(&self) -> String {
        let index = self.output.len();
        match &self.open {
            Open::Reasoning => self.shell.reasoning_id(index),
            Open::Call { call_id, .. } => format!("fc_{call_id}"),
            Open::Message | Open::None => self.shell.message_id(index),
        }
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let response = self.shell.object(Ending::InProgress, Vec::new(), None);
        self.emit(out, "response.created", json!({"response": response}));
        self.emit(out, "response.in_progress", json!({"response": response}));
    }

    /// Opens item `to` (closing the open one) unless it is open already.
    fn switch(&mut self, to: Open, out: &mut Vec<u8>) {
        if self.open == to {
            return;
        }
        self.close(out);
        self.open = to;
        let (id, index) = (self.item_id(), self.output.len());
        match self.open.clone() {
            Open::Reasoning => {
                let item = json!({"type": "reasoning", "id": id, "summary": []});
                self.emit(out, "response.output_item.added", json!({"output_index": index, "item": item}));
                self.emit(
                    out,
                    "response.reasoning_summary_part.added",
                    json!({"item_id": id, "output_index": index, "summary_index": 0,
                           "part": {"type": "summary_text", "text": ""}}),
                );
            }
            Open::Message => {
                let item = message_item(&id, "", "in_progress");
                self.emit(out, "response.output_item.added", json!({"output_index": index, "item": item}));
                self.emit(
                    out,
                    "response.content_part.added",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "part": text_part("")}),
                );
            }
            Open::Call { call_id, name, .. } => {
                let item = function_call_item(&call_id, &name, "", "in_progress");
                self.emit(out, "response.output_item.added", json!({"output_index": index, "item": item}));
            }
            Open::None => {}
        }
    }

    /// Finishes the open item: its `…done` events, and it joins the output.
    fn close(&mut self, out: &mut Vec<u8>) {
        let open = std::mem::replace(&mut self.open, Open::None);
        let said = std::mem::take(&mut self.said);
        let index = self.output.len();
        let item = match open {
            Open::None => return,
            Open::Reasoning => {
                let id = self.shell.reasoning_id(index);
                let part = json!({"type": "summary_text", "text": said});
                let at = json!({"item_id": id, "output_index": index, "summary_index": 0});
                self.emit(out, "response.reasoning_summary_text.done", with(&at, "text", json!(said)));
                self.emit(out, "response.reasoning_summary_part.done", with(&at, "part", part));
                reasoning_item(&id, &said)
            }
            Open::Message => {
                let id = self.shell.message_id(index);
                let at = json!({"item_id": id, "output_index": index, "content_index": 0});
                let text = with(&with(&at, "text", json!(said)), "logprobs", json!([]));
                self.emit(out, "response.output_text.done", text);
                self.emit(out, "response.content_part.done", with(&at, "part", text_part(&said)));
                message_item(&id, &said, "completed")
            }
            Open::Call { call_id, name, .. } => {
                let item = function_call_item(&call_id, &name, &said, "completed");
                self.emit(
                    out,
                    "response.function_call_arguments.done",
                    json!({"item_id": format!("fc_{call_id}"), "output_index": index, "name": name, "arguments": said}),
                );
                item
            }
        };
        self.emit(out, "response.output_item.done", json!({"output_index": index, "item": item}));
        self.output.push(item);
    }

    fn fail(&mut self, out: &mut Vec<u8>, code: &str, message: &str) {
        if self.done {
            return;
        }
        self.start(out);
        self.done = true;
        let response =
            self.shell.object(Ending::Failed { code, message }, std::mem::take(&mut self.output), self.usage);
        self.emit(out, "response.failed", json!({"response": response}));
    }

    fn emit(&mut self, out: &mut Vec<u8>, kind: &str, payload: Value) {
        let mut event = Map::new();
        event.insert("type".into(), json!(kind));
        event.insert("sequence_number".into(), json!(self.sequence));
        if let Value::Object(fields) = payload {
            event.extend(fields);
        }
        self.sequence += 1;
        sse::write_event(out, kind, Value::Object(event).to_string().as_bytes());
    }
}

/// `base` with one more field.
fn with(base: &Value, key: &str, value: Value) -> Value {
    let mut v = base.clone();
    v[key] = value;
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(bytes: &[u8]) -> Vec<(String, Value)> {
        let mut d = SseDecoder::new();
        let mut evs = Vec::new();
        d.push(bytes, &mut evs).unwrap();
        evs.into_iter().map(|e| (e.event.unwrap_or_default(), serde_json::from_str(&e.data).unwrap())).collect()
    }

    const TEXT_THEN_CALL: &str = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\":\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"1}\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4},\"layers\":{\"credits_used\":\"0.000001\"}}\n\n",
        "data: [DONE]\n\n",
    );

    fn translate(input: &[u8], split: usize) -> Vec<u8> {
        let mut t = ResponsesSse::new(Shell::new("r1", "sandbox/echo", Map::new()));
        let mut out = Vec::new();
        for piece in input.chunks(split) {
            out.extend(t.push(piece));
        }
        out
    }

    #[test]
    fn text_and_a_function_call_as_typed_events() {
        let out = translate(TEXT_THEN_CALL.as_bytes(), usize::MAX);
        let evs = events(&out);
        let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, (name, data)) in evs.iter().enumerate() {
            assert_eq!(data["type"], name.as_str());
            assert_eq!(data["sequence_number"], i as u64);
        }
        let done = &evs.last().unwrap().1["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(done["output"][1]["arguments"], "{\"a\":1}");
        assert_eq!(done["output"][1]["call_id"], "c1");
        assert_eq!(done["usage"]["total_tokens"], 13);
        assert_eq!(done["layers"]["credits_used"], "0.000001");
        assert_eq!(evs[12].1["arguments"], "{\"a\":1}");
    }

    #[test]
    fn any_split_gives_the_same_events() {
        let whole = translate(TEXT_THEN_CALL.as_bytes(), usize::MAX);
        for split in [1, 2, 7, 64] {
            assert_eq!(translate(TEXT_THEN_CALL.as_bytes(), split), whole, "split {split}");
        }
    }

    #[test]
    fn an_error_fails_the_response_and_nothing_follows() {
        let input = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n",
            "data: {\"error\":{\"message\":\"The upstream provider failed\",\"code\":\"upstream_error\"}}\n\n",
            "data: [DONE]\n\n",
        );
        let evs = events(&translate(input.as_bytes(), usize::MAX));
        let (name, last) = evs.last().unwrap();
        assert_eq!(name, "response.failed");
        assert_eq!(last["response"]["status"], "failed");
        assert_eq!(last["response"]["error"]["code"], "server_error");
        assert!(!evs.iter().any(|(n, _)| n == "response.completed"));
    }

    #[test]
    fn a_cut_answer_ends_incomplete() {
        let input = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":\"length\"}]}\n\n",
            "data: [DONE]\n\n",
        );
        let evs = events(&translate(input.as_bytes(), usize::MAX));
        let (name, last) = evs.last().unwrap();
        assert_eq!(name, "response.incomplete");
        assert_eq!(last["response"]["incomplete_details"]["reason"], "max_output_tokens");
    }
}
