//! `TestApp`: the real product (config loading, start-up, router, background tasks) on a fresh
//! database and a random port, with verbs that read like a user's story.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use layers::config;
use layers::startup;
use layers_core::keys::NewKeyRequest;
use layers_core::Core;
use layers_domain::{KeyEnv, MicroCredits, Tier};
use layers_store::testing::TestDatabase;
use layers_store::{Store, UsageRecord, User};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::mock_openai::MockOpenAi;

/// The pepper every test app uses (tests only; production refuses anything it did not get from
/// the environment or a file).
pub const TEST_PEPPER: &str = "test-pepper-0123456789-abcdefghijklmnopqrstuvwxyz";
/// The public name of the model served by the mock upstream.
pub const MOCK_MODEL: &str = "mock/gpt-4o-mini";
/// The embedding and image models served by the mock upstream.
pub const MOCK_EMBED: &str = "mock/text-embedding-3-small";
pub const MOCK_IMAGE: &str = "mock/gpt-image-1";
/// The public name of the model served by the mock Anthropic API.
pub const MOCK_CLAUDE: &str = "mock/claude";
/// The operator key the gateway sends to the mock Anthropic API.
pub const MOCK_ANTHROPIC_KEY: &str = "sk-ant-mock-operator-key";
/// The public name of the model served by the mock Gemini API.
pub const MOCK_GEMINI: &str = "mock/gemini";
/// The operator key the gateway sends to the mock Gemini API.
pub const MOCK_GEMINI_KEY: &str = "AIza-mock-operator-key";
/// The operator key the gateway sends to the mock upstream.
pub const MOCK_UPSTREAM_KEY: &str = "sk-mock-upstream-key";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub struct AppOptions {
    pub backend: Backend,
    /// Extra TOML appended to the test configuration.
    pub config: String,
    pub env: Vec<(String, String)>,
    /// Another app's database (URL, is PostgreSQL): this app is a second node of it.
    pub shared_db: Option<(String, bool)>,
    /// The data directory (journal, development pepper); a fresh temporary one when `None`.
    pub data_dir: Option<std::path::PathBuf>,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions { backend: Backend::Sqlite, config: String::new(), env: Vec::new(), shared_db: None, data_dir: None }
    }
}

impl AppOptions {
    pub fn postgres(mut self) -> Self {
        self.backend = Backend::Postgres;
        self
    }

    /// Serves `mock/gpt-4o-mini` from `mock` (priced like gpt-4o-mini), with short timeouts.
    pub fn with_mock(mut self, mock: &MockOpenAi) -> Self {
        self.add_mock_provider("mock", "openai", &mock.base_url, "MOCK_OPENAI_KEY", MOCK_UPSTREAM_KEY);
        self.config.push_str(&format!(
            r#"
[[models]]
name = "{MOCK_MODEL}"
routes = [{{ provider = "mock", model = "gpt-4o-mini" }}]
input_per_mtok = 0.15
output_per_mtok = 0.60
cached_input_per_mtok = 0.075
context_window = 128000
max_output_tokens = 16384

[[models]]
name = "{MOCK_EMBED}"
kind = "embedding"
routes = [{{ provider = "mock", model = "text-embedding-3-small" }}]
input_per_mtok = 0.02
output_per_mtok = 0.0
context_window = 8191
max_output_tokens = 0

[[models]]
name = "{MOCK_IMAGE}"
kind = "image"
routes = [{{ provider = "mock", model = "gpt-image-1" }}]
per_image = 0.04
context_window = 32000
max_output_tokens = 0
"#
        ));
        self
    }

    /// Serves `mock/claude` from the mock Anthropic API (priced like Claude Sonnet 4.5, cached
    /// input at the cache-read price), with short timeouts.
    pub fn with_mock_anthropic(mut self, mock: &crate::MockAnthropic) -> Self {
        self.add_mock_provider("mock-anthropic", "anthropic", &mock.base_url, "MOCK_ANTHROPIC_KEY", MOCK_ANTHROPIC_KEY);
        self.config.push_str(&format!(
            r#"
[[models]]
name = "{MOCK_CLAUDE}"
routes = [{{ provider = "mock-anthropic", model = "claude-sonnet-4-5" }}]
input_per_mtok = 3.0
output_per_mtok = 15.0
cached_input_per_mtok = 0.30
cache_write_per_mtok = 3.75
context_window = 200000
max_output_tokens = 64000
"#
        ));
        self
    }

    /// Serves `mock/gemini` from the mock Gemini API (priced like Gemini 2.5 Flash).
    pub fn with_mock_gemini(mut self, mock: &crate::MockGemini) -> Self {
        self.add_mock_provider("mock-gemini", "gemini", &mock.base_url, "MOCK_GEMINI_KEY", MOCK_GEMINI_KEY);
        // The test serves images from 127.0.0.1.
        self.config.push_str("allow_private_image_urls = true\n");
        self.config.push_str(&format!(
            r#"
[[models]]
name = "{MOCK_GEMINI}"
routes = [{{ provider = "mock-gemini", model = "gemini-2.5-flash" }}]
input_per_mtok = 0.30
output_per_mtok = 2.50
cached_input_per_mtok = 0.03
context_window = 1048576
max_output_tokens = 65536

[[models]]
name = "mock/gemini-embedding"
kind = "embedding"
routes = [{{ provider = "mock-gemini", model = "gemini-embedding-001" }}]
input_per_mtok = 0.15
output_per_mtok = 0.0
context_window = 2048
max_output_tokens = 0
"#
        ));
        self
    }

    /// A mock provider with short timeouts, its operator key in `env`.
    fn add_mock_provider(&mut self, name: &str, kind: &str, base_url: &str, env: &str, key: &str) {
        self.config.push_str(&format!(
            "\n[[providers]]\nname = \"{name}\"\nkind = \"{kind}\"\nbase_url = \"{base_url}\"\napi_key_env = \"{env}\"\n\
             first_byte_timeout_ms = 1500\nidle_timeout_ms = 1000\ntotal_timeout_ms = 10000\n"
        ));
        self.env.push((env.into(), key.into()));
    }

    /// Runs as a second node of `app`'s deployment (same database).
    pub fn second_node_of(mut self, app: &TestApp) -> Self {
        self.shared_db = Some((app.db.url.clone(), app.db.is_postgres()));
        self
    }

    /// Uses the database at `url` (e.g. through a `TcpProxy`), owned by someone else.
    pub fn database_at(mut self, url: &str, postgres: bool) -> Self {
        self.shared_db = Some((url.to_owned(), postgres));
        self
    }

    /// Keeps state (the settlement journal) in `dir`, as a restarted node would find it.
    pub fn data_dir(mut self, dir: &std::path::Path) -> Self {
        self.data_dir = Some(dir.to_owned());
        self
    }

    /// Uses the shared test Redis under a prefix of its own; `None` when Redis is unreachable
    /// and skipping is allowed.
    pub fn redis(self) -> Option<Self> {
        let (url, prefix) = crate::redis::shared()?;
        Some(self.redis_at(&url, &prefix))
    }

    /// Uses the Redis at `url` with keys under `prefix` (nodes of one deployment share both).
    pub fn redis_at(self, url: &str, prefix: &str) -> Self {
        self.config(&format!("[redis]\nurl = \"{url}\"\nprefix = \"{prefix}\""))
    }

    pub fn config(mut self, toml: &str) -> Self {
        self.config.push('\n');
        self.config.push_str(toml);
        self
    }
}

pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// The private metrics listener, when `server.metrics_listen` is set.
    pub metrics_url: Option<String>,
    pub core: Arc<Core>,
    store: Arc<dyn Store>,
    pub http: reqwest::Client,
    pub db: TestDatabase,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestApp {
    /// The embedded default on SQLite.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(AppOptions::default()).await.expect("SQLite is always available")
    }

    /// `None` when the options ask for PostgreSQL and the run allows skipping it.
    pub async fn spawn_with(opts: AppOptions) -> Option<TestApp> {
        crate::logs::capture();
        let db = match (&opts.shared_db, opts.backend) {
            (Some((url, postgres)), _) => TestDatabase::shared(url, *postgres),
            (None, Backend::Sqlite) => TestDatabase::sqlite(),
            (None, Backend::Postgres) => TestDatabase::postgres().await?,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layers.toml");
        // Bound first, so links in e-mails point at this server.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let toml = format!(
            r#"
public_url = "{public}"
data_dir = "{data}"
[database]
url = "{url}"
auto_migrate = true
[keys]
pepper = "{TEST_PEPPER}"
invalidation_poll_ms = 50
[log]
level = "warn"
{extra}
"#,
            data = opts.data_dir.as_deref().unwrap_or(dir.path()).display(),
            url = db.url,
            public = url,
            extra = opts.config,
        );
        std::fs::write(&path, toml).unwrap();
        let mut env: BTreeMap<String, String> = opts.env.into_iter().collect();
        // The suite's responses, for scripts/openapi-check (scripts/test sets the directory).
        if let Ok(dir) = std::env::var("LAYERS_TEST_RESPONSES_DIR") {
            env.entry("LAYERS_TESTING__RECORD_RESPONSES_DIR".into()).or_insert(dir);
        }
        let settings = config::load(Some(&path), &env).unwrap_or_else(|e| panic!("test configuration invalid: {e}"));
        let prepared = startup::prepare(settings).await.unwrap_or_else(|e| panic!("start-up failed: {e:#}"));
        let core = prepared.core.clone();
        let store = prepared.store.clone();
        let metrics_url = prepared.metrics_addr.map(|a| format!("http://{a}"));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(startup::serve(prepared, listener, async move {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        Some(TestApp { url, metrics_url, core, store, http, db, stop: Some(stop), server: Some(server), _dir: dir })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub async fn create_user(&self, email: &str, tier: Tier) -> User {
        self.core.accounts.create_user(email, tier).await.unwrap()
    }

    /// Creates a key through the product's own service and returns the full key.
    pub async fn create_key(&self, user: &User, env: KeyEnv) -> String {
        let created = self
            .core
            .keys
            .create(NewKeyRequest {
                user: user.id,
                env,
                name: "test".into(),
                spend_limit: None,
                limit_period: Default::default(),
                expires_at: None,
                created_at: None,
            })
            .await
            .unwrap();
        created.key.expose().to_owned()
    }

    /// A user with `credits` and a live key.
    pub async fn user_with_key(&self, email: &str, credits: &str) -> (User, String) {
        let user = self.create_user(email, Tier::Pro).await;
        self.grant(&user, credits).await;
        let key = self.create_key(&user, KeyEnv::Live).await;
        (user, key)
    }

    pub async fn grant(&self, user: &User, credits: &str) {
        self.core
            .accounts
            .change_credits(layers_core::accounts::CreditChange {
                user: user.id,
                amount: MicroCredits::parse_credits(credits).unwrap(),
                reason: "test grant".into(),
                idempotency_key: None,
            })
            .await
            .unwrap();
    }

    /// `POST /v1/chat/completions` with the key as bearer token.
    pub fn chat(&self, key: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http.post(format!("{}/v1/chat/completions", self.url)).bearer_auth(key).json(body)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.url))
    }

    /// Waits until the usage writer has stored at least `n` rows for the user.
    pub async fn wait_for_usage(&self, user: &User, n: usize) -> Vec<UsageRecord> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let rows = self.store().recent_usage(user.id, 10_000, None).await.unwrap();
            if rows.len() >= n {
                return rows;
            }
            assert!(tokio::time::Instant::now() < deadline, "expected {n} usage rows, found {}", rows.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Graceful shutdown, as on SIGTERM; returns what `serve` returned.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.server.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
