"""Train/held-out splits that never cut a group: an article, or documents shared by records."""

from __future__ import annotations

import random

from onegen_training.data import Record


def split_records(records: list[Record], eval_fraction: float, seed: int = 0) -> tuple[list[Record], list[Record]]:
    """Split into (train, held-out) by whole groups.

    Records are in one group when they share a `group` value (a SQuAD article) or any document
    id (positive or negative), so no article and no document is seen in both splits. Groups are
    shuffled with `seed` and moved to the held-out side until it holds `eval_fraction` of records.
    """
    parent = list(range(len(records)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for index, record in enumerate(records):
        keys = [f"group:{record.group}"] if record.group else []
        keys += [f"doc:{d}" for m in record.messages for r in m.retrievals for d in r.positives + r.negatives]
        for key in keys:
            if key in owner:
                parent[find(index)] = find(owner[key])
            else:
                owner[key] = index
    components: dict[int, list[int]] = {}
    for index in range(len(records)):
        components.setdefault(find(index), []).append(index)
    groups = sorted(components.values())
    random.Random(seed).shuffle(groups)
    held_out: set[int] = set()
    for group in groups:
        if len(held_out) >= eval_fraction * len(records):
            break
        held_out.update(group)
    train = [r for i, r in enumerate(records) if i not in held_out]
    return train, [r for i, r in enumerate(records) if i in held_out]
