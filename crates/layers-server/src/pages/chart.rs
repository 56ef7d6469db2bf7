//! The charts of the dashboard: server-rendered SVG (no script), each with the same figures as
//! a table beside it for screen readers and for anyone who wants the numbers.

use layers_core::records::UsageTotals;
use layers_domain::dashboard::period::day_start;
use maud::{html, Markup, PreEscaped};

use super::format::{count, credits, date};

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 200.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 44.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// Spend per day as bars (left axis, credits) and requests per day as a line (right axis).
pub fn daily(days: &[(i64, UsageTotals)], caption: &str) -> Markup {
    let spend_max = nice_max(days.iter().map(|(_, t)| t.charged.0 as f64 / 1e6).fold(0.0, f64::max));
    let requests_max = nice_max(days.iter().map(|(_, t)| t.requests as f64).fold(0.0, f64::max));
    let n = days.len().max(1) as f64;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = plot_w / n;
    let bar_w = (slot * 0.7).max(1.0);
    let y_spend = |v: f64| TOP + plot_h - v / spend_max * plot_h;
    let y_req = |v: f64| TOP + plot_h - v / requests_max * plot_h;
    let mut line = String::new();
    for (i, (_, t)) in days.iter().enumerate() {
        let x = LEFT + slot * (i as f64 + 0.5);
        line.push_str(&format!("{}{x:.1},{:.1}", if i == 0 { "M" } else { " L" }, y_req(t.requests as f64)));
    }
    let label_every = (days.len() / 6).max(1);
    html! {
        figure class="chart" {
            svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(caption) preserveAspectRatio="none" {
                @for i in 0..=4 {
                    @let v = spend_max * f64::from(i) / 4.0;
                    @let y = y_spend(v);
                    line class="grid" x1=(LEFT) x2=(WIDTH - RIGHT) y1=(fmt(y)) y2=(fmt(y)) {}
                    text class="axis" x=(LEFT - 6.0) y=(fmt(y + 4.0)) text-anchor="end" { (axis_label(v)) }
                    text class="axis req" x=(WIDTH - RIGHT + 6.0) y=(fmt(y + 4.0)) text-anchor="start" {
                        (axis_label(requests_max * f64::from(i) / 4.0))
                    }
                }
                @for (i, (day, t)) in days.iter().enumerate() {
                    @let spend = t.charged.0 as f64 / 1e6;
                    @let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
                    @let y = y_spend(spend);
                    rect class="bar" x=(fmt(x)) y=(fmt(y)) width=(fmt(bar_w)) height=(fmt(TOP + plot_h - y)) rx="2" {
                        title { (date(day_start(*day))) ": " (credits(t.charged)) " credits, " (count(t.requests)) " requests" }
                    }
                    @if i % label_every == 0 {
                        text class="axis" x=(fmt(LEFT + slot * (i as f64 + 0.5))) y=(fmt(HEIGHT - 8.0)) text-anchor="middle" {
                            (date(day_start(*day)))
                        }
                    }
                }
                path class="line" d=(line) fill="none" {}
            }
            figcaption class="legend" {
                span class="legend-item" { span class="key bar-key" {} "Spend (credits, left axis)" }
                span class="legend-item" { span class="key line-key" {} "Requests (right axis)" }
            }
        }
    }
}

/// The same figures as a table, collapsed under the chart.
pub fn daily_table(days: &[(i64, UsageTotals)]) -> Markup {
    html! {
        details class="as-table" {
            summary { "Show these figures as a table" }
            div class="table-wrap" {
                table {
                    thead { tr { th { "Day (UTC)" } th class="num" { "Requests" } th class="num" { "Spend (credits)" } } }
                    tbody {
                        @for (day, t) in days.iter().rev() {
                            tr { td { (date(day_start(*day))) } td class="num" { (count(t.requests)) } td class="num" { (credits(t.charged)) } }
                        }
                    }
                }
            }
        }
    }
}

/// A horizontal share bar (a breakdown row), `part` of `whole`.
pub fn share(part: i64, whole: i64) -> Markup {
    let pct = if whole > 0 { (part as f64 / whole as f64 * 100.0).clamp(0.0, 100.0) } else { 0.0 };
    html! {
        svg class="share" viewBox="0 0 100 8" preserveAspectRatio="none" aria-hidden="true" {
            rect class="share-bg" x="0" y="0" width="100" height="8" rx="4" {}
            rect class="share-fg" x="0" y="0" width=(fmt(pct)) height="8" rx="4" {}
        }
    }
}

fn fmt(v: f64) -> PreEscaped<String> {
    PreEscaped(format!("{v:.1}"))
}

/// A round upper bound for an axis (1, 2 or 5 × 10ⁿ), never zero.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let exp = v.log10().floor();
    let base = 10f64.powf(exp);
    for step in [1.0, 2.0, 5.0, 10.0] {
        if v <= step * base {
            return step * base;
        }
    }
    10.0 * base
}

fn axis_label(v: f64) -> String {
    if v >= 1000.0 {
        let k = format!("{:.1}", v / 1000.0);
        format!("{}k", k.trim_end_matches('0').trim_end_matches('.'))
    } else if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}").trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_are_round_and_never_zero() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(0.3), 0.5);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(101.0), 200.0);
        assert_eq!(axis_label(2500.0), "2.5k");
        assert_eq!(axis_label(2000.0), "2k");
        assert_eq!(axis_label(0.25), "0.25");
        assert_eq!(axis_label(0.5), "0.5");
    }

    #[test]
    fn every_day_gets_a_bar_with_its_figures() {
        let t = |r, c| UsageTotals { requests: r, charged: layers_domain::MicroCredits(c), ..UsageTotals::default() };
        let days = vec![(20_000, t(3, 1_500_000)), (20_001, t(0, 0))];
        let svg = daily(&days, "Spend").into_string();
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 2);
        assert!(svg.contains("1.50 credits, 3 requests"));
        assert!(!svg.contains("style="), "the CSP forbids inline style");
    }
}
