"""A client written for OpenRouter, run unchanged against OpenRouter (a mock shaped as its docs
say) and against Layers: only BASE_URL, API_KEY and MODEL differ. Prints, for each endpoint, the
fields it saw with their JSON types, for the test to compare."""
import json
import os
import time
import urllib.error

import urllib.parse
import urllib.request
import openai

BASE_URL = os.environ["BASE_URL"]
KEY = os.environ["API_KEY"]
MODEL = os.environ["MODEL"]
HEADERS = {"HTTP-Referer": "https://myapp.example/chat", "X-Title": "My App"}


def kind(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def fields(v, path="", out=None):
    out = {} if out is None else out
    if isinstance(v, dict):
        for k, x in v.items():
            p = f"{path}.{k}" if path else k
            out[p] = kind(x)
            fields(x, p, out)
    elif isinstance(v, list):
        for x in v[:1]:
            fields(x, f"{path}[]", out)
    return out


c = openai.OpenAI(base_url=BASE_URL, api_key=KEY, default_headers=HEADERS, max_retries=0)
seen = {}

raw = c.chat.completions.with_raw_response.create(
    model=MODEL, messages=[{"role": "user", "content": "Say hello"}],
    extra_body={"usage": {"include": True}, "provider": {"allow_fallbacks": True, "sort": "price"}},
)
completion = json.loads(raw.text)
seen["chat"] = fields(completion)
assert completion["choices"][0]["message"]["content"], completion
assert completion["usage"]["cost"] > 0, completion["usage"]

chunks = {}
usage = None
stream = c.chat.completions.create(
    model=MODEL, messages=[{"role": "user", "content": "Say hello"}], stream=True,
    extra_body={"usage": {"include": True}},
)
for chunk in stream:
    d = chunk.model_dump(exclude_unset=True)
    if d.get("choices"):
        fields(d, out=chunks)
    if chunk.usage:
        usage = d["usage"]
assert usage is not None and usage["cost"] > 0, usage
seen["stream"] = chunks
seen["stream_usage"] = fields(usage)

def get(path, **params):
    url = BASE_URL + path + ("?" + urllib.parse.urlencode(params) if params else "")
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(req) as r:
        assert r.status == 200, r.status
        return json.loads(r.read())


def generation(gen_id):
    # As on OpenRouter, a generation is listed a moment after its answer.
    for _ in range(50):
        try:
            return get("/generation", id=gen_id)
        except urllib.error.HTTPError as e:
            if e.code != 404:
                raise
            time.sleep(0.1)
    raise AssertionError("generation not found: " + gen_id)


seen["key"] = fields(get("/key"))
g = generation(completion["id"])
seen["generation"] = fields(g)
assert g["data"]["total_cost"] == completion["usage"]["cost"], (g, completion["usage"])
models = get("/models")
seen["models"] = fields({"data": [m for m in models["data"] if m["id"] == MODEL]})

print("FIELDS " + json.dumps(seen))
print("all checks passed")
