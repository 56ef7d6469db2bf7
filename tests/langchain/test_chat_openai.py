"""LangChain's standard integration suite for ChatOpenAI, pointed at Layers' sandbox with a test
key: what a LangChain user's own tests meet. Only what the sandbox cannot express is skipped
(see SANDBOX_CANNOT in conftest.py)."""
import os

from langchain_openai import ChatOpenAI
from langchain_tests.integration_tests import ChatModelIntegrationTests


class TestLayersChatOpenAI(ChatModelIntegrationTests):
    @property
    def chat_model_class(self):
        return ChatOpenAI

    @property
    def chat_model_params(self):
        return {
            "model": "sandbox/echo",
            "base_url": os.environ["LAYERS_BASE_URL"] + "/v1",
            "api_key": os.environ["LAYERS_TEST_KEY"],
            "max_retries": 0,
            "stream_usage": True,
        }

    @property
    def has_tool_choice(self):
        return True

    @property
    def supports_json_mode(self):
        return True

    @property
    def supports_image_inputs(self):
        return True

    @property
    def supports_image_urls(self):
        return True

    @property
    def supports_pdf_inputs(self):
        return True

    @property
    def supports_image_tool_message(self):
        return True

    @property
    def supports_pdf_tool_message(self):
        return True

    @property
    def model_override_value(self):
        # Test keys may name any model of the catalogue: the sandbox answers it.
        return "openai/gpt-4o-mini"

    @property
    def returns_usage_metadata(self):
        return True
