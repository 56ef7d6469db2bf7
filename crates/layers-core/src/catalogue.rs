//! The models this deployment knows, their routes to configured providers and their prices
//! with the operator's markup. Invariant: every model has a price (explicitly free or not);
//! a model is *served* only if at least one of its routes reaches an enabled provider.

use std::collections::HashMap;
use std::sync::Arc;

use layers_domain::tokens::PromptCeilings;
use layers_domain::{ImagePrice, Markup, MicroCredits, ModelKind, ModelSpec, Price, Rate, RouteSpec, SearchFees};
use layers_providers::ProviderKind;

/// A model as the gateway serves it.
#[derive(Debug)]
pub struct ModelEntry {
    pub spec: ModelSpec,
    /// Price charged: list price with markup.
    pub price: Price,
    /// Search fees charged, with markup.
    pub search_fees: Option<SearchFees>,
    /// Image prices by quality and size charged, with markup.
    pub image_prices: Vec<ImagePrice>,
    /// Routes whose provider is enabled, in order of preference.
    pub routes: Vec<RouteSpec>,
}

/// The most tokens one input image costs at a provider (its documented maximum after the
/// provider's own downscaling), unless the model's entry says otherwise.
fn image_tokens_of(kind: ProviderKind) -> u32 {
    match kind {
        // GPT-4.1-nano's patches at their cap (1,536 × 2.46); GPT-4o tops out lower.
        ProviderKind::OpenAi => 3_800,
        // Images past ~1.15 megapixels are scaled down to at most ~1,600 tokens.
        ProviderKind::Anthropic => 1_600,
        // 258 tokens per 768-pixel tile; a 4,608-pixel square image makes 36 tiles.
        ProviderKind::Gemini => 9_288,
        ProviderKind::Sandbox => 85,
    }
}

impl ModelEntry {
    /// The most each kind of prompt part may cost on this model, over the providers that may
    /// serve it.
    pub fn ceilings(&self, kinds: impl Iterator<Item = ProviderKind>, bytes_per_token: u32) -> PromptCeilings {
        let image_tokens =
            self.spec.image_input_tokens.unwrap_or_else(|| kinds.map(image_tokens_of).max().unwrap_or(1_600));
        PromptCeilings {
            bytes_per_token,
            image_tokens,
            file_tokens: self.spec.file_tokens.unwrap_or(self.spec.context_window),
            context_window: self.spec.context_window,
        }
    }

    /// The price of one generated image: of this quality and size when both are known, else the
    /// dearest that matches what is known (an upper bound until the answer says).
    pub fn image_price(&self, quality: Option<&str>, size: Option<&str>) -> MicroCredits {
        self.image_prices
            .iter()
            .filter(|p| quality.is_none_or(|q| q == p.quality) && size.is_none_or(|s| s == p.size))
            .map(|p| p.price)
            .max()
            .unwrap_or(self.price.per_image)
    }

    pub fn is_served(&self) -> bool {
        !self.routes.is_empty()
    }

    pub fn name(&self) -> &str {
        self.spec.name.as_str()
    }
}

#[derive(Debug, Default)]
pub struct Catalogue {
    ordered: Vec<Arc<ModelEntry>>,
    by_name: HashMap<String, Arc<ModelEntry>>,
    /// Bare names (`gpt-4o-mini`) that match exactly one served model.
    aliases: HashMap<String, Arc<ModelEntry>>,
}

/// Why a model name did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    Unknown,
    /// Known, but no enabled provider serves it here.
    NotServed,
    /// Exists, but not for this endpoint (e.g. an embedding model asked to chat).
    WrongKind(ModelKind),
}

impl Catalogue {
    /// Builds the catalogue; `enabled` says whether a provider name is configured and usable.
    pub fn new(specs: Vec<ModelSpec>, markup: Markup, enabled: impl Fn(&str) -> bool) -> Catalogue {
        let mut cat = Catalogue::default();
        let mut bare: HashMap<String, Vec<Arc<ModelEntry>>> = HashMap::new();
        for spec in specs {
            let routes = spec.routes.iter().filter(|r| enabled(&r.provider)).cloned().collect();
            let image_prices = spec
                .image_prices
                .iter()
                .map(|p| ImagePrice {
                    price: MicroCredits(Rate::from_micros_per_mtok(p.price.0).with_markup(markup).micros_per_mtok()),
                    ..p.clone()
                })
                .collect();
            let entry = Arc::new(ModelEntry {
                price: spec.list_price.with_markup(markup),
                search_fees: spec.search_fees.map(|f| f.with_markup(markup)),
                image_prices,
                routes,
                spec,
            });
            if let Some((_, short)) = entry.name().split_once('/') {
                if entry.is_served() {
                    bare.entry(short.to_owned()).or_default().push(entry.clone());
                }
            }
            cat.by_name.insert(entry.name().to_owned(), entry.clone());
            cat.ordered.push(entry);
        }
        cat.aliases =
            bare.into_iter().filter(|(_, v)| v.len() == 1).filter_map(|(k, mut v)| Some((k, v.pop()?))).collect();
        cat.ordered.sort_by(|a, b| a.name().cmp(b.name()));
        cat
    }

    /// The model a name means. `served_only` is false for test keys, which the sandbox answers
    /// for any known model whether or not its provider is configured here.
    pub fn resolve(&self, name: &str, kind: ModelKind, served_only: bool) -> Result<&Arc<ModelEntry>, Unresolved> {
        let entry = self.by_name.get(name).or_else(|| self.aliases.get(name)).ok_or(Unresolved::Unknown)?;
        if served_only && !entry.is_served() {
            return Err(Unresolved::NotServed);
        }
        if entry.spec.kind != kind {
            return Err(Unresolved::WrongKind(entry.spec.kind));
        }
        Ok(entry)
    }

    /// Served models, sorted by name.
    pub fn served(&self) -> impl Iterator<Item = &Arc<ModelEntry>> {
        self.ordered.iter().filter(|e| e.is_served())
    }

    /// Every known model, sorted by name.
    pub fn all(&self) -> impl Iterator<Item = &Arc<ModelEntry>> {
        self.ordered.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use layers_domain::ModelName;

    fn spec(name: &str, provider: &str, kind: ModelKind) -> ModelSpec {
        ModelSpec {
            name: ModelName::parse(name).unwrap(),
            kind,
            routes: vec![RouteSpec { provider: provider.into(), upstream_model: "m".into() }],
            list_price: Price::from_usd(1.0, 2.0, None, None).unwrap(),
            context_window: 1000,
            max_output_tokens: 100,
            created: 0,
            image_input_tokens: None,
            file_tokens: None,
            search_fees: None,
            image_prices: Vec::new(),
            image_default_quality: None,
            image_default_size: None,
        }
    }

    #[test]
    fn resolves_served_models_and_unambiguous_aliases() {
        let cat = Catalogue::new(
            vec![
                spec("openai/gpt-4o", "openai", ModelKind::Chat),
                spec("azure/gpt-4o", "azure", ModelKind::Chat),
                spec("openai/o3", "openai", ModelKind::Chat),
                spec("anthropic/claude", "anthropic", ModelKind::Chat),
                spec("openai/text-embedding-3-small", "openai", ModelKind::Embedding),
            ],
            Markup::from_percent(10.0).unwrap(),
            |p| p != "anthropic",
        );
        assert_eq!(cat.resolve("openai/o3", ModelKind::Chat, true).unwrap().name(), "openai/o3");
        assert_eq!(cat.resolve("o3", ModelKind::Chat, true).unwrap().name(), "openai/o3");
        assert_eq!(cat.resolve("gpt-4o", ModelKind::Chat, true).unwrap_err(), Unresolved::Unknown, "ambiguous alias");
        assert_eq!(cat.resolve("anthropic/claude", ModelKind::Chat, true).unwrap_err(), Unresolved::NotServed);
        assert_eq!(cat.resolve("anthropic/claude", ModelKind::Chat, false).unwrap().name(), "anthropic/claude");
        assert_eq!(cat.resolve("nope/x", ModelKind::Chat, false).unwrap_err(), Unresolved::Unknown);
        assert_eq!(
            cat.resolve("openai/text-embedding-3-small", ModelKind::Chat, true).unwrap_err(),
            Unresolved::WrongKind(ModelKind::Embedding)
        );
        assert_eq!(cat.served().count(), 4);
        let o3 = cat.resolve("o3", ModelKind::Chat, true).unwrap();
        assert_eq!(o3.price.input.micros_per_mtok(), 110_000_000);
    }
}
