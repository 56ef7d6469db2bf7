"""The official openai SDK against Layers, with strict response validation: a missing or
mistyped field in any response fails this script."""
import os

import openai
from openai import omit

BASE_URL = os.environ["BASE_URL"]
KEY = os.environ["API_KEY"]
MODEL = os.environ["MODEL"]
EXPECTED = os.environ["EXPECTED_TEXT"]


def client(key=KEY, max_retries=0, **kw):
    return openai.OpenAI(base_url=BASE_URL, api_key=key, _strict_response_validation=True, max_retries=max_retries, **kw)


c = client()

# Non-streaming.
r = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Say hello"}])
assert r.object == "chat.completion", r
assert r.model == MODEL, r.model
assert r.choices[0].message.content == EXPECTED, r.choices[0].message.content
assert r.choices[0].finish_reason == "stop"
assert r.usage.prompt_tokens == 12 and r.usage.completion_tokens == 6 and r.usage.total_tokens == 18, r.usage
assert r.usage.prompt_tokens_details.cached_tokens == 0
assert r.usage.completion_tokens_details.reasoning_tokens == 0

# The raw response carries the request id.
raw = c.chat.completions.with_raw_response.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
assert raw.headers.get("x-request-id"), dict(raw.headers)
assert raw.parse().choices[0].message.content == EXPECTED

# Streaming, with usage.
text, usage, chunks = "", None, 0
stream = c.chat.completions.create(
    model=MODEL, messages=[{"role": "user", "content": "Say hello"}], stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    chunks += 1
    assert chunk.object == "chat.completion.chunk"
    assert chunk.model == MODEL
    if chunk.choices:
        text += chunk.choices[0].delta.content or ""
    if chunk.usage:
        usage = chunk.usage
assert text == EXPECTED, text
assert chunks >= 3
assert usage is not None and usage.completion_tokens == 6 and usage.prompt_tokens_details.cached_tokens == 0

# Streaming without asking for usage: none is shown.
for chunk in c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True):
    assert chunk.usage is None

# The four authentication errors, as the SDK surfaces them.
cases = [
    (c, {"Authorization": omit}, "Missing Authorization header"),
    (client("sk-proj-not-a-layers-key"), None, "Invalid API key format"),
    (client(os.environ["UNKNOWN_KEY"]), None, "Invalid API key"),
    (client(os.environ["DEACTIVATED_KEY"]), None, "API key is deactivated"),
]
for bad, headers, message in cases:
    try:
        bad.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], extra_headers=headers)
    except openai.AuthenticationError as e:
        assert e.status_code == 401, e
        assert e.body["message"] == message, (e.body, message)
        assert e.request_id or e.response.headers.get("x-request-id")
    else:
        raise AssertionError(f"expected AuthenticationError for {message!r}")

# Unknown model: NotFoundError, not retried.
try:
    c.chat.completions.create(model="nobody/nothing", messages=[{"role": "user", "content": "x"}])
except openai.NotFoundError as e:
    assert e.body["code"] == "model_not_found", e.body
else:
    raise AssertionError("expected NotFoundError")

# No credit: a 402 the SDK raises at once, without retrying.
try:
    client(os.environ["UNFUNDED_KEY"], max_retries=2).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}])
except openai.APIStatusError as e:
    assert e.status_code == 402, e
    assert e.body["code"] == "insufficient_credits", e.body
    assert e.response.headers.get("x-should-retry") == "false"
else:
    raise AssertionError("expected a 402")

# Billed responses say what they cost.
raw = c.chat.completions.with_raw_response.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
assert float(raw.headers["x-layers-credits-charged"]) > 0, dict(raw.headers)
assert float(raw.headers["x-layers-credits-remaining"]) > 0

# Models list validates against the SDK's Model type.
models = c.models.list()
assert any(m.id == MODEL for m in models.data)

print("openai SDK: all checks passed")
