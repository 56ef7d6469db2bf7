//! The OpenAI Chat Completions wire shape: what clients send and what every adapter returns.
//! Invariant: fields the gateway does not interpret are kept (`extra`) and forwarded unchanged.

use layers_domain::tokens::PromptParts;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A chat completion request as a client sends it.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    /// An output cap the gateway set (the client set none): each adapter sends it in the
    /// parameter its upstream understands.
    #[serde(skip)]
    pub gateway_output_cap: Option<u32>,
    /// The `anthropic-beta` header of a `/v1/messages` client, passed on to Anthropic routes.
    #[serde(skip)]
    pub anthropic_beta: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct StreamOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ChatMessage {
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One part of a multi-part message: `text`, `image_url`, `input_audio`, `file`, …
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

// === impl ChatRequest ===

impl ChatRequest {
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether the client asked to see usage in the stream.
    pub fn wants_stream_usage(&self) -> bool {
        self.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false)
    }

    /// The output cap the client asked for, whichever field it used.
    pub fn requested_max_tokens(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// The output cap in force: the client's, or the one the gateway set.
    pub fn output_cap(&self) -> Option<u32> {
        self.requested_max_tokens().or(self.gateway_output_cap)
    }

    /// Lowers the output cap to `n`, in the field the client used (or as a gateway cap).
    pub fn lower_output_cap(&mut self, n: u32) {
        let mut set = false;
        // Every cap field the client set: an upstream may honour either.
        for field in [&mut self.max_completion_tokens, &mut self.max_tokens] {
            if field.is_some() {
                *field = Some(n);
                set = true;
            }
        }
        if !set {
            self.gateway_output_cap = Some(n);
        }
    }

    /// What the prompt is made of, for its token bound (SPEC §4.2: a hold is an upper bound of
    /// what the provider bills). Everything the provider may tokenize counts as text: message
    /// text, the JSON of tool calls, tool definitions and schemas, and of any field the gateway
    /// passes on; images and documents count by their ceilings.
    pub fn prompt_parts(&self) -> PromptParts {
        let mut p =
            PromptParts { messages: u32::try_from(self.messages.len()).unwrap_or(u32::MAX), ..Default::default() };
        for m in &self.messages {
            m.add_parts(&mut p);
        }
        p.tools = self.extra.get("tools").is_some_and(|t| !t.is_null());
        p.text_bytes += json_len(&self.extra);
        p
    }
}

/// Bytes of a value serialised as JSON (a bound on the text it can put into a prompt).
fn json_len<T: Serialize + ?Sized>(v: &T) -> u64 {
    serde_json::to_vec(v).map_or(0, |b| b.len() as u64)
}

// === impl ChatMessage ===

impl ChatMessage {
    /// Characters of text in this message (for the per-message limit).
    pub fn text_chars(&self) -> usize {
        self.texts().map(|t| t.chars().count()).sum()
    }

    /// The message's text, parts joined.
    pub fn joined_text(&self) -> String {
        self.texts().collect::<Vec<_>>().join("")
    }

    fn add_parts(&self, p: &mut PromptParts) {
        p.text_bytes += json_len(&self.extra);
        match &self.content {
            Some(MessageContent::Text(t)) => p.text_bytes += t.len() as u64,
            Some(MessageContent::Parts(parts)) => {
                for part in parts {
                    match part.kind.as_str() {
                        "image_url" => p.images += 1,
                        "file" => p.files += 1,
                        _ => p.text_bytes += part.text.as_ref().map_or(0, |t| t.len() as u64) + json_len(&part.extra),
                    }
                }
            }
            None => {}
        }
    }

    fn texts(&self) -> impl Iterator<Item = &str> {
        let (single, parts) = match &self.content {
            Some(MessageContent::Text(t)) => (Some(t.as_str()), None),
            Some(MessageContent::Parts(p)) => (None, Some(p)),
            None => (None, None),
        };
        single.into_iter().chain(parts.into_iter().flatten().filter_map(|p| p.text.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_unknown_fields_and_counts_text() {
        let body = r#"{"model":"openai/gpt-4o-mini","temperature":0.2,"seed":7,
            "messages":[{"role":"system","content":"be brief"},
                        {"role":"user","content":[{"type":"text","text":"héllo"},
                                                  {"type":"image_url","image_url":{"url":"https://x/y.png"}}]},
                        {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function",
                          "function":{"name":"f","arguments":"{}"}}]}],
            "stream":true,"stream_options":{"include_usage":true}}"#;
        let req: ChatRequest = serde_json::from_str(body).unwrap();
        assert!(req.is_stream() && req.wants_stream_usage());
        assert_eq!(req.extra.get("seed"), Some(&Value::from(7)));
        assert_eq!(req.messages[1].text_chars(), 5);
        assert_eq!(req.messages[2].text_chars(), 0);
        let parts = req.prompt_parts();
        assert_eq!((parts.messages, parts.images, parts.files), (3, 1, 0));
        assert!(parts.text_bytes > 14, "text, the tool call's JSON, and the extra fields");
        assert!(!parts.tools);
        let back = serde_json::to_value(&req).unwrap();
        assert_eq!(back["temperature"], 0.2);
        assert_eq!(back["messages"][2]["tool_calls"][0]["id"], "c1");
    }

    #[test]
    fn lowering_the_output_cap_lowers_every_cap_field_the_client_set() {
        let mut both: ChatRequest = serde_json::from_value(
            serde_json::json!({"model": "m", "messages": [], "max_tokens": 90, "max_completion_tokens": 90}),
        )
        .unwrap();
        both.lower_output_cap(40);
        assert_eq!((both.max_tokens, both.max_completion_tokens, both.gateway_output_cap), (Some(40), Some(40), None));
        let mut none: ChatRequest = serde_json::from_value(serde_json::json!({"model": "m", "messages": []})).unwrap();
        none.lower_output_cap(40);
        assert_eq!((none.max_tokens, none.gateway_output_cap), (None, Some(40)));
    }

    #[test]
    fn rejects_wrong_types() {
        let err = serde_json::from_str::<ChatRequest>(r#"{"model":"a/b","messages":[{"role":"wizard"}]}"#);
        assert!(err.is_err());
        let err = serde_json::from_str::<ChatRequest>(r#"{"model":"a/b","messages":[],"max_tokens":-1}"#);
        assert!(err.is_err());
    }
}
