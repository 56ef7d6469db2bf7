//! Redis for tests: the shared server (`LAYERS_TEST_REDIS_URL`, default 127.0.0.1:6379) with a
//! prefix of its own per test, or a private `redis-server` process a test may stop and restart.
//! Invariant: a missing Redis fails the test unless `LAYERS_TEST_SKIP_REDIS=1`, and then the skip
//! is printed, never silent.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shared test Redis.
pub fn redis_url() -> String {
    std::env::var("LAYERS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// `host:port` of a `redis://host:port[/db]` URL.
fn address(url: &str) -> Option<String> {
    let rest = url.strip_prefix("redis://")?;
    let hostport = rest.split('/').next()?.rsplit('@').next()?;
    Some(hostport.to_owned())
}

fn skip_or_fail<T>(why: &str) -> Option<T> {
    if std::env::var("LAYERS_TEST_SKIP_REDIS").as_deref() == Ok("1") {
        eprintln!("SKIPPED ({why})");
        return None;
    }
    panic!(
        "{why}. Start Redis, point LAYERS_TEST_REDIS_URL at one, or set LAYERS_TEST_SKIP_REDIS=1 to skip these tests."
    );
}

/// A unique key prefix on the shared test Redis, so tests run in parallel; `None` when Redis is
/// unreachable and skipping is allowed.
pub fn shared() -> Option<(String, String)> {
    let url = redis_url();
    let reachable =
        address(&url).and_then(|a| TcpStream::connect_timeout(&a.parse().ok()?, Duration::from_secs(1)).ok()).is_some();
    if !reachable {
        return skip_or_fail(&format!("Redis unreachable at {url}"));
    }
    let prefix = format!("test:{}:", uuid_like());
    Some((url, prefix))
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A private `redis-server` on a random port, stopped on drop.
pub struct RedisServer {
    pub port: u16,
    pub url: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one; `None` when `redis-server` is not installed and skipping is allowed.
    pub fn start() -> Option<RedisServer> {
        if Command::new("redis-server").arg("--version").output().is_err() {
            return skip_or_fail("redis-server is not installed (apt-get install -y redis-server)");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = RedisServer {
            port,
            url: format!("redis://127.0.0.1:{port}"),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        server.restart();
        Some(server)
    }

    /// Stops the server at once (like a crash: SIGKILL).
    pub fn stop(&mut self) {
        self.resume();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let Some(child) = &self.child else { return };
        let status = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill {sig} failed");
    }

    /// Starts it again on the same port (empty: it keeps nothing on disk).
    pub fn restart(&mut self) {
        self.stop();
        let child = spawn(self.port, self.dir.path());
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn spawn(port: u16, dir: &Path) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
