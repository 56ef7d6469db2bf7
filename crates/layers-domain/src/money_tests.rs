use super::*;
use proptest::prelude::*;

fn usage(prompt: u32, completion: u32, cached: u32) -> Usage {
    Usage { prompt_tokens: prompt, completion_tokens: completion, cached_tokens: cached, ..Usage::default() }
}

#[test]
fn parses_and_prints_credits_exactly() {
    let cases = [
        ("12", 12_000_000),
        ("0.5", 500_000),
        (".5", 500_000),
        ("-3.000001", -3_000_001),
        ("+1.25", 1_250_000),
        ("0.000001", 1),
    ];
    for (text, micros) in cases {
        assert_eq!(MicroCredits::parse_credits(text), Ok(MicroCredits(micros)), "{text}");
    }
    assert_eq!(MicroCredits::parse_credits("1.0000001"), Err(AmountError::TooPrecise));
    assert_eq!(MicroCredits::parse_credits("abc"), Err(AmountError::Syntax));
    assert_eq!(MicroCredits::parse_credits(""), Err(AmountError::Syntax));
    assert_eq!(MicroCredits::parse_credits("."), Err(AmountError::Syntax));
    assert_eq!(MicroCredits::parse_credits("1e3"), Err(AmountError::Syntax));
    assert_eq!(MicroCredits::parse_credits("99999999999999999"), Err(AmountError::Range));
    assert_eq!(MicroCredits(1_500_000).to_string(), "1.500000");
    assert_eq!(MicroCredits(-1).to_string(), "-0.000001");
    assert_eq!(MicroCredits(0).to_string(), "0.000000");
}

#[test]
fn list_prices_convert_exactly() {
    // gpt-4o-mini: $0.15 / $0.60 per Mtok = 15 / 60 credits per Mtok.
    let p = Price::from_usd(0.15, 0.60, Some(0.075), None).unwrap();
    assert_eq!(p.input.micros_per_mtok(), 15_000_000);
    assert_eq!(p.output.micros_per_mtok(), 60_000_000);
    assert_eq!(p.cached_input.micros_per_mtok(), 7_500_000);
    // Cheap rates with many decimals survive.
    assert_eq!(Rate::from_usd_per_mtok(0.0375).unwrap().micros_per_mtok(), 3_750_000);
    assert_eq!(Rate::from_usd_per_mtok(0.00000001).unwrap().micros_per_mtok(), 1);
    assert!(Rate::from_usd_per_mtok(-1.0).is_err());
    assert!(Rate::from_usd_per_mtok(f64::NAN).is_err());
}

#[test]
fn cost_of_a_request() {
    let p = Price::from_usd(0.15, 0.60, Some(0.075), None).unwrap();
    // 1000 in, 500 out: 1000*15 + 500*60 = 45,000 µcr... per token rates are per Mtok:
    // (1000 * 15e6 + 500 * 60e6) / 1e6 = 15,000 + 30,000.
    assert_eq!(p.cost(&usage(1000, 500, 0)), MicroCredits(45_000));
    // Half the prompt cached at half price.
    assert_eq!(p.cost(&usage(1000, 500, 500)), MicroCredits(41_250));
    // One token is never free.
    let cheap = Price::from_usd(0.01, 0.01, None, None).unwrap();
    assert_eq!(cheap.cost(&usage(1, 0, 0)), MicroCredits(1));
    assert_eq!(cheap.cost(&usage(0, 0, 0)), MicroCredits(0));
    // Cached tokens beyond the prompt are clamped, not negative.
    assert_eq!(p.cost(&usage(10, 0, 50)), MicroCredits(75));
}

#[test]
fn markup_rounds_up() {
    let r = Rate::from_micros_per_mtok(3);
    assert_eq!(r.with_markup(Markup::from_percent(60.0).unwrap()).micros_per_mtok(), 5);
    assert_eq!(r.with_markup(Markup::NONE), r);
    assert_eq!(Markup::from_percent(12.5).unwrap().basis_points(), 1250);
    assert!(Markup::from_percent(-1.0).is_err());
    let p = Price::from_usd(1.0, 2.0, None, Some(0.04)).unwrap().with_markup(Markup::from_percent(50.0).unwrap());
    assert_eq!(p.input.micros_per_mtok(), 150_000_000);
    assert_eq!(p.per_image, MicroCredits(6_000_000));
}

#[test]
fn image_cost() {
    let p = Price::from_usd(0.0, 0.0, None, Some(0.04)).unwrap();
    let u = Usage { images: 3, ..Usage::default() };
    assert_eq!(p.cost(&u), MicroCredits(12_000_000));
}

proptest! {
    #[test]
    fn cost_is_never_below_exact_and_within_one_micro(
        input in 0i64..10_000_000_000, output in 0i64..10_000_000_000,
        prompt in 0u32..2_000_000, completion in 0u32..200_000,
    ) {
        let p = Price { input: Rate(input), output: Rate(output), cached_input: Rate(input), cache_write_input: Rate(input), per_image: MicroCredits(0), long_context: None };
        let cost = p.cost(&usage(prompt, completion, 0)).0 as i128;
        let exact_numer = i128::from(prompt) * i128::from(input) + i128::from(completion) * i128::from(output);
        prop_assert!(cost * 1_000_000 >= exact_numer);
        prop_assert!(cost * 1_000_000 - exact_numer < 1_000_000);
        if exact_numer > 0 { prop_assert!(cost >= 1); }
    }

    #[test]
    fn cost_is_monotonic(prompt in 0u32..1_000_000, completion in 0u32..100_000, extra in 0u32..1000) {
        let p = Price::from_usd(3.0, 15.0, Some(0.3), None).unwrap();
        let base = p.cost(&usage(prompt, completion, 0));
        prop_assert!(p.cost(&usage(prompt + extra, completion, 0)) >= base);
        prop_assert!(p.cost(&usage(prompt, completion + extra, 0)) >= base);
    }

    #[test]
    fn summing_costs_has_no_drift(costs in proptest::collection::vec(0i64..1_000_000_000, 0..200)) {
        let total: MicroCredits = costs.iter().copied().map(MicroCredits).sum();
        prop_assert_eq!(total.0, costs.iter().sum::<i64>());
    }

    #[test]
    fn credits_text_round_trips(micros in -1_000_000_000_000i64..1_000_000_000_000) {
        let m = MicroCredits(micros);
        prop_assert_eq!(MicroCredits::parse_credits(&m.to_string()), Ok(m));
    }
}

#[test]
fn cache_writes_and_reads_have_their_own_rates() {
    let p = Price::from_usd(3.0, 15.0, Some(0.30), None).unwrap().with_cache_write(Some(3.75)).unwrap();
    let u = Usage {
        prompt_tokens: 4021,
        cached_tokens: 3000,
        cache_write_tokens: 1000,
        completion_tokens: 9,
        ..Usage::default()
    };
    // 21 × 3.00 + 3000 × 0.30 + 1000 × 3.75 + 9 × 15.00 US$/Mtok, in micro-credits (×100 per token).
    assert_eq!(p.cost(&u).0, 21 * 300 + 3000 * 30 + 1000 * 375 + 9 * 1500);
    // Without a write rate, writes cost the input rate.
    let plain = Price::from_usd(3.0, 15.0, Some(0.30), None).unwrap();
    assert_eq!(plain.cost(&u).0, 1021 * 300 + 3000 * 30 + 9 * 1500);
}

#[test]
fn long_prompts_are_priced_at_the_long_context_rates_throughout() {
    let p = Price::from_usd(1.25, 10.0, Some(0.125), None)
        .unwrap()
        .with_long_context(200_000, 2.5, 15.0, Some(0.25), None)
        .unwrap();
    let at = |prompt| p.cost(&Usage { prompt_tokens: prompt, completion_tokens: 1000, ..Usage::default() }).0;
    // 200,000 × 1.25 + 1,000 × 10 US$/Mtok = 0.26 US$ = 26,000,000 micro-credits.
    assert_eq!(at(200_000), 26_000_000);
    // One token more and every token is at the long rate: 200,001 × 2.5 + 1,000 × 15.
    assert_eq!(at(200_001), (200_001 * 250 + 1000 * 1500) as i64);
    let marked = p.with_markup(Markup::from_percent(10.0).unwrap());
    assert_eq!(marked.long_context.unwrap().input.micros_per_mtok(), 275_000_000);
}

#[test]
fn amounts_on_pages_have_two_decimals_at_least_and_stay_exact() {
    let c = |micros: i64| MicroCredits(micros).credits_display();
    assert_eq!(c(0), "0.00");
    assert_eq!(c(1_500_000), "1.50");
    assert_eq!(c(123), "0.000123");
    assert_eq!(c(-3_000_000), "-3.00");
    assert_eq!(c(1_234_567_890_000), "1,234,567.89");
    assert_eq!(c(100_000_000_000), "100,000.00");
    assert_eq!(c(999_000_000), "999.00");
    assert_eq!(MicroCredits(150_000_000).usd_display(), "$1.50");
    assert_eq!(MicroCredits(-300_000_000).usd_display(), "-$3.00");
    assert_eq!(MicroCredits(10_000).usd_display(), "$0.0001");
}

#[test]
fn usd_numbers_are_the_exact_decimal() {
    // The double's shortest decimal is the exact amount, up to US$10M.
    for micros in [1, 7, 54_000, 123_456_789, 99_999_999_999_999] {
        let m = MicroCredits(micros);
        assert_eq!(format!("{}", m.usd_number()), m.usd_text(), "{micros}");
    }
}
