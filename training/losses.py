"""Retrieval losses on unit vectors, and the combined OneGen objective.

Scores are dot products of vectors each normalised to unit length on its own (along the hidden
axis; the reference code normalised along the sequence axis, mixing vectors together).
Queries with several positives average over them; queries without a negative add nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def unit(vectors: torch.Tensor) -> torch.Tensor:
    """Each row scaled to length 1 (computed in float32)."""
    return F.normalize(vectors.float(), dim=-1)


def bpr_loss(scores: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """Bayesian personalised ranking: mean of `−log σ(s⁺ − s⁻)` over each query's
    (positive, negative) pairs, then over queries.

    `scores` is [queries, documents]; `positive`/`negative` are boolean masks of that shape.
    """
    pairs = positive[:, :, None] & negative[:, None, :]
    terms = -F.logsigmoid(scores[:, :, None] - scores[:, None, :]) * pairs
    counts = pairs.sum(dim=(1, 2))
    return _mean_over_queries(terms.sum(dim=(1, 2)), counts)


def info_nce_loss(
    scores: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, temperature: float
) -> torch.Tensor:
    """InfoNCE: mean over each query's positives p of
    `−log exp(s_p/τ) / (exp(s_p/τ) + Σ_negatives exp(s_n/τ))`, then over queries."""
    logits = scores / temperature
    negatives = torch.logsumexp(logits.masked_fill(~negative, float("-inf")), dim=1, keepdim=True)
    terms = F.softplus(negatives - logits) * positive
    counts = positive.sum(dim=1) * negative.any(dim=1)
    return _mean_over_queries(terms.sum(dim=1), counts)


def retrieval_loss(
    queries: torch.Tensor,
    documents: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    kind: str = "infonce",
    temperature: float = 0.05,
) -> torch.Tensor:
    """The contrastive loss (`bpr` or `infonce`) of raw query and document states."""
    scores = unit(queries) @ unit(documents).T
    if kind == "bpr":
        return bpr_loss(scores, positive, negative)
    if kind == "infonce":
        return info_nce_loss(scores, positive, negative, temperature)
    raise ValueError(f"unknown retrieval loss {kind!r}: use 'bpr' or 'infonce'")


def anchor_loss(vectors: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cosine distance `1 − cos` of each vector from its target (0 for none)."""
    if len(vectors) == 0:
        return vectors.sum() * 0.0
    return (1.0 - (unit(vectors) * unit(targets)).sum(dim=-1)).mean()


def generation_anchor_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over tokens of KL(target ‖ model) between next-token distributions (0 for none)."""
    if len(logits) == 0:
        return logits.sum() * 0.0
    return F.kl_div(F.log_softmax(logits.float(), dim=-1), F.log_softmax(targets.float(), dim=-1),
                    log_target=True, reduction="batchmean")


def _mean_over_queries(totals: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    valid = counts > 0
    if not valid.any():
        return totals.sum() * 0.0  # keeps the graph (and every parameter) in the backward pass
    return (totals[valid] / counts[valid]).mean()
