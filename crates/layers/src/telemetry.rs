//! Logging set-up: structured, to stderr, JSON in production. Invariant: nothing logs e-mails,
//! keys, tokens or prompts — only ids.

use tracing_subscriber::EnvFilter;

pub fn init(json: bool, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    // A second initialisation (tests) is harmless and ignored.
    let _ = if json { builder.json().try_init() } else { builder.compact().try_init() };
}
