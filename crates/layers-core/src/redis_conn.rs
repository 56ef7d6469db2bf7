//! The node's Redis connection, and whether Redis is usable right now. Invariant: the request
//! path never waits on a Redis that is known to be down — it falls back at once, a background
//! task probes and restores, and every change of state is logged and counted, once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::tasks::Tasks;

#[derive(Clone)]
pub struct RedisSettings {
    pub url: String,
    /// Prefix of every key and channel (several deployments can share one Redis).
    pub prefix: String,
    /// Longest a request waits on Redis before falling back.
    pub timeout: Duration,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &crate::redact::redact_url(&self.url))
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct RedisStats {
    pub fallbacks: AtomicU64,
    pub recoveries: AtomicU64,
}

#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    /// Set once the first connection succeeds (a node may start while Redis is down).
    conn: OnceLock<ConnectionManager>,
    settings: RedisSettings,
    up: AtomicBool,
    stats: RedisStats,
    /// Makes members of shared sorted sets unique across nodes: (random node id, counter).
    node: u64,
    counter: AtomicU64,
    /// Bumped each time Redis comes back, so long-lived sessions (the subscriber) start afresh.
    generation: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").field("prefix", &self.inner.settings.prefix).field("up", &self.is_up()).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("the Redis URL is invalid")]
    Url(#[source] redis::RedisError),
    #[error("redis is unavailable")]
    Down,
    #[error("redis timed out")]
    Timeout,
    #[error("redis failed")]
    Failed(#[from] redis::RedisError),
}

impl Redis {
    /// Connects and starts the health probe. A Redis that is unreachable now does not stop the
    /// node: it starts limiting locally and the probe connects when Redis answers.
    pub async fn connect(settings: RedisSettings, tasks: &Tasks) -> Result<Redis, RedisError> {
        // TCP_NODELAY: every limit check is one small request waiting for its answer; Nagle's
        // algorithm held them behind delayed ACKs (p50 +300 µs, p99 +3 ms in the benchmark).
        let info = redis::IntoConnectionInfo::into_connection_info(settings.url.as_str())
            .map_err(RedisError::Url)?
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info).map_err(RedisError::Url)?;
        let redis = Redis {
            inner: Arc::new(Inner {
                client,
                conn: OnceLock::new(),
                settings,
                up: AtomicBool::new(false),
                stats: RedisStats::default(),
                node: rand::random(),
                counter: AtomicU64::new(0),
                generation: tokio::sync::watch::Sender::new(0),
            }),
        };
        match redis.establish().await {
            Ok(()) => {
                redis.inner.up.store(true, Ordering::Relaxed);
            }
            Err(err) => {
                redis.inner.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %crate::error::chain(&err), "Redis is unreachable at start-up; limits are local to this node until it answers");
            }
        }
        redis.spawn_probe(tasks);
        Ok(redis)
    }

    /// Creates the managed connection if there is none yet.
    async fn establish(&self) -> Result<(), RedisError> {
        if self.inner.conn.get().is_some() {
            return Ok(());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(self.inner.settings.timeout.max(Duration::from_millis(10))))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn =
            tokio::time::timeout(Duration::from_secs(3), self.inner.client.get_connection_manager_with_config(config))
                .await
                .map_err(|_| RedisError::Timeout)??;
        let _ = self.inner.conn.set(conn);
        Ok(())
    }

    pub fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.inner.settings.prefix)
    }

    /// A string no other call on any node returns (members of the shared windows).
    pub fn unique(&self) -> String {
        format!("{:x}.{}", self.inner.node, self.inner.counter.fetch_add(1, Ordering::Relaxed))
    }

    /// Changes each time Redis comes back after being down.
    pub fn generation(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.generation.subscribe()
    }

    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> &RedisStats {
        &self.inner.stats
    }

    pub fn client(&self) -> &redis::Client {
        &self.inner.client
    }

    /// Runs a command with the request-path timeout; a failure marks Redis down.
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T, RedisError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let Some(conn) = self.inner.conn.get().filter(|_| self.is_up()) else { return Err(RedisError::Down) };
        let result = tokio::time::timeout(self.inner.settings.timeout, f(conn.clone())).await;
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.mark_down(&e.to_string());
                Err(RedisError::Failed(e))
            }
            Err(_) => {
                self.mark_down("timeout");
                Err(RedisError::Timeout)
            }
        }
    }

    fn mark_down(&self, why: &str) {
        if self.inner.up.swap(false, Ordering::Relaxed) {
            self.inner.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(reason = %why, "Redis is unreachable; limits are local to this node until it returns");
        }
    }

    /// Pings every 250 ms while down and marks Redis up again when it answers; while up, pings
    /// every second so a Redis that went silent (paused, half-open connection) is noticed even
    /// without traffic.
    fn spawn_probe(&self, tasks: &Tasks) {
        let this = self.clone();
        let cancel = tasks.cancelled();
        tasks.spawn("redis-probe", async move {
            let mut tick: u64 = 0;
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
                tick += 1;
                if this.is_up() {
                    if tick.is_multiple_of(4) && !this.ping().await {
                        this.mark_down("no answer to the health check");
                    }
                    continue;
                }
                if this.establish().await.is_err() || !this.ping().await {
                    continue;
                }
                if !this.inner.up.swap(true, Ordering::Relaxed) {
                    this.inner.stats.recoveries.fetch_add(1, Ordering::Relaxed);
                    this.inner.generation.send_modify(|g| *g += 1);
                    tracing::info!("Redis is back; limits are global again");
                }
            }
        });
    }

    async fn ping(&self) -> bool {
        let Some(conn) = self.inner.conn.get() else { return false };
        let mut conn = conn.clone();
        let cmd = redis::cmd("PING");
        let ping = tokio::time::timeout(Duration::from_secs(1), cmd.query_async::<String>(&mut conn)).await;
        matches!(ping, Ok(Ok(_)))
    }

    /// Publishes on the deployment's channel; best effort (the database feed is the backstop).
    pub async fn publish(&self, message: &str) {
        let channel = self.key("events");
        let msg = message.to_owned();
        let result = self
            .run(|mut c| async move { redis::cmd("PUBLISH").arg(channel).arg(msg).query_async::<i64>(&mut c).await })
            .await;
        if let Err(err) = result {
            tracing::warn!(error = %crate::error::chain(&err), "could not publish an invalidation; nodes will see it through the database feed");
        }
    }
}
