"""The pydantic fields through which a LangChain component reaches its `OneGenModel`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from onegen_integrations.default_model import DEFAULT_MODEL_NAME
from onegen_integrations.model import OneGenModel


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
            self.onegen_model = OneGenModel.shared(self.model_name)
        return self.onegen_model
