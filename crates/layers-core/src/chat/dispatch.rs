//! Upstream calls that outlive their handler: axum drops a handler's future when its client
//! disconnects, which would cancel an upstream call the provider may bill anyway. The call runs
//! inline while the client waits (no extra task, no extra wake-up); if the handler is dropped
//! first, what is left of the call moves to a task the server owns and runs to its end.
//! Invariant: the work always runs to its end and meters itself; the client's departure only
//! tells it (through the token) not to start another attempt.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio_util::sync::CancellationToken;

use super::ChatError;
use crate::tasks::Tasks;

type Work<T> = Pin<Box<dyn Future<Output = Result<T, ChatError>> + Send>>;

/// Runs `work` on the caller's task, giving it a token that fires if the caller goes away
/// before it finished (the rest then runs in request work).
pub(crate) async fn detached<T, F, Fut>(tasks: &Tasks, work: F) -> Result<T, ChatError>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = Result<T, ChatError>> + Send + 'static,
    T: Send + 'static,
{
    let gone = CancellationToken::new();
    let fut: Work<T> = Box::pin(work(gone.clone()));
    Detachable { work: Some(fut), gone, tasks: tasks.clone() }.await
}

struct Detachable<T: Send + 'static> {
    work: Option<Work<T>>,
    gone: CancellationToken,
    tasks: Tasks,
}

impl<T: Send + 'static> Future for Detachable<T> {
    type Output = Result<T, ChatError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(work) = self.work.as_mut() else {
            return Poll::Ready(Err(ChatError::Internal("the upstream call was polled after it ended")));
        };
        let out = std::task::ready!(work.as_mut().poll(cx));
        self.work = None;
        Poll::Ready(out)
    }
}

impl<T: Send + 'static> Drop for Detachable<T> {
    fn drop(&mut self) {
        let Some(work) = self.work.take() else { return };
        self.gone.cancel();
        if tokio::runtime::Handle::try_current().is_err() {
            // No runtime to finish it on (the process is ending): its meter records it unbilled.
            return;
        }
        // A reply nobody takes any more is dropped in the task: a stream's drop drains and
        // meters it.
        self.tasks.spawn_work("upstream-call", async move {
            let _ = work.await;
        });
    }
}
