//! What one client may hold of this node: a cap on open connections, a deadline for idle ones
//! and the socket activity the deadline is measured from (SPEC §8).
//! Invariant: a connection with a request in flight is never closed here; an idle one is closed
//! after `idle_timeout`, or sooner when a new client needs its place under the cap.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Limits of the edge, from `[server]` in the configuration.
#[derive(Clone, Copy, Debug)]
pub struct EdgeSettings {
    /// A client must send a request's whole head within this.
    pub header_read_timeout: Duration,
    /// A connection with nothing in flight and no bytes either way is closed after this.
    pub idle_timeout: Duration,
    /// A request body must arrive whole within this (408 `request_timeout` otherwise).
    pub body_read_timeout: Duration,
    /// Open connections at most; past it the oldest idle one makes room, or the new one is closed.
    pub max_connections: usize,
    /// Requests in flight at most; past it new requests get 503 `overloaded`.
    pub max_in_flight: usize,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        EdgeSettings {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_in_flight: 4_096,
        }
    }
}

/// One open connection, as the cap and the idle watchdog see it.
#[derive(Debug)]
pub struct Connection {
    id: u64,
    epoch: Instant,
    /// Milliseconds after `epoch` of the last byte read or written.
    last_active: AtomicU64,
    in_flight: AtomicUsize,
    evict: Notify,
    /// Asked to make room; not picked again while it closes.
    evicting: AtomicBool,
}

impl Connection {
    fn touch(&self) {
        self.last_active.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn last_active(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_active.load(Ordering::Relaxed))
    }

    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// Marks a request in flight on this connection until the guard drops.
    pub fn request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        RequestGuard(self.clone())
    }

    /// Resolves when the connection should close: idle past `idle`, or evicted to make room.
    pub async fn closing(&self, idle: Duration) {
        let mut deadline = self.last_active() + idle;
        loop {
            tokio::select! {
                () = self.evict.notified() => {
                    if self.is_idle() {
                        return;
                    }
                    // Busy again by the time it heard: it stays, and may be picked later.
                    self.evicting.store(false, Ordering::Relaxed);
                }
                () = tokio::time::sleep_until(deadline) => {
                    if !self.is_idle() {
                        deadline = Instant::now() + idle;
                        continue;
                    }
                    let due = self.last_active() + idle;
                    if due <= Instant::now() {
                        return;
                    }
                    deadline = due;
                }
            }
        }
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub struct RequestGuard(Arc<Connection>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What [`Registry::admit`] decided for a new socket.
pub enum Admitted {
    Open(Registration),
    /// At the cap with every connection busy: close the new socket at once.
    Refused,
}

/// The node's open connections.
#[derive(Debug)]
pub struct Registry {
    epoch: Instant,
    max: usize,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
}

impl Registry {
    pub fn new(max: usize) -> Arc<Registry> {
        Arc::new(Registry {
            epoch: Instant::now(),
            max: max.max(1),
            next_id: AtomicU64::new(0),
            open: Default::default(),
        })
    }

    pub fn open(&self) -> usize {
        self.open.lock().map_or(0, |m| m.len())
    }

    /// Registers a new connection; at the cap, asks the longest-idle one to close first.
    pub fn admit(self: &Arc<Self>) -> Admitted {
        let Ok(mut open) = self.open.lock() else { return Admitted::Refused };
        if open.len() >= self.max {
            let oldest = open
                .values()
                .filter(|c| c.is_idle() && !c.evicting.load(Ordering::Relaxed))
                .min_by_key(|c| c.last_active.load(Ordering::Relaxed));
            match oldest {
                Some(conn) => {
                    conn.evicting.store(true, Ordering::Relaxed);
                    conn.evict.notify_one();
                }
                None => return Admitted::Refused,
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Connection {
            id,
            epoch: self.epoch,
            last_active: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            evict: Notify::new(),
            evicting: AtomicBool::new(false),
        });
        conn.touch();
        open.insert(id, conn.clone());
        Admitted::Open(Registration { registry: self.clone(), conn })
    }
}

/// A connection's place in the registry, given back when dropped.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<Registry>,
    pub conn: Arc<Connection>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut open) = self.registry.open.lock() {
            open.remove(&self.conn.id);
        }
    }
}

/// A socket that records when bytes last moved, for the idle watchdog.
pub struct Tracked<T> {
    inner: T,
    conn: Arc<Connection>,
}

impl<T> Tracked<T> {
    pub fn new(inner: T, conn: Arc<Connection>) -> Self {
        Tracked { inner, conn }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.conn.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_closes_after_the_timeout_and_a_busy_one_does_not() {
        let registry = Registry::new(10);
        let Admitted::Open(idle) = registry.admit() else { panic!("refused") };
        let Admitted::Open(busy) = registry.admit() else { panic!("refused") };
        let guard = busy.conn.request();
        let started = Instant::now();
        idle.conn.closing(Duration::from_secs(5)).await;
        assert_eq!(started.elapsed().as_secs(), 5);
        let waited = tokio::time::timeout(Duration::from_secs(60), busy.conn.closing(Duration::from_secs(5))).await;
        assert!(waited.is_err(), "a connection with a request in flight was closed");
        drop(guard);
        busy.conn.closing(Duration::from_secs(5)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_longest_idle_connection_makes_room() {
        let registry = Registry::new(2);
        let Admitted::Open(old) = registry.admit() else { panic!("refused") };
        tokio::time::advance(Duration::from_secs(1)).await;
        let Admitted::Open(newer) = registry.admit() else { panic!("refused") };
        let Admitted::Open(_third) = registry.admit() else { panic!("refused") };
        // The oldest was asked to close, at once rather than after the idle timeout.
        tokio::time::timeout(Duration::from_millis(1), old.conn.closing(Duration::from_secs(60)))
            .await
            .expect("the oldest idle connection was not evicted");
        let waited = tokio::time::timeout(Duration::from_secs(1), newer.conn.closing(Duration::from_secs(60))).await;
        assert!(waited.is_err());
        // Every connection busy: the new one is refused.
        let _a = old.conn.request();
        let _b = newer.conn.request();
        let _c = _third.conn.request();
        assert!(matches!(registry.admit(), Admitted::Refused));
        drop(old);
        assert_eq!(registry.open(), 2);
    }
}
