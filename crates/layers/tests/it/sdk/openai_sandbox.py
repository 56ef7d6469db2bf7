"""The official openai SDK, strict, against the sandbox with a test key: tools, tool choice,
structured output, stop, n, embeddings, images, and the Responses API (plain, streamed, tools,
structured), all offline and deterministic."""
import json
import os

import openai
import pydantic

BASE_URL = os.environ["BASE_URL"]
KEY = os.environ["API_KEY"]
MODEL = "sandbox/echo"

c = openai.OpenAI(base_url=BASE_URL, api_key=KEY, _strict_response_validation=True, max_retries=0)

weather = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
            "required": ["city", "days"],
            "additionalProperties": False,
        },
    },
}
ask = [{"role": "user", "content": "What is the weather in 'Paris' for the next 3 days?"}]

# A tool call whose arguments validate, then a final answer to the tool's result.
r = c.chat.completions.create(model=MODEL, messages=ask, tools=[weather])
call = r.choices[0].message.tool_calls[0]
assert r.choices[0].finish_reason == "tool_calls", r
assert call.function.name == "get_weather" and call.id.startswith("call_"), call
assert json.loads(call.function.arguments) == {"city": "Paris", "days": 3}, call.function.arguments
follow = ask + [r.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}]
r2 = c.chat.completions.create(model=MODEL, messages=follow, tools=[weather])
assert r2.choices[0].finish_reason == "stop" and "sunny, 21C" in r2.choices[0].message.content, r2
# tool_choice none answers in text; the same request always gets the same call.
assert c.chat.completions.create(model=MODEL, messages=ask, tools=[weather], tool_choice="none").choices[0].message.tool_calls is None
again = c.chat.completions.create(model=MODEL, messages=ask, tools=[weather]).choices[0].message.tool_calls[0]
assert again.id == call.id and again.function.arguments == call.function.arguments

# Streamed tool call, through the SDK's own accumulating helper.
with c.chat.completions.stream(model=MODEL, messages=ask, tools=[weather]) as s:
    for _ in s:
        pass
    final = s.get_final_completion()
assert json.loads(final.choices[0].message.tool_calls[0].function.arguments) == {"city": "Paris", "days": 3}


class Joke(pydantic.BaseModel):
    setup: str
    punchline: str
    rating: int


# Structured output (strict JSON schema) parsed by the SDK, non-streamed and streamed.
parsed = c.chat.completions.parse(model=MODEL, messages=[{"role": "user", "content": "A joke rated 7"}], response_format=Joke)
joke = parsed.choices[0].message.parsed
assert isinstance(joke, Joke) and joke.rating == 7, parsed
with c.chat.completions.stream(model=MODEL, messages=[{"role": "user", "content": "A joke rated 7"}], response_format=Joke) as s:
    for _ in s:
        pass
    assert s.get_final_completion().choices[0].message.parsed == joke

# JSON mode: the keys the prompt names.
r = c.chat.completions.create(
    model=MODEL, response_format={"type": "json_object"},
    messages=[{"role": "user", "content": "Return JSON with 'setup' and 'punchline' keys."}],
)
assert set(json.loads(r.choices[0].message.content)) == {"setup", "punchline"}

# Stop sequences and n.
r = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], stop=["sandbox"], n=2)
assert [ch.index for ch in r.choices] == [0, 1]
assert all(ch.message.content == "Hello from the Layers " for ch in r.choices), r

# Embeddings and images from the sandbox.
e = c.embeddings.create(model="sandbox/embed", input=["a", "b"], dimensions=16, encoding_format="float")
assert len(e.data) == 2 and len(e.data[0].embedding) == 16 and e.usage.prompt_tokens > 0
img = c.images.generate(model="sandbox/image", prompt="a lighthouse", n=1)
assert img.data[0].b64_json

# The Responses API.
r = c.responses.create(model=MODEL, input="Say hello", instructions="Be brief", max_output_tokens=200)
assert r.status == "completed" and r.object == "response", r
assert 'You said: "Say hello"' in r.output_text, r.output_text
assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0
assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
assert r.store is False and r.instructions == "Be brief"

cut = c.responses.create(model=MODEL, input="Say hello", max_output_tokens=3)
assert cut.status == "incomplete" and cut.incomplete_details.reason == "max_output_tokens", cut

kinds = []
with c.responses.stream(model=MODEL, input="Say hello") as s:
    for event in s:
        kinds.append(event.type)
    final = s.get_final_response()
assert kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds
assert "response.output_text.delta" in kinds and "response.output_item.done" in kinds
assert final.output_text == r.output_text

tool = {"type": "function", "name": "get_weather", "description": "The weather in a city", "strict": True,
        "parameters": weather["function"]["parameters"]}
r = c.responses.create(model=MODEL, input=ask, tools=[tool])
fc = r.output[0]
assert fc.type == "function_call" and fc.name == "get_weather", r.output
assert json.loads(fc.arguments) == {"city": "Paris", "days": 3}
r2 = c.responses.create(model=MODEL, tools=[tool], input=ask + [
    {"type": "function_call", "call_id": fc.call_id, "name": fc.name, "arguments": fc.arguments},
    {"type": "function_call_output", "call_id": fc.call_id, "output": "sunny, 21C"},
])
assert "sunny, 21C" in r2.output_text, r2.output_text

kinds = []
with c.responses.stream(model=MODEL, input=ask, tools=[tool]) as s:
    for event in s:
        kinds.append(event.type)
    final = s.get_final_response()
assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds, kinds
assert final.output[0].arguments == fc.arguments

p = c.responses.parse(model=MODEL, input="A joke rated 7", text_format=Joke)
assert p.output_parsed == joke, p

# What needs stored state is a 400 naming the field, sent once.
for extra, param in [({"previous_response_id": "resp_x"}, "previous_response_id"), ({"store": True}, "store")]:
    try:
        c.responses.create(model=MODEL, input="x", **extra)
        raise AssertionError("accepted " + param)
    except openai.BadRequestError as e:
        assert e.body["param"] == param, e.body

print("all checks passed")
