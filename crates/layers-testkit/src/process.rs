//! `layers serve` as a real process, for tests of several nodes, signals and crashes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `layers serve`. Killed (SIGKILL) when dropped, unless stopped before.
pub struct ServeProcess {
    pub url: String,
    child: Option<Child>,
}

impl ServeProcess {
    /// Starts `binary --config config serve` on a free port and waits until it is healthy.
    pub async fn start(binary: &Path, config: &Path, env: &BTreeMap<String, String>) -> ServeProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cmd = Command::new(binary);
        cmd.arg("--config").arg(config).arg("serve").env("LAYERS_LISTEN", format!("127.0.0.1:{port}"));
        cmd.env_remove("LAYERS_CONFIG").stdout(Stdio::null()).stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        // The suite's privacy scan reads what this process logs too (see `crate::logs`).
        if let Some(file) = crate::logs::process_log(&format!("serve-{port}")) {
            cmd.env("LAYERS_LOG__FORMAT", "json").env("LAYERS_LOG__LEVEL", crate::logs::LEVEL).stderr(file);
        }
        let child = cmd.spawn().unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = client.get(format!("{url}/healthz")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "layers serve did not become healthy");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ServeProcess { url, child: Some(child) }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// SIGKILL: the process gets no chance to flush or release anything.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        child.wait().ok()?.code()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// Runs `binary --config config ARGS…` to completion and returns its stdout (trimmed).
pub fn layers_cmd(binary: &Path, config: &Path, args: &[&str]) -> String {
    let out = Command::new(binary).arg("--config").arg(config).args(args).env_remove("LAYERS_CONFIG").output().unwrap();
    assert!(out.status.success(), "layers {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A config file for processes of one deployment.
pub fn write_config(dir: &Path, toml: &str) -> PathBuf {
    let path = dir.join("layers.toml");
    std::fs::write(&path, toml).unwrap();
    path
}
