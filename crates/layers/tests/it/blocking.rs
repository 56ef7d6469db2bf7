//! Failed-authentication blocks refuse guessers, not the paying users behind the same address,
//! and a flood of well-formed unknown keys costs bounded memory and database lookups
//! (issue 12, SPEC §8.4).

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use layers_core::admission::Refused;
use layers_core::ipguard::TRACKED_SUBJECTS;
use layers_domain::{ApiKey, KeyEnv};
use layers_testkit::{AppOptions, TestApp};
use rand::RngCore;

use crate::support::*;

const BEHIND_PROXY: &str = "[security]\ntrusted_proxies = [\"127.0.0.1\"]";

async fn chat_from(app: &TestApp, key: &str, ip: &str) -> reqwest::Response {
    app.chat(key, &chat_body("sandbox/echo", "hi")).header("x-forwarded-for", ip).send().await.unwrap()
}

fn random_key() -> ApiKey {
    let mut entropy = [0u8; 24];
    rand::rng().fill_bytes(&mut entropy);
    ApiKey::from_entropy(KeyEnv::Live, &entropy)
}

#[tokio::test]
async fn fifty_malformed_keys_then_a_valid_key_from_the_same_address_is_served() {
    let app = TestApp::spawn_with(AppOptions::default().config(BEHIND_PROXY)).await.unwrap();
    let (_, regular) = app.user_with_key("nat@example.com", "1").await;
    let (_, newcomer) = app.user_with_key("newcomer@example.com", "1").await;
    let office = "198.51.100.20";
    assert_eq!(chat_from(&app, &regular, office).await.status(), 200);
    for i in 0..50 {
        let resp = chat_from(&app, &format!("lyr_live_sk_not-a-key-{i}"), office).await;
        assert_eq!(resp.status(), 401, "attempt {i}");
    }
    // A key this node knows is served from the blocked address, and one it has never seen is
    // looked up (once a second per blocked network) and served too.
    assert_eq!(chat_from(&app, &regular, office).await.status(), 200);
    assert_eq!(chat_from(&app, &newcomer, office).await.status(), 200);
    // Guesses are refused without reaching the database.
    let lookups = app.core.auth.stats().db_lookups.load(Ordering::Relaxed);
    for _ in 0..20 {
        let (status, err) = error_of(chat_from(&app, random_key().expose(), office).await).await;
        assert_eq!((status, err["code"].as_str().unwrap()), (403, "ip_blocked"));
    }
    let more = app.core.auth.stats().db_lookups.load(Ordering::Relaxed) - lookups;
    assert!(more <= 1, "{more} lookups for guesses from a blocked address");
    // Both keys go on working from there, and elsewhere a guess is just invalid.
    assert_eq!(chat_from(&app, &newcomer, office).await.status(), 200);
    assert_eq!(chat_from(&app, &regular, office).await.status(), 200);
    assert_eq!(chat_from(&app, random_key().expose(), "198.51.100.21").await.status(), 401);
}

/// `LAYERS_PROBE_KEYS=1000000` runs the full probe (in release for speed).
#[tokio::test]
async fn a_flood_of_unknown_keys_from_rotating_ipv6_networks_stays_bounded() {
    let app = TestApp::spawn().await;
    let n: u64 = std::env::var("LAYERS_PROBE_KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let rss_before = proc_status_kib("VmRSS");
    let started = Instant::now();
    let (mut blocked, mut refused) = (0u64, 0u64);
    for i in 0..n {
        // A new /64 for every key, a new /48 every 65,536 keys, all in one /32.
        let ip: IpAddr = format!("2001:db8:{:x}:{:x}::1", (i >> 16) & 0xffff, i & 0xffff).parse().unwrap();
        let header = format!("Bearer {}", random_key().expose());
        match app.core.admit(Some(&header), ip).await {
            Err(Refused::Blocked(_)) => blocked += 1,
            Err(Refused::Auth(_)) => refused += 1,
            other => panic!("a random key was admitted: {other:?}"),
        }
    }
    let lookups = app.core.auth.stats().db_lookups.load(Ordering::Relaxed);
    let tracked = app.core.ip_guard.tracked();
    let rss_after = proc_status_kib("VmRSS");
    println!(
        "{n} random keys from rotating /64s in {:?}: {lookups} database lookups, {refused} refused as invalid, \
         {blocked} refused as blocked, {tracked} subjects tracked, RSS {rss_before} -> {rss_after} KiB",
        started.elapsed()
    );
    // The /32 blocks at 16 × 50 failures; after that, about one lookup a second.
    let seconds = started.elapsed().as_secs() + 1;
    assert!(lookups <= 800 + 2 * seconds, "{lookups} lookups");
    assert!(tracked <= TRACKED_SUBJECTS, "{tracked} subjects tracked");
}

#[tokio::test]
async fn failures_spread_over_many_addresses_are_tracked_in_bounded_memory() {
    let app = TestApp::spawn().await;
    let n = TRACKED_SUBJECTS as u32 + 40_000;
    for i in 0..n {
        let ip = IpAddr::from((0x0a00_0000u32 | i).to_be_bytes());
        app.core.ip_guard.failed(ip, "invalid").await;
        assert!(app.core.ip_guard.tracked() <= TRACKED_SUBJECTS, "after {i}");
    }
    assert!(app.core.ip_guard.tracked() > TRACKED_SUBJECTS / 2, "forgot too much");
}
