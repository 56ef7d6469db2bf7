//! Models of the catalogue: `provider/model` names, the routes that serve them and their price.
//! Invariant: a [`ModelSpec`] always has at least one route and a price (possibly explicitly free).

use std::fmt;

use crate::money::{MicroCredits, Price, Rate};

/// A public model name such as `openai/gpt-4o-mini`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelNameError {
    #[error("model names have the form provider/model")]
    Shape,
    #[error("model names use only letters, digits and . _ - : / @")]
    Charset,
    #[error("model names are at most 200 characters")]
    Length,
}

/// What a model does; decides which endpoints may use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Chat,
    Embedding,
    Image,
}

/// One way to serve a model: a configured provider and the model id it knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    pub provider: String,
    pub upstream_model: String,
}

/// Everything the gateway knows about one model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub name: ModelName,
    pub kind: ModelKind,
    pub routes: Vec<RouteSpec>,
    /// List price, before the operator's markup.
    pub list_price: Price,
    pub context_window: u32,
    pub max_output_tokens: u32,
    /// Unix seconds, shown as `created` by `/v1/models`.
    pub created: i64,
    /// Most tokens one input image may cost on this model (`None`: its provider's default).
    pub image_input_tokens: Option<u32>,
    /// Most tokens one input document (PDF…) may cost (`None`: the whole context window).
    pub file_tokens: Option<u32>,
    /// Per-request fees of a request that searches the web (list price).
    pub search_fees: Option<SearchFees>,
    /// Image generation prices by quality and size (list price); the model's `per_image`
    /// applies to combinations not listed.
    pub image_prices: Vec<ImagePrice>,
    /// The quality and size the provider makes when a request names none (`None`: it decides
    /// per request, as gpt-image's `auto` does).
    pub image_default_quality: Option<String>,
    pub image_default_size: Option<String>,
}

/// How much of the web a search reads, as OpenAI and Perplexity name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SearchContextSize {
    Low,
    Medium,
    High,
}

impl SearchContextSize {
    pub fn parse(s: &str) -> Option<SearchContextSize> {
        match s {
            "low" => Some(SearchContextSize::Low),
            "medium" => Some(SearchContextSize::Medium),
            "high" => Some(SearchContextSize::High),
            _ => None,
        }
    }
}

/// What a searching request costs per request, by search context size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SearchFees {
    pub low: MicroCredits,
    pub medium: MicroCredits,
    pub high: MicroCredits,
    /// The size the provider uses when the request names none.
    pub default_size: SearchContextSize,
    /// The model searches unless told not to (Perplexity's Sonar models).
    pub by_default: bool,
}

impl SearchFees {
    pub fn fee(&self, size: Option<SearchContextSize>) -> MicroCredits {
        match size.unwrap_or(self.default_size) {
            SearchContextSize::Low => self.low,
            SearchContextSize::Medium => self.medium,
            SearchContextSize::High => self.high,
        }
    }

    pub fn with_markup(self, markup: crate::money::Markup) -> SearchFees {
        let up = |m: MicroCredits| MicroCredits(Rate::from_micros_per_mtok(m.0).with_markup(markup).micros_per_mtok());
        SearchFees { low: up(self.low), medium: up(self.medium), high: up(self.high), ..self }
    }
}

/// The price of one generated image of a quality and size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImagePrice {
    pub quality: String,
    pub size: String,
    pub price: MicroCredits,
}

// === impl ModelName ===

impl ModelName {
    pub fn parse(s: &str) -> Result<ModelName, ModelNameError> {
        if s.len() > 200 {
            return Err(ModelNameError::Length);
        }
        let Some((provider, model)) = s.split_once('/') else {
            return Err(ModelNameError::Shape);
        };
        if provider.is_empty() || model.is_empty() {
            return Err(ModelNameError::Shape);
        }
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/' | b'@');
        if !s.bytes().all(allowed) {
            return Err(ModelNameError::Charset);
        }
        Ok(ModelName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the first `/`, e.g. `openai`.
    pub fn owner(&self) -> &str {
        self.0.split_once('/').map(|(p, _)| p).unwrap_or(&self.0)
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names() {
        let n = ModelName::parse("anthropic/claude-sonnet-4.5").unwrap();
        assert_eq!(n.owner(), "anthropic");
        assert!(ModelName::parse("meta/llama-3.1-8b-instruct:free").is_ok());
        assert_eq!(ModelName::parse("gpt-4o").unwrap_err(), ModelNameError::Shape);
        assert_eq!(ModelName::parse("/x").unwrap_err(), ModelNameError::Shape);
        assert_eq!(ModelName::parse("a/b c").unwrap_err(), ModelNameError::Charset);
        assert_eq!(ModelName::parse(&format!("a/{}", "b".repeat(200))).unwrap_err(), ModelNameError::Length);
    }
}
