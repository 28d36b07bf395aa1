"""The model contract: what `onegen.json` holds next to the transformers weights."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

CONFIG_NAME = "onegen.json"
FORMAT = "onegen/1"
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant. When you need knowledge, retrieve it, "
    "then answer briefly from the retrieved passages."
)


class OneGenTokens(BaseModel):
    """The special token strings; ids are always looked up by these names."""

    model_config = ConfigDict(frozen=True)

    query: str = "[RQ]"
    """Emitted by the model where it needs knowledge; its hidden state is the query vector."""
    document: str = "[RD]"
    """Appended to a document; its hidden state is the document vector."""
    cont: str = "<CON>"
    """Fed after a retrieval in linking (G→R) tasks instead of the passages."""
    paragraph_open: str = "<paragraph>"
    """Opens an inserted passage."""
    paragraph_close: str = "</paragraph>"
    """Closes an inserted passage."""
    mention_open: str | None = None
    """Optional mention marker for linking tasks, e.g. `<LOC>`."""
    mention_close: str | None = None
    """Optional closing mention marker, e.g. `</LOC>`."""

    def all(self) -> list[str]:
        """Every token string in a fixed order (the order they are added to a vocabulary)."""
        names = [self.query, self.document, self.cont, self.paragraph_open, self.paragraph_close]
        names += [t for t in (self.mention_open, self.mention_close) if t]
        return names

    def supplied_by_engine(self) -> list[str]:
        """Tokens the engine inserts itself, so the model must never sample them."""
        return [self.document, self.cont, self.paragraph_open, self.paragraph_close]


class OneGenConfig(BaseModel):
    """Contents of `onegen.json`. Everything that changes embeddings feeds the fingerprint."""

    model_config = ConfigDict(extra="ignore")

    format: str = FORMAT
    tokens: OneGenTokens = Field(default_factory=OneGenTokens)
    document_template: str = "{text}[RD]"
    """How a document is written before embedding; `{text}` is the document."""
    query_template: str = "{text}[RQ]"
    """How a standalone query is written when the model serves as a plain embedding model."""
    passage_template: str = "<paragraph>{text}</paragraph>"
    """How one retrieved passage is inserted after `[RQ]`."""
    hidden_state: str = "last_layer_post_norm"
    """Which hidden state is the vector (informational: the runtime supports only this one)."""
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    """System message of a chat session; training writes the one it trained with."""
    trained: bool = False
    """False until training has taught the model to use its tokens."""
    base_model: str | None = None
    """Base weights when this directory holds only an adapter: `default` or a path."""
    adapter: str | None = None
    """Sub-directory with a PEFT-format LoRA adapter merged into the base at load time."""
    token_embeddings: str | None = None
    """Safetensors file with the trained rows of the OneGen tokens (adapter directories)."""
    training_run: str | None = None
    """Identifier of the run that produced the weights."""

    @classmethod
    def read(cls, directory: str | Path) -> OneGenConfig:
        """Read `onegen.json` from a model directory."""
        return cls.model_validate_json((Path(directory) / CONFIG_NAME).read_text())

    def write(self, directory: str | Path) -> Path:
        """Write `onegen.json` into a model directory and return its path."""
        path = Path(directory) / CONFIG_NAME
        path.write_text(json.dumps(self.model_dump(), indent=2) + "\n")
        return path

    def embedding_signature(self) -> str:
        """The parts of the config that change vectors, as canonical JSON."""
        parts = {
            "tokens": self.tokens.model_dump(),
            "document_template": self.document_template,
            "query_template": self.query_template,
            "hidden_state": self.hidden_state,
        }
        return json.dumps(parts, sort_keys=True)
