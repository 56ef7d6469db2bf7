//! The suite's logs, kept for the privacy scan (issue 16, SPEC §8.5): when
//! `LAYERS_TEST_LOG_DIR` is set (scripts/test sets it), every test process writes what the
//! product logs, at debug level, as JSON lines to `<dir>/<pid>.jsonl`; after the suite,
//! `log-scan` reads them all and fails on an e-mail address, a key, a password, a token or a
//! prompt.

use std::sync::Once;

static INIT: Once = Once::new();

/// What is kept: everything of ours at debug level, the libraries' warnings.
pub const LEVEL: &str =
    "debug,sqlx=warn,hyper=info,hyper_util=info,h2=info,reqwest=info,rustls=info,tower=info,lettre=info";

/// A file for a child process's logs (`layers serve` started by a test), when kept.
pub fn process_log(name: &str) -> Option<std::fs::File> {
    let dir = std::env::var("LAYERS_TEST_LOG_DIR").ok()?;
    std::fs::create_dir_all(&dir).ok()?;
    std::fs::File::create(std::path::Path::new(&dir).join(format!("{name}-{}.jsonl", std::process::id()))).ok()
}

/// Installs the capturing subscriber once per process (no-op without `LAYERS_TEST_LOG_DIR`).
pub fn capture() {
    INIT.call_once(|| {
        let Ok(dir) = std::env::var("LAYERS_TEST_LOG_DIR") else { return };
        if std::fs::create_dir_all(&dir).is_err() {
            return;
        }
        let path = std::path::Path::new(&dir).join(format!("{}.jsonl", std::process::id()));
        let Ok(file) = std::fs::File::create(path) else { return };
        let filter = tracing_subscriber::EnvFilter::new(LEVEL);
        let _ = tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::sync::Mutex::new(file))
            .try_init();
    });
}
