"""`OneGenSession`: the one-pass engine. A conversation that owns a KV cache.

Every token of the dialogue passes through the model exactly once: the prompt is fed over
the cache, sampled tokens are fed one by one, and when the model emits `[RQ]` that one token
is fed, its hidden state becomes the query vector, the retrieved passages are fed as one
chunk, and decoding goes on over the same cache. A new user message appends its template
tokens to the cache; earlier turns are never re-processed unless the context window is full
(then the oldest turns are dropped and the cache is rebuilt once).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from onegen_integrations.backends.base import Forward
from onegen_integrations.chat_format import ChatFormat, Message
from onegen_integrations.errors import ContextWindowExceededError, EmptyTextError, SessionBusyError
from onegen_integrations.events import DoneEvent, Event, FinishReason, RetrievalEvent, TokenEvent, Usage
from onegen_integrations.model import OneGenModel
from onegen_integrations.options import GenerationOptions
from onegen_integrations.replay import RETRIEVALS_KEY, PastRetrieval, retrievals_from_json, retrievals_to_json
from onegen_integrations.retrieval import Hit, RetrievalQuery, Retriever

LogitsProcessor = Callable[[Sequence[int], torch.Tensor], torch.Tensor]
"""Called with the turn's generated ids and the next-token logits; returns new logits."""


@dataclass
class _Turn:
    user: str
    answer: str = ""
    finish: FinishReason = "length"
    tokens: list[int] = field(default_factory=list)
    """This turn's tokens in the dialogue: user message, answer, `[RQ]`, passages, close."""
    retrievals: list[RetrievalEvent | PastRetrieval] = field(default_factory=list)
    """What the answer retrieved, where (live, or restored by a replay)."""


class OneGenSession:
    """A multi-turn conversation on one `OneGenModel`, streaming events per turn.

    Args:
        model: the shared model; many sessions may use it from many threads.
        retriever: what `[RQ]` searches (e.g. `ChromaDocumentStore`); None disables retrieval.
        system_prompt: the system message (default: the model's `onegen.json`).
        context_window: tokens the cache may hold (default: the model's context window).
        seed: seeds sampling, so a sampled conversation can be repeated.
        logits_processor: optional hook to edit next-token logits (bans, biases, tests).
        **options: `GenerationOptions` fields, this session's defaults for every turn (an
            unknown name is a `TypeError`, a value out of range an `InvalidOptionError`).
            `retrieval` defaults to `auto` for a trained model and `always` for an untrained
            one (it would never emit `[RQ]`).

    Example:
        session = model.session(store, k=2)
        for event in session.send("Who founded the Varenne Institute?"):
            if isinstance(event, TokenEvent):
                print(event.text, end="")
    """

    def __init__(
        self,
        model: OneGenModel,
        retriever: Retriever | None = None,
        *,
        system_prompt: str | None = None,
        context_window: int | None = None,
        seed: int | None = None,
        logits_processor: LogitsProcessor | None = None,
        **options: object,
    ) -> None:
        self.model = model
        self.retriever = retriever
        if retriever is None:
            if options.get("retrieval") == "always":
                raise ValueError("retrieval='always' needs a retriever (e.g. a ChromaDocumentStore)")
            options["retrieval"] = "never"
        if options.get("retrieval") is None:
            options["retrieval"] = "auto" if model.trained else "always"
        self.options = GenerationOptions().replace(**options)
        self.context_window = min(context_window or model.context_window, model.context_window)
        self.logits_processor = logits_processor
        system = model.config.system_prompt if system_prompt is None else system_prompt
        self._format = ChatFormat(model.tokenizer, system, model.text)
        self.reseed(seed)
        self._busy = threading.Lock()
        self._eos_ids = model.eos_token_ids
        self._eos_id = model.tokenizer.eos_token_id if model.tokenizer.eos_token_id is not None else min(self._eos_ids)
        self.dropped_turns = 0
        """How many of the oldest turns were dropped to fit the context window."""
        self._fed = 0
        self._clear()

    def reseed(self, seed: int | None) -> None:
        """Seed sampling from here on (None: unseeded), as the `seed` argument does at construction."""
        self._generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def reset(self) -> None:
        """Forget the dialogue: an empty cache with only the system preamble pending.

        Raises `SessionBusyError` while a turn is streaming (the turn owns the cache).
        """
        with self._exclusive("reset it"):
            self._clear()

    def _clear(self) -> None:
        self._cache = self.model.new_cache()
        self._preamble = self._format.preamble()
        self._turns: list[_Turn] = []
        self._pending: list[int] = list(self._preamble)

    @property
    def messages(self) -> list[Message]:
        """The dialogue the cache holds, as chat messages; each answer carries its retrievals
        under `replay.RETRIEVALS_KEY`, so `load_history(session.messages)` rebuilds this cache."""
        out = self._chat()
        for answer, turn in zip(out[1::2], self._turns):
            answer[RETRIEVALS_KEY] = retrievals_to_json(turn.retrievals)
        return out

    def _chat(self) -> list[Message]:
        """The dialogue as the chat template renders it: roles and texts only."""
        return [
            message
            for turn in self._turns
            for message in ({"role": "user", "content": turn.user}, {"role": "assistant", "content": turn.answer})
        ]

    @property
    def fed_tokens(self) -> int:
        """Tokens this session has passed through the model since it was made (re-feeds included)."""
        return self._fed

    @property
    def token_ids(self) -> list[int]:
        """Every token fed through the model into the cache, in order."""
        ids = list(self._preamble) + [t for turn in self._turns for t in turn.tokens]
        return ids[: len(ids) - len(self._pending)]

    def add_turn(self, user: str, answer: str, retrievals: Sequence[PastRetrieval] | None = None) -> None:
        """Append a finished exchange (e.g. from a framework's message history) without
        generating, so that the cache holds what the live session held.

        `retrievals` (from `replay.retrievals_from_json`) puts each `[RQ]` and its passages
        back where the answer had them. With None (history from elsewhere), a session that
        retrieves decides at the start of the answer as a live turn would: it feeds the
        history so far, and if the model's next token is `[RQ]` (or retrieval is `always`)
        it retrieves; otherwise the tokens are fed with the next message. `user` may be
        empty (a dialogue that opens with the assistant's greeting).
        """
        with self._exclusive("add history"):
            self._add_turn(user, answer, retrievals)

    def _add_turn(self, user: str, answer: str, retrievals: Sequence[PastRetrieval] | None) -> None:
        history = self._chat()
        if self._turns:
            self._append(self._format.assistant_close(self._turns[-1].finish == "eos"))
        turn = _Turn(user=user, answer=answer, finish="eos")
        self._turns.append(turn)
        self._append(self._format.user_turn(history, user))
        if retrievals is None:
            turn.retrievals = self._replay_decision(user)
            retrievals = []
        else:
            turn.retrievals = list(retrievals)
        start = 0
        for past in retrievals:
            cut = min(max(past.offset, start), len(answer))
            self._append(self.model.tokenize(answer[start:cut]) + self._query_tokens(self.options))
            if self.options.insertion == "passage":
                self._append([t for hit in past.hits for t in self._passage(hit, self.options.max_passage_tokens)])
            start = cut
        self._append([*self.model.tokenize(answer[start:]), self._eos_id])

    def _replay_decision(self, user: str) -> list[RetrievalEvent]:
        """At the start of a replayed answer whose retrievals are unknown, retrieve if a live
        turn would have: `[RQ]` is the model's most likely first token (`auto`), or `always`."""
        options = self.options
        if self.retriever is None or options.retrieval == "never":
            return []
        if options.retrieval == "auto":
            logits = self._flush_within_window(states=0).logits()
            logits[self.model.engine_token_ids] = float("-inf")
            if self.logits_processor is not None:
                logits = self.logits_processor([], logits)
            if int(torch.argmax(logits)) != self.model.query_token_id:
                return []
        self._append(self._query_tokens(options))
        states = self._flush_within_window(states=len(self._query_tokens(options))).states
        return [self._retrieve(states[-2] if options.insertion == "con" else states[-1], user, "", options)]

    def _flush_within_window(self, states: int) -> Forward:
        """`_flush` after dropping the oldest turns if the queued tokens would overflow the window."""
        if self._make_room(0, keep_last=1) is None:
            raise ContextWindowExceededError(
                f"a history turn does not fit the context window of {self.context_window} tokens even "
                "alone: shorten the history"
            )
        return self._flush(states)

    def load_history(self, messages: Sequence[Message]) -> None:
        """Queue earlier turns given as alternating user/assistant messages, user first
        (a framework's chat history); an assistant message's `onegen_retrievals` (see
        `replay`) restores its retrievals. See `add_turn`."""
        roles = [m["role"] for m in messages]
        if len(roles) % 2 or roles != ["user", "assistant"] * (len(roles) // 2):
            raise ValueError("history must alternate user and assistant messages, starting with a user message")
        with self._exclusive("load history"):
            for user, answer in zip(messages[::2], messages[1::2]):
                past = answer.get(RETRIEVALS_KEY)
                self._add_turn(user["content"], answer["content"], None if past is None else retrievals_from_json(past))

    def ask(self, message: str, **overrides: object) -> DoneEvent:
        """Run one turn to the end and return its `DoneEvent`."""
        done = None
        for event in self.send(message, **overrides):
            if isinstance(event, DoneEvent):
                done = event
        assert done is not None
        return done

    def send(self, message: str, **overrides: object) -> Iterator[Event]:
        """Answer one user message, yielding `TokenEvent`s, `RetrievalEvent`s and a `DoneEvent`.

        `overrides` change `GenerationOptions` for this turn only, checked as the session's
        own are. Raises `EmptyTextError` for an empty message at once; while iterating,
        `SessionBusyError` if another caller is in a turn of this session, and
        `ContextWindowExceededError` (with the session unchanged) if the message cannot fit
        even alone.
        """
        if not message or not message.strip():
            raise EmptyTextError("the message is empty: send some text")
        options = self.options.replace(**overrides)
        if options.retrieval != "never" and self.retriever is None:
            raise ValueError("this session has no retriever; use retrieval='never'")
        return self._locked_turn(message, options)

    def _locked_turn(self, message: str, options: GenerationOptions) -> Iterator[Event]:
        with self._exclusive("send the next message"):
            yield from self._turn(message, options)

    @contextmanager
    def _exclusive(self, action: str) -> Iterator[None]:
        """Hold the session for one change of its dialogue; refuse while another holds it."""
        if not self._busy.acquire(blocking=False):
            raise SessionBusyError(
                f"this session is already answering a message: {action} once that turn has ended, "
                "or give each caller its own session (model.session(...)); they share the weights, not the cache"
            )
        try:
            yield
        finally:
            self._busy.release()

    def _turn(self, message: str, options: GenerationOptions) -> Iterator[Event]:
        started = time.perf_counter()
        cached = len(self.token_ids)
        fed_before = self._fed
        previous = self._turns[-1] if self._turns else None
        close = self._format.assistant_close(previous.finish == "eos") if previous else []
        user_ids = self._format.user_turn(self._chat(), message)
        reserve = min(options.max_new_tokens, 64)
        rebuilt = self._make_room(len(close) + len(user_ids) + reserve, keep_last=0)
        if rebuilt is None:
            raise ContextWindowExceededError(
                f"the message takes {len(user_ids)} tokens and needs room to answer, but the "
                f"context window holds {self.context_window} (the system prompt takes "
                f"{len(self._preamble)}): shorten the message or lower max_new_tokens"
            )
        if self._turns and self._turns[-1] is previous:  # unless it was dropped to make room
            self._append(close)
        prompt_tokens = len(self._pending) - rebuilt + len(user_ids)
        cached = 0 if rebuilt else cached
        turn = _Turn(user=message)
        self._turns.append(turn)
        self._append(user_ids)
        generated: list[int] = []
        answer_ids: list[int] = []
        retrievals: list[RetrievalEvent] = []
        emitted = ""
        forced = self.model.tokenize(options.prefix) if options.prefix else []
        need_query = options.retrieval == "always"
        if need_query:
            generated.append(self.model.query_token_id)
            self._append(self._query_tokens(options))
        try:
            while True:
                moved = self._make_room(0, keep_last=1)
                if moved is None:
                    turn.finish = "context"
                    self._drop_pending(turn)
                    break
                rebuilt += moved
                # States only where a query is read: the backend may then skip computing them.
                step = self._flush(len(self._query_tokens(options)) if need_query else 0)
                states = step.states
                if need_query:
                    need_query = False
                    # With `con` insertion, `<CON>` was fed in the same call as `[RQ]` (it does
                    # not depend on the hits), so the query state is the one before last.
                    query_state = states[-2] if options.insertion == "con" else states[-1]
                    retrievals.append(self._retrieve(query_state, message, self._decode(answer_ids), options))
                    yield retrievals[-1]
                    if self._pending:
                        continue
                if len(generated) >= options.max_new_tokens:
                    break
                token = forced.pop(0) if forced else self._sample(step, generated, len(retrievals), options)
                generated.append(token)
                if token == self.model.query_token_id:
                    self._append(self._query_tokens(options))
                    need_query = True
                    continue
                self._append([token])
                if token in self._eos_ids:
                    turn.finish = "eos"
                    break
                answer_ids.append(token)
                text = self._decode(answer_ids)
                cut = _first_stop(text, options.stop)
                if cut is not None:
                    turn.answer, turn.finish = text[:cut], "stop"
                    break
                safe = _hold_back(text, options.stop)
                if len(safe) > len(emitted) and safe.startswith(emitted):
                    yield TokenEvent(safe[len(emitted) :])
                    emitted = safe
                if len(generated) >= options.max_new_tokens:
                    break
        finally:
            # Also when the caller stops reading: the cache holds what was fed, and so must the turn.
            turn.retrievals = list(retrievals)
            if turn.finish != "stop":
                turn.answer = self._decode(answer_ids, final=True)
        if len(turn.answer) > len(emitted) and turn.answer.startswith(emitted):
            yield TokenEvent(turn.answer[len(emitted) :])
        usage = Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=len(generated),
            inserted_tokens=sum(r.inserted_tokens for r in retrievals),
            cached_tokens=cached,
            rebuilt_tokens=rebuilt,
            processed_tokens=self._fed - fed_before,
            retrievals=len(retrievals),
            seconds=time.perf_counter() - started,
        )
        yield DoneEvent(text=turn.answer, finish_reason=turn.finish, retrievals=retrievals, usage=usage)

    def _retrieve(
        self, hidden: torch.Tensor, message: str, answer: str, options: GenerationOptions
    ) -> RetrievalEvent:
        """Search with the `[RQ]` state just computed and queue what to insert after it."""
        started = time.perf_counter()
        vector = torch.nn.functional.normalize(hidden.float(), dim=-1).cpu().numpy()
        query = RetrievalQuery(vector=vector, text=f"{message}\n{answer}".strip(), k=options.k)
        assert self.retriever is not None
        hits = self.retriever.retrieve(query)
        if options.insertion == "con":
            inserted = 1  # the `<CON>` already fed with `[RQ]`
        else:
            passages = [t for hit in hits for t in self._passage(hit, options.max_passage_tokens)]
            self._append(passages)
            inserted = len(passages)
        seconds = time.perf_counter() - started
        return RetrievalEvent(query=query, hits=hits, inserted_tokens=inserted, seconds=seconds, offset=len(answer))

    def _query_tokens(self, options: GenerationOptions) -> list[int]:
        """`[RQ]`, followed for linking (`con`) by `<CON>`, which can share its forward call."""
        if options.insertion == "con":
            return [self.model.query_token_id, self.model.cont_token_id]
        return [self.model.query_token_id]

    def _passage(self, hit: Hit, max_tokens: int) -> list[int]:
        return self.model.text.fill(self.model.config.passage_template, hit.text, limit=max_tokens)

    def _sample(self, step: Forward, generated: list[int], retrievals: int, options: GenerationOptions) -> int:
        logits = step.logits()
        logits[self.model.engine_token_ids] = float("-inf")
        last_step = len(generated) + 1 >= options.max_new_tokens
        if options.retrieval == "never" or retrievals >= options.max_retrievals or last_step:
            logits[self.model.query_token_id] = float("-inf")
        if self.logits_processor is not None:
            logits = self.logits_processor(generated, logits)
        if options.temperature <= 0:
            return int(torch.argmax(logits))
        logits = logits / options.temperature
        if options.top_k > 0:
            threshold = torch.topk(logits, min(options.top_k, logits.numel())).values[-1]
            logits[logits < threshold] = float("-inf")
        probs = torch.softmax(logits, dim=-1)
        if options.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > options.top_p
            probs[order[outside]] = 0.0
        return int(torch.multinomial(probs, 1, generator=self._generator))

    def _append(self, ids: list[int]) -> None:
        """Queue tokens for the cache; they belong to the current turn (or the preamble)."""
        if self._turns:
            self._turns[-1].tokens.extend(ids)
        self._pending.extend(ids)

    def _flush(self, states: int) -> Forward:
        """Feed the queued tokens in one forward call: the last `states` hidden states (`[RQ]`,
        or `[RQ]` and `<CON>`, which share a call) and the next-token logits."""
        step = self.model.forward(self._pending, self._cache, outputs=states)
        self._fed += len(self._pending)
        self._pending = []
        return step

    def _make_room(self, extra: int, *, keep_last: int) -> int | None:
        """Drop the oldest turns so the dialogue plus `extra` tokens fits; rebuild the cache once.

        The last `keep_last` turns (the one being answered) are never dropped. Returns how many
        tokens were re-fed (0 when nothing had to move), or None, with nothing dropped, when
        even the shortest history leaves too little room.
        """
        sizes = [len(turn.tokens) for turn in self._turns]
        total = len(self._preamble) + sum(sizes) + extra
        dropped = 0
        while total > self.context_window and dropped < len(sizes) - keep_last:
            total -= sizes[dropped]
            dropped += 1
        if total > self.context_window:
            return None
        if dropped == 0:
            return 0
        del self._turns[:dropped]
        self.dropped_turns += dropped
        self._cache = self.model.new_cache()
        self._pending = list(self._preamble) + [t for turn in self._turns for t in turn.tokens]
        return len(self._pending)

    def _drop_pending(self, turn: _Turn) -> None:
        """Forget queued tokens of `turn` that will never be fed (it ended for lack of room)."""
        unfed = min(len(self._pending), len(turn.tokens))
        del turn.tokens[len(turn.tokens) - unfed :]
        del self._pending[len(self._pending) - unfed :]

    def _decode(self, ids: list[int], *, final: bool = False) -> str:
        """Answer text; mid-stream, a trailing partial multi-byte character is held back."""
        text = self.model.tokenizer.decode(ids, skip_special_tokens=True)
        return text[:-1] if not final and text.endswith("\ufffd") else text


def _first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    found = [text.find(s) for s in stops if s in text]
    return min(found) if found else None


def _hold_back(text: str, stops: tuple[str, ...]) -> str:
    """The text minus any tail that could be the start of a stop string."""
    for length in range(min(len(text), max((len(s) for s in stops), default=0)), 0, -1):
        if any(s.startswith(text[-length:]) for s in stops):
            return text[:-length]
    return text
