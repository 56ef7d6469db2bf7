//! Test support for Layers: start the real product on a fresh database with mock providers on
//! random ports, and talk to it like a user would. Dev-dependency only.
//!
//! Components:
//! - [`app`]: `TestApp::spawn()` and its verbs (`create_user`, `create_key`, `post_chat`…).
//! - [`browser`]: a cookie-keeping form client, for page tests at the HTTP level.
//! - [`files`]: fixed files over HTTP, for fetch-by-URL tests.
//! - [`logs`]: the suite's logs kept for the privacy scan (`log-scan`).
//! - [`mock_openai`]: an OpenAI-compatible upstream speaking the documented wire format.
//! - [`mock_anthropic`]: Anthropic's Messages API, streaming included.
//! - [`mock_gemini`]: Google's Gemini API, streaming included.
//! - [`mock_stripe`]: Stripe's API as Layers uses it, stateful, with hosted pay and portal pages.
//! - [`oidc`]: a local OpenID Connect provider (Google's part), with knobs for attacks.
//! - [`python`]: the venv with the official SDKs, for SDK-level tests.
//! - [`redis`]: the shared test Redis with a prefix per test, or a private `redis-server`.
//! - [`process`]: `layers serve` as a real process, for multi-node and crash tests.
//! - [`smtp`]: a mail catcher speaking SMTP, so tests read the e-mails the product sends.
//! - [`tcp_proxy`]: a proxy a test can cut, to partition one node from its database.
//! - [`webhook`]: a webhook receiver that records deliveries (signatures, retries).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods, clippy::print_stdout)]

pub mod app;
pub mod browser;
pub mod files;
pub mod logs;
pub mod mock_anthropic;
pub mod mock_gemini;
pub mod mock_openai;
pub mod mock_openrouter;
pub mod mock_server;
pub mod mock_stripe;
pub mod oidc;
pub mod process;
pub mod python;
pub mod redis;
pub mod smtp;
pub mod tcp_proxy;
pub mod webhook;

pub use app::{AppOptions, Backend, TestApp};
pub use browser::{Browser, Page};
pub use mock_anthropic::MockAnthropic;
pub use mock_gemini::MockGemini;
pub use mock_openai::{MockOpenAi, Reply};
pub use mock_openrouter::MockOpenRouter;
pub use mock_stripe::MockStripe;
pub use oidc::{Attack, MockOidc, OidcUser};
pub use smtp::MailCatcher;
pub use webhook::WebhookCatcher;
