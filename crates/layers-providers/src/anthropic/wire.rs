//! What Anthropic's Messages API answers, as types: the message object and the stream's events
//! (https://docs.anthropic.com/en/api/messages, .../messages-streaming). Invariant: a field the
//! translation reads is a typed field here, so a renamed one is a compile error; kinds Anthropic
//! adds later parse as `Other` and are skipped, never an error.

use serde::Deserialize;
use serde_json::Value;

use crate::translate::ThinkingBlock;

/// A non-streamed answer.
#[derive(Debug, Deserialize)]
pub(super) struct Message {
    #[serde(default)]
    pub model: String,
    pub content: Vec<ContentBlock>,
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub usage: WireUsage,
}

/// One block of a message's content.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ContentBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
        #[serde(default)]
        signature: Option<String>,
    },
    RedactedThinking {
        #[serde(default)]
        data: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    #[serde(other)]
    Other,
}

impl ContentBlock {
    /// A thinking block as it goes back to Anthropic in a later turn (`thinking_blocks`).
    pub fn thinking_block(&self) -> Option<ThinkingBlock> {
        match self {
            ContentBlock::Thinking { thinking, signature } => {
                Some(ThinkingBlock::Thinking { thinking: thinking.clone(), signature: signature.clone() })
            }
            ContentBlock::RedactedThinking { data } => Some(ThinkingBlock::RedactedThinking { data: data.clone() }),
            _ => None,
        }
    }
}

/// Token counts; a stream reports them in pieces (`message_start`, then `message_delta`).
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub(super) struct WireUsage {
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
}

impl WireUsage {
    /// The counts `later` reports replace these; the ones it leaves out stay.
    pub fn merge(&mut self, later: &WireUsage) {
        let keep = |mine: &mut Option<u64>, theirs: Option<u64>| {
            if theirs.is_some() {
                *mine = theirs;
            }
        };
        keep(&mut self.input_tokens, later.input_tokens);
        keep(&mut self.output_tokens, later.output_tokens);
        keep(&mut self.cache_read_input_tokens, later.cache_read_input_tokens);
        keep(&mut self.cache_creation_input_tokens, later.cache_creation_input_tokens);
    }
}

/// One event of a streamed answer.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum StreamEvent {
    MessageStart {
        message: MessageStart,
    },
    ContentBlockStart {
        #[serde(default)]
        index: u64,
        content_block: ContentBlock,
    },
    ContentBlockDelta {
        #[serde(default)]
        index: u64,
        delta: Delta,
    },
    ContentBlockStop {
        #[serde(default)]
        index: u64,
    },
    MessageDelta {
        #[serde(default)]
        delta: MessageDelta,
        #[serde(default)]
        usage: WireUsage,
    },
    MessageStop,
    Error {
        error: WireError,
    },
    /// `ping`, and event types added later: nothing to forward.
    #[serde(other)]
    Other,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct MessageStart {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub usage: WireUsage,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct MessageDelta {
    #[serde(default)]
    pub stop_reason: Option<String>,
}

/// A piece of the block being streamed.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Delta {
    #[serde(rename = "text_delta")]
    Text {
        #[serde(default)]
        text: String,
    },
    #[serde(rename = "input_json_delta")]
    InputJson {
        #[serde(default)]
        partial_json: String,
    },
    #[serde(rename = "thinking_delta")]
    Thinking {
        #[serde(default)]
        thinking: String,
    },
    #[serde(rename = "signature_delta")]
    Signature {
        #[serde(default)]
        signature: String,
    },
    #[serde(other)]
    Other,
}

/// `{"type": "error", "error": {"type", "message"}}`, also as a stream event.
#[derive(Debug, Deserialize)]
pub(super) struct WireError {
    #[serde(default)]
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_kinds_parse_as_other() {
        let ev: StreamEvent = serde_json::from_str(r#"{"type":"ping"}"#).unwrap();
        assert!(matches!(ev, StreamEvent::Other));
        let ev: StreamEvent = serde_json::from_str(
            r#"{"type":"content_block_start","index":2,"content_block":{"type":"server_tool_use","id":"x"}}"#,
        )
        .unwrap();
        assert!(matches!(ev, StreamEvent::ContentBlockStart { index: 2, content_block: ContentBlock::Other }));
        let d: Delta = serde_json::from_str(r#"{"type":"citations_delta","citation":{}}"#).unwrap();
        assert!(matches!(d, Delta::Other));
    }

    #[test]
    fn usage_merges_what_later_events_report() {
        let mut u: WireUsage = serde_json::from_str(r#"{"input_tokens":10,"output_tokens":1}"#).unwrap();
        u.merge(&serde_json::from_str(r#"{"output_tokens":40}"#).unwrap());
        assert_eq!((u.input_tokens, u.output_tokens), (Some(10), Some(40)));
    }
}
