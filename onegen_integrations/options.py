"""`GenerationOptions`: how one turn is generated, typed once.

Every generation option's default, one-line help and allowed range live here, and nowhere
else: the engine session, the LlamaIndex and LangChain adapters and the `onegen` command
read them from this module. It imports neither torch nor transformers, so the command's
`--help` and the framework adapters' construction stay light.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from onegen_integrations.errors import InvalidOptionError

RetrievalMode = Literal["auto", "always", "never"]
Insertion = Literal["passage", "con"]
RETRIEVAL_MODES: tuple[str, ...] = get_args(RetrievalMode)
INSERTIONS: tuple[str, ...] = get_args(Insertion)


def _about(
    help_line: str,
    *,
    choices: tuple[str, ...] | None = None,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
) -> dict[str, Any]:
    """A `GenerationOptions` field's metadata: its one-line help and the values it allows."""
    limits = {"choices": choices, "at_least": at_least, "above": above, "at_most": at_most}
    return {"help": help_line, **{key: bound for key, bound in limits.items() if bound is not None}}


@dataclass(frozen=True)
class GenerationOptions:
    """How one turn is generated; a session holds defaults, `send` may override any.

    Values are checked on construction: one outside its range raises `InvalidOptionError`
    (a `ValueError`) naming the option, the value and what is allowed. `stop` may be given
    as one string or any sequence of strings; it is kept as a tuple without empty strings.
    """

    retrieval: RetrievalMode = field(
        default="auto",
        metadata=_about(
            "auto: the model decides; always: retrieve before answering; never: no retrieval",
            choices=RETRIEVAL_MODES,
        ),
    )
    """`auto`: the model decides; `always`: `[RQ]` is forced at the start of each answer
    (useful before a model is trained); `never`: `[RQ]` is never emitted. A session
    without a retriever uses `never`; one with a retriever defaults to `auto` for a
    trained model and `always` for an untrained one."""
    k: int = field(default=1, metadata=_about("passages inserted per retrieval", at_least=1))
    """Passages retrieved per `[RQ]`."""
    max_retrievals: int = field(
        default=4, metadata=_about("retrievals per answer; then the model may not ask again", at_least=0)
    )
    """Retrievals per turn; after that `[RQ]` is banned, so a model that keeps asking stops."""
    max_new_tokens: int = field(
        default=256, metadata=_about("answer length limit in tokens; inserted passages do not count", at_least=1)
    )
    """Sampled tokens per turn (inserted passages do not count)."""
    max_passage_tokens: int = field(
        default=512, metadata=_about("longer passages are cut to this many tokens", at_least=1)
    )
    """Longer passages are cut to this many tokens before insertion."""
    stop: tuple[str, ...] = field(default=(), metadata=_about("strings that end the answer"))
    """Strings that end the answer; the answer text is cut before the first one."""
    temperature: float = field(default=0.0, metadata=_about("sampling temperature; 0 decodes greedily", at_least=0))
    """0 is greedy decoding."""
    top_p: float = field(default=1.0, metadata=_about("nucleus sampling mass when sampling", above=0, at_most=1))
    """Nucleus sampling mass when sampling."""
    top_k: int = field(default=0, metadata=_about("sample only from the k most likely tokens (0: all)", at_least=0))
    """Keep only the k most likely tokens when sampling (0: all)."""
    prefix: str = field(default="", metadata=_about("text the answer is made to start with"))
    """Tokens the answer is made to start with (after a forced `[RQ]`); the model goes on from
    them. Tool calling uses it for `tool_choice` (see `tools.forced_prefix`)."""
    insertion: Insertion = field(
        default="passage",
        metadata=_about("passage: insert the hits as text; con: insert <CON> (linking tasks)", choices=INSERTIONS),
    )
    """`passage` inserts the hits as text (R→G); `con` inserts `<CON>` (G→R, linking tasks)."""

    def __post_init__(self) -> None:
        for option in dataclasses.fields(self):
            value = getattr(self, option.name)
            checker = {"stop": _stop, "prefix": _text}.get(option.name)
            checked = checker(value) if checker else _checked(option, value)
            object.__setattr__(self, option.name, checked)

    def replace(self, **changes: Any) -> GenerationOptions:
        """These options with `changes`, checked; an unknown name is a `TypeError` listing the options."""
        unknown = sorted(set(changes) - set(option_names()))
        if unknown:
            raise TypeError(f"unknown generation options {unknown}: the options are {', '.join(option_names())}")
        return dataclasses.replace(self, **changes)


def option_names() -> tuple[str, ...]:
    """The options' names, in field order."""
    return tuple(option.name for option in dataclasses.fields(GenerationOptions))


def default(name: str) -> Any:
    """The default of option `name` (as `GenerationOptions()` holds it)."""
    return getattr(DEFAULTS, _field(name).name)


def help_text(name: str) -> str:
    """The one-line help of option `name`, as the `onegen` command shows it."""
    return _field(name).metadata["help"]


def _field(name: str) -> dataclasses.Field[Any]:
    for option in dataclasses.fields(GenerationOptions):
        if option.name == name:
            return option
    raise KeyError(f"{name!r} is not a generation option: the options are {', '.join(option_names())}")


_BOUNDS = (("at_least", "at least"), ("above", "greater than"), ("at_most", "at most"))


def _checked(option: dataclasses.Field[Any], value: Any) -> Any:
    """`value` if `option` allows it (a number as its default's type), else `InvalidOptionError`."""
    limits = option.metadata
    if "choices" in limits:
        if value not in limits["choices"]:
            raise InvalidOptionError(option.name, value, "one of " + ", ".join(map(repr, limits["choices"])))
        return value
    whole = isinstance(option.default, int)
    range_ = " and ".join(f"{words} {limits[key]:g}" for key, words in _BOUNDS if key in limits)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral if whole else numbers.Real):
        raise InvalidOptionError(option.name, value, f"{'an integer' if whole else 'a number'}, {range_}")
    # Written as what must hold, so NaN fails every bound.
    if not (
        ("at_least" not in limits or value >= limits["at_least"])
        and ("above" not in limits or value > limits["above"])
        and ("at_most" not in limits or value <= limits["at_most"])
    ):
        raise InvalidOptionError(option.name, value, range_)
    return int(value) if whole else float(value)


def _stop(value: str | Sequence[str]) -> tuple[str, ...]:
    """A tuple of the non-empty stop strings; one string is one stop string."""
    stops = (value,) if isinstance(value, str) else value
    if not isinstance(stops, Sequence) or not all(isinstance(s, str) for s in stops):
        raise InvalidOptionError("stop", value, "a string or a sequence of strings")
    return tuple(s for s in stops if s)


def _text(value: str) -> str:
    if not isinstance(value, str):
        raise InvalidOptionError("prefix", value, "a string")
    return value


DEFAULTS = GenerationOptions()
"""Every option at its default (the session's `retrieval` default depends on the model)."""
