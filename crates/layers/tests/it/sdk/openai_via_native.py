"""The official openai SDK, strict response validation on, against a model Layers serves through
a native adapter (Anthropic or Gemini): plain, streamed, tool calls (streamed too) and JSON mode."""
import json
import os

import openai

c = openai.OpenAI(base_url=os.environ["BASE_URL"], api_key=os.environ["API_KEY"],
                  _strict_response_validation=True, max_retries=0)
MODEL = os.environ["MODEL"]
EXPECTED = os.environ["EXPECTED_TEXT"]
PROMPT, COMPLETION = int(os.environ["PROMPT_TOKENS"]), int(os.environ["COMPLETION_TOKENS"])

r = c.chat.completions.create(model=MODEL, messages=[
    {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}])
assert r.choices[0].message.content == EXPECTED, r
assert r.choices[0].finish_reason == "stop"
assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (PROMPT, COMPLETION, PROMPT + COMPLETION), r.usage
assert r.usage.prompt_tokens_details.cached_tokens == 0
assert r.usage.completion_tokens_details.reasoning_tokens >= 0

text, usage = "", None
for chunk in c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True,
                                       stream_options={"include_usage": True}):
    assert chunk.object == "chat.completion.chunk" and chunk.model == MODEL
    if chunk.choices:
        text += chunk.choices[0].delta.content or ""
    if chunk.usage:
        usage = chunk.usage
assert text == EXPECTED, text
assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (PROMPT, COMPLETION), usage

tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
r = c.chat.completions.create(model=MODEL, tools=tools, messages=[{"role": "user", "content": "mock:tool"}])
calls = r.choices[0].message.tool_calls
assert r.choices[0].finish_reason == "tool_calls"
assert len({tc.id for tc in calls}) == 2 and all(tc.id for tc in calls), calls
assert json.loads(calls[1].function.arguments)["city"] == "Rome", calls

# Streamed tool calls, accumulated the way the SDK's helpers do.
with c.chat.completions.stream(model=MODEL, tools=tools, messages=[{"role": "user", "content": "mock:tool"}]) as s:
    for _ in s:
        pass
    final = s.get_final_completion()
calls = final.choices[0].message.tool_calls
assert [json.loads(tc.function.arguments)["city"] for tc in calls] == ["Paris", "Rome"], calls

# The tool results go back, and the conversation continues.
r = c.chat.completions.create(model=MODEL, tools=tools, messages=[
    {"role": "user", "content": "Weather?"},
    {"role": "assistant", "content": None, "tool_calls": [tc.model_dump() for tc in calls]},
    {"role": "tool", "tool_call_id": calls[0].id, "content": "18C"},
    {"role": "tool", "tool_call_id": calls[1].id, "content": "21C"},
])
assert r.choices[0].message.content == EXPECTED

# JSON mode with a schema, parsed by the SDK.
r = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "mock:json"}], response_format={
    "type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}})
assert isinstance(json.loads(r.choices[0].message.content), dict), r.choices[0].message.content

# What Anthropic cannot do is a 400 the SDK raises, naming the parameter.
try:
    c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], logprobs=True)
except openai.BadRequestError as e:
    assert e.body["param"] == "logprobs", e.body
else:
    raise AssertionError("expected BadRequestError")
print("all checks passed")
