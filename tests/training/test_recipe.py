"""The default recipe's no-retrieval requests: distinct, balanced across kinds, never evaluated on."""

from __future__ import annotations

import random
import re

from onegen_evaluation.datasets import CHAT_REQUESTS
from onegen_training.configs import general_data


def test_general_requests_are_distinct_and_never_an_evaluation_request() -> None:
    prompts = general_data.prompts(random.Random(general_data.SEED), general_data.COUNT)
    assert len(prompts) == len(set(prompts)) == general_data.COUNT
    assert not set(prompts) & set(CHAT_REQUESTS)


def test_no_kind_of_general_request_crowds_out_the_rest() -> None:
    prompts = general_data.prompts(random.Random(0), 400)
    sums = [p for p in prompts if re.fullmatch(r"What is \d+ (plus|minus) \d+\?", p)]
    capitals = [p for p in prompts if p.startswith("What is the capital of")]
    assert 0 < len(sums) <= 40 and 0 < len(capitals) <= 40  # sums alone could fill all 400
