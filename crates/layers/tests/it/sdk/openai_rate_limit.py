"""The official openai SDK meets a 429 from Layers: the error is typed as RateLimitError with
OpenAI's body, and the SDK's own retry waits what `retry-after-ms` says and then succeeds. One
retry is allowed, so waiting its default backoff (~0.5 s) instead would fail this script."""
import os
import time

import openai

BASE_URL = os.environ["BASE_URL"]
KEY = os.environ["API_KEY"]
MODEL = os.environ["MODEL"]
WINDOW_S = float(os.environ["WINDOW_MS"]) / 1000


def client(max_retries):
    return openai.OpenAI(base_url=BASE_URL, api_key=KEY, _strict_response_validation=True, max_retries=max_retries)


def ask(c):
    return c.chat.completions.with_raw_response.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])


# The key's one request of the window.
first = ask(client(0))
assert first.headers["x-ratelimit-limit-requests"] == "1", dict(first.headers)
assert first.headers["x-ratelimit-remaining-requests"] == "0", dict(first.headers)
assert first.parse().choices[0].message.content

# Without retries: a typed RateLimitError carrying everything a client needs.
try:
    ask(client(0))
    raise AssertionError("the second request of the window was admitted")
except openai.RateLimitError as e:
    assert e.status_code == 429
    assert e.code == "rate_limit_exceeded", e.code
    assert e.type == "requests", e.type
    assert "1 requests per minute" in e.message, e.message
    wait_ms = int(e.response.headers["retry-after-ms"])
    assert 0 < wait_ms <= WINDOW_S * 1000, wait_ms
    assert int(e.response.headers["retry-after"]) == -(-wait_ms // 1000)

# With one retry: the SDK sleeps what retry-after-ms says, and the retry is admitted.
start = time.monotonic()
r = ask(client(1))
elapsed = time.monotonic() - start
assert r.parse().choices[0].message.content
assert r.retries_taken == 1, r.retries_taken
assert elapsed >= wait_ms / 1000 - 0.5, (elapsed, wait_ms)
print(f"retried after {elapsed:.2f}s (retry-after-ms said {wait_ms} ms)")
print("all checks passed")
