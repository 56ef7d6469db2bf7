//! The built-in catalogue (`catalogue.toml`, shipped in the binary) merged with the operator's
//! `[[providers]]` and `[[models]]`. Invariant: an operator entry replaces the built-in entry of
//! the same name as a whole; `enabled = false` removes it.

use serde::Deserialize;

use super::{Config, ModelConfig, Problem, ProviderConfig};

const BUILT_IN: &str = include_str!("../../catalogue.toml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BuiltIn {
    updated: String,
    providers: Vec<ProviderConfig>,
    models: Vec<ModelConfig>,
}

/// Providers and models after merging, with the catalogue's date (unix seconds).
pub(super) struct Merged {
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelConfig>,
    pub updated: i64,
}

pub(super) fn merge(config: &Config, problems: &mut Vec<Problem>) -> Merged {
    let built_in: BuiltIn = match toml::from_str(BUILT_IN) {
        Ok(b) => b,
        Err(err) => {
            problems.push(Problem::new("catalogue", format!("the built-in catalogue is invalid: {err}")));
            BuiltIn { updated: String::new(), providers: Vec::new(), models: Vec::new() }
        }
    };
    let updated = time::Date::parse(&built_in.updated, time::macros::format_description!("[year]-[month]-[day]"))
        .map(|d| d.midnight().assume_utc().unix_timestamp())
        .unwrap_or(0);
    Merged {
        providers: overlay(built_in.providers, &config.providers, |p| &p.name, |p| p.enabled),
        models: overlay(built_in.models, &config.models, |m| &m.name, |m| m.enabled),
        updated,
    }
}

fn overlay<T: Clone>(
    base: Vec<T>,
    overrides: &[T],
    name: impl Fn(&T) -> &String,
    enabled: impl Fn(&T) -> Option<bool>,
) -> Vec<T> {
    let mut out: Vec<T> = base.into_iter().filter(|b| !overrides.iter().any(|o| name(o) == name(b))).collect();
    out.extend(overrides.iter().cloned());
    out.retain(|e| enabled(e) != Some(false));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_catalogue_parses_and_every_model_is_priced() {
        let mut problems = Vec::new();
        let merged = merge(&Config::default(), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(merged.updated > 1_700_000_000);
        assert!(merged.models.len() >= 25);
        for m in &merged.models {
            let priced = m.input_per_mtok.is_some() || m.per_image.is_some();
            assert!(priced || m.free, "{} has no price", m.name);
        }
        for p in ["openai", "anthropic", "google", "perplexity", "morph", "sandbox"] {
            assert!(merged.providers.iter().any(|x| x.name == p), "{p}");
        }
    }
}
