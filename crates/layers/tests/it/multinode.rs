//! Many nodes as one service (issue 5): two `layers serve` processes on one PostgreSQL and one
//! Redis share every limit, see each other's revocations and blocks at once, keep serving when
//! Redis dies and become global again when it returns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use layers_store::testing::TestDatabase;
use layers_testkit::process::{layers_cmd, write_config, ServeProcess};
use layers_testkit::redis::RedisServer;

use crate::ratelimit::{check_blocked, count, fire, readiness};
use crate::support::chat_body;

fn deployment(dir: &Path, db_url: &str, redis_url: &str) -> PathBuf {
    write_config(
        dir,
        &format!(
            r#"
data_dir = "{dir}"
[database]
url = "{db_url}"
[keys]
pepper = "{pepper}"
# The database feed is the slow backstop here: what arrives within a second came over Redis.
invalidation_poll_ms = 1000
[redis]
url = "{redis_url}"
prefix = "two-nodes:"
[security]
trusted_proxies = ["127.0.0.1"]
[log]
level = "error"
"#,
            dir = dir.display(),
            pepper = layers_testkit::app::TEST_PEPPER,
        ),
    )
}

/// A user of `tier` with 100 credits and a live key; returns the key.
fn funded_key(bin: &Path, config: &Path, email: &str, tier: &str) -> String {
    layers_cmd(bin, config, &["admin", "user", "create", "--email", email, "--tier", tier]);
    layers_cmd(bin, config, &["admin", "credits", "grant", "--email", email, "--credits", "100", "--reason", "t"]);
    layers_cmd(bin, config, &["admin", "key", "create", "--email", email, "--env", "live"])
}

async fn metric(url: &str, name: &str) -> Option<u64> {
    let text = reqwest::get(format!("{url}/metrics")).await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Polls until `check` holds, for at most `limit`; returns how long it took.
async fn within<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

async fn status(url: &str, key: &str, ip: Option<&str>) -> u16 {
    fire(&[url.to_owned()], key, 1, 1, ip).await[0].status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_postgres_and_redis_behave_as_one() {
    let Some(db) = TestDatabase::postgres().await else { return };
    let Some(mut redis) = RedisServer::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = deployment(dir.path(), &db.url, &redis.url);
    let bin = Path::new(env!("CARGO_BIN_EXE_layers"));
    layers_cmd(bin, &config, &["migrate"]);
    let free = funded_key(bin, &config, "free@example.com", "free");
    let pro = funded_key(bin, &config, "pro@example.com", "pro");
    let env = BTreeMap::new();
    let a = ServeProcess::start(bin, &config, &env).await;
    let b = ServeProcess::start(bin, &config, &env).await;
    let nodes = [a.url.clone(), b.url.clone()];

    // 1. One limit for the deployment: 40 requests over both nodes, exactly 10 admitted.
    let seen = fire(&nodes, &free, 40, 8, None).await;
    assert_eq!(count(&seen, 200), 10, "combined admissions equal the free tier's limit");
    assert_eq!(count(&seen, 429), 30);
    for node in &nodes {
        assert_eq!(metric(node, "layers_rate_limit_local_decisions_total").await, Some(0), "{node} decided alone");
    }

    // 2. A tier change by the operator reaches both nodes within a second.
    layers_cmd(bin, &config, &["admin", "user", "set-tier", "--email", "free@example.com", "--tier", "starter"]);
    for node in &nodes {
        let took = within(Duration::from_secs(1), || async { status(node, &free, None).await == 200 }).await;
        assert!(took.is_some(), "{node} still applies the old tier");
    }

    // 3. A key deactivated through node A's deployment is refused by node B within a second,
    //    though B had it cached (the database feed alone would take up to a second more).
    assert_eq!(status(&b.url, &pro, None).await, 200);
    let notices_before = metric(&b.url, "layers_redis_notices_received_total").await.unwrap();
    let prefix = &pro[..16];
    layers_cmd(bin, &config, &["admin", "key", "deactivate", "--prefix", prefix]);
    let took = within(Duration::from_secs(1), || async { status(&b.url, &pro, None).await == 401 }).await;
    let took = took.expect("node B served a deactivated key for over a second");
    println!("deactivation reached node B in {took:?}");
    // And it came over Redis, not through the database feed.
    assert!(metric(&b.url, "layers_redis_notices_received_total").await.unwrap() > notices_before);

    // 4. Failed authentications counted across nodes block the IP on both.
    let unknown = layers_domain::ApiKey::from_entropy(layers_domain::KeyEnv::Live, &[9; 24]);
    let attacker = "203.0.113.50";
    for i in 0..50 {
        assert_eq!(status(&nodes[i % 2], unknown.expose(), Some(attacker)).await, 401);
    }
    let blocked_on_both = within(Duration::from_secs(1), || async {
        status(&a.url, unknown.expose(), Some(attacker)).await == 403
            && status(&b.url, unknown.expose(), Some(attacker)).await == 403
    })
    .await;
    assert!(blocked_on_both.is_some(), "the block did not reach both nodes");
    check_blocked(
        reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", b.url))
            .bearer_auth(unknown.expose())
            .header("x-forwarded-for", attacker)
            .json(&chat_body("sandbox/echo", "x"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status(&b.url, &free, Some("198.51.100.1")).await, 200, "other addresses pass");
    // A valid key behind the blocked address is still served on both nodes.
    for node in &nodes {
        assert_eq!(status(node, &free, Some(attacker)).await, 200, "{node} locked a paying user out");
    }
    // One block for the deployment, in the audit log the operator reads.
    let events = layers_cmd(bin, &config, &["admin", "security-events", "--type", "ip_blocked"]);
    assert_eq!(events.lines().count(), 1, "{events}");
    assert!(events.contains(attacker) && events.contains("critical") && events.contains("\"failures\":50"), "{events}");

    // 5. Redis dies: both nodes keep serving on local limits, and say so.
    redis.stop();
    let other = funded_key(bin, &config, "other@example.com", "free");
    for node in &nodes {
        assert_eq!(status(node, &other, None).await, 200, "{node} stopped serving without Redis");
    }
    for node in &nodes {
        assert_eq!(metric(node, "layers_redis_up").await, Some(0));
        assert!(metric(node, "layers_redis_fallbacks_total").await.unwrap() >= 1);
        let (code, body) = readiness(node).await;
        assert_eq!((code, body["redis"].as_str()), (200, Some("down")), "{body}");
    }
    // Each node now counts alone: up to twice the limit in total, never more.
    let seen = fire(&nodes, &other, 40, 8, None).await;
    let ok = count(&seen, 200) + 2;
    assert!((11..=20).contains(&ok), "{ok} admitted with local limits on two nodes");

    // 6. Redis returns: the nodes notice by themselves and the limit is global again.
    redis.restart();
    for node in &nodes {
        let back = within(Duration::from_secs(10), || async { metric(node, "layers_redis_up").await == Some(1) }).await;
        assert!(back.is_some(), "{node} did not reconnect to Redis");
        assert!(metric(node, "layers_redis_recoveries_total").await.unwrap() >= 1);
        assert_eq!(readiness(node).await.1["redis"], "ok");
    }
    // Redis came back empty, but each node remembers what it admitted alone meanwhile: the key
    // that used its limit on both nodes during the outage is not admitted again in this window.
    for node in &nodes {
        assert_eq!(status(node, &other, None).await, 429, "{node} forgot its own admissions");
    }
    let fresh = funded_key(bin, &config, "fresh@example.com", "free");
    let seen = fire(&nodes, &fresh, 40, 8, None).await;
    assert_eq!(count(&seen, 200), 10, "global again after Redis returned");
    // Revocation over Redis works again too (the subscription was re-established).
    assert_eq!(status(&a.url, &fresh, None).await, 429);
    let fresh_prefix = &fresh[..16];
    layers_cmd(bin, &config, &["admin", "key", "deactivate", "--prefix", fresh_prefix]);
    let gone = within(Duration::from_secs(1), || async {
        status(&a.url, &fresh, None).await == 401 && status(&b.url, &fresh, None).await == 401
    })
    .await;
    assert!(gone.is_some(), "deactivation after Redis returned");

    // 7. Redis stops answering without closing anything (paused): requests wait at most the
    //    Redis timeout, then both nodes limit locally; thawed, it is global again.
    redis.pause();
    let paused = funded_key_while_paused(bin, &config, "paused@example.com");
    for node in &nodes {
        let started = Instant::now();
        assert_eq!(status(node, &paused, None).await, 200, "{node} stopped serving with Redis paused");
        println!("first request on {node} with Redis paused: {:?}", started.elapsed());
        let down = within(Duration::from_secs(3), || async { metric(node, "layers_redis_up").await == Some(0) }).await;
        assert!(down.is_some(), "{node} did not notice the paused Redis");
    }
    redis.resume();
    for node in &nodes {
        let back = within(Duration::from_secs(10), || async { metric(node, "layers_redis_up").await == Some(1) }).await;
        assert!(back.is_some(), "{node} did not recover from the paused Redis");
    }
    let after = funded_key(bin, &config, "after-pause@example.com", "free");
    assert_eq!(count(&fire(&nodes, &after, 40, 8, None).await, 200), 10, "global again after the pause");
    drop(a);
    drop(b);
}

/// Like `funded_key`, while Redis is paused: the admin command's Redis connection would wait
/// for it, so this one is told there is none (the nodes learn of new keys from the database).
fn funded_key_while_paused(bin: &Path, config: &Path, email: &str) -> String {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .arg("--config")
            .arg(config)
            .args(args)
            .env_remove("LAYERS_CONFIG")
            .env("LAYERS_REDIS__URL", "")
            .output()
            .unwrap();
        assert!(out.status.success(), "layers {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    run(&["admin", "user", "create", "--email", email, "--tier", "free"]);
    run(&["admin", "credits", "grant", "--email", email, "--credits", "100", "--reason", "t"]);
    run(&["admin", "key", "create", "--email", email, "--env", "live"])
}
