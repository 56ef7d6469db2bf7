//! The accept loop. Every connection is a task this loop owns, so shutdown can drain them and,
//! past the deadline, end them — which drops their streams and so meters them.
//! Invariant: `serve` returns only when no connection task is left; no connection outlives its
//! header-read or idle deadline, and no more than `max_connections` are open.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::connections::{Admitted, Tracked};
use crate::router::{build_router, metrics_router};
use crate::state::AppState;

/// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests (streams
/// included) finish for up to `drain`, and ends what is left.
pub async fn serve<F>(listener: TcpListener, state: AppState, shutdown: F, drain: Duration) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let edge = state.edge;
    let registry = state.connections.clone();
    let router = build_router(state);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Without a timer hyper enforces no header-read deadline at all.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(edge.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
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
                        tracing::warn!(error = %layers_core::error::chain(&err), "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let registration = match registry.admit() {
                    Admitted::Open(registration) => registration,
                    Admitted::Refused => {
                        tracing::warn!(open = registry.open(), "connection cap reached with every connection busy; closing a new one");
                        continue;
                    }
                };
                // Small SSE writes must leave at once, not wait for the peer's delayed ACK.
                let _ = tcp.set_nodelay(true);
                let conn_state = registration.conn.clone();
                let service = router.clone().map_request(move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                    req.extensions_mut().insert(Arc::clone(&conn_state));
                    req
                });
                let io = TokioIo::new(Tracked::new(tcp, registration.conn.clone()));
                let conn = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(service));
                let conn = graceful.watch(conn.into_owned());
                connections.spawn(async move {
                    let watchdog = registration.conn.clone();
                    tokio::select! {
                        _ = conn => {}
                        // Idle past the deadline or evicted under the cap: nothing is in flight,
                        // so dropping the connection loses nothing.
                        () = watchdog.closing(edge.idle_timeout) => {}
                    }
                    drop(registration);
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

/// Serves the private metrics listener (`server.metrics_listen`) until `shutdown` resolves.
pub async fn serve_metrics<F>(listener: TcpListener, state: AppState, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    axum::serve(listener, metrics_router(state)).with_graceful_shutdown(shutdown).await
}
