"""The anthropic SDK as today's coding agents use it, against the sandbox with a test key, with
both ways of sending the key: adaptive thinking, output_config, context_management, large
max_tokens, beta headers, tools streamed, count_tokens, and Anthropic's error shape on every
path under /v1/messages."""
import json
import os
import urllib.error
import urllib.request

import anthropic

BASE_URL = os.environ["BASE_URL"]
KEY = os.environ["API_KEY"]
MODEL = "sandbox/echo"

by_key = anthropic.Anthropic(base_url=BASE_URL, api_key=KEY, max_retries=0, _strict_response_validation=True)
by_bearer = anthropic.Anthropic(base_url=BASE_URL, auth_token=KEY, max_retries=0, _strict_response_validation=True)
ask = [{"role": "user", "content": "Weather in 'Paris' for 3 days?"}]

for c in (by_key, by_bearer):
    # Above the model's output cap (16,384 for the sandbox): "as much as it can write".
    m = c.messages.create(
        model=MODEL, max_tokens=20000, messages=ask,
        thinking={"type": "adaptive"},
        extra_body={"output_config": {"effort": "high"},
                    "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}},
        extra_headers={"anthropic-beta": "context-management-2025-06-27,interleaved-thinking-2025-05-14"},
    )
    assert m.type == "message" and m.stop_reason == "end_turn", m
    assert 'You said: "Weather in' in m.content[-1].text, m.content
    counted = c.messages.count_tokens(model=MODEL, messages=ask)
    assert counted.input_tokens == m.usage.input_tokens, (counted, m.usage)

tools = [{"name": "get_weather", "description": "Weather in a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                           "required": ["city", "days"]}}]
with by_key.messages.stream(model=MODEL, max_tokens=128000, messages=ask, tools=tools) as s:
    final = s.get_final_message()
use = [b for b in final.content if b.type == "tool_use"]
assert final.stop_reason == "tool_use" and use[0].input == {"city": "Paris", "days": 3}, final.content
counted = by_key.messages.count_tokens(model=MODEL, messages=ask, tools=tools)
assert counted.input_tokens == final.usage.input_tokens, (counted, final.usage)

# What changes the answer and cannot be honoured off Anthropic is named, in Anthropic's shape.
try:
    by_key.messages.create(model=MODEL, max_tokens=5, messages=ask,
                           extra_body={"mcp_servers": [{"type": "url", "url": "https://mcp.example", "name": "x"}]})
    raise AssertionError("mcp_servers accepted")
except anthropic.BadRequestError as e:
    assert e.body["type"] == "error" and e.body["error"]["type"] == "invalid_request_error", e.body
    assert "mcp_servers" in e.body["error"]["message"], e.body


def raw(method, path):
    req = urllib.request.Request(BASE_URL + path, method=method, headers={"x-api-key": KEY, "content-type": "application/json"},
                                 data=b"{}" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


for method, path, status in [("GET", "/v1/messages/batches", 404), ("POST", "/v1/messages/batches", 404),
                             ("GET", "/v1/messages", 405), ("POST", "/v1/messages/count_tokens", 400)]:
    got, body = raw(method, path)
    assert got == status, (method, path, got, body)
    assert body["type"] == "error" and isinstance(body["error"]["type"], str) and body["error"]["message"], body
print("all checks passed")
