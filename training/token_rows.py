"""Trainable rows for the OneGen tokens while the rest of the embedding stays frozen (LoRA).

The input embedding and the output head are wrapped: each adds a small trainable delta
[n_tokens, hidden] to the frozen rows of the OneGen tokens. The optimizer holds only the
delta, and the trained rows (frozen row + delta) are what `export` writes to
`onegen_tokens.safetensors`. With tied embeddings both wrappers share one delta, exactly
as the tied weight is shared. With `train_input=False` the input side uses the delta without
its gradient, so nothing below the lowest trainable layer needs a backward pass (the head's
rows still train, and a tied input row follows them). Assumes a plain (unscaled) embedding lookup.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel


class TokenRowsEmbedding(nn.Module):
    """An input embedding whose `token_ids` rows are `frozen row + delta`."""

    def __init__(self, embedding: nn.Embedding, token_ids: list[int], delta: nn.Parameter, trainable: bool = True) -> None:
        super().__init__()
        self.embedding = embedding
        self.delta = delta
        self.trainable = trainable
        slot = torch.full((embedding.num_embeddings,), -1, dtype=torch.long)
        slot[token_ids] = torch.arange(len(token_ids))
        self.register_buffer("slot", slot, persistent=False)
        self.register_buffer("token_ids", torch.tensor(token_ids, dtype=torch.long), persistent=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Embeddings of `input_ids`, with the delta added at OneGen tokens."""
        slot = self.slot[input_ids]
        hit = (slot >= 0).unsqueeze(-1)
        delta = self.delta if self.trainable else self.delta.detach()
        extra = delta[slot.clamp(min=0)] * hit
        return self.embedding(input_ids) + extra.to(self.embedding.weight.dtype)


class TokenRowsHead(nn.Module):
    """An output head whose logits for `token_ids` use `frozen row + delta`."""

    def __init__(self, head: nn.Linear, token_ids: list[int], delta: nn.Parameter) -> None:
        super().__init__()
        self.head = head
        self.delta = delta
        self.register_buffer("token_ids", torch.tensor(token_ids, dtype=torch.long), persistent=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits of `hidden`, with the OneGen tokens' columns from the trained rows."""
        rows = self.head.weight[self.token_ids] + self.delta.to(self.head.weight.dtype)
        columns = hidden @ rows.T
        if self.head.bias is not None:
            columns = columns + self.head.bias[self.token_ids]
        return self.head(hidden).index_copy(-1, self.token_ids, columns)


def wrap_token_rows(model: PreTrainedModel, token_ids: list[int], train_input: bool = True) -> list[nn.Parameter]:
    """Freeze the embedding and head, wrap them with deltas; return the ones that train."""
    embedding, head = model.get_input_embeddings(), model.get_output_embeddings()
    tied = head is not None and head.weight.data_ptr() == embedding.weight.data_ptr()
    embedding.weight.requires_grad_(False)
    hidden = embedding.weight.shape[1]
    input_delta = nn.Parameter(torch.zeros(len(token_ids), hidden, dtype=torch.float32, device=embedding.weight.device))
    model.set_input_embeddings(TokenRowsEmbedding(embedding, token_ids, input_delta, trainable=train_input))
    deltas = [input_delta] if train_input else []
    if head is not None:
        head.weight.requires_grad_(False)
        output_delta = input_delta if tied else nn.Parameter(torch.zeros_like(input_delta))
        model.set_output_embeddings(TokenRowsHead(head, token_ids, output_delta))
        if not tied or not train_input:
            deltas.append(output_delta)
    for delta in deltas:
        delta.requires_grad_(True)
    return deltas


def trained_rows(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """The OneGen token rows as trained: `input`, plus `output` when the head is not tied."""
    embedding, head = model.get_input_embeddings(), model.get_output_embeddings()
    rows = {"input": embedding.embedding.weight[embedding.token_ids].float() + embedding.delta.float()}
    if isinstance(head, TokenRowsHead) and head.delta is not embedding.delta:
        rows["output"] = head.head.weight[head.token_ids].float() + head.delta.float()
    return {name: tensor.detach().cpu().contiguous() for name, tensor in rows.items()}
