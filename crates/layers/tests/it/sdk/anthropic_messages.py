"""The official anthropic SDK, strict response validation on, against Layers' /v1/messages:
plain, streamed, tools (streamed too) with a tool_result round trip, and errors."""
import os

import anthropic

BASE_URL = os.environ["BASE_URL"]
MODEL = os.environ["MODEL"]
EXPECTED = os.environ["EXPECTED_TEXT"]
PROMPT, COMPLETION = int(os.environ["PROMPT_TOKENS"]), int(os.environ["COMPLETION_TOKENS"])
TOOLS = os.environ.get("TOOLS") == "1"


def client(key=os.environ["API_KEY"]):
    return anthropic.Anthropic(base_url=BASE_URL, api_key=key, _strict_response_validation=True, max_retries=0)


c = client()
m = c.messages.create(model=MODEL, max_tokens=256, system="Be brief.",
                      messages=[{"role": "user", "content": "Say hello"}])
assert m.type == "message" and m.role == "assistant", m
assert m.content[-1].type == "text" and m.content[-1].text == EXPECTED, m.content
assert m.stop_reason == "end_turn", m.stop_reason
assert m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0) == PROMPT, m.usage
assert m.usage.output_tokens == COMPLETION, m.usage
assert m.id.startswith("msg_")

raw = c.messages.with_raw_response.create(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "x"}])
assert raw.headers.get("request-id") and raw.headers.get("request-id") == raw.headers.get("x-request-id"), dict(raw.headers)

with c.messages.stream(model=MODEL, max_tokens=256, messages=[{"role": "user", "content": "Say hello"}]) as s:
    text = "".join(s.text_stream)
    final = s.get_final_message()
assert text == EXPECTED, text
assert final.stop_reason == "end_turn"
assert final.usage.output_tokens == COMPLETION, final.usage
assert final.usage.input_tokens + (final.usage.cache_read_input_tokens or 0) == PROMPT, final.usage

if TOOLS:
    tools = [{"name": "get_weather", "description": "Weather in a city",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    m = c.messages.create(model=MODEL, max_tokens=256, tools=tools, messages=[{"role": "user", "content": "mock:tool"}])
    uses = [b for b in m.content if b.type == "tool_use"]
    assert m.stop_reason == "tool_use" and len(uses) == 2, m
    assert uses[0].input["city"] == "Paris" and uses[1].input["city"] == "Rome", uses
    with c.messages.stream(model=MODEL, max_tokens=256, tools=tools,
                           messages=[{"role": "user", "content": "mock:tool"}]) as s:
        final = s.get_final_message()
    streamed = [b for b in final.content if b.type == "tool_use"]
    assert [u.input["city"] for u in streamed] == ["Paris", "Rome"], final.content
    m = c.messages.create(model=MODEL, max_tokens=256, tools=tools, messages=[
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": u.id, "content": "18C"} for u in streamed]},
    ])
    assert m.content[-1].text == EXPECTED, m.content

try:
    client("lyr_live_sk_not-a-real-key").messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}])
except anthropic.AuthenticationError as e:
    assert e.status_code == 401 and e.body["error"]["type"] == "authentication_error", e.body
    assert e.body["type"] == "error"
else:
    raise AssertionError("expected AuthenticationError")
try:
    c.messages.create(model="nobody/nothing", max_tokens=5, messages=[{"role": "user", "content": "x"}])
except anthropic.NotFoundError as e:
    assert e.body["error"]["type"] == "not_found_error", e.body
else:
    raise AssertionError("expected NotFoundError")
if os.environ.get("ANTHROPIC_ROUTE") != "1":
    # Elsewhere, a field only Anthropic honours is named (on Anthropic routes it goes through).
    try:
        c.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}],
                          extra_body={"frequency_penalty": 1})
    except anthropic.BadRequestError as e:
        assert e.body["error"]["type"] == "invalid_request_error", e.body
        assert "frequency_penalty" in e.body["error"]["message"], e.body
    else:
        raise AssertionError("expected BadRequestError")
print("all checks passed")
