//! The accept loop. Every connection is a task this loop owns, so shutdown can drain them and,
//! past the deadline, end them — which drops their streams and so meters them.
//! Invariant: `serve` returns only when no connection task is left.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::router::build_router;
use crate::state::AppState;

/// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests (streams
/// included) finish for up to `drain`, and ends what is left.
pub async fn serve<F>(listener: TcpListener, state: AppState, shutdown: F, drain: Duration) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let router = build_router(state);
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(err) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                // Small SSE writes must leave at once, not wait for the peer's delayed ACK.
                let _ = tcp.set_nodelay(true);
                let service = router.clone().map_request(move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                    req
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), TowerToHyperService::new(service));
                let conn = graceful.watch(conn.into_owned());
                connections.spawn(async move {
                    let _ = conn.await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let open = connections.len();
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(drain) => {
            tracing::warn!(open, timeout_secs = drain.as_secs(), "drain timeout reached; closing remaining connections");
            connections.abort_all();
        }
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}
