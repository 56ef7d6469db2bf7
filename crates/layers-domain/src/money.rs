//! Integer money. 1 credit = US$0.01 = 1,000,000 micro-credits; rates are micro-credits per
//! million tokens. Invariant: no floating point touches an amount once a price is loaded, and a
//! cost is rounded up exactly once per request (never free by rounding, no drift when summed).

use std::fmt;

use crate::usage::Usage;

pub const MICROS_PER_CREDIT: i64 = 1_000_000;
/// US$1 = 100 credits.
pub const MICROS_PER_USD: i64 = 100 * MICROS_PER_CREDIT;
const TOKENS_PER_MTOK: i128 = 1_000_000;
/// Largest list price accepted, in US$ per million tokens (or per image).
const MAX_USD_PRICE: f64 = 100_000.0;

/// An amount of money in micro-credits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct MicroCredits(pub i64);

/// A price per token, as micro-credits per million tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Rate(i64);

/// The operator's markup over list price, in basis points (1 % = 100).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Markup(u32);

/// What a model costs: per-token rates and, for image models, a price per image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Price {
    pub input: Rate,
    pub output: Rate,
    /// Rate for prompt tokens served from the provider's cache.
    pub cached_input: Rate,
    /// Rate for prompt tokens written to the provider's cache (defaults to `input`).
    pub cache_write_input: Rate,
    pub per_image: MicroCredits,
    /// Higher rates for the whole request once its prompt is longer than a threshold (Gemini
    /// 2.5 Pro and Claude Sonnet above 200k tokens).
    pub long_context: Option<LongContext>,
}

/// The rates one request is charged at, after the long-context choice: stored with each usage
/// row, so that its cost can be recomputed from the row alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rates {
    pub input: Rate,
    pub output: Rate,
    pub cached_input: Rate,
    pub cache_write_input: Rate,
    pub per_image: MicroCredits,
}

/// The rates of a request whose prompt has more than `above_tokens` tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongContext {
    pub above_tokens: u32,
    pub input: Rate,
    pub output: Rate,
    pub cached_input: Rate,
    pub cache_write_input: Rate,
}

impl LongContext {
    fn with_markup(self, markup: Markup) -> LongContext {
        LongContext {
            above_tokens: self.above_tokens,
            input: self.input.with_markup(markup),
            output: self.output.with_markup(markup),
            cached_input: self.cached_input.with_markup(markup),
            cache_write_input: self.cache_write_input.with_markup(markup),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("not a decimal number of credits")]
    Syntax,
    #[error("credits have at most 6 decimal places")]
    TooPrecise,
    #[error("amount is out of range")]
    Range,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PriceError {
    #[error("price must be a finite number of US$ between 0 and {MAX_USD_PRICE}")]
    OutOfRange,
    #[error("markup must be between 0 and 1000 percent")]
    MarkupOutOfRange,
}

// === impl MicroCredits ===

impl MicroCredits {
    pub const ZERO: MicroCredits = MicroCredits(0);

    /// A list price in US$ (per request, per image), read once, exactly to eight decimals.
    pub fn from_usd(usd: f64) -> Result<MicroCredits, PriceError> {
        usd_to_micros(usd).map(MicroCredits)
    }

    pub fn from_credits(credits: i64) -> Option<MicroCredits> {
        credits.checked_mul(MICROS_PER_CREDIT).map(MicroCredits)
    }

    /// Parses a decimal number of credits exactly: `12`, `0.5`, `-3.000001`.
    pub fn parse_credits(s: &str) -> Result<MicroCredits, AmountError> {
        let s = s.trim();
        let (negative, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && frac.is_empty()) || !all_digits(whole) || !all_digits(frac) {
            return Err(AmountError::Syntax);
        }
        if frac.len() > 6 {
            return Err(AmountError::TooPrecise);
        }
        let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| AmountError::Range)? };
        let mut frac_micros: i64 = 0;
        for (i, b) in frac.bytes().enumerate() {
            frac_micros += i64::from(b - b'0') * 10_i64.pow(5 - i as u32);
        }
        let magnitude =
            whole.checked_mul(MICROS_PER_CREDIT).and_then(|w| w.checked_add(frac_micros)).ok_or(AmountError::Range)?;
        Ok(MicroCredits(if negative { -magnitude } else { magnitude }))
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub fn checked_add(self, other: MicroCredits) -> Option<MicroCredits> {
        self.0.checked_add(other.0).map(MicroCredits)
    }

    pub fn checked_sub(self, other: MicroCredits) -> Option<MicroCredits> {
        self.0.checked_sub(other.0).map(MicroCredits)
    }

    pub fn saturating_add(self, other: MicroCredits) -> MicroCredits {
        MicroCredits(self.0.saturating_add(other.0))
    }

    pub fn saturating_sub(self, other: MicroCredits) -> MicroCredits {
        MicroCredits(self.0.saturating_sub(other.0))
    }

    pub fn min(self, other: MicroCredits) -> MicroCredits {
        MicroCredits(self.0.min(other.0))
    }

    pub fn max(self, other: MicroCredits) -> MicroCredits {
        MicroCredits(self.0.max(other.0))
    }
}

// === Money as text ===
//
// Every amount leaves the server as an exact decimal string, made here and nowhere else:
// `Display` (credits, six decimals: `credits_used`), `credits_text` (credits, trimmed: the
// account API), `usd_text` (US$, trimmed), `Rate::usd_per_token_text` (US$ per token).

/// `value / 10^scale` as an exact decimal string without trailing zeros (`-1.5`, `0.0198`, `0`).
pub fn decimal(value: i128, scale: u32) -> String {
    let div = 10i128.pow(scale);
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    let (whole, frac) = (abs / div.unsigned_abs(), abs % div.unsigned_abs());
    if frac == 0 {
        return format!("{sign}{whole}");
    }
    let frac = format!("{:0width$}", frac, width = scale as usize);
    format!("{sign}{whole}.{}", frac.trim_end_matches('0'))
}

/// Micro-credits in one US$ (1 credit = US$0.01).
const MICROS_PER_USD_DIGITS: u32 = 8;

impl MicroCredits {
    /// Credits, exact, without trailing zeros: `0.0198`, `-1.5`, `0`.
    pub fn credits_text(self) -> String {
        decimal(i128::from(self.0), MICROS_PER_CREDIT.ilog10())
    }

    /// US dollars, exact, without trailing zeros.
    pub fn usd_text(self) -> String {
        decimal(i128::from(self.0), MICROS_PER_USD_DIGITS)
    }

    /// US dollars as a JSON number, for the OpenRouter fields whose clients expect numbers
    /// (`usage.cost`, `total_cost`): the double nearest the exact decimal. Amounts have at most
    /// 15 significant digits below US$10 million, so the number prints as that exact decimal.
    pub fn usd_number(self) -> f64 {
        self.usd_text().parse().unwrap_or(0.0)
    }

    /// Credits as pages show them: exact, with at least two decimals and thousands separated
    /// (`1,234.50`, `0.000123`, `-3.00`).
    pub fn credits_display(self) -> String {
        grouped(&self.credits_text())
    }

    /// US dollars as pages show them: `$1,234.50`, `$0.0001`, `-$3.00`.
    pub fn usd_display(self) -> String {
        let text = grouped(&self.usd_text());
        match text.strip_prefix('-') {
            Some(abs) => format!("-${abs}"),
            None => format!("${text}"),
        }
    }
}

/// An exact decimal with at least two decimals and a comma every three digits of its whole part.
fn grouped(exact: &str) -> String {
    let (sign, abs) = exact.strip_prefix('-').map_or(("", exact), |a| ("-", a));
    let (whole, frac) = abs.split_once('.').unwrap_or((abs, ""));
    format!("{sign}{}.{frac:0<2}", group_thousands(whole))
}

/// Digits with a comma every three from the right: `1234567` → `1,234,567`.
pub fn group_thousands(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl fmt::Display for MicroCredits {
    /// Credits with six decimals, exact: `1.500000`, `-0.000001`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let per = MICROS_PER_CREDIT as u64;
        write!(f, "{sign}{}.{:06}", abs / per, abs % per)
    }
}

impl std::iter::Sum for MicroCredits {
    fn sum<I: Iterator<Item = MicroCredits>>(iter: I) -> MicroCredits {
        MicroCredits(iter.map(|m| m.0).sum())
    }
}

// === impl Rate ===

impl Rate {
    pub const ZERO: Rate = Rate(0);

    /// Converts a list price in US$ per million tokens. Prices with up to eight decimal places
    /// are represented exactly; the float is read once, here, and never again.
    pub fn from_usd_per_mtok(usd: f64) -> Result<Rate, PriceError> {
        usd_to_micros(usd).map(Rate)
    }

    pub fn from_micros_per_mtok(micros: i64) -> Rate {
        Rate(micros.max(0))
    }

    pub fn micros_per_mtok(self) -> i64 {
        self.0
    }

    /// Credits per million tokens, for price lists.
    /// US$ per token, exact (OpenRouter's convention for prices): µcr per Mtok over 1e8 × 1e6.
    pub fn usd_per_token_text(self) -> String {
        decimal(i128::from(self.micros_per_mtok()), MICROS_PER_USD_DIGITS + 6)
    }

    /// Credits per million tokens, exact, without trailing zeros.
    pub fn credits_per_mtok_text(self) -> String {
        decimal(i128::from(self.micros_per_mtok()), MICROS_PER_CREDIT.ilog10())
    }

    pub fn credits_per_mtok(self) -> MicroCredits {
        MicroCredits(self.0)
    }

    /// The rate with the operator's markup, rounded up to the next micro-credit per Mtok.
    pub fn with_markup(self, markup: Markup) -> Rate {
        let scaled = i128::from(self.0) * i128::from(10_000 + markup.0);
        Rate(ceil_div(scaled, 10_000).min(i128::from(i64::MAX)) as i64)
    }
}

// === impl Markup ===

impl Markup {
    pub const NONE: Markup = Markup(0);

    pub fn from_percent(percent: f64) -> Result<Markup, PriceError> {
        if !percent.is_finite() || !(0.0..=1000.0).contains(&percent) {
            return Err(PriceError::MarkupOutOfRange);
        }
        Ok(Markup((percent * 100.0).round() as u32))
    }

    pub fn basis_points(self) -> u32 {
        self.0
    }
}

// === impl Price ===

impl Price {
    /// A price from list prices in US$ per million tokens; cached input defaults to input.
    pub fn from_usd(
        input: f64,
        output: f64,
        cached_input: Option<f64>,
        per_image: Option<f64>,
    ) -> Result<Price, PriceError> {
        let input = Rate::from_usd_per_mtok(input)?;
        Ok(Price {
            input,
            output: Rate::from_usd_per_mtok(output)?,
            cached_input: cached_input.map(Rate::from_usd_per_mtok).transpose()?.unwrap_or(input),
            cache_write_input: input,
            per_image: MicroCredits(per_image.map(usd_to_micros).transpose()?.unwrap_or(0)),
            long_context: None,
        })
    }

    /// The price with long-context rates (US$ per million tokens) above `above_tokens` of
    /// prompt; cached and cache-write rates default to the long input rate.
    pub fn with_long_context(
        mut self,
        above_tokens: u32,
        input: f64,
        output: f64,
        cached_input: Option<f64>,
        cache_write: Option<f64>,
    ) -> Result<Price, PriceError> {
        let input = Rate::from_usd_per_mtok(input)?;
        self.long_context = Some(LongContext {
            above_tokens,
            input,
            output: Rate::from_usd_per_mtok(output)?,
            cached_input: cached_input.map(Rate::from_usd_per_mtok).transpose()?.unwrap_or(input),
            cache_write_input: cache_write.map(Rate::from_usd_per_mtok).transpose()?.unwrap_or(input),
        });
        Ok(self)
    }

    /// The price with its own rate for cache writes (US$ per million tokens).
    pub fn with_cache_write(mut self, usd: Option<f64>) -> Result<Price, PriceError> {
        if let Some(usd) = usd {
            self.cache_write_input = Rate::from_usd_per_mtok(usd)?;
        }
        Ok(self)
    }

    pub fn with_markup(self, markup: Markup) -> Price {
        let image = Rate(self.per_image.0).with_markup(markup);
        Price {
            input: self.input.with_markup(markup),
            output: self.output.with_markup(markup),
            cached_input: self.cached_input.with_markup(markup),
            cache_write_input: self.cache_write_input.with_markup(markup),
            per_image: MicroCredits(image.0),
            long_context: self.long_context.map(|l| l.with_markup(markup)),
        }
    }

    pub fn is_free(&self) -> bool {
        self.input.0 == 0 && self.output.0 == 0 && self.cached_input.0 == 0 && self.per_image.0 == 0
    }

    /// The rates a request with `prompt_tokens` of prompt is charged at: the long-context rates
    /// past their threshold, else the base rates.
    pub fn rates_for(&self, prompt_tokens: u32) -> Rates {
        match self.long_context.filter(|l| prompt_tokens > l.above_tokens) {
            Some(l) => Rates {
                input: l.input,
                output: l.output,
                cached_input: l.cached_input,
                cache_write_input: l.cache_write_input,
                per_image: self.per_image,
            },
            None => Rates {
                input: self.input,
                output: self.output,
                cached_input: self.cached_input,
                cache_write_input: self.cache_write_input,
                per_image: self.per_image,
            },
        }
    }

    /// The cost of `usage`, rounded up once to a whole micro-credit.
    pub fn cost(&self, usage: &Usage) -> MicroCredits {
        self.rates_for(usage.prompt_tokens).cost(usage)
    }
}

// === impl Rates ===

impl Rates {
    /// The cost of `usage` at these rates, rounded up once to a whole micro-credit.
    pub fn cost(&self, usage: &Usage) -> MicroCredits {
        let cached = usage.cached_tokens.min(usage.prompt_tokens);
        let written = usage.cache_write_tokens.min(usage.prompt_tokens - cached);
        let uncached = usage.prompt_tokens - cached - written;
        let exact = i128::from(uncached) * i128::from(self.input.0)
            + i128::from(cached) * i128::from(self.cached_input.0)
            + i128::from(written) * i128::from(self.cache_write_input.0)
            + i128::from(usage.completion_tokens) * i128::from(self.output.0);
        let tokens = ceil_div(exact, TOKENS_PER_MTOK);
        let images = i128::from(usage.images) * i128::from(self.per_image.0);
        MicroCredits((tokens + images).min(i128::from(i64::MAX)) as i64)
    }
}

fn usd_to_micros(usd: f64) -> Result<i64, PriceError> {
    if !usd.is_finite() || !(0.0..=MAX_USD_PRICE).contains(&usd) {
        return Err(PriceError::OutOfRange);
    }
    Ok((usd * MICROS_PER_USD as f64).round() as i64)
}

fn ceil_div(numer: i128, denom: i128) -> i128 {
    // Amounts here are never negative; clamp rather than trust that.
    let numer = numer.max(0);
    (numer + denom - 1) / denom
}

#[cfg(test)]
#[path = "money_tests.rs"]
mod tests;
