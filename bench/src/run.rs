//! The side-by-side run: mock upstream, haproxy and `layers serve`, and the same load against
//! each of the three.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::backlog::{self, Drain};
use crate::busy::BusyLoop;
use crate::haproxy::{self, Haproxy};
use crate::load::{self, Outcome, Target};
use crate::report::{Lifecycle, Report};

const PEPPER: &str = "bench-pepper-not-a-secret-0123456789abcdefghij";
const PATH: &str = "/v1/chat/completions";

/// A child process, killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where the gateway keeps its state.
pub enum Deployment {
    /// SQLite and in-process limits: `layers serve` with no configuration.
    Embedded,
    /// PostgreSQL (a fresh database on this server) and, normally, Redis: the production shape.
    Production { postgres_admin_url: String, redis_url: Option<String> },
}

/// What one `layers-bench run` measures with.
pub struct Options {
    pub layers: String,
    pub haproxy: Haproxy,
    pub seconds: u64,
}

/// One load shape, run against the mock, haproxy and Layers in turn.
#[derive(Clone, Copy)]
pub struct Scenario {
    pub name: &'static str,
    pub concurrency: usize,
    pub stream: bool,
    /// Time to first byte instead of the whole response.
    pub ttfb: bool,
}

pub const CHAT_C1: &str = "chat, c=1";
pub const CHAT_C64: &str = "chat, c=64";
pub const STREAM_C64: &str = "stream, c=64 (whole responses)";
pub const TTFB_C1: &str = "stream TTFB, c=1";

pub const SCENARIOS: [Scenario; 4] = [
    Scenario { name: CHAT_C1, concurrency: 1, stream: false, ttfb: false },
    Scenario { name: CHAT_C64, concurrency: 64, stream: false, ttfb: false },
    Scenario { name: STREAM_C64, concurrency: 64, stream: true, ttfb: false },
    Scenario { name: TTFB_C1, concurrency: 1, stream: true, ttfb: true },
];

/// One scenario's outcomes, and what the settlement backlog did after the load through Layers.
pub struct Measured {
    pub scenario: Scenario,
    pub direct: Outcome,
    pub haproxy: Outcome,
    pub layers: Outcome,
    pub drain: Drain,
}

/// The three places the load is sent to.
struct Targets {
    mock: SocketAddr,
    haproxy: SocketAddr,
    layers: SocketAddr,
    key: String,
}

impl Targets {
    fn direct(&self, s: Scenario) -> Target {
        target(self.mock, None, "gpt-4o-mini", s)
    }

    fn haproxy(&self, s: Scenario) -> Target {
        target(self.haproxy, None, "gpt-4o-mini", s)
    }

    fn layers(&self, s: Scenario) -> Target {
        target(self.layers, Some(self.key.clone()), "bench/gpt-4o-mini", s)
    }
}

fn target(addr: SocketAddr, bearer: Option<String>, model: &str, s: Scenario) -> Target {
    let stream = if s.stream { r#","stream":true"# } else { "" };
    let body =
        format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"Hello, how are you?"}}]{stream}}}"#);
    Target { addr, path: PATH.into(), bearer, body: Bytes::from(body), ttfb: s.ttfb }
}

pub async fn run(opts: &Options, deployment: &Deployment) -> anyhow::Result<String> {
    let dir = std::env::temp_dir().join(format!("layers-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (_db, state) = state_config(deployment, &dir)?;
    let (_mock, mock_addr) = start_mock()?;
    let (_haproxy, haproxy_addr) = haproxy::start(&opts.haproxy, &dir, mock_addr).await?;
    let layers_addr = free_addr()?;
    let config = dir.join("layers.toml");
    std::fs::write(&config, config_text(&dir, &state, layers_addr, mock_addr))?;
    let admin = Admin { layers: &opts.layers, config: &config };
    let key = admin.provision(deployment)?;

    let spawned = Instant::now();
    let mut server =
        Proc(Command::new(&opts.layers).arg("--config").arg(&config).arg("serve").stderr(Stdio::null()).spawn()?);
    let pid = server.0.id();
    wait_healthy(layers_addr).await?;
    let startup = spawned.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = rss_kb(pid, "VmRSS")?;

    let targets = Targets { mock: mock_addr, haproxy: haproxy_addr, layers: layers_addr, key };
    warm_up(&targets).await?;
    let mut measured = Vec::new();
    for scenario in SCENARIOS {
        measured.push(measure(&targets, scenario, Duration::from_secs(opts.seconds)).await?);
    }
    let rss_after = rss_kb(pid, "VmRSS")?;
    let rss_peak = rss_kb(pid, "VmHWM")?;
    let (shutdown, clean_exit) = stop(&mut server)?;
    let _ = std::fs::remove_dir_all(&dir);

    let life = Lifecycle { startup, rss_idle, rss_after, rss_peak, shutdown, clean_exit };
    Ok(Report { seconds: opts.seconds, haproxy: &opts.haproxy, deployment, measured: &measured, life }.to_string())
}

/// The `[database]` (and `[redis]`) part of the configuration, and the database to drop after.
fn state_config(deployment: &Deployment, dir: &Path) -> anyhow::Result<(Option<BenchDatabase>, String)> {
    Ok(match deployment {
        Deployment::Embedded => (None, format!("[database]\nurl = \"sqlite://{}/layers.db\"\n", dir.display())),
        Deployment::Production { postgres_admin_url, redis_url } => {
            let (db, url) = BenchDatabase::create(postgres_admin_url)?;
            let mut state = format!("[database]\nurl = \"{url}\"\n");
            if let Some(redis_url) = redis_url {
                let prefix = format!("bench-{}:", std::process::id());
                state.push_str(&format!("[redis]\nurl = \"{redis_url}\"\nprefix = \"{prefix}\"\n"));
            }
            (Some(db), state)
        }
    })
}

/// Starts `layers-bench mock` on a free port and reads the port from its first line.
fn start_mock() -> anyhow::Result<(Proc, SocketAddr)> {
    let mut mock = Command::new(std::env::current_exe()?)
        .args(["mock", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(mock.stdout.take().expect("piped")).read_line(&mut line)?;
    let proc = Proc(mock);
    Ok((proc, line.trim().parse()?))
}

/// The real admin commands, run against the bench's configuration.
struct Admin<'a> {
    layers: &'a str,
    config: &'a PathBuf,
}

impl Admin<'_> {
    fn cmd(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(self.layers).arg("--config").arg(self.config).args(args).output()?;
        anyhow::ensure!(out.status.success(), "layers {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    /// Migrates (PostgreSQL), creates the bench user, a live key and credits, lifts the caps
    /// and the rate limit out of the way (both still run on every request); returns the key.
    fn provision(&self, deployment: &Deployment) -> anyhow::Result<String> {
        if matches!(deployment, Deployment::Production { .. }) {
            self.cmd(&["migrate"])?;
        }
        let email = "bench@example.com";
        self.cmd(&["admin", "user", "create", "--email", email, "--tier", "team"])?;
        let key = self.cmd(&["admin", "key", "create", "--email", email, "--env", "live"])?;
        self.cmd(&["admin", "credits", "grant", "--email", email, "--credits", "100000000", "--reason", "bench"])?;
        // The default caps (US$10 an hour) would stop the benchmark within a minute.
        self.cmd(&["admin", "user", "set-caps", "--email", email, "--per-hour", "1000000000"])?;
        // Likewise the team tier's 1,000 requests a minute: the limiter still runs on every request.
        self.cmd(&["admin", "user", "set-rate-limit", "--email", email, "--rpm", "1000000000"])?;
        Ok(key)
    }
}

/// Warms up connections, caches and allocators on all three paths.
async fn warm_up(t: &Targets) -> anyhow::Result<()> {
    let chat = SCENARIOS[0];
    load::run(&t.direct(chat), 8, Duration::from_secs(1)).await?;
    load::run(&t.haproxy(chat), 8, Duration::from_secs(1)).await?;
    load::run(&t.layers(chat), 8, Duration::from_secs(2)).await?;
    backlog::drain(t.layers, Instant::now()).await?;
    Ok(())
}

/// One scenario against the mock, haproxy and Layers, with the busy loop on for c=1; then the
/// settlement backlog until it is written, so it does not spill into the next scenario.
async fn measure(t: &Targets, s: Scenario, d: Duration) -> anyhow::Result<Measured> {
    let busy_wanted = std::env::var("BENCH_BUSY_LOOP").as_deref() != Ok("0");
    let busy = if s.concurrency == 1 && busy_wanted { Some(BusyLoop::start()?) } else { None };
    let direct = load::run(&t.direct(s), s.concurrency, d).await?;
    let haproxy = load::run(&t.haproxy(s), s.concurrency, d).await?;
    let layers = load::run(&t.layers(s), s.concurrency, d).await?;
    let stopped = Instant::now();
    drop(busy);
    let drain = backlog::drain(t.layers, stopped).await?;
    Ok(Measured { scenario: s, direct, haproxy, layers, drain })
}

/// SIGTERM, then the time to exit and whether the exit was clean.
fn stop(server: &mut Proc) -> anyhow::Result<(Duration, bool)> {
    let started = Instant::now();
    Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status()?;
    let status = server.0.wait()?;
    Ok((started.elapsed(), status.success()))
}

/// A database created for one run and dropped after it.
struct BenchDatabase {
    admin_url: String,
    name: String,
}

impl BenchDatabase {
    fn create(admin_url: &str) -> anyhow::Result<(BenchDatabase, String)> {
        let name = format!("layers_bench_{}", std::process::id());
        psql(admin_url, &format!("DROP DATABASE IF EXISTS {name}"))?;
        psql(admin_url, &format!("CREATE DATABASE {name}"))?;
        let (base, _) = admin_url.rsplit_once('/').ok_or_else(|| anyhow::anyhow!("{admin_url} has no database"))?;
        let url = format!("{base}/{name}");
        Ok((BenchDatabase { admin_url: admin_url.to_owned(), name }, url))
    }
}

impl Drop for BenchDatabase {
    fn drop(&mut self) {
        let _ = psql(&self.admin_url, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let out = Command::new("psql").args([url, "-qc", sql]).output()?;
    anyhow::ensure!(out.status.success(), "psql failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

fn config_text(dir: &Path, state: &str, listen: SocketAddr, mock: SocketAddr) -> String {
    format!(
        r#"listen = "{listen}"
data_dir = "{dir}"
{state}
[keys]
pepper = "{PEPPER}"
[log]
level = "warn"
[[providers]]
name = "bench"
kind = "openai"
base_url = "http://{mock}/v1"
[[models]]
name = "bench/gpt-4o-mini"
routes = [{{ provider = "bench", model = "gpt-4o-mini" }}]
input_per_mtok = 0.15
output_per_mtok = 0.60
context_window = 128000
max_output_tokens = 16384
"#,
        dir = dir.display()
    )
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A one-off `GET` on a fresh connection: the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n").as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, body.to_owned()))
}

async fn wait_healthy(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if matches!(http_get(addr, "/healthz").await, Ok((200, _))) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    anyhow::bail!("layers did not become healthy")
}

fn rss_kb(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with(field)).ok_or_else(|| anyhow::anyhow!("no {field}"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}
