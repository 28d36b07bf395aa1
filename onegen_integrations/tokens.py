"""Adding the OneGen tokens to a causal LM's vocabulary."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from onegen_integrations.config import OneGenTokens

# Words whose mean embedding starts each new token near a meaning the model already has;
# a random row would make the first training steps relearn what the word embeddings know.
_SEED_WORDS = {
    "query": " search query question retrieve",
    "document": " document passage text",
    "cont": " continue",
}


def missing_tokens(tokenizer: PreTrainedTokenizerBase, tokens: OneGenTokens) -> list[str]:
    """The OneGen token strings the tokenizer does not hold as single tokens."""
    vocab = tokenizer.get_vocab()
    return [t for t in tokens.all() if t not in vocab]


def add_onegen_tokens(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, tokens: OneGenTokens
) -> list[int]:
    """Add the missing OneGen tokens as special tokens and initialise their rows.

    Each new row is the mean of the embeddings of a few meaningful words (for `[RQ]`:
    "search query question retrieve"; for markers like `<paragraph>`: the pieces of its own
    spelling). Returns the ids of the tokens that were added (empty if none were missing).
    """
    new = missing_tokens(tokenizer, tokens)
    if not new:
        return []
    seeds = {getattr(tokens, field): text for field, text in _SEED_WORDS.items()}
    seed_ids = [tokenizer(seeds.get(t, t), add_special_tokens=False)["input_ids"] for t in new]
    tokenizer.add_tokens(new, special_tokens=True)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    new_ids = tokenizer.convert_tokens_to_ids(new)
    tables = [model.get_input_embeddings().weight]
    output = model.get_output_embeddings()
    if output is not None and output.weight.data_ptr() != tables[0].data_ptr():
        tables.append(output.weight)
    with torch.no_grad():
        for table in tables:
            for token_id, ids in zip(new_ids, seed_ids):
                table[token_id] = table[ids].mean(dim=0)
    return new_ids
