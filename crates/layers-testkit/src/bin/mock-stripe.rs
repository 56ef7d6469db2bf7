//! The testkit's mock Stripe as a process, for the browser stories: prints its base URL on the
//! first line of stdout, then serves until killed. `--deliver-to URL` sends every event to
//! Layers' webhook as it happens (signed like Stripe), `--delay-ms N` after N ms (so a story
//! can see "credits on the way" before they land).

#![allow(clippy::print_stdout)] // the URL on stdout is this tool's output

use layers_testkit::MockStripe;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let stripe = MockStripe::start().await;
    if let Some(url) = value("--deliver-to") {
        stripe.deliver_to(&url, true);
    }
    if let Some(ms) = value("--delay-ms").and_then(|v| v.parse().ok()) {
        stripe.delay_deliveries(std::time::Duration::from_millis(ms));
    }
    println!("{}", stripe.url());
    std::future::pending::<()>().await;
}
