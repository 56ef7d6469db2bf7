"""The retry contract, measured for one Python SDK (SDK=openai or anthropic) on a key limited to
one request per window: a request the server refuses for good (400, `x-should-retry: false`) is
sent once however many retries are allowed; a 429 is retried after the `retry-after-ms` the
server announced, and then succeeds. An httpx event hook records every attempt; the Rust test
counts the server side."""
import os
import time

import anthropic
import openai

SDK = os.environ["SDK"]
BASE_URL = os.environ["BASE_URL"]
KEY = os.environ["API_KEY"]
MODEL = "sandbox/echo"
attempts = []


def record(response):
    attempts.append((response.status_code, time.monotonic(), response.headers.get("retry-after-ms")))


if SDK == "openai":
    http = openai.DefaultHttpxClient(event_hooks={"response": [record]})
    c = openai.OpenAI(base_url=BASE_URL + "/v1", api_key=KEY, max_retries=3, http_client=http)
    refused = lambda: c.chat.completions.create(model=MODEL, max_tokens=0, messages=[{"role": "user", "content": "x"}])
    answered = lambda: c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    refusal = openai.BadRequestError
else:
    http = anthropic.DefaultHttpxClient(event_hooks={"response": [record]})
    c = anthropic.Anthropic(base_url=BASE_URL, api_key=KEY, max_retries=3, http_client=http)
    refused = lambda: c.messages.create(model=MODEL, max_tokens=0, messages=[{"role": "user", "content": "x"}])
    answered = lambda: c.messages.create(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "x"}])
    refusal = anthropic.BadRequestError

try:
    refused()
    raise AssertionError("a request with max_tokens 0 was accepted")
except refusal:
    pass
assert [a[0] for a in attempts] == [400], attempts

attempts.clear()
answered()
assert [a[0] for a in attempts] == [429, 200], attempts
(_, limited_at, wait_ms), (_, retried_at, _) = attempts
waited_ms = (retried_at - limited_at) * 1000
assert waited_ms >= int(wait_ms) - 50, (waited_ms, wait_ms)
print(f"{SDK}: 400 sent once; 429 retried after {waited_ms:.0f} ms (retry-after-ms {wait_ms})")
print("all checks passed")
