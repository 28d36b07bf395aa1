"""The `langchain-tests` standard suites: ChatOneGen and OneGenEmbeddings behave like every other integration.

Unit suites never load weights (construction is lazy). Integration suites run on the embedded
default model with few new tokens, so they check real, deterministic (greedy) generation.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests, EmbeddingsIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests, EmbeddingsUnitTests

from onegen_integrations.langchain import ChatOneGen, OneGenEmbeddings


class ChatOneGenSetup:
    """What both chat suites are told about ChatOneGen."""

    @property
    def chat_model_class(self) -> type[ChatOneGen]:
        return ChatOneGen

    @property
    def has_tool_calling(self) -> bool:
        return False  # a 135M model without tool training: bind_tools raises NotImplementedError

    @property
    def has_structured_output(self) -> bool:
        return False  # structured output needs tool calling or a JSON mode; neither exists


class EmbeddingsSetup:
    """What both embeddings suites are told about OneGenEmbeddings."""

    @property
    def embeddings_class(self) -> type[OneGenEmbeddings]:
        return OneGenEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": "default"}


class TestChatOneGenUnit(ChatOneGenSetup, ChatModelUnitTests):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "default"}


class TestEmbeddingsUnit(EmbeddingsSetup, EmbeddingsUnitTests):
    pass


@pytest.mark.default_model
class TestChatOneGenIntegration(ChatOneGenSetup, ChatModelIntegrationTests):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "default", "max_tokens": 12}


@pytest.mark.default_model
class TestEmbeddingsIntegration(EmbeddingsSetup, EmbeddingsIntegrationTests):
    pass
