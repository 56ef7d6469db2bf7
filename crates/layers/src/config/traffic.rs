//! The traffic settings: rate limits per tier, Redis, failed-auth blocking and the client IP.
//! Invariant: every limit is positive (a zero would lock every key out) and a trusted-proxy
//! list is only accepted with the header those proxies set.

use std::time::Duration;

use layers_core::chat::routing::RoutingSettings;
use layers_core::chat::test_keys::TestKeySettings;
use layers_core::ipguard::IpGuardSettings;
use layers_core::ratelimit::{RateSettings, TierRate};
use layers_core::redis_conn::RedisSettings;
use layers_domain::routing::{BreakerPolicy, RetryPolicy};
use layers_server::connections::EdgeSettings;
use layers_server::middleware::client_ip::{BadProxies, TrustedProxies};

use super::{Config, Problem, TierConfig};

const DEFAULT_REDIS_PREFIX: &str = "layers:";
const DEFAULT_REDIS_TIMEOUT_MS: u64 = 100;

pub(super) fn check_rate(c: &Config, problems: &mut Vec<Problem>) -> RateSettings {
    let mut rate = RateSettings::default();
    let tiers = [
        ("free", &c.tiers.free, &mut rate.free),
        ("starter", &c.tiers.starter, &mut rate.starter),
        ("pro", &c.tiers.pro, &mut rate.pro),
        ("team", &c.tiers.team, &mut rate.team),
    ];
    for (name, given, slot) in tiers {
        if let Some(given) = given {
            *slot = tier_rate(name, given, *slot, problems);
        }
    }
    if let Some(rpm) = c.limits.test_key_requests_per_minute {
        rate.test_key_requests_per_minute = positive("limits.test_key_requests_per_minute", rpm, problems);
    }
    if let Some(ms) = c.limits.rate_window_ms {
        if ms < 100 {
            problems.push(Problem::new("limits.rate_window_ms", "must be at least 100"));
        } else {
            rate.window = Duration::from_millis(ms);
        }
    }
    rate
}

fn tier_rate(name: &str, given: &TierConfig, default: TierRate, problems: &mut Vec<Problem>) -> TierRate {
    let requests_per_minute = match given.requests_per_minute {
        Some(rpm) => positive(&format!("tiers.{name}.requests_per_minute"), rpm, problems),
        None => default.requests_per_minute,
    };
    let tokens_per_minute = match given.tokens_per_minute {
        Some(0) => {
            problems.push(Problem::new(
                &format!("tiers.{name}.tokens_per_minute"),
                "must be greater than zero (leave it out for no token limit)",
            ));
            default.tokens_per_minute
        }
        Some(tpm) => Some(tpm),
        None => default.tokens_per_minute,
    };
    TierRate { requests_per_minute, tokens_per_minute }
}

fn positive(path: &str, v: u32, problems: &mut Vec<Problem>) -> u32 {
    if v == 0 {
        problems.push(Problem::new(path, "must be greater than zero"));
        return 1;
    }
    v
}

/// A setting that must not be zero: its value, or `None` when unset or zero (zero is reported).
fn nonzero(path: &str, v: Option<u64>, problems: &mut Vec<Problem>) -> Option<u64> {
    if v == Some(0) {
        problems.push(Problem::new(path, "must be greater than zero"));
        return None;
    }
    v
}

/// A non-zero duration in seconds, else `default`.
fn secs(path: &str, v: Option<u64>, default: Duration, problems: &mut Vec<Problem>) -> Duration {
    nonzero(path, v, problems).map_or(default, Duration::from_secs)
}

/// A non-zero duration in milliseconds, else `default`.
fn ms(path: &str, v: Option<u64>, default: Duration, problems: &mut Vec<Problem>) -> Duration {
    nonzero(path, v, problems).map_or(default, Duration::from_millis)
}

pub(super) fn check_redis(c: &Config, problems: &mut Vec<Problem>) -> Option<RedisSettings> {
    let url = c.redis.url.as_deref().filter(|u| !u.is_empty())?;
    if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("redis+unix://")) {
        problems.push(Problem::new("redis.url", "must start with redis://, rediss:// or redis+unix://"));
        return None;
    }
    let timeout_ms = c.redis.timeout_ms.unwrap_or(DEFAULT_REDIS_TIMEOUT_MS);
    if timeout_ms == 0 {
        problems.push(Problem::new("redis.timeout_ms", "must be greater than zero"));
    }
    Some(RedisSettings {
        url: url.to_owned(),
        prefix: c.redis.prefix.clone().unwrap_or_else(|| DEFAULT_REDIS_PREFIX.to_owned()),
        timeout: Duration::from_millis(timeout_ms.max(1)),
    })
}

pub(super) fn check_ip_guard(c: &Config, problems: &mut Vec<Problem>) -> IpGuardSettings {
    let d = IpGuardSettings::default();
    let s = &c.security;
    IpGuardSettings {
        threshold: match s.failed_auth_threshold {
            Some(t) => positive("security.failed_auth_threshold", t, problems),
            None => d.threshold,
        },
        window: secs("security.failed_auth_window_secs", s.failed_auth_window_secs, d.window, problems),
        block_for: secs("security.ip_block_secs", s.ip_block_secs, d.block_for, problems),
    }
}

pub(super) fn check_edge(c: &Config, problems: &mut Vec<Problem>) -> EdgeSettings {
    let d = EdgeSettings::default();
    let s = &c.server;
    let count = |path: &str, v: Option<usize>, default: usize, problems: &mut Vec<Problem>| {
        nonzero(path, v.map(|v| v as u64), problems).map_or(default, |v| v as usize)
    };
    EdgeSettings {
        header_read_timeout: ms(
            "server.header_read_timeout_ms",
            s.header_read_timeout_ms,
            d.header_read_timeout,
            problems,
        ),
        idle_timeout: secs("server.idle_timeout_secs", s.idle_timeout_secs, d.idle_timeout, problems),
        body_read_timeout: secs(
            "server.body_read_timeout_secs",
            s.body_read_timeout_secs,
            d.body_read_timeout,
            problems,
        ),
        max_connections: count("server.max_connections", s.max_connections, d.max_connections, problems),
        max_in_flight: count("server.max_in_flight", s.max_in_flight, d.max_in_flight, problems),
    }
}

pub(super) fn check_routing(c: &Config, problems: &mut Vec<Problem>) -> RoutingSettings {
    let r = &c.routing;
    let (retry, breaker) = (RetryPolicy::default(), BreakerPolicy::default());
    let settings = RoutingSettings {
        retry: RetryPolicy {
            attempts_per_route: r
                .attempts_per_route
                .map_or(retry.attempts_per_route, |n| positive("routing.attempts_per_route", n, problems)),
            backoff_base: ms("routing.backoff_base_ms", r.backoff_base_ms, retry.backoff_base, problems),
            backoff_max: ms("routing.backoff_max_ms", r.backoff_max_ms, retry.backoff_max, problems),
        },
        breaker: BreakerPolicy {
            failures: r
                .breaker_failures
                .map_or(breaker.failures, |n| positive("routing.breaker_failures", n, problems)),
            cooldown_ms: ms(
                "routing.breaker_cooldown_ms",
                r.breaker_cooldown_ms,
                Duration::from_millis(breaker.cooldown_ms),
                problems,
            )
            .as_millis() as u64,
        },
    };
    if settings.retry.backoff_max < settings.retry.backoff_base {
        problems.push(Problem::new("routing.backoff_max_ms", "must not be less than routing.backoff_base_ms"));
    }
    settings
}

pub(super) fn check_test_keys(c: &Config, problems: &mut Vec<Problem>) -> TestKeySettings {
    let d = TestKeySettings::default();
    TestKeySettings {
        real_routes: c.test_keys.real_routes.unwrap_or(d.real_routes),
        daily_requests: c
            .test_keys
            .daily_requests
            .map_or(d.daily_requests, |n| positive("test_keys.daily_requests", n, problems)),
    }
}

pub(super) fn check_proxies(c: &Config, production: bool, problems: &mut Vec<Problem>) -> TrustedProxies {
    let s = &c.security;
    if s.trusted_proxies.is_empty() {
        if s.client_ip_header.is_some() {
            problems.push(Problem::new(
                "security.client_ip_header",
                "is only believed from security.trusted_proxies; list your load balancers there",
            ));
        }
        return TrustedProxies::default();
    }
    let header = s.client_ip_header.as_deref().unwrap_or("x-forwarded-for");
    let proxies = TrustedProxies::new(header, &s.trusted_proxies);
    if production && proxies.as_ref().is_ok_and(TrustedProxies::trusts_everyone) {
        problems.push(Problem::new(
            "security.trusted_proxies",
            "a /0 range lets any client forge its address (and dodge IP blocks); list your load balancers",
        ));
    }
    proxies.unwrap_or_else(|err| {
        let path = match err {
            BadProxies::Cidr(_) => "security.trusted_proxies",
            BadProxies::Header(_) | BadProxies::Forwarded => "security.client_ip_header",
        };
        problems.push(Problem::new(path, err.to_string()));
        TrustedProxies::default()
    })
}
