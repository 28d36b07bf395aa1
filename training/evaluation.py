"""Retrieval Recall@k on held-out records, with the vectors the runtime would compute.

Query vectors are the `[RQ]` states of each held-out dialogue run teacher-forced (earlier
passages inserted, as the engine inserts them); the corpus is every document the held-out
records name (positives and hard negatives; for SQuAD: the held-out articles' paragraphs).
Work is split across processes and gathered, every process running the same number of
forward passes (so sharded ZeRO-3 models never wait on each other).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from onegen_training.collator import OneGenCollator, pad_rows
from onegen_training.data import Record
from onegen_training.losses import unit
from onegen_training.modeling import OneGenObjective
from tqdm.auto import tqdm


@torch.no_grad()
def retrieval_vectors(
    objective: OneGenObjective,
    collator: OneGenCollator,
    records: Sequence[Record],
    accelerator: Accelerator,
    batch_size: int = 16,
    corpus: Sequence[str] | None = None,
    progress: str | None = None,
) -> tuple[torch.Tensor, list[list[int]], torch.Tensor, list[str]]:
    """Unit `[RQ]` vectors of `records`, each one's positive columns, unit document vectors
    and the document ids (the columns).

    The columns are `corpus` when given (it must hold every positive), else every document
    the records name. `progress` labels a progress bar (none: no bar).
    """
    examples = [collator.encode(r) for r in records]
    doc_ids = sorted(corpus if corpus is not None else {d for e in examples for q in e.queries for d in q.positives + q.negatives})
    column = {d: i for i, d in enumerate(doc_ids)}
    device = accelerator.device

    def docs(indices: list[int]) -> list[torch.Tensor]:
        ids, mask = pad_rows([collator.document_tokens(doc_ids[i]) for i in indices], collator.pad_id)
        return list(unit(objective.rows(ids.to(device), mask.to(device))).unsqueeze(1))

    def queries(indices: list[int]) -> list[torch.Tensor]:
        ids, mask = pad_rows([examples[i].input_ids for i in indices], collator.pad_id)
        states = objective.states(ids.to(device), mask.to(device))
        out = []
        for row, i in enumerate(indices):
            positions = [q.position for q in examples[i].queries if q.position >= 0]
            out.append(unit(states[row, positions]))
        return out

    query_vectors = _sharded(len(examples), queries, accelerator, batch_size, progress and f"{progress}: queries")
    doc_vectors = torch.cat(_sharded(len(doc_ids), docs, accelerator, batch_size, progress and f"{progress}: documents"))
    positives = [[column[d] for d in q.positives] for e in examples for q in e.queries if q.position >= 0]
    return torch.cat(query_vectors), positives, doc_vectors, doc_ids


def recall_at_k(
    queries: torch.Tensor, positives: list[list[int]], documents: torch.Tensor, ks: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """`recall@k`: per query, the share of its positives in the top k (out of at most k), averaged."""
    scores = queries.float() @ documents.float().T
    top = scores.topk(min(max(ks), documents.shape[0]), dim=1).indices.tolist()
    result = {}
    for k in ks:
        hits = [len(set(ranked[:k]) & set(pos)) / min(k, len(pos)) for ranked, pos in zip(top, positives)]
        result[f"recall@{k}"] = sum(hits) / max(len(hits), 1)
    return result


def evaluate(
    objective: OneGenObjective,
    collator: OneGenCollator,
    records: Sequence[Record],
    accelerator: Accelerator,
    batch_size: int = 16,
) -> dict[str, float]:
    """Recall@1 and @5 of the `[RQ]` vectors over the held-out corpus."""
    was_training = objective.training
    objective.eval()
    try:
        queries, positives, documents, _ = retrieval_vectors(objective, collator, records, accelerator, batch_size)
    finally:
        objective.train(was_training)
    return recall_at_k(queries, positives, documents)


def _sharded(
    count: int, fn: Callable[[list[int]], list[torch.Tensor]], accelerator: Accelerator, batch_size: int,
    progress: str | None = None,
) -> list[torch.Tensor]:
    """`fn` over `range(count)` split across processes; results gathered in index order
    (`progress`: label of the main process's progress bar)."""
    if count == 0:
        return []
    rank, world = accelerator.process_index, accelerator.num_processes
    mine = list(range(rank, count, world))
    padded = mine + [mine[-1] if mine else 0] * (math.ceil(count / world) - len(mine))
    pairs = []
    for start in tqdm(range(0, len(padded), batch_size), desc=progress, disable=progress is None or not accelerator.is_main_process):
        indices = padded[start : start + batch_size]
        pairs += [(i, t.cpu()) for i, t in zip(indices, fn(indices))]
    pairs = pairs[: len(mine)]
    if world > 1:
        pairs = gather_object(pairs)
    ordered = dict(pairs)
    return [ordered[i] for i in range(count)]
