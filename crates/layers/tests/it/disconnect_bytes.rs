//! Clients that disconnect at random byte offsets of a streamed answer (SPEC §4.2): every request
//! is metered once, and the ledger stays exact.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::billing::{app, at_rest, PRICED};

/// A small deterministic generator seeded from the clock (printed, to replay a failure).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % bound
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_leaving_at_any_byte_are_metered_once() {
    let (app, _mock) = app("").await;
    let (user, key) = app.user_with_key("bytes@example.com", "10").await;
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    println!("byte-offset seed: {seed}");
    let mut rng = Lcg(seed);
    let addr = app.url.trim_start_matches("http://").to_owned();
    let body = format!(
        r#"{{"model":"{PRICED}","max_tokens":100,"stream":true,"messages":[{{"role":"user","content":"mock:slow=3"}}]}}"#
    );
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let attempts = 40;
    for _ in 0..attempts {
        // Anywhere from inside the response headers to past the end of the stream.
        let cut = 1 + rng.next(6_000);
        let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; cut];
        let mut read = 0;
        while read < cut {
            match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf[read..])).await.unwrap().unwrap() {
                0 => break,
                n => read += n,
            }
        }
        drop(tcp);
    }
    let rows = app.wait_for_usage(&user, attempts).await;
    assert_eq!(rows.len(), attempts, "one usage row per request, however it ended");
    assert!(
        rows.iter().all(|r| r.status == 200 || r.status == 499),
        "{:?}",
        rows.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(rows.iter().all(|r| r.charged.0 > 0), "every request that reached the upstream pays for what it used");
    at_rest(&app, &user).await;
}
