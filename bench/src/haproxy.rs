//! The no-logic reverse proxy of SPEC §11: haproxy in HTTP mode with keep-alive to the mock,
//! one extra HTTP hop and nothing else, so the report can say what Layers adds beyond a hop.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::run::{free_addr, Proc};

/// How the bench runs haproxy.
pub struct Haproxy {
    /// The haproxy binary.
    pub bin: String,
    /// `nbthread`: 2 measured best on the 2-core machine (see bench/README.md).
    pub threads: usize,
}

/// Writes the configuration into `dir`, starts haproxy in the foreground and waits until it
/// accepts connections. Returns the process (killed on drop) and its listening address.
pub async fn start(haproxy: &Haproxy, dir: &Path, mock: SocketAddr) -> anyhow::Result<(Proc, SocketAddr)> {
    let listen = free_addr()?;
    let config = dir.join("haproxy.cfg");
    std::fs::write(&config, config_text(listen, mock, haproxy.threads))?;
    let child = Command::new(&haproxy.bin).arg("-db").arg("-q").arg("-f").arg(&config).stdin(Stdio::null()).spawn()?;
    let mut proc = Proc(child);
    wait_listening(&mut proc, listen).await?;
    Ok((proc, listen))
}

/// The whole configuration: one frontend, one backend (the mock), connections to the mock kept
/// alive and shared between client connections.
fn config_text(listen: SocketAddr, mock: SocketAddr, threads: usize) -> String {
    format!(
        "global
    nbthread {threads}

defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend bench
    bind {listen}
    default_backend mock

backend mock
    http-reuse always
    server mock {mock}
"
    )
}

async fn wait_listening(proc: &mut Proc, addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(status) = proc.0.try_wait()? {
            anyhow::bail!("haproxy exited at start-up ({status}); its messages are above");
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    anyhow::bail!("haproxy did not listen on {addr} within 10 s")
}
