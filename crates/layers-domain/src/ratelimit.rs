//! Request rate limits per key (SPEC §5): an exact sliding-window log. Invariant: in any window of
//! the configured length, at most `limit` requests are admitted — not "about", and not twice the
//! limit across a boundary as fixed windows allow. (GCRA with a burst of `limit` admits 2·limit−1
//! in the first window after idling; this keeps GCRA's smoothness promise exactly.)

use std::collections::VecDeque;

/// A limit: `requests` per `window_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub requests: u32,
    pub window_ms: u64,
}

/// What the limiter decided, with what the response headers need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    /// Requests still allowed in the window after this one.
    pub remaining: u32,
    /// Until the window is empty again (all of `limit` available).
    pub reset_ms: u64,
    /// When refused: until the next request would be admitted.
    pub retry_after_ms: u64,
}

/// Admission times of one key, oldest first (milliseconds on any monotonic clock).
#[derive(Clone, Debug, Default)]
pub struct WindowLog {
    times: VecDeque<u64>,
}

impl WindowLog {
    /// Counts a request at `now_ms` if the limit allows it.
    pub fn check(&mut self, now_ms: u64, limit: Limit) -> Decision {
        let window = limit.window_ms.max(1);
        let count = self.trim(now_ms, limit);
        if limit.requests > 0 && count < limit.requests {
            self.times.push_back(now_ms);
            Decision {
                allowed: true,
                limit: limit.requests,
                remaining: limit.requests - count - 1,
                reset_ms: window,
                retry_after_ms: 0,
            }
        } else {
            let oldest = self.times.front().copied().unwrap_or(now_ms);
            let newest = self.times.back().copied().unwrap_or(now_ms);
            Decision {
                allowed: false,
                limit: limit.requests,
                remaining: 0,
                reset_ms: (newest + window).saturating_sub(now_ms),
                retry_after_ms: if limit.requests == 0 {
                    window
                } else {
                    (oldest + window).saturating_sub(now_ms).max(1)
                },
            }
        }
    }

    /// The state at `now_ms` without counting anything (for a request refused by another
    /// limit): `remaining` is what is left, `allowed` whether one more would be admitted.
    pub fn peek(&mut self, now_ms: u64, limit: Limit) -> Decision {
        let window = limit.window_ms.max(1);
        let count = self.trim(now_ms, limit);
        let newest = self.times.back().map_or(0, |t| (t + window).saturating_sub(now_ms));
        Decision {
            allowed: count < limit.requests,
            limit: limit.requests,
            remaining: limit.requests.saturating_sub(count),
            reset_ms: newest,
            retry_after_ms: 0,
        }
    }

    fn trim(&mut self, now_ms: u64, limit: Limit) -> u32 {
        let window = limit.window_ms.max(1);
        // A request at `t` stops counting at `t + window`.
        while self.times.front().is_some_and(|t| t + window <= now_ms) {
            self.times.pop_front();
        }
        // A limit that shrank leaves extra entries; only the newest `limit` can matter.
        while self.times.len() > limit.requests as usize {
            self.times.pop_front();
        }
        self.times.len() as u32
    }

    /// True when nothing in the log can matter any more.
    pub fn is_idle(&self, now_ms: u64, window_ms: u64) -> bool {
        self.times.back().is_none_or(|t| t + window_ms <= now_ms)
    }
}

/// Tokens used by one key in the window, for the optional tokens-per-minute limit: a request is
/// admitted while the window's tokens are under the limit, and its actual tokens are added when
/// it ends (they are not known before).
#[derive(Clone, Debug, Default)]
pub struct TokenWindow {
    entries: VecDeque<(u64, u64)>,
    sum: u64,
}

impl TokenWindow {
    fn prune(&mut self, now_ms: u64, window_ms: u64) {
        while let Some(&(t, n)) = self.entries.front() {
            if t + window_ms > now_ms {
                break;
            }
            self.sum -= n;
            self.entries.pop_front();
        }
    }

    /// Tokens used within the window ending now.
    pub fn used(&mut self, now_ms: u64, window_ms: u64) -> u64 {
        self.prune(now_ms, window_ms);
        self.sum
    }

    pub fn add(&mut self, now_ms: u64, tokens: u64) {
        self.entries.push_back((now_ms, tokens));
        self.sum += tokens;
    }

    /// Until enough tokens leave the window to get under `limit`.
    pub fn retry_after_ms(&mut self, now_ms: u64, window_ms: u64, limit: u64) -> u64 {
        self.prune(now_ms, window_ms);
        let mut sum = self.sum;
        for &(t, n) in &self.entries {
            if sum < limit {
                break;
            }
            sum -= n;
            if sum < limit {
                return (t + window_ms).saturating_sub(now_ms).max(1);
            }
        }
        1
    }
}

/// A duration as OpenAI writes `x-ratelimit-reset-*`: `20ms`, `1.5s`, `6m0s`.
pub fn format_reset(ms: u64) -> String {
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let minutes = ms / 60_000;
    let rest = ms % 60_000;
    let secs = if rest.is_multiple_of(1_000) {
        format!("{}s", rest / 1_000)
    } else {
        let s = format!("{:.3}", rest as f64 / 1_000.0);
        format!("{}s", s.trim_end_matches('0').trim_end_matches('.'))
    };
    if minutes > 0 {
        format!("{minutes}m{secs}")
    } else {
        secs
    }
}

#[cfg(test)]
#[path = "ratelimit_tests.rs"]
mod tests;
