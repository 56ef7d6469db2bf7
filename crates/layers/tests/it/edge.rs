//! The edge cannot be exhausted (issue 12, SPEC §8): slow and idle clients are cut off at
//! their deadlines, a connection cap holds with idle connections making room, and past
//! `max_in_flight` a request is shed at once with 503 `overloaded`.

use std::time::{Duration, Instant};

use layers_testkit::mock_openai::{MockOpenAi, Reply};
use layers_testkit::{AppOptions, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

async fn app_with(config: &str) -> TestApp {
    TestApp::spawn_with(AppOptions { config: config.into(), ..Default::default() }).await.unwrap()
}

/// Reads until the server closes the socket; returns what it sent and how long that took.
async fn read_until_closed(sock: &mut TcpStream, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + within).into(), sock.read(&mut buf)).await {
            Err(_) => panic!("the socket was still open after {within:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), started.elapsed()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn addr(app: &TestApp) -> String {
    app.url.trim_start_matches("http://").to_owned()
}

#[tokio::test]
async fn a_client_that_stalls_mid_headers_is_closed_at_the_header_deadline() {
    let app = app_with("[server]\nheader_read_timeout_ms = 500").await;
    let mut sock = TcpStream::connect(addr(&app)).await.unwrap();
    sock.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let (_, took) = read_until_closed(&mut sock, Duration::from_secs(5)).await;
    assert!(took >= Duration::from_millis(400), "closed before the deadline: {took:?}");
}

#[tokio::test]
async fn a_stalled_body_gets_408_at_the_body_deadline() {
    let app = app_with("[server]\nbody_read_timeout_secs = 1").await;
    let (_, key) = app.user_with_key("slowbody@example.com", "1").await;
    let mut sock = TcpStream::connect(addr(&app)).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{{\"model\":"
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let (answer, took) = read_until_closed(&mut sock, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
    assert!(took >= Duration::from_millis(900), "{took:?}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let app = app_with("[server]\nidle_timeout_secs = 1").await;
    let mut sock = TcpStream::connect(addr(&app)).await.unwrap();
    sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let (answer, took) = read_until_closed(&mut sock, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(took >= Duration::from_millis(900), "closed before the idle timeout: {took:?}");
}

#[tokio::test]
async fn five_thousand_idle_sockets_do_not_stop_a_real_client() {
    let app = TestApp::spawn().await;
    let (_, key) = app.user_with_key("crowd@example.com", "1").await;
    let mut idle = Vec::with_capacity(5_000);
    for _ in 0..5_000 {
        idle.push(TcpStream::connect(addr(&app)).await.unwrap());
    }
    // Every socket reached the server: a partial head on each.
    for sock in &mut idle {
        sock.write_all(b"GET /v1/mod").await.unwrap();
    }
    let started = Instant::now();
    let resp = app.chat(&key, &chat_body("sandbox/echo", "still here")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    println!("served beside 5,000 idle sockets in {:?}", started.elapsed());
    let metrics = app.get("/metrics").send().await.unwrap().text().await.unwrap();
    let open: u64 = metric(&metrics, "layers_connections_open");
    assert!(open >= 5_000, "{open} connections counted");
}

#[tokio::test]
async fn at_the_connection_cap_idle_connections_make_room_for_new_clients() {
    let app = app_with("[server]\nmax_connections = 50").await;
    let (_, key) = app.user_with_key("cap@example.com", "1").await;
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(TcpStream::connect(addr(&app)).await.unwrap());
    }
    // A fresh client (its own connection pool) is served, not queued behind the idle ones.
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let resp = client
        .post(format!("{}/v1/chat/completions", app.url))
        .bearer_auth(&key)
        .json(&chat_body("sandbox/echo", "room"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let metrics = app.get("/metrics").send().await.unwrap().text().await.unwrap();
    assert!(metric(&metrics, "layers_connections_open") <= 52, "{metrics}");
}

#[tokio::test]
async fn past_max_in_flight_requests_are_shed_with_503_overloaded() {
    let mock = MockOpenAi::start().await;
    mock.reply_with(Reply::Hang);
    let app = TestApp::spawn_with(
        AppOptions { config: "[server]\nmax_in_flight = 2".into(), ..Default::default() }.with_mock(&mock),
    )
    .await
    .unwrap();
    let (_, key) = app.user_with_key("busy@example.com", "1").await;
    let hanging: Vec<_> = (0..2)
        .map(|_| {
            let req = app.chat(&key, &chat_body("mock/gpt-4o-mini", "hang")).timeout(Duration::from_secs(3));
            tokio::spawn(req.send())
        })
        .collect();
    // Both are in flight once the mock has them.
    let deadline = Instant::now() + Duration::from_secs(5);
    while mock.requests().len() < 2 {
        assert!(Instant::now() < deadline, "the upstream never got both requests");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let resp = app.chat(&key, &chat_body("mock/gpt-4o-mini", "one more")).send().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "shedding waited");
    assert_eq!(resp.headers()["retry-after"], "1");
    let (status, err) = error_of(resp).await;
    assert_eq!((status, err["code"].as_str().unwrap()), (503, "overloaded"));
    // Probes still answer.
    assert_eq!(app.get("/healthz").send().await.unwrap().status(), 200);
    for h in hanging {
        let _ = h.await;
    }
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test]
async fn every_cors_aware_response_varies_by_origin() {
    let env = vec![("LAYERS_ALLOWED_ORIGINS".to_owned(), "https://app.example".to_owned())];
    let app = TestApp::spawn_with(AppOptions { env, ..Default::default() }).await.unwrap();
    let (_, key) = app.user_with_key("vary@example.com", "1").await;
    for origin in [Some("https://app.example"), Some("https://evil.example"), None] {
        let mut req = app.chat(&key, &chat_body("sandbox/echo", "hi"));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let vary: Vec<_> = resp.headers().get_all("vary").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        assert!(vary.iter().any(|v| v.eq_ignore_ascii_case("origin")), "{origin:?}: {vary:?}");
        let allowed = resp.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(allowed.as_deref(), origin.filter(|o| *o == "https://app.example"));
    }
}

#[tokio::test]
async fn metrics_behind_a_token_or_on_their_own_listener() {
    let token = "metrics-token-0123456789abcdef";
    let app = app_with(&format!("[server]\nmetrics_token = \"{token}\"")).await;
    assert_eq!(app.get("/metrics").send().await.unwrap().status(), 404);
    assert_eq!(app.get("/metrics").bearer_auth("wrong-token-0123456789abcdef").send().await.unwrap().status(), 404);
    let resp = app.get("/metrics").bearer_auth(token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("layers_connections_open"));

    let app = app_with("[server]\nmetrics_listen = \"127.0.0.1:0\"").await;
    assert_eq!(app.get("/metrics").send().await.unwrap().status(), 404, "not on the public listener");
    let private = app.metrics_url.clone().expect("a metrics listener");
    let resp = reqwest::get(format!("{private}/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("layers_requests_total"));
    assert_eq!(reqwest::get(format!("{private}/v1/models")).await.unwrap().status(), 404, "metrics only");
}

#[tokio::test]
async fn readiness_pings_the_database_at_most_once_a_second_and_never_queues() {
    use layers_testkit::tcp_proxy::TcpProxy;
    let Some(db) = layers_store::testing::TestDatabase::postgres().await else { return };
    db.store().await.close().await;
    let after = db.url.split('@').nth(1).unwrap();
    let target = after.split('/').next().unwrap().to_owned();
    let proxy = TcpProxy::start(target.parse().unwrap()).await;
    let url = db.url.replace(&target, &proxy.host_port());
    let app = TestApp::spawn_with(AppOptions::default().database_at(&url, true)).await.unwrap();
    assert_eq!(app.get("/readyz").send().await.unwrap().status(), 200);
    // The database stops answering: one probe waits for its ping, the others answer at once.
    proxy.blackhole();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let probes: Vec<_> = (0..50)
        .map(|_| {
            let req = app.get("/readyz");
            tokio::spawn(async move {
                let started = Instant::now();
                let _ = req.send().await.unwrap();
                started.elapsed()
            })
        })
        .collect();
    let mut quick = 0;
    for p in probes {
        if p.await.unwrap() < Duration::from_millis(500) {
            quick += 1;
        }
    }
    assert!(quick >= 45, "only {quick} of 50 probes answered without waiting on the database");
    // Within the ping timeout the node reports itself unavailable.
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        if app.get("/readyz").send().await.unwrap().status() == 503 {
            break;
        }
        assert!(Instant::now() < deadline, "still ready with the database gone");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.restore();
}
