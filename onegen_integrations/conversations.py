"""`Conversations`: cached sessions, one per conversation, kept between calls that each carry
the whole dialogue (`onegen serve`'s requests, `ChatOneGen`'s message lists).

A call carries the whole dialogue; its conversation's session holds the same dialogue in
its KV cache. When the request's history starts with what the session holds, only the new
turns are fed (usually just the new user message). Otherwise (an edited history, a session
evicted or never built) the session is rebuilt from the request's messages, once. The cache is
only a cache: a rebuilt conversation gets the answers and retrievals the cached one would.

Memory is bounded by a number of conversations and a number of cached tokens; when either is
exceeded, the least recently used idle conversation is dropped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from onegen_integrations.chat_format import Message
from onegen_integrations.dialogue import Dialogue
from onegen_integrations.replay import RETRIEVALS_KEY, retrievals_from_json
from onegen_integrations.session import OneGenSession

Reuse = Literal["continued", "extended", "rebuilt", "new"]
"""How a request found its session: `continued` (the cache held its whole history), `extended`
(the cache held the start; the turns after it were added), `rebuilt` (no cache held its history:
an edited history, an evicted conversation, a new client; built from the messages), `new` (the
first message of a conversation)."""


@dataclass
class Lease:
    """One request's hold on a conversation; `Conversations.give_back` ends it."""

    conversation_id: str
    session: OneGenSession
    reuse: Reuse
    fed_tokens: int = 0
    """Tokens fed to bring the session to the request's history (replayed retrievals)."""


@dataclass
class _Entry:
    session: OneGenSession | None
    """None until the first lease builds it."""
    system_prompt: str | None
    key: str = ""
    tokens: int = 0
    busy: bool = True


class Conversations:
    """Cached sessions by conversation id, bounded, least recently used dropped first.

    Args:
        open_session: builds a session holding a dialogue's history (`Dialogue.open` with the
            server's model, retriever and options).
        max_conversations: most conversations cached at once.
        max_tokens: most tokens all cached conversations hold together.

    Thread-safe: each request leases its conversation's session for one turn; a second request
    on a conversation that is answering waits for it.
    """

    def __init__(
        self, open_session: Callable[[Dialogue], OneGenSession], *, max_conversations: int, max_tokens: int
    ) -> None:
        self._open = open_session
        self.max_conversations = max_conversations
        self.max_tokens = max_tokens
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        """Least recently used first."""
        self._changed = threading.Condition()
        self.evictions = 0
        """Conversations dropped to stay within the limits since start."""

    def __len__(self) -> int:
        with self._changed:
            return len(self._entries)

    @property
    def cached_tokens(self) -> int:
        """Tokens the cached conversations hold, as of their last turn."""
        with self._changed:
            return sum(entry.tokens for entry in self._entries.values())

    def lease(self, dialogue: Dialogue, conversation_id: str | None = None) -> Lease:
        """The session to answer `dialogue.message` with, its history in place.

        With a `conversation_id`, that conversation's session (waiting while it answers another
        request); without, an idle conversation holding exactly this history, else a new one.
        """
        with self._changed:
            if conversation_id is None:
                conversation_id, entry = self._match(dialogue)
            else:
                while (entry := self._entries.get(conversation_id)) is not None and entry.busy:
                    self._changed.wait()
            if entry is None:
                entry = self._entries[conversation_id] = _Entry(None, dialogue.system_prompt)
            entry.busy = True
            self._entries.move_to_end(conversation_id)
            self._evict()
        before = entry.session
        fed_before = before.fed_tokens if before is not None else 0
        try:
            session, reuse = self._reuse(entry, dialogue)
        except BaseException:
            self._release(conversation_id, entry)
            raise
        return Lease(conversation_id, session, reuse, session.fed_tokens - (fed_before if session is before else 0))

    def give_back(self, lease: Lease) -> None:
        """End a lease: the conversation is idle again, its size counted, and the limits kept."""
        with self._changed:
            entry = self._entries.get(lease.conversation_id)
            if entry is not None and entry.session is lease.session:
                entry.key = _history_key(entry.system_prompt, lease.session.messages)
                entry.tokens = len(lease.session.token_ids)
            self._release(lease.conversation_id, entry)

    def _release(self, conversation_id: str, entry: _Entry | None) -> None:
        with self._changed:
            if entry is not None:
                entry.busy = False
                if entry.session is None:  # its first lease failed: nothing to keep
                    self._entries.pop(conversation_id, None)
            self._evict()
            self._changed.notify_all()

    def _match(self, dialogue: Dialogue) -> tuple[str, _Entry | None]:
        """The most recently used idle conversation whose cache holds exactly this history."""
        key = _history_key(dialogue.system_prompt, dialogue.history)
        for conversation_id, entry in reversed(self._entries.items()):
            if not entry.busy and entry.key == key:
                return conversation_id, entry
        return uuid.uuid4().hex, None

    def _reuse(self, entry: _Entry, dialogue: Dialogue) -> tuple[OneGenSession, Reuse]:
        """Bring `entry`'s session to `dialogue`'s history: add what it lacks, or rebuild it."""
        session = entry.session
        if session is not None and entry.system_prompt == dialogue.system_prompt:
            held = session.messages
            start = dataclasses.replace(dialogue, history=dialogue.history[: len(held)])
            if len(dialogue.history) >= len(held) and start.same_history(held):
                rest = dialogue.history[len(held) :]
                for user, answer in zip(rest[::2], rest[1::2]):
                    past = answer.get(RETRIEVALS_KEY)
                    session.add_turn(
                        user["content"], answer["content"], None if past is None else retrievals_from_json(past)
                    )
                return session, "extended" if rest else "continued"
        reuse: Reuse = "rebuilt" if dialogue.history else "new"
        entry.session, entry.system_prompt = self._open(dialogue), dialogue.system_prompt
        return entry.session, reuse

    def _evict(self) -> None:
        """Drop least recently used idle conversations while over either limit."""
        total = sum(entry.tokens for entry in self._entries.values())
        for conversation_id, entry in list(self._entries.items()):
            if len(self._entries) <= self.max_conversations and total <= self.max_tokens:
                return
            if not entry.busy:
                del self._entries[conversation_id]
                total -= entry.tokens
                self.evictions += 1


def _history_key(system_prompt: str | None, history: Sequence[Message]) -> str:
    """A digest of the system prompt and the roles and texts of a history."""
    texts = [system_prompt, [(m["role"], m["content"]) for m in history]]
    return hashlib.sha256(json.dumps(texts).encode()).hexdigest()
