//! The OpenRouter superset of a chat request, so a client switches from OpenRouter by changing
//! the base URL and the key: `models` (models to fall back to, in order), `provider` (which of a
//! model's routes to use and in what order: `order`, `only`, `ignore`, `allow_fallbacks`,
//! `sort`, `max_price`), `usage: {"include": true}` and the no-op `route: "fallback"`.
//! Invariant: these fields are read and removed before anything else sees the request, so no
//! upstream ever receives them; what cannot be honoured (`transforms`, `provider.zdr`) is a 400
//! naming it.

use layers_domain::{MicroCredits, Price, Rate};
use layers_providers::ChatRequest;
use serde::Deserialize;
use serde_json::Value;

use super::ChatError;
use crate::codes::ErrorCode;

/// OpenRouter's request fields, read and removed here.
pub const OPENROUTER_FIELDS: [&str; 5] = ["models", "provider", "usage", "transforms", "route"];

/// The most models one request may name in `models`.
pub const MAX_MODELS: usize = 8;

/// What the request asked of routing and of its usage object.
#[derive(Debug, Default)]
pub struct Preferences {
    /// Models to try after the request's own, in order.
    pub fallbacks: Vec<String>,
    pub provider: ProviderPreferences,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderPreferences {
    #[serde(default)]
    pub order: Vec<String>,
    #[serde(default)]
    pub only: Option<Vec<String>>,
    #[serde(default)]
    pub ignore: Vec<String>,
    #[serde(default)]
    pub allow_fallbacks: Option<bool>,
    #[serde(default)]
    pub sort: Option<Sort>,
    #[serde(default)]
    pub max_price: Option<MaxPrice>,
    /// Every parameter is honoured or refused here already, so this changes nothing.
    #[serde(default)]
    #[allow(dead_code)]
    require_parameters: Option<bool>,
    #[serde(default)]
    data_collection: Option<String>,
    #[serde(default)]
    zdr: Option<bool>,
    /// Soft preferences about routes this gateway does not measure: accepted, and they do not
    /// change the answer.
    #[serde(default)]
    #[allow(dead_code)]
    quantizations: Option<Vec<String>>,
    #[serde(default)]
    #[allow(dead_code)]
    preferred_min_throughput: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    preferred_max_latency: Option<Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sort {
    Price,
    Throughput,
    Latency,
}

/// The most the client will pay, in US$ per million tokens (`prompt`, `completion`) and per
/// image.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaxPrice {
    #[serde(default)]
    pub prompt: Option<f64>,
    #[serde(default)]
    pub completion: Option<f64>,
    #[serde(default)]
    pub image: Option<f64>,
    #[serde(default)]
    pub request: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageOption {
    #[serde(default)]
    include: Option<bool>,
}

fn invalid(param: &str, message: impl Into<String>) -> ChatError {
    ChatError::Invalid { message: message.into(), param: Some(param.to_owned()), code: ErrorCode::InvalidValue }
}

fn unsupported(param: &str, message: &str) -> ChatError {
    ChatError::Invalid {
        message: message.to_owned(),
        param: Some(param.to_owned()),
        code: ErrorCode::UnsupportedParameter,
    }
}

fn typed<T: serde::de::DeserializeOwned>(value: Value, param: &str) -> Result<T, ChatError> {
    layers_providers::translate::field(&value, param).map_err(|e| match e {
        layers_providers::ProviderError::Unsupported { param, message } => invalid(&param, message),
        _ => invalid(param, format!("`{param}` is malformed")),
    })
}

/// Reads the OpenRouter fields of `req` and removes them from it.
pub fn take(req: &mut ChatRequest) -> Result<Preferences, ChatError> {
    let mut prefs = Preferences::default();
    if let Some(models) = req.extra.remove("models").filter(|v| !v.is_null()) {
        let models: Vec<String> = typed(models, "models")?;
        if models.len() > MAX_MODELS {
            return Err(invalid("models", format!("`models` may name at most {MAX_MODELS} models")));
        }
        if models.iter().any(String::is_empty) {
            return Err(invalid("models", "`models` must name models"));
        }
        // The request's own model first (or the first of the list when it names none).
        let mut list = models.into_iter();
        if req.model.is_empty() {
            req.model = list.next().ok_or_else(|| invalid("models", "`models` must name at least one model"))?;
        }
        for m in list {
            if m != req.model && !prefs.fallbacks.contains(&m) {
                prefs.fallbacks.push(m);
            }
        }
    }
    if req.model.is_empty() {
        return Err(invalid("model", "`model` (or `models`) is required"));
    }
    if let Some(provider) = req.extra.remove("provider").filter(|v| !v.is_null()) {
        prefs.provider = typed(provider, "provider")?;
        if prefs.provider.zdr == Some(true) || prefs.provider.data_collection.as_deref() == Some("deny") {
            let param = if prefs.provider.zdr == Some(true) { "provider.zdr" } else { "provider.data_collection" };
            return Err(unsupported(
                param,
                "this deployment's routes are chosen by its operator, who decides their data policies; ask them, \
                 or leave this field out",
            ));
        }
    }
    if let Some(usage) = req.extra.remove("usage").filter(|v| !v.is_null()) {
        let usage: UsageOption = typed(usage, "usage")?;
        if usage.include == Some(true) && req.is_stream() {
            let options = req.stream_options.get_or_insert_with(Default::default);
            options.include_usage = Some(true);
        }
    }
    match req.extra.remove("transforms") {
        None | Some(Value::Null) => {}
        Some(Value::Array(t)) if t.is_empty() => {}
        Some(_) => return Err(unsupported("transforms", "prompt transforms (`middle-out`) are not offered")),
    }
    if let Some(route) = req.extra.remove("route") {
        if !route.is_null() && route != "fallback" {
            return Err(invalid("route", "`route` may only be `fallback`"));
        }
    }
    Ok(prefs)
}

fn same_provider(wanted: &str, configured: &str) -> bool {
    let slug = |s: &str| s.trim().to_ascii_lowercase().replace([' ', '_'], "-");
    slug(wanted) == slug(configured)
}

impl ProviderPreferences {
    /// The routes to try, as indices into `providers` (a model's routes' provider names, in
    /// the catalogue's order), given each route's recent latency (ms) when known. `None` when
    /// no route is left.
    pub fn arrange(&self, providers: &[&str], latency_ms: impl Fn(usize) -> Option<u64>) -> Option<Vec<usize>> {
        let allowed = |i: &usize| {
            let name = providers[*i];
            self.only.as_ref().is_none_or(|only| only.iter().any(|o| same_provider(o, name)))
                && !self.ignore.iter().any(|o| same_provider(o, name))
        };
        let kept: Vec<usize> = (0..providers.len()).filter(allowed).collect();
        let mut ordered: Vec<usize> = Vec::new();
        for wanted in &self.order {
            for &i in &kept {
                if same_provider(wanted, providers[i]) && !ordered.contains(&i) {
                    ordered.push(i);
                }
            }
        }
        let fallbacks = self.allow_fallbacks.unwrap_or(true);
        let mut routes = if self.order.is_empty() {
            if fallbacks {
                kept
            } else {
                kept.into_iter().take(1).collect()
            }
        } else if fallbacks {
            let rest: Vec<usize> = kept.into_iter().filter(|i| !ordered.contains(i)).collect();
            ordered.into_iter().chain(rest).collect()
        } else {
            ordered
        };
        // A model's routes share its price; latency sorts by what this node saw lately (a
        // route not yet measured goes last), keeping the order among equals.
        if matches!(self.sort, Some(Sort::Latency | Sort::Throughput)) && self.order.is_empty() {
            routes.sort_by_key(|&i| latency_ms(i).unwrap_or(u64::MAX));
        }
        (!routes.is_empty()).then_some(routes)
    }

    /// Whether a model at `price` is within `max_price`; `Err` names the field it passes.
    pub fn within_price(&self, price: &Price) -> Result<(), &'static str> {
        let Some(max) = self.max_price else { return Ok(()) };
        let over_rate = |limit: Option<f64>, rate: Rate| {
            limit.is_some_and(|usd| Rate::from_usd_per_mtok(usd.max(0.0)).map_or(true, |max| rate > max))
        };
        if over_rate(max.prompt, price.input) {
            return Err("provider.max_price.prompt");
        }
        if over_rate(max.completion, price.output) {
            return Err("provider.max_price.completion");
        }
        let per_image = max.image.map(|usd| MicroCredits::from_usd(usd.max(0.0)).ok());
        if per_image.is_some_and(|m| m.is_none_or(|m| price.per_image > m)) {
            return Err("provider.max_price.image");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(body: Value) -> ChatRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn takes_the_fields_out_of_the_request() {
        let mut req = request(json!({"model": "", "messages": [], "stream": true,
            "models": ["a/x", "b/y", "a/x"], "provider": {"order": ["OpenAI"], "allow_fallbacks": false},
            "usage": {"include": true}, "route": "fallback", "transforms": [], "seed": 1}));
        let p = take(&mut req).unwrap();
        assert_eq!(req.model, "a/x");
        assert_eq!(p.fallbacks, ["b/y"]);
        assert_eq!(p.provider.order, ["OpenAI"]);
        assert!(req.wants_stream_usage());
        assert_eq!(req.extra.keys().collect::<Vec<_>>(), ["seed"], "only what an upstream may see is left");
    }

    #[test]
    fn refuses_what_it_cannot_honour_by_name() {
        let param = |body: Value| match take(&mut request(body)) {
            Err(ChatError::Invalid { param, .. }) => param.unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(param(json!({"model": "m", "messages": [], "transforms": ["middle-out"]})), "transforms");
        assert_eq!(param(json!({"model": "m", "messages": [], "provider": {"zdr": true}})), "provider.zdr");
        assert_eq!(param(json!({"model": "m", "messages": [], "provider": {"order": "x"}})), "provider.order");
        assert_eq!(param(json!({"model": "m", "messages": [], "provider": {"colour": 1}})), "provider.colour");
        assert_eq!(param(json!({"model": "m", "messages": [], "models": [1]})), "models[0]");
        assert_eq!(param(json!({"model": "", "messages": []})), "model");
    }

    #[test]
    fn arranges_routes_by_order_only_ignore_and_latency() {
        let providers = ["openai", "azure", "groq"];
        let none = |_: usize| None;
        let prefs = |v: Value| serde_json::from_value::<ProviderPreferences>(v).unwrap();
        assert_eq!(prefs(json!({})).arrange(&providers, none), Some(vec![0, 1, 2]));
        assert_eq!(prefs(json!({"order": ["Groq"]})).arrange(&providers, none), Some(vec![2, 0, 1]));
        assert_eq!(
            prefs(json!({"order": ["groq", "azure"], "allow_fallbacks": false})).arrange(&providers, none),
            Some(vec![2, 1])
        );
        assert_eq!(prefs(json!({"allow_fallbacks": false})).arrange(&providers, none), Some(vec![0]));
        assert_eq!(
            prefs(json!({"only": ["azure", "groq"], "ignore": ["groq"]})).arrange(&providers, none),
            Some(vec![1])
        );
        assert_eq!(prefs(json!({"only": ["mistral"]})).arrange(&providers, none), None);
        let latency = |i: usize| [Some(300), None, Some(100)][i];
        assert_eq!(prefs(json!({"sort": "latency"})).arrange(&providers, latency), Some(vec![2, 0, 1]));
        assert_eq!(prefs(json!({"sort": "price"})).arrange(&providers, latency), Some(vec![0, 1, 2]));
    }

    #[test]
    fn max_price_is_per_million_tokens() {
        let price = Price {
            input: Rate::from_usd_per_mtok(0.15).unwrap(),
            output: Rate::from_usd_per_mtok(0.60).unwrap(),
            ..Price::default()
        };
        let prefs = |v: Value| serde_json::from_value::<ProviderPreferences>(v).unwrap();
        assert_eq!(prefs(json!({"max_price": {"prompt": 0.15, "completion": 1}})).within_price(&price), Ok(()));
        assert_eq!(
            prefs(json!({"max_price": {"prompt": 1, "completion": 0.5}})).within_price(&price),
            Err("provider.max_price.completion")
        );
        assert_eq!(prefs(json!({"max_price": {"prompt": 0.1}})).within_price(&price), Err("provider.max_price.prompt"));
    }
}
