"""LangChain's standard integration suite for ChatAnthropic, pointed at Layers' /v1/messages on
the sandbox with a test key."""
import os

from langchain_anthropic import ChatAnthropic
from langchain_tests.integration_tests import ChatModelIntegrationTests


class TestLayersChatAnthropic(ChatModelIntegrationTests):
    @property
    def chat_model_class(self):
        return ChatAnthropic

    @property
    def chat_model_params(self):
        return {
            "model": "sandbox/echo",
            "base_url": os.environ["LAYERS_BASE_URL"],
            "api_key": os.environ["LAYERS_TEST_KEY"],
            "max_retries": 0,
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
    def supports_pdf_inputs(self):
        return True

    @property
    def supports_anthropic_inputs(self):
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
        return "anthropic/claude-sonnet-4.5"

    @property
    def returns_usage_metadata(self):
        return True
