//! The side-by-side run: mock upstream, `layers serve`, and the same load against each.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::load::{self, Outcome, Target};

const PEPPER: &str = "bench-pepper-not-a-secret-0123456789abcdefghij";

struct Proc(Child);

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

pub async fn run(layers: &str, seconds: u64, deployment: &Deployment) -> anyhow::Result<String> {
    let dir = std::env::temp_dir().join(format!("layers-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (_db, state) = match deployment {
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
    };
    let mock_bin = std::env::current_exe()?;
    let mut mock = Command::new(mock_bin).args(["mock", "--listen", "127.0.0.1:0"]).stdout(Stdio::piped()).spawn()?;
    let mut line = String::new();
    BufReader::new(mock.stdout.take().expect("piped")).read_line(&mut line)?;
    let _mock = Proc(mock);
    let mock_addr: SocketAddr = line.trim().parse()?;

    let port = free_port()?;
    let layers_addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let config = dir.join("layers.toml");
    std::fs::write(&config, config_text(&dir, &state, layers_addr, mock_addr))?;
    let admin = |args: &[&str]| -> anyhow::Result<String> {
        let out = Command::new(layers).arg("--config").arg(&config).args(args).output()?;
        anyhow::ensure!(out.status.success(), "layers {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    };
    if matches!(deployment, Deployment::Production { .. }) {
        admin(&["migrate"])?;
    }
    admin(&["admin", "user", "create", "--email", "bench@example.com", "--tier", "team"])?;
    let key = admin(&["admin", "key", "create", "--email", "bench@example.com", "--env", "live"])?;
    admin(&[
        "admin",
        "credits",
        "grant",
        "--email",
        "bench@example.com",
        "--credits",
        "100000000",
        "--reason",
        "bench",
    ])?;
    // The default caps (US$10 an hour) would stop the benchmark within a minute.
    admin(&["admin", "user", "set-caps", "--email", "bench@example.com", "--per-hour", "1000000000"])?;
    // Likewise the team tier's 1,000 requests a minute: the limiter still runs on every request.
    admin(&["admin", "user", "set-rate-limit", "--email", "bench@example.com", "--rpm", "1000000000"])?;

    let spawned = Instant::now();
    let server = Command::new(layers).arg("--config").arg(&config).arg("serve").stderr(Stdio::null()).spawn()?;
    let pid = server.id();
    let mut server = Proc(server);
    wait_healthy(layers_addr).await?;
    let startup = spawned.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = rss_kb(pid, "VmRSS")?;

    let body = |model: &str, stream: bool| {
        Bytes::from(format!(
            r#"{{"model":"{model}","messages":[{{"role":"user","content":"Hello, how are you?"}}]{}}}"#,
            if stream { r#","stream":true"# } else { "" }
        ))
    };
    let direct = |stream: bool| Target {
        addr: mock_addr,
        path: "/v1/chat/completions".into(),
        bearer: None,
        body: body("gpt-4o-mini", stream),
        ttfb: stream,
    };
    let gateway = |stream: bool| Target {
        addr: layers_addr,
        path: "/v1/chat/completions".into(),
        bearer: Some(key.clone()),
        body: body("bench/gpt-4o-mini", stream),
        ttfb: stream,
    };
    let d = Duration::from_secs(seconds);
    // Warm up connections, caches and the allocator.
    load::run(&direct(false), 8, Duration::from_secs(1)).await?;
    load::run(&gateway(false), 8, Duration::from_secs(2)).await?;

    let mut rows = Vec::new();
    for (name, concurrency, stream) in
        [("chat, c=1", 1, false), ("chat, c=64", 64, false), ("stream TTFB, c=1", 1, true)]
    {
        let a = load::run(&direct(stream), concurrency, d).await?;
        let b = load::run(&gateway(stream), concurrency, d).await?;
        rows.push((name, a, b));
    }
    let rss_after = rss_kb(pid, "VmRSS")?;
    let rss_peak = rss_kb(pid, "VmHWM")?;

    let stop = Instant::now();
    Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
    let status = server.0.wait()?;
    let shutdown = stop.elapsed();
    let _ = std::fs::remove_dir_all(&dir);

    Ok(report(&rows, startup, rss_idle, rss_after, rss_peak, shutdown, status.success(), seconds))
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

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn wait_healthy(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await?;
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await?;
            if buf.starts_with(b"HTTP/1.1 200") {
                return Ok(());
            }
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

#[allow(clippy::too_many_arguments)]
fn report(
    rows: &[(&str, Outcome, Outcome)],
    startup: Duration,
    rss_idle: u64,
    rss_after: u64,
    rss_peak: u64,
    shutdown: Duration,
    clean_exit: bool,
    seconds: u64,
) -> String {
    let mut s = String::new();
    s.push_str(&format!("Each scenario ran {seconds} s against the mock directly, then through Layers.\n\n"));
    s.push_str("| scenario | target | requests/s | p50 µs | p99 µs | errors |\n|---|---|---:|---:|---:|---:|\n");
    for (name, direct, layers) in rows {
        for (target, o) in [("direct to mock", direct), ("through Layers", layers)] {
            s.push_str(&format!(
                "| {name} | {target} | {:.0} | {} | {} | {} |\n",
                o.rps(),
                o.percentile(0.50),
                o.percentile(0.99),
                o.errors
            ));
        }
        let p50 = i64::from(layers.percentile(0.50)) - i64::from(direct.percentile(0.50));
        let p99 = i64::from(layers.percentile(0.99)) - i64::from(direct.percentile(0.99));
        s.push_str(&format!("| {name} | **added by Layers** | | **{p50}** | **{p99}** | |\n"));
    }
    s.push_str(&format!(
        "\nLayers: start-up to healthy {} ms; RSS idle {:.1} MB, after load {:.1} MB, peak {:.1} MB; \
         graceful shutdown {} ms ({}).\n",
        startup.as_millis(),
        rss_idle as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        rss_peak as f64 / 1024.0,
        shutdown.as_millis(),
        if clean_exit { "exit 0" } else { "FAILED" }
    ));
    s
}
