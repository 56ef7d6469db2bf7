//! Background tasks: spawned in one place, told to stop together, awaited on shutdown.
//! Invariant: no task outlives `Tasks::shutdown`; a task that holds buffered writes flushes
//! them when cancelled.

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Debug, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Tasks {
    pub fn new() -> Tasks {
        Tasks::default()
    }

    /// Spawns a background task. It should watch [`Tasks::cancelled`] and return promptly.
    pub fn spawn<F>(&self, name: &'static str, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        tracing::debug!(task = name, "starting background task");
        self.tracker.spawn(fut);
    }

    /// A token that fires when shutdown begins.
    pub fn cancelled(&self) -> CancellationToken {
        self.cancel.child_token()
    }

    /// Signals every task to stop and waits until all have returned.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}
