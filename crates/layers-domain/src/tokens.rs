//! Token counts known before the upstream reports usage: the upper bound a hold covers, and the
//! estimates used when a request ends without usage. Invariant: `prompt_upper_bound` is never
//! below what a provider can bill for the prompt — byte-level tokenizers (OpenAI, Anthropic,
//! Gemini's byte fallback) never make more tokens than bytes, parts that cannot be counted are
//! bounded by their ceilings, and no prompt exceeds the model's context window.

/// Tokens a provider adds per message for role and separators, and once per reply.
const PER_MESSAGE_OVERHEAD: u32 = 8;
const PER_REPLY_OVERHEAD: u32 = 8;
/// Tokens a provider adds to the prompt when tools are offered (Anthropic's tool-use system
/// prompt is 346 tokens; OpenAI's is smaller).
const TOOLS_OVERHEAD: u32 = 600;
/// Typical bytes per token of text, for estimates that should be close rather than high.
const TYPICAL_BYTES_PER_TOKEN: u64 = 4;
/// Typical tokens of an image, for the estimate of a prompt whose usage was never reported.
const TYPICAL_IMAGE_TOKENS: u32 = 85;

/// What a prompt is made of, as far as its token count goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PromptParts {
    pub messages: u32,
    /// UTF-8 bytes of text: message text, tool calls and results, tool definitions, schemas.
    pub text_bytes: u64,
    pub images: u32,
    /// Documents (PDF and other files), whose pages the provider turns into tokens.
    pub files: u32,
    /// Whether tools are offered (the provider adds a system prompt for them).
    pub tools: bool,
}

/// The most tokens each kind of part may cost on one model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PromptCeilings {
    /// Bytes of text per token counted in the bound: 1 is exact for byte-level tokenizers;
    /// more makes holds smaller at the risk of a charge above the hold.
    pub bytes_per_token: u32,
    /// Most tokens one image may cost on this model.
    pub image_tokens: u32,
    /// Most tokens one document may cost (by default the whole context window).
    pub file_tokens: u32,
    /// The model's context window; 0 when unknown (then nothing caps the sum).
    pub context_window: u32,
}

impl Default for PromptCeilings {
    fn default() -> Self {
        PromptCeilings { bytes_per_token: 1, image_tokens: 1_600, file_tokens: u32::MAX, context_window: 0 }
    }
}

/// The most prompt tokens a provider can bill for a prompt made of `p`.
pub fn prompt_upper_bound(p: &PromptParts, c: &PromptCeilings) -> u32 {
    let per_token = u64::from(c.bytes_per_token.max(1));
    let text = p.text_bytes.div_ceil(per_token);
    let sum = text
        + u64::from(p.messages) * u64::from(PER_MESSAGE_OVERHEAD)
        + u64::from(PER_REPLY_OVERHEAD)
        + u64::from(p.images) * u64::from(c.image_tokens)
        + u64::from(p.files) * u64::from(c.file_tokens)
        + if p.tools { u64::from(TOOLS_OVERHEAD) } else { 0 };
    let capped = if c.context_window > 0 { sum.min(u64::from(c.context_window)) } else { sum };
    u32::try_from(capped).unwrap_or(u32::MAX)
}

/// Upper bound for a piece of text sent on its own (embeddings inputs, image prompts).
pub fn text_upper_bound(bytes: usize) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX).saturating_add(PER_REPLY_OVERHEAD)
}

/// Typical (not upper-bound) prompt size, for usage the upstream did not report.
pub fn typical_prompt(p: &PromptParts) -> u32 {
    let text = u32::try_from(p.text_bytes.div_ceil(TYPICAL_BYTES_PER_TOKEN)).unwrap_or(u32::MAX);
    text.saturating_add(p.messages.saturating_mul(PER_MESSAGE_OVERHEAD))
        .saturating_add(p.images.saturating_mul(TYPICAL_IMAGE_TOKENS))
        .saturating_add(PER_REPLY_OVERHEAD)
}

/// Best estimate of tokens already generated, from streamed text (≈4 bytes per token).
pub fn estimate_generated(text_bytes: usize) -> u32 {
    u32::try_from((text_bytes as u64).div_ceil(TYPICAL_BYTES_PER_TOKEN)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_counts_every_part_and_stops_at_the_window() {
        let c = PromptCeilings { bytes_per_token: 1, image_tokens: 1_600, file_tokens: 50_000, context_window: 0 };
        let text = PromptParts { messages: 1, text_bytes: 5, ..PromptParts::default() };
        assert_eq!(prompt_upper_bound(&text, &c), 5 + 8 + 8);
        let mixed = PromptParts { messages: 2, text_bytes: 0, images: 1, files: 2, tools: true };
        assert_eq!(prompt_upper_bound(&mixed, &c), 16 + 8 + 1_600 + 100_000 + 600);
        let windowed = PromptCeilings { context_window: 64_000, ..c };
        assert_eq!(prompt_upper_bound(&mixed, &windowed), 64_000);
        let loose = PromptCeilings { bytes_per_token: 3, ..c };
        assert_eq!(prompt_upper_bound(&PromptParts { text_bytes: 7, ..PromptParts::default() }, &loose), 3 + 8);
        // A file with no ceiling configured still stops at the window.
        let unbounded = PromptCeilings { file_tokens: u32::MAX, context_window: 128_000, ..c };
        assert_eq!(prompt_upper_bound(&PromptParts { files: 3, ..PromptParts::default() }, &unbounded), 128_000);
    }

    #[test]
    fn estimates() {
        assert_eq!(estimate_generated(9), 3);
        assert_eq!(
            typical_prompt(&PromptParts { messages: 1, text_bytes: 8, images: 1, ..Default::default() }),
            2 + 8 + 85 + 8
        );
        assert_eq!(text_upper_bound(10), 18);
    }
}
