"""The llama.cpp backend: a OneGen GGUF run through llama-cpp-python's C API.

One llama.cpp context serves every session of the model. Each conversation's cache is a
*sequence* of that context: a unified KV buffer sized to the model's context window is shared by
up to `SEQUENCES` sequences, so memory does not grow with the number of sessions (SmolLM2-135M:
180 MiB of f16 KV for 8,192 positions). When all sequences are taken, or the buffer is full, the
least recently used idle sequence is dropped; its session re-feeds its own tokens at its next
call (the cache is only a cache). A session that is garbage collected frees its sequence. Calls
are serialised by one lock, as on torch.

With embeddings switched on and no pooling, one decode call yields both the next-token logits
and the final-norm hidden state of each position whose output flag is set: the `[RQ]` state
comes from the very call that feeds `[RQ]`, and a document's vector from its `[RD]`.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import weakref
from collections import Counter, OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from onegen_integrations.backends.base import Forward
from onegen_integrations.errors import ContextWindowExceededError, InvalidGGUFError
from onegen_integrations.gguf_files import OneGenGGUF

logger = logging.getLogger(__name__)

SEQUENCES = 32
"""Sequences of the shared context: idle sessions keep their caches until these run out."""
MAX_SEQUENCES = 256
"""llama.cpp's own limit (LLAMA_MAX_SEQ): more sessions than this take turns on the sequences."""
EMBED_LANES = 16
"""Documents embedded side by side in one decode call, each its own sequence."""
BATCH_TOKENS = 2048
"""Most tokens fed in one decode call (llama.cpp splits it into micro-batches of 512)."""
_LOG_CALLBACK = None


class LlamaCache:
    """One conversation's place in the shared context: its tokens and, while it holds one, its sequence."""

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.sequence: int | None = None


class LlamaCppBackend:
    """Forward passes of a OneGen GGUF through llama.cpp, shared by every session of a model."""

    name = "llama.cpp"

    def __init__(
        self,
        path: str | Path,
        contents: OneGenGGUF,
        *,
        threads: int | None = None,
        sequences: int | None = None,
        cache_tokens: int | None = None,
    ) -> None:
        import llama_cpp

        self._lib = llama_cpp
        _route_logs(llama_cpp)
        self.path = Path(path)
        self.contents = contents
        self.lock = threading.RLock()
        model_params = llama_cpp.llama_model_default_params()
        self._model = llama_cpp.llama_model_load_from_file(str(self.path).encode(), model_params)
        if not self._model:
            raise InvalidGGUFError(f"llama.cpp could not load {self.path}: export it again with `onegen export-gguf`")
        params = llama_cpp.llama_context_default_params()
        # Each sequence still stops at the context window (the session sees to it); a larger
        # buffer lets more conversations keep their caches at once.
        params.n_ctx = max(contents.context_length, cache_tokens or 0)
        params.n_batch = BATCH_TOKENS
        params.n_ubatch = 512
        params.n_seq_max = self.sequences = min(max(sequences or SEQUENCES, 1), MAX_SEQUENCES)
        params.kv_unified = True
        params.embeddings = True
        params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_NONE
        params.n_outputs_max = max(self.sequences, EMBED_LANES)  # at least n_seq_max
        params.n_outputs_max_per_seq = 2
        self.threads = threads or len(os.sched_getaffinity(0))
        params.n_threads = params.n_threads_batch = self.threads
        self._ctx = llama_cpp.llama_init_from_model(self._model, params)
        if not self._ctx:
            llama_cpp.llama_model_free(self._model)
            raise InvalidGGUFError(f"llama.cpp could not create a context for {self.path}")
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(BATCH_TOKENS, 0, 1)
        self._embeddings_on = True
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self._model))
        self._owners: OrderedDict[int, weakref.ref[LlamaCache]] = OrderedDict()
        """Sequence id → the cache holding it, least recently used first."""
        self._occupied: dict[int, int] = {}
        """Sequence id → positions it holds in the KV buffer."""
        self._released: list[int] = []
        self._filled: Counter[int] = Counter()
        """Tokens per sequence in the batch being decoded."""
        """Sequences whose cache was garbage collected, freed at the next call."""
        self._positions = llama_cpp.llama_n_ctx(self._ctx)
        self.decoded_tokens = 0
        """Tokens fed through llama.cpp since load (re-feeds after an eviction included)."""
        weakref.finalize(self, _free, llama_cpp, self._ctx, self._model, self._batch)

    @property
    def dimension(self) -> int:
        """Length of a hidden state."""
        return self.contents.dimension

    @property
    def context_window(self) -> int:
        """Positions the model was trained for (and the shared KV buffer holds)."""
        return self.contents.context_length

    @property
    def eos_token_ids(self) -> set[int]:
        """The end-of-answer tokens recorded at export."""
        return set(self.contents.eos_token_ids)

    def fingerprint(self, signature: str) -> str:
        """The source model's fingerprint, recorded at export (`signature` is already in it)."""
        return self.contents.fingerprint

    @property
    def held_positions(self) -> int:
        """Positions the shared KV buffer holds now, over every sequence."""
        with self.lock:
            self._collect()
            return sum(self._occupied.values())

    def new_cache(self) -> LlamaCache:
        """An empty cache; it takes a sequence at its first forward call."""
        return LlamaCache()

    def forward(self, token_ids: Sequence[int], cache: LlamaCache, outputs: int = 1) -> Forward:
        """Feed `token_ids` into the cache's sequence; the last `outputs` states and the logits.

        A cache that lost its sequence (evicted while idle) first feeds its own tokens again.
        """
        token_ids = list(token_ids)
        with self.lock:
            self._collect()
            refeed = not self._holds(cache)
            if refeed:
                cache.sequence = self._claim(cache)
            fed, start = (cache.tokens + token_ids, 0) if refeed else (token_ids, len(cache.tokens))
            try:
                self._make_room(len(fed), keep={cache.sequence})
                states = self._feed(cache.sequence, fed, start, outputs, keep={cache.sequence})
            except BaseException:
                self._drop(cache.sequence)  # nothing half-fed stays: the next call feeds it all again
                raise
            logits = self._logits()
            cache.tokens.extend(token_ids)
        return Forward(torch.from_numpy(states), lambda: torch.from_numpy(logits.copy()))

    def last_states(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """Each sequence's last state; up to `EMBED_LANES` sequences share a decode call."""
        out = np.zeros((len(sequences), self.dimension), dtype=np.float32)
        with self.lock:
            self._collect()
            lanes = [LlamaCache() for _ in range(min(EMBED_LANES, self.sequences, len(sequences)))]
            seq_ids = [self._claim(lane) for lane in lanes]
            keep = set(seq_ids)
            try:
                for group in _pack(sequences, len(lanes)):
                    self._make_room(sum(len(sequences[i]) for i in group), keep)
                    if len(group) == 1 and len(sequences[group[0]]) > BATCH_TOKENS:
                        out[group[0]] = self._feed(seq_ids[0], list(sequences[group[0]]), 0, 1, keep)[-1]
                    else:
                        out[group] = self._feed_lanes([sequences[i] for i in group], seq_ids, keep)
                    for seq in seq_ids:
                        self._clear(seq)
            finally:
                for seq in seq_ids:
                    self._drop(seq)
        return out

    def _holds(self, cache: LlamaCache) -> bool:
        owner = self._owners.get(cache.sequence) if cache.sequence is not None else None
        if owner is None or owner() is not cache:
            return False
        self._owners.move_to_end(cache.sequence)
        return True

    def _claim(self, cache: LlamaCache) -> int:
        """A sequence for `cache`: a free one, else the least recently used one's."""
        free = next((s for s in range(self.sequences) if s not in self._owners), None)
        if free is None:
            free = self._evict(keep=set())
        released = self._released
        self._owners[free] = weakref.ref(cache, lambda _, seq=free: released.append(seq))
        return free

    def _collect(self) -> None:
        """Free the sequences of caches that were garbage collected (their sessions are gone)."""
        while self._released:
            seq = self._released.pop()
            owner = self._owners.get(seq)
            if owner is not None and owner() is None:
                self._drop(seq)

    def _make_room(self, tokens: int, keep: set[int]) -> None:
        """Evict idle sequences, least recently used first, until `tokens` more fit the KV buffer."""
        while sum(self._occupied.values()) + tokens > self._positions:
            self._evict(keep)

    def _evict(self, keep: set[int]) -> int:
        """Drop the least recently used sequence not in `keep`; its owner re-feeds later."""
        seq = next((s for s in self._owners if s not in keep), None)
        if seq is None:
            raise ContextWindowExceededError(
                f"the model's KV buffer ({self._positions} positions) cannot hold this call: shorten the input"
            )
        self._drop(seq)
        return seq

    def _drop(self, seq: int) -> None:
        """Take sequence `seq` from its cache, which will feed its tokens again when next used."""
        owner = self._owners.pop(seq, None)
        cache = owner() if owner is not None else None
        if cache is not None and cache.sequence == seq:
            cache.sequence = None
        self._clear(seq)

    def _clear(self, seq: int) -> None:
        self._lib.llama_memory_seq_rm(self._memory, seq, 0, -1)
        self._occupied.pop(seq, None)

    def _feed(self, seq: int, token_ids: list[int], start: int, outputs: int, keep: set[int]) -> np.ndarray:
        """Decode `token_ids` into sequence `seq` from position `start`; the last `outputs` tokens'
        states (none for 0: then only the last token's logits are computed).

        llama.cpp outputs every token of a call while embeddings are on, so the head is fed
        with them off, in calls of at most `BATCH_TOKENS`, and the `outputs` tail with them on.
        """
        outputs = min(outputs, len(token_ids))
        head = len(token_ids) - outputs
        if head:
            self._embeddings(False)
        for offset in range(0, head, BATCH_TOKENS):
            chunk = token_ids[offset : min(offset + BATCH_TOKENS, head)]
            last = outputs == 0 and offset + len(chunk) == head
            self._fill([(seq, start + offset + i, t, last and i == len(chunk) - 1) for i, t in enumerate(chunk)])
            self._decode(keep, {seq: start + offset})
        if not outputs:
            return np.zeros((0, self.dimension), dtype=np.float32)
        self._embeddings(True)
        self._fill([(seq, start + head + i, t, True) for i, t in enumerate(token_ids[head:])])
        self._decode(keep, {seq: start + head})
        return np.stack([self._state(i) for i in range(outputs)])

    def _feed_lanes(self, sequences: list[Sequence[int]], seq_ids: list[int], keep: set[int]) -> np.ndarray:
        """Decode several sequences side by side from position 0; each one's last state."""
        lanes = dict(zip(seq_ids, sequences))
        self._embeddings(False)
        self._fill([(seq, pos, t, False) for seq, ids in lanes.items() for pos, t in enumerate(ids[:-1])])
        self._decode(keep, dict.fromkeys(lanes, 0))
        self._embeddings(True)
        self._fill([(seq, len(ids) - 1, ids[-1], True) for seq, ids in lanes.items()])
        self._decode(keep, {seq: len(ids) - 1 for seq, ids in lanes.items()})
        return np.stack([self._state(i) for i in range(len(lanes))])

    def _embeddings(self, on: bool) -> None:
        if on != self._embeddings_on:
            self._lib.llama_set_embeddings(self._ctx, on)
            self._embeddings_on = on

    def _fill(self, entries: list[tuple[int, int, int, bool]]) -> None:
        """Write (sequence, position, token, output) entries into the reusable batch."""
        batch = self._batch
        batch.n_tokens = len(entries)
        for i, (seq, pos, token, output) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = output
        self.decoded_tokens += len(entries)
        self._filled = Counter(seq for seq, _, _, _ in entries)

    def _decode(self, keep: set[int], starts: dict[int, int]) -> None:
        """`llama_decode` the filled batch; when the KV buffer is full, evict idle sequences."""
        if self._batch.n_tokens == 0:
            return
        while True:
            code = self._lib.llama_decode(self._ctx, self._batch)
            if code == 0:
                for seq, count in self._filled.items():
                    self._occupied[seq] = self._occupied.get(seq, 0) + count
                return
            for seq, start in starts.items():  # undo whatever part of the batch was stored
                self._lib.llama_memory_seq_rm(self._memory, seq, start, -1)
                self._occupied[seq] = start
            if code != 1:
                raise RuntimeError(f"llama_decode failed with code {code}")
            self._evict(keep)

    def _state(self, index: int) -> np.ndarray:
        pointer = self._lib.llama_get_embeddings_ith(self._ctx, index)
        return np.ctypeslib.as_array(pointer, shape=(self.dimension,)).copy()

    def _logits(self) -> np.ndarray:
        pointer = self._lib.llama_get_logits_ith(self._ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self._n_vocab,)).copy()


def _pack(sequences: Sequence[Sequence[int]], lanes: int) -> list[list[int]]:
    """Indices of `sequences` grouped in order into decode calls of at most `lanes` sequences and
    `BATCH_TOKENS` tokens; a longer sequence goes alone."""
    groups: list[list[int]] = []
    size = 0
    for i, ids in enumerate(sequences):
        if not groups or len(groups[-1]) >= lanes or size + len(ids) > BATCH_TOKENS:
            groups.append([])
            size = 0
        groups[-1].append(i)
        size += len(ids)
    return groups


def _route_logs(llama_cpp) -> None:
    """Send llama.cpp's own log lines to the `logging` debug level instead of stderr."""
    global _LOG_CALLBACK
    if _LOG_CALLBACK is not None:
        return

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        logger.debug("llama.cpp: %s", text.decode(errors="replace").rstrip())

    _LOG_CALLBACK = callback
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))


def _free(llama_cpp, ctx, model, batch) -> None:
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
