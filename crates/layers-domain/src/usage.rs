//! Usage reported by an upstream for one request. Invariant: `cached_tokens` is part of
//! `prompt_tokens` and `reasoning_tokens` part of `completion_tokens`, as OpenAI counts them.

/// Token (and image) counts of one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub cached_tokens: u32,
    /// Prompt tokens written to the provider's cache (Anthropic bills them above the input
    /// rate); like `cached_tokens`, part of `prompt_tokens`.
    pub cache_write_tokens: u32,
    pub reasoning_tokens: u32,
    pub images: u32,
}

impl Usage {
    pub fn total_tokens(&self) -> u64 {
        u64::from(self.prompt_tokens) + u64::from(self.completion_tokens)
    }
}
