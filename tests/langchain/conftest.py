"""Runs LangChain's standard suites offline. The suites download three fixtures from the
internet (a PDF, a PNG, a WAV) to send to the model inline; here those URLs answer local bytes of
the same kinds, so the tests run and exercise the same requests. Tests the sandbox cannot
express would be skipped in SANDBOX_CANNOT, each with why; everything else must pass."""
import base64

import httpx
import pytest

# A one-page PDF and a 1x1 PNG: what the suites' own fixtures are, small.
PDF = (b"%PDF-1.1\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
       b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")

_real_get = httpx.get


def _offline_get(url, *args, **kwargs):
    url = str(url)
    if url.endswith(".pdf"):
        return httpx.Response(200, content=PDF, request=httpx.Request("GET", url))
    if url.endswith(".png"):
        return httpx.Response(200, content=PNG, request=httpx.Request("GET", url))
    if url.startswith("http://127.0.0.1") or url.startswith("http://localhost"):
        return _real_get(url, *args, **kwargs)
    raise AssertionError("the suite tried to reach the internet: " + url)


httpx.get = _offline_get

# Nothing is skipped here. The suites skip by themselves, through the test classes'
# properties: audio input (`supports_audio_inputs` false: Layers refuses audio, whose price is
# not in its catalogue, on every model), Anthropic-format blocks through ChatOpenAI (that client
# cannot send them), and `test_stream_time` (it needs recorded VCR cassettes, a benchmark of a
# provider's own CI).
SANDBOX_CANNOT = {}


def pytest_collection_modifyitems(config, items):
    for item in items:
        why = SANDBOX_CANNOT.get(item.name.split("[")[0])
        if why:
            item.add_marker(pytest.mark.skip(reason=why))
