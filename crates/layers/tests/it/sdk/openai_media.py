"""The official openai SDK (strict response validation) against /v1/embeddings and
/v1/images/generations, on an OpenAI-compatible route and a Gemini route."""
import base64
import os

import openai

c = openai.OpenAI(base_url=os.environ["BASE_URL"], api_key=os.environ["API_KEY"],
                  _strict_response_validation=True, max_retries=0)

r = c.embeddings.create(model=os.environ["EMBED_MODEL"], input=["first", "second"], encoding_format="float")
assert r.object == "list" and len(r.data) == 2, r
assert r.data[1].embedding == [0.25, -0.5, 0.75, 1.0], r.data[1].embedding
assert r.usage.prompt_tokens == 10 and r.usage.total_tokens == 10, r.usage

# Without encoding_format the SDK asks for base64 and decodes it to floats. (Its strict mode
# validates the raw base64 string as a list before decoding, against OpenAI too, so this check
# uses a default client.)
loose = openai.OpenAI(base_url=os.environ["BASE_URL"], api_key=os.environ["API_KEY"], max_retries=0)
for model, expected in [(os.environ["EMBED_MODEL"], [0.25, -0.5, 0.75, 0.0]),
                        (os.environ["GEMINI_EMBED_MODEL"], [0.0, 0.125, 0.25])]:
    r = loose.embeddings.create(model=model, input="x")
    assert r.data[0].embedding == expected, (model, r.data[0].embedding)

r = c.embeddings.create(model=os.environ["GEMINI_EMBED_MODEL"], input=["a", "b", "c"], dimensions=3,
                        encoding_format="float")
assert [len(d.embedding) for d in r.data] == [3, 3, 3], r
assert r.data[2].embedding == [0.25, 0.375, 0.5], r.data[2].embedding
assert r.usage.prompt_tokens > 0

img = c.images.generate(model=os.environ["IMAGE_MODEL"], prompt="a lighthouse at dusk", n=2, size="1024x1024")
assert len(img.data) == 2
assert base64.b64decode(img.data[0].b64_json).startswith(b"\x89PNG"), img.data[0]

try:
    c.images.generate(model=os.environ["IMAGE_MODEL"], prompt="x", n=5)
except openai.BadRequestError as e:
    assert e.body["param"] == "n", e.body
else:
    raise AssertionError("expected BadRequestError for n=5")
print("all checks passed")
