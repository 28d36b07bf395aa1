"""The retrieval losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from onegen_training.losses import anchor_loss, bpr_loss, generation_anchor_loss, info_nce_loss, retrieval_loss, unit


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_bpr_is_mean_negative_log_sigmoid_of_score_gaps() -> None:
    scores = torch.tensor([[0.9, 0.1, 0.4]])
    positive = torch.tensor([[True, False, False]])
    negative = torch.tensor([[False, True, True]])
    expected = -(math.log(sigmoid(0.8)) + math.log(sigmoid(0.5))) / 2
    assert bpr_loss(scores, positive, negative).item() == pytest.approx(expected, abs=1e-6)


def test_info_nce_divides_by_temperature_and_sums_negatives() -> None:
    scores = torch.tensor([[0.9, 0.1, 0.4], [0.2, 0.7, 0.0]])
    positive = torch.tensor([[True, False, False], [False, True, False]])
    negative = ~positive
    t = 0.5

    def term(p: float, negs: list[float]) -> float:
        return -math.log(math.exp(p / t) / (math.exp(p / t) + sum(math.exp(n / t) for n in negs)))

    expected = (term(0.9, [0.1, 0.4]) + term(0.7, [0.2, 0.0])) / 2
    assert info_nce_loss(scores, positive, negative, t).item() == pytest.approx(expected, abs=1e-6)


def test_queries_without_negatives_add_nothing() -> None:
    scores = torch.tensor([[0.9, 0.1], [0.3, 0.2]])
    positive = torch.tensor([[True, False], [True, False]])
    negative = torch.tensor([[False, True], [False, False]])
    only_first = -math.log(sigmoid(0.8))
    assert bpr_loss(scores, positive, negative).item() == pytest.approx(only_first, abs=1e-6)


def test_vectors_are_normalised_each_on_its_own() -> None:
    queries = torch.tensor([[3.0, 4.0], [0.0, 10.0]])
    documents = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    positive = torch.tensor([[True, False], [False, True]])
    # per vector: q̂ = (0.6, 0.8), (0, 1); d̂ = (1, 0), (0, 1) → scores [[0.6, 0.8], [0, 1]]
    expected = (-math.log(sigmoid(0.6 - 0.8)) - math.log(sigmoid(1.0 - 0.0))) / 2
    loss = retrieval_loss(queries, documents, positive, ~positive, kind="bpr")
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert unit(queries).norm(dim=-1).tolist() == pytest.approx([1.0, 1.0])
    # the reference code normalised along the batch axis, which gives another loss
    wrong = torch.nn.functional.normalize(queries, dim=0) @ torch.nn.functional.normalize(documents, dim=0).T
    assert bpr_loss(wrong, positive, ~positive).item() != pytest.approx(expected, abs=1e-3)


def test_unknown_loss_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="bpr"):
        retrieval_loss(torch.ones(1, 2), torch.ones(1, 2), torch.ones(1, 1, dtype=torch.bool), torch.zeros(1, 1, dtype=torch.bool), kind="cosine")


def test_anchor_loss_is_the_mean_cosine_distance_whatever_the_lengths() -> None:
    vectors = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    targets = torch.tensor([[5.0, 0.0], [1.0, 0.0], [-1.0, -1.0]])
    assert anchor_loss(vectors, targets).item() == pytest.approx((0.0 + 1.0 + 2.0) / 3, abs=1e-6)
    assert anchor_loss(torch.zeros(0, 2, requires_grad=True), torch.zeros(0, 2)).item() == 0.0


def test_generation_anchor_loss_is_the_mean_kl_from_the_target_distributions() -> None:
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    targets = torch.tensor([[math.log(3.0), 0.0], [math.log(3.0), 0.0]])
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # KL([3/4, 1/4] ‖ [1/2, 1/2])
    assert generation_anchor_loss(logits, targets).item() == pytest.approx(kl / 2, abs=1e-6)
    assert generation_anchor_loss(targets, targets).item() == pytest.approx(0.0, abs=1e-7)
    assert generation_anchor_loss(torch.zeros(0, 2), torch.zeros(0, 2)).item() == 0.0
