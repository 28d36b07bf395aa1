"""One `OneGenModel` per name for the whole process, and the pydantic fields that reach it."""

from __future__ import annotations

import threading
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from onegen_integrations.default_model import DEFAULT_MODEL_NAME
from onegen_integrations.model import OneGenModel

_loaded: dict[str, OneGenModel] = {}
_loading = threading.Lock()


def load_shared_model(name_or_path: str | Path = DEFAULT_MODEL_NAME) -> OneGenModel:
    """`OneGenModel.load(name_or_path)`, loaded once per process and shared by every caller.

    The chat model, the embeddings and the retriever built from the same name therefore run
    on one set of weights.
    """
    key = str(name_or_path)
    with _loading:
        if key not in _loaded:
            _loaded[key] = OneGenModel.load(key)
        return _loaded[key]


class UsesOneGenModel(BaseModel):
    """Fields of a LangChain component that runs on one `OneGenModel`, given or loaded lazily."""

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True, protected_namespaces=())

    onegen_model: OneGenModel | None = Field(default=None, exclude=True, repr=False)
    """An already loaded model to use; None loads `model_name` on first use."""
    model_name: str = Field(default=DEFAULT_MODEL_NAME, alias="model")
    """`"default"` or a model directory; only read when `onegen_model` is None."""

    @model_validator(mode="after")
    def _name_from_given_model(self) -> UsesOneGenModel:
        if self.onegen_model is not None and "model_name" not in self.model_fields_set:
            self.model_name = self.onegen_model.name
        return self

    def load_model(self) -> OneGenModel:
        """The model: the one given, or `model_name` loaded (once per process) on first use."""
        if self.onegen_model is None:
            self.onegen_model = load_shared_model(self.model_name)
        return self.onegen_model
