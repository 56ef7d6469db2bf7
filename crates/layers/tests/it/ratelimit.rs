//! Rate limits on one node (issue 5): exactly N per window per tier, the headers, the 429 in
//! OpenAI's shape, test keys, tokens per minute, overrides and tier changes, and failed-auth
//! blocking by IP.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use layers_domain::{KeyEnv, Tier};
use layers_store::RateOverrides;
use layers_testkit::{AppOptions, MockOpenAi, TestApp};
use serde_json::Value;

use crate::support::{chat_body, error_of, MOCK_MODEL};

const FREE: &str = "sandbox/echo";

/// The rate-limit state a response reports.
#[derive(Debug)]
pub struct Seen {
    pub status: u16,
    pub limit: Option<u32>,
    pub remaining: Option<u32>,
    pub headers: reqwest::header::HeaderMap,
}

fn header<T: std::str::FromStr>(h: &reqwest::header::HeaderMap, name: &str) -> Option<T> {
    h.get(name)?.to_str().ok()?.parse().ok()
}

/// Sends `n` chat requests with `key` to the given nodes (round robin), `concurrency` at a time.
pub async fn fire(urls: &[String], key: &str, n: usize, concurrency: usize, ip: Option<&str>) -> Vec<Seen> {
    let client = reqwest::Client::new();
    futures_util::stream::iter(0..n)
        .map(|i| {
            let mut req = client
                .post(format!("{}/v1/chat/completions", urls[i % urls.len()]))
                .bearer_auth(key)
                .json(&chat_body(FREE, "hi"));
            if let Some(ip) = ip {
                req = req.header("x-forwarded-for", ip);
            }
            async move {
                let resp = req.send().await.unwrap();
                let headers = resp.headers().clone();
                let status = resp.status().as_u16();
                let _ = resp.bytes().await;
                Seen {
                    status,
                    limit: header(&headers, "x-ratelimit-limit-requests"),
                    remaining: header(&headers, "x-ratelimit-remaining-requests"),
                    headers,
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

pub fn count(seen: &[Seen], status: u16) -> usize {
    seen.iter().filter(|s| s.status == status).count()
}

/// A funded user of `tier` with a live key.
async fn funded(app: &TestApp, email: &str, tier: Tier) -> (layers_store::User, String) {
    let user = app.create_user(email, tier).await;
    app.grant(&user, "100").await;
    let key = app.create_key(&user, KeyEnv::Live).await;
    (user, key)
}

/// Checks a 429: OpenAI's error shape and every retry header.
async fn check_429(resp: reqwest::Response, limit: u32, window_ms: u64) {
    assert_eq!(resp.status(), 429);
    let h = resp.headers().clone();
    let retry_ms: u64 = header(&h, "retry-after-ms").expect("retry-after-ms");
    let retry_s: u64 = header(&h, "retry-after").expect("retry-after");
    assert!((1..=window_ms).contains(&retry_ms), "retry-after-ms {retry_ms}");
    assert_eq!(retry_s, retry_ms.div_ceil(1000), "Retry-After is retry-after-ms rounded up");
    assert_eq!(header::<u32>(&h, "x-ratelimit-limit-requests"), Some(limit));
    assert_eq!(header::<u32>(&h, "x-ratelimit-remaining-requests"), Some(0));
    assert!(h.get("x-ratelimit-reset-requests").is_some());
    assert_eq!(
        h.get("ratelimit-policy").unwrap().to_str().unwrap(),
        format!("\"requests\";q={limit};w={}", window_ms.div_ceil(1000))
    );
    assert!(h.get("ratelimit").unwrap().to_str().unwrap().starts_with("\"requests\";r=0;t="));
    let (_, err) = error_of(resp).await;
    assert_eq!(err["code"], "rate_limit_exceeded");
    assert_eq!(err["type"], "requests");
    assert!(err["message"].as_str().unwrap().contains(&format!("{limit} requests per minute")), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tier_admits_exactly_its_limit_with_exact_headers() {
    exact_per_tier(AppOptions::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tier_admits_exactly_its_limit_on_postgres_and_redis() {
    let Some(opts) = AppOptions::default().postgres().redis() else { return };
    exact_per_tier(opts).await;
}

async fn exact_per_tier(opts: AppOptions) {
    let Some(app) = TestApp::spawn_with(opts).await else { return };
    for (tier, limit) in [(Tier::Free, 10u32), (Tier::Starter, 60), (Tier::Pro, 300), (Tier::Team, 1_000)] {
        let (_, key) = funded(&app, &format!("{tier}@example.com"), tier).await;
        let seen = fire(std::slice::from_ref(&app.url), &key, limit as usize + 20, 16, None).await;
        let ok: Vec<&Seen> = seen.iter().filter(|s| s.status == 200).collect();
        assert_eq!(ok.len(), limit as usize, "{tier}: admitted");
        assert_eq!(count(&seen, 429), 20, "{tier}: refused");
        // Every admitted request saw the limit, and the remaining counts are exactly N-1 … 0.
        assert!(ok.iter().all(|s| s.limit == Some(limit)), "{tier}");
        let remaining: BTreeSet<u32> = ok.iter().map(|s| s.remaining.unwrap()).collect();
        if app.core.redis.is_none() {
            assert_eq!(remaining, (0..limit).collect::<BTreeSet<u32>>(), "{tier}: remaining values");
        } else {
            // Hot keys take slots in batches on Redis, so concurrent requests may see the same
            // count; it still runs from limit - 1 down to 0 and never above.
            assert!(remaining.contains(&0) && remaining.last() == Some(&(limit - 1)), "{tier}: {remaining:?}");
        }
        let first = ok.iter().find(|s| s.remaining == Some(limit - 1)).unwrap();
        assert_eq!(first.headers["x-ratelimit-reset-requests"], "1m0s");
        assert_eq!(first.headers["ratelimit-policy"], format!("\"requests\";q={limit};w=60"));
        assert_eq!(first.headers["ratelimit"], format!("\"requests\";r={};t=60", limit - 1));
        check_429(app.chat(&key, &chat_body(FREE, "hi")).send().await.unwrap(), limit, 60_000).await;
    }
    // Keys are limited one by one: a second key of a limited account is untouched.
    let user = app.store().user_by_email("free@example.com").await.unwrap().unwrap();
    let other = app.create_key(&user, KeyEnv::Live).await;
    assert_eq!(app.chat(&other, &chat_body(FREE, "hi")).send().await.unwrap().status(), 200);
    let metrics = app.get("/metrics").send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("layers_rate_limit_rejections_total 84"), "{metrics}");
    if app.core.redis.is_some() {
        // Every decision was Redis's: none fell back to this node's own count.
        assert!(metrics.contains("layers_redis_up 1"), "{metrics}");
        assert!(metrics.contains("layers_rate_limit_local_decisions_total 0"), "{metrics}");
    }
}

#[tokio::test]
async fn the_window_slides_and_refused_requests_do_not_count() {
    window_slides(AppOptions::default()).await;
}

#[tokio::test]
async fn the_window_slides_on_redis_too() {
    let Some(opts) = AppOptions::default().postgres().redis() else { return };
    window_slides(opts).await;
}

/// Five requests at t0 and five at t0 + 2 s in a 4 s window: once the first five have left the
/// window, exactly five more are admitted (a fixed window would admit ten), and waiting what
/// `retry-after-ms` says is exactly enough for the first of them. The margins (300 ms after
/// the first slot frees, 2 s before the second five leave) keep it exact on a loaded machine.
async fn window_slides(opts: AppOptions) {
    let Some(app) = TestApp::spawn_with(opts.config("[limits]\nrate_window_ms = 4000")).await else { return };
    let (user, key) = funded(&app, "slide@example.com", Tier::Free).await;
    let url = std::slice::from_ref(&app.url);
    let t0 = tokio::time::Instant::now();
    assert_eq!(count(&fire(url, &key, 5, 1, None).await, 200), 5);
    let first_burst = t0.elapsed();
    pass(&app, Duration::from_millis(2_000).saturating_sub(t0.elapsed())).await;
    let seen = fire(url, &key, 10, 1, None).await;
    assert_eq!(count(&seen, 200), 5, "the limit is 10 in any 4 s");
    let resp = app.chat(&key, &chat_body(FREE, "hi")).send().await.unwrap();
    let wait: u64 = header(resp.headers(), "retry-after-ms").unwrap();
    assert!(wait <= 2_000, "the first five leave the window within two seconds, not {wait} ms");
    check_429(resp, 10, 4_000).await;
    // Just before the first slot frees, nothing is admitted; after all five freed, five are.
    pass(&app, Duration::from_millis(wait.saturating_sub(150))).await;
    assert_eq!(count(&fire(url, &key, 1, 1, None).await, 200), 0, "retry-after-ms was not too early");
    pass(&app, Duration::from_millis(150 + first_burst.as_millis() as u64 + 300)).await;
    let seen = fire(url, &key, 10, 1, None).await;
    assert!(t0.elapsed() < Duration::from_millis(5_800), "too slow to tell: {:?}", t0.elapsed());
    assert_eq!(count(&seen, 200), 5, "only the first five have left the window");
    // A whole window later, all ten again: refusals took nothing.
    pass(&app, Duration::from_millis(4_100)).await;
    assert_eq!(count(&fire(url, &key, 25, 4, None).await, 200), 10);
    // One audit event for the refusals of a window, not one per refusal.
    let hits = wait_for_events(&app, &user, "rate_limit_exceeded", 1).await;
    assert!((1..=3).contains(&hits), "{hits} rate_limit_exceeded events");
}

/// Waits until the user has at least `n` audit events of this type (they are written off the
/// request path); returns how many there are.
async fn wait_for_events(app: &TestApp, user: &layers_store::User, event: &str, n: usize) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let events = app.store().audit_events(user.id, 1_000).await.unwrap();
        let found = events.iter().filter(|e| e.event_type == event).count();
        if found >= n || tokio::time::Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A hot key on two nodes sharing Redis: the nodes reserve batches of its window ahead, yet
/// the deployment admits exactly the limit — not one more, and (once unused slots are given
/// back) not one less.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_keys_use_batches_and_stay_exact_across_nodes() {
    let Some(opts) = AppOptions::default().postgres().redis() else { return };
    let prefix = opts.config.clone();
    let Some(a) = TestApp::spawn_with(opts.config("[limits]\nrate_window_ms = 20000")).await else { return };
    let b_opts =
        AppOptions::default().postgres().second_node_of(&a).config(&prefix).config("[limits]\nrate_window_ms = 20000");
    let b = TestApp::spawn_with(b_opts).await.unwrap();
    let (user, key) = funded(&a, "hot@example.com", Tier::Team).await;
    let limit = 600;
    let rate = RateOverrides { requests_per_minute: Some(limit), tokens_per_minute: None };
    a.core.accounts.set_rate(user.id, rate).await.unwrap();
    let nodes = [a.url.clone(), b.url.clone()];
    // Under the limit: everything is admitted, and the burst ends with slots reserved unused.
    let first = count(&fire(&nodes, &key, 400, 16, None).await, 200);
    assert_eq!(first, 400);
    // Unused slots go back after a batch's life, so the rest of the limit is there — exactly.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = count(&fire(&nodes, &key, 1_000, 16, None).await, 200);
    assert_eq!(first + second, limit as usize, "first burst {first}, second {second}");
    let batched = |m: &str| {
        m.lines().find_map(|l| l.strip_prefix("layers_rate_limit_batched_admissions_total ")?.parse::<u64>().ok())
    };
    let ma = a.get("/metrics").send().await.unwrap().text().await.unwrap();
    let mb = b.get("/metrics").send().await.unwrap().text().await.unwrap();
    let total = batched(&ma).unwrap() + batched(&mb).unwrap();
    assert!(total > 100, "only {total} admissions came from batches");
    println!("hot key: {first} + {second} admitted, {total} of them from batches");
}

/// Lets `d` pass: on the node's clock when limits are local, for real when Redis (whose own
/// clock times its windows) decides.
async fn pass(app: &TestApp, d: Duration) {
    if app.core.redis.is_none() {
        app.core.clock.advance(d);
    } else {
        tokio::time::sleep(d).await;
    }
}

#[tokio::test]
async fn test_keys_have_their_own_limit_whatever_the_tier() {
    let app =
        TestApp::spawn_with(AppOptions::default().config("[limits]\ntest_key_requests_per_minute = 15")).await.unwrap();
    let (user, live_key) = funded(&app, "tester@example.com", Tier::Team).await;
    let test_key = app.create_key(&user, KeyEnv::Test).await;
    let seen = fire(std::slice::from_ref(&app.url), &test_key, 18, 4, None).await;
    assert_eq!(count(&seen, 200), 15);
    assert!(seen.iter().all(|s| s.limit == Some(15)));
    let seen = fire(std::slice::from_ref(&app.url), &live_key, 12, 4, None).await;
    assert_eq!(count(&seen, 200), 12);
    assert!(seen.iter().all(|s| s.limit == Some(1_000)));
    // The test limit is the key's own: a free account (10 a minute live) gets it too, so a
    // client library's test suite runs on a new account's test key.
    let (free, _) = funded(&app, "free-tester@example.com", Tier::Free).await;
    let free_test_key = app.create_key(&free, KeyEnv::Test).await;
    let seen = fire(std::slice::from_ref(&app.url), &free_test_key, 12, 4, None).await;
    assert_eq!(count(&seen, 200), 12);
    assert!(seen.iter().all(|s| s.limit == Some(15)));
    // An operator's override of an account (the abuse runbook's lower limit) binds its test keys.
    let two = layers_store::RateOverrides { requests_per_minute: Some(2), tokens_per_minute: None };
    app.core.accounts.set_rate(free.id, two).await.unwrap();
    let seen = fire(std::slice::from_ref(&app.url), &free_test_key, 1, 1, None).await;
    assert!(seen.iter().all(|s| s.limit == Some(2)), "{:?}", seen.iter().map(|s| s.limit).collect::<Vec<_>>());
}

#[tokio::test]
async fn account_overrides_and_tier_changes_apply_to_the_next_request() {
    let app = TestApp::spawn().await;
    let (user, key) = funded(&app, "grow@example.com", Tier::Free).await;
    assert_eq!(count(&fire(std::slice::from_ref(&app.url), &key, 12, 1, None).await, 200), 10);
    // Upgrading lifts the limit at once (the cached key is dropped, the window is kept).
    app.core.accounts.set_tier(user.id, Tier::Starter).await.unwrap();
    let seen = fire(std::slice::from_ref(&app.url), &key, 60, 1, None).await;
    let statuses: Vec<u16> = seen.iter().map(|s| s.status).collect();
    assert_eq!(count(&seen, 200), 50, "60 per minute, 10 of which are used: {statuses:?}");
    assert_eq!(seen[0].limit, Some(60));
    // An account override beats the tier, and "default" goes back to the tier.
    let rate = RateOverrides { requests_per_minute: Some(75), tokens_per_minute: None };
    app.core.accounts.set_rate(user.id, rate).await.unwrap();
    let seen = fire(std::slice::from_ref(&app.url), &key, 30, 1, None).await;
    assert_eq!(count(&seen, 200), 15);
    assert_eq!(seen[0].limit, Some(75));
    app.core.accounts.set_rate(user.id, RateOverrides::default()).await.unwrap();
    let resp = app.chat(&key, &chat_body(FREE, "hi")).send().await.unwrap();
    assert_eq!(header::<u32>(resp.headers(), "x-ratelimit-limit-requests"), Some(60));
    // The tier change is in the audit log.
    let events = app.store().audit_events(user.id, 100).await.unwrap();
    assert!(events.iter().any(|e| e.event_type == "tier_changed" && e.metadata["tier"] == "starter"));
}

#[tokio::test]
async fn tokens_per_minute_refuses_once_the_window_is_spent() {
    tokens_per_minute(AppOptions::default()).await;
}

#[tokio::test]
async fn tokens_per_minute_on_redis() {
    let Some(opts) = AppOptions::default().postgres().redis() else { return };
    tokens_per_minute(opts).await;
}

async fn tokens_per_minute(opts: AppOptions) {
    let mock = MockOpenAi::start().await;
    let opts = opts.with_mock(&mock).config("[tiers.pro]\ntokens_per_minute = 100");
    let Some(app) = TestApp::spawn_with(opts).await else { return };
    let (_, key) = app.user_with_key("tpm@example.com", "10").await;
    let body = |t: u32| chat_body(MOCK_MODEL, &format!("mock:tokens={t}"));
    // Each request uses 12 prompt + 40 completion tokens: two fit under 100, the third is refused.
    let mut statuses = Vec::new();
    let mut last: Option<reqwest::Response> = None;
    for _ in 0..3 {
        let resp = app.chat(&key, &body(40)).send().await.unwrap();
        statuses.push(resp.status().as_u16());
        if resp.status() == 200 {
            let h = resp.headers();
            assert_eq!(header::<u64>(h, "x-ratelimit-limit-tokens"), Some(100));
            assert!(h["ratelimit-policy"].to_str().unwrap().contains("\"tokens\";q=100;w=60"));
            let _ = resp.bytes().await;
            // Tokens are added when the request ends.
            tokio::time::sleep(Duration::from_millis(50)).await;
        } else {
            last = Some(resp);
        }
    }
    assert_eq!(statuses, [200, 200, 429]);
    let resp = last.unwrap();
    let h = resp.headers().clone();
    assert_eq!(header::<u64>(&h, "x-ratelimit-remaining-tokens"), Some(0));
    // The token refusal took no request slot: 2 of the pro tier's 300 are used.
    assert_eq!(header::<u32>(&h, "x-ratelimit-remaining-requests"), Some(298));
    assert!(header::<u64>(&h, "retry-after-ms").unwrap() > 50_000, "the oldest tokens leave in about a minute");
    let (_, err) = error_of(resp).await;
    assert_eq!(err["code"], "rate_limit_exceeded");
    assert_eq!(err["type"], "tokens");
    let metrics = app.get("/metrics").send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("layers_rate_limit_token_rejections_total 1"), "{metrics}");
}

/// A trusted proxy (this test) tells Layers the client's address in X-Forwarded-For.
const BEHIND_PROXY: &str = "[security]\ntrusted_proxies = [\"127.0.0.1\"]";

async fn bad_auth(url: &str, ip: &str) -> reqwest::Response {
    let unknown = layers_domain::ApiKey::from_entropy(KeyEnv::Live, &[7; 24]);
    reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(unknown.expose())
        .header("x-forwarded-for", ip)
        .json(&chat_body(FREE, "hi"))
        .send()
        .await
        .unwrap()
}

/// Checks the 403 of a blocked IP.
pub async fn check_blocked(resp: reqwest::Response) {
    assert_eq!(resp.status(), 403);
    let retry: u64 = header(resp.headers(), "retry-after").expect("retry-after");
    assert!((1..=900).contains(&retry), "{retry}");
    let (_, err) = error_of(resp).await;
    assert_eq!(err["code"], "ip_blocked");
    assert!(err["message"].as_str().unwrap().contains("Too many failed authentication attempts"), "{err}");
}

#[tokio::test]
async fn fifty_failed_authentications_block_the_ip_and_only_that_ip() {
    let app = TestApp::spawn_with(AppOptions::default().config(BEHIND_PROXY)).await.unwrap();
    let (_, key) = funded(&app, "victim@example.com", Tier::Pro).await;
    let attacker = "203.0.113.66";
    for i in 0..50 {
        assert_eq!(bad_auth(&app.url, attacker).await.status(), 401, "attempt {i}");
    }
    // Now unknown credentials are refused from that address, but a valid key is still served:
    // a block must not lock out the paying users behind a shared address.
    check_blocked(bad_auth(&app.url, attacker).await).await;
    let served = fire(std::slice::from_ref(&app.url), &key, 1, 1, Some(attacker)).await;
    assert_eq!(served[0].status, 200);
    // …while everyone else, and the same key from elsewhere, goes on.
    // Requests with no key at all are a misconfigured client, not a guess: they never block.
    for _ in 0..60 {
        let resp = app.http.post(format!("{}/v1/chat/completions", app.url)).header("x-forwarded-for", "192.0.2.50");
        assert_eq!(resp.json(&chat_body(FREE, "hi")).send().await.unwrap().status(), 401);
    }
    assert_eq!(fire(std::slice::from_ref(&app.url), &key, 1, 1, Some("192.0.2.50")).await[0].status, 200);
    let elsewhere = fire(std::slice::from_ref(&app.url), &key, 3, 1, Some("198.51.100.7")).await;
    assert_eq!(count(&elsewhere, 200), 3);
    assert_eq!(bad_auth(&app.url, "198.51.100.8").await.status(), 401);
    // A forged header from an untrusted peer is ignored: the socket's address is what counts.
    let app2 = TestApp::spawn().await;
    for _ in 0..50 {
        assert_eq!(bad_auth(&app2.url, "192.0.2.1").await.status(), 401);
    }
    let resp = bad_auth(&app2.url, "192.0.2.2").await;
    check_blocked(resp).await;
    // Audited with the address, once per block; counted in metrics.
    let mut blocks = Vec::new();
    for _ in 0..250 {
        blocks = app.store().system_audit_events(Some("ip_blocked"), 10).await.unwrap();
        if !blocks.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!(blocks[0].ip_address, Some(attacker.parse().unwrap()));
    assert_eq!(blocks[0].metadata["failures"], 50);
    let metrics = app.get("/metrics").send().await.unwrap().text().await.unwrap();
    for line in ["layers_ip_blocks_total 1", "layers_auth_failures_total 51", "layers_ip_blocked_requests_total 1"] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

#[tokio::test]
async fn the_block_ends_after_the_configured_time() {
    let config = format!("{BEHIND_PROXY}\nfailed_auth_threshold = 3\nip_block_secs = 1");
    let app = TestApp::spawn_with(AppOptions::default().config(&config)).await.unwrap();
    for _ in 0..3 {
        assert_eq!(bad_auth(&app.url, "203.0.113.9").await.status(), 401);
    }
    assert_eq!(bad_auth(&app.url, "203.0.113.9").await.status(), 403);
    app.core.clock.advance(Duration::from_millis(1_100));
    assert_eq!(bad_auth(&app.url, "203.0.113.9").await.status(), 401);
}

/// The readiness and metrics of a node, as an operator reads them.
pub async fn readiness(url: &str) -> (u16, Value) {
    let resp = reqwest::get(format!("{url}/readyz")).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}
