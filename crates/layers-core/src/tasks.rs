//! Background tasks: spawned in one place, told to stop together, awaited on shutdown. Two
//! kinds: background work (writers, followers, upkeep) that watches the cancellation token, and
//! request work (upstream calls and drains the client no longer waits for, lease refills) that
//! must run to its end because money depends on it. Invariant: no task outlives
//! `Tasks::shutdown`; request work ends before background work is told to stop, so the
//! settlement writer still takes what it hands over.

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Debug, Default)]
pub struct Tasks {
    background: TaskTracker,
    work: TaskTracker,
    cancel: CancellationToken,
    /// Fires when request work has run past the shutdown's deadline: it ends with what it has.
    stop_work: CancellationToken,
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
        self.background.spawn(fut);
    }

    /// Spawns a background task that runs `work` every `every`, the first time `first_after`
    /// from now, until shutdown (a round that runs late is not made up for with a burst).
    pub fn spawn_every<F, Fut>(
        &self,
        name: &'static str,
        first_after: std::time::Duration,
        every: std::time::Duration,
        mut work: F,
    ) where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let cancel = self.cancelled();
        self.spawn(name, async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first_after, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                work().await;
            }
        });
    }

    /// Spawns request work: it runs to its own end (bounded by the request's deadlines) and
    /// shutdown waits for it before stopping the background tasks.
    pub fn spawn_work<F>(&self, name: &'static str, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        tracing::trace!(task = name, "starting request work");
        self.work.spawn(fut);
    }

    /// Request work still running.
    pub fn work_in_flight(&self) -> usize {
        self.work.len()
    }

    /// A token that fires when shutdown begins.
    pub fn cancelled(&self) -> CancellationToken {
        self.cancel.child_token()
    }

    /// A token that fires when request work must end now, with what it has (a drain stops
    /// reading and charges what it read).
    pub fn work_deadline(&self) -> CancellationToken {
        self.stop_work.child_token()
    }

    /// Waits for request work to end (up to `work_for`, then tells it to stop), then signals
    /// every background task to stop and waits until all have returned.
    pub async fn shutdown(&self, work_for: std::time::Duration) {
        self.work.close();
        if tokio::time::timeout(work_for, self.work.wait()).await.is_err() {
            tracing::warn!(
                left = self.work.len(),
                "request work past the shutdown deadline: ending it with what it has"
            );
            self.stop_work.cancel();
            self.work.wait().await;
        }
        self.cancel.cancel();
        self.background.close();
        self.background.wait().await;
    }
}
