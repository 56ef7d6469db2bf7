//! Conservative token estimates, used before the upstream reports usage (holds, and requests
//! cut short). Invariant: estimates err high for prompts — one token per three UTF-8 bytes
//! covers English (≈4 bytes/token) and CJK (≈3 bytes/token) alike.

/// Tokens OpenAI adds per message for role and separators, and once per reply.
const PER_MESSAGE_OVERHEAD: u32 = 4;
const PER_REPLY_OVERHEAD: u32 = 3;

/// Upper-bound estimate for a piece of prompt text.
pub fn estimate_text(text: &str) -> u32 {
    bytes_to_tokens(text.len())
}

/// Upper-bound estimate for a prompt of `messages` messages holding `text_bytes` bytes of text
/// and `images` images.
pub fn estimate_prompt(messages: usize, text_bytes: usize, images: usize) -> u32 {
    let per_message = (messages as u32).saturating_mul(PER_MESSAGE_OVERHEAD);
    // A high-detail image costs at most ~1,600 tokens at the major providers.
    let per_image = (images as u32).saturating_mul(1_600);
    bytes_to_tokens(text_bytes).saturating_add(per_message).saturating_add(per_image).saturating_add(PER_REPLY_OVERHEAD)
}

/// Typical (not upper-bound) prompt size, for usage the upstream did not report: ≈4 bytes
/// per token, message overhead, and ~85 tokens per low-detail image.
pub fn typical_prompt(messages: usize, text_bytes: usize, images: usize) -> u32 {
    estimate_generated(text_bytes)
        .saturating_add((messages as u32).saturating_mul(PER_MESSAGE_OVERHEAD))
        .saturating_add((images as u32).saturating_mul(85))
        .saturating_add(PER_REPLY_OVERHEAD)
}

/// Best estimate of tokens already generated, from streamed text (≈4 bytes per token).
pub fn estimate_generated(text_bytes: usize) -> u32 {
    u32::try_from(text_bytes.div_ceil(4)).unwrap_or(u32::MAX)
}

fn bytes_to_tokens(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(3)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates() {
        assert_eq!(estimate_text(""), 0);
        assert_eq!(estimate_text("hello"), 2);
        assert_eq!(estimate_text("你好"), 2);
        assert_eq!(estimate_prompt(1, 5, 0), 2 + 4 + 3);
        assert_eq!(estimate_prompt(2, 0, 1), 8 + 1600 + 3);
        assert_eq!(estimate_generated(9), 3);
        assert_eq!(typical_prompt(1, 8, 1), 2 + 4 + 85 + 3);
    }
}
