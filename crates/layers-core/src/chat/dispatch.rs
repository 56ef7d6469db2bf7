//! Upstream calls run in a task the server owns, not in the handler: axum drops a handler's
//! future when its client disconnects, which would cancel an upstream call the provider may bill
//! anyway. Invariant: the work always runs to its end and meters itself; the client's departure
//! only tells it (through the token) not to start another attempt.

use std::future::Future;

use tokio_util::sync::CancellationToken;

use super::ChatError;
use crate::tasks::Tasks;

/// Runs `work` in a task, giving it a token that fires if the caller stops waiting.
pub(crate) async fn detached<T, F, Fut>(tasks: &Tasks, work: F) -> Result<T, ChatError>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = Result<T, ChatError>> + Send + 'static,
    T: Send + 'static,
{
    let gone = CancellationToken::new();
    let guard = gone.clone().drop_guard();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let fut = work(gone);
    tasks.spawn_work("upstream-call", async move {
        // A reply nobody takes any more is dropped here: a stream's drop drains and meters it.
        let _ = tx.send(fut.await);
    });
    let out = rx.await;
    guard.disarm();
    out.unwrap_or(Err(ChatError::Internal("the request's upstream call ended without an answer")))
}
