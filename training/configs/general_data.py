"""No-retrieval turns for the default model's training data: the base model's own answers.

`python training/configs/general_data.py` (after `default_data.py`) asks the untrained base
(SmolLM2-135M-Instruct) `COUNT` everyday requests that need no document (greetings, short writing,
rewording, advice, common knowledge), built here from templates, and adds each request
with the base's greedy answer, without `[RQ]`, to `data/default/train.jsonl`. Training on them
teaches the model when *not* to retrieve and keeps its ordinary replies as they were (answers the
base did not finish within `MAX_NEW_TOKENS` are dropped). Rerunning replaces the earlier ones.
Batched on a GPU this takes seconds; on a 2-core CPU about 20 minutes.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

from onegen_integrations.default_model import default_model_dir

TRAIN = Path("data/default/train.jsonl")
PREFIX = "general-"
COUNT = 200
MAX_NEW_TOKENS = 128
BATCH = 16
SEED = 1

_TOPICS = "autumn|the sea|a lighthouse|morning coffee|a city at night|snow|a cat|old books|spring rain|the moon|" \
          "a train journey|a garden|friendship|a thunderstorm|the desert".split("|")
_SKILLS = "learning a language|running a first marathon|cooking rice|saving money|sleeping better|public speaking|" \
          "keeping houseplants alive|studying for an exam|writing a cover letter|staying focused".split("|")
_CONCEPTS = "photosynthesis|gravity|a prime number|inflation|an algorithm|democracy|a metaphor|evaporation|" \
            "an atom|a noun|the internet|a vaccine|renewable energy|a budget".split("|")
_COUNTRIES = "France|Japan|Italy|Spain|Germany|Canada|Egypt|Brazil|India|Australia|Mexico|Kenya".split("|")
_SENTENCES = ["the meeting got moved to friday cause the boss is sick",
              "we cant come to the party, sorry, our car broke down",
              "pls send me the report asap, its late",
              "the new phone is way better than the old one and it was cheap too",
              "i think we should maybe try to finish the project earlier"]
_SMALL_TALK = ["Hello", "Hi!", "Hi there, how are you?", "Good morning!", "Thanks for your help!", "Who are you?",
               "What can you do?", "Tell me a joke.", "Can you help me?", "Good night!", "Thank you, that was useful.",
               "How is your day going?", "What's your name?", "Nice to meet you."]


def prompts(rng: random.Random, count: int) -> list[str]:
    """`count` distinct requests that need no retrieved document."""
    makers = [
        lambda: rng.choice(_SMALL_TALK),
        lambda: f"Write {rng.choice(['a haiku', 'a limerick', 'a short poem', 'two rhyming lines'])} about {rng.choice(_TOPICS)}.",
        lambda: f"Describe {rng.choice(_TOPICS)} in three words.",
        lambda: f"{rng.choice(['Give me three tips for', 'How do I get better at'])} {rng.choice(_SKILLS)}?",
        lambda: f"Explain {rng.choice(_CONCEPTS)} {rng.choice(['in one sentence', 'to a child', 'simply'])}.",
        lambda: f"What is the capital of {rng.choice(_COUNTRIES)}?",
        lambda: f"{rng.choice(['Rewrite this more formally', 'Correct the spelling and grammar', 'Make this shorter', 'Make this sound friendlier'])}: {rng.choice(_SENTENCES)}",
        lambda: f"Suggest a name for a shop that sells {rng.choice(['tea', 'bicycles', 'plants', 'books', 'cheese'])}.",
    ]
    seen: dict[str, None] = {}
    for _ in range(count * 50):
        if len(seen) == count:
            break
        seen.setdefault(rng.choice(makers)(), None)
    return list(seen)


@torch.inference_mode()
def answers(questions: list[str]) -> list[str | None]:
    """The base's greedy answer to each question (None where it did not finish)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir(), padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(default_model_dir(), dtype=torch.float32).to(device).eval()
    replies: list[str | None] = []
    for start in tqdm(range(0, len(questions), BATCH), desc="base answers"):
        chats = [[{"role": "user", "content": q}] for q in questions[start : start + BATCH]]
        batch = tokenizer.apply_chat_template(chats, add_generation_prompt=True, padding=True,
                                              return_tensors="pt", return_dict=True).to(device)
        out = model.generate(**batch, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)[:, batch["input_ids"].shape[1] :]
        for row in out.tolist():
            finished = tokenizer.eos_token_id in row
            text = tokenizer.decode(row, skip_special_tokens=True).strip()
            replies.append(text if finished and text else None)
    return replies


def main() -> None:
    """Replace the `general-*` records of `data/default/train.jsonl` with fresh ones."""
    rng = random.Random(SEED)
    records = [json.loads(line) for line in TRAIN.read_text().splitlines() if line.strip()]
    records = [r for r in records if not r["id"].startswith(PREFIX)]
    questions = prompts(rng, COUNT)
    general = [{"id": f"{PREFIX}{i}", "group": f"{PREFIX}{i}",
                "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
               for i, (q, a) in enumerate(zip(questions, answers(questions))) if a and "[RQ]" not in a]
    records += general
    rng.shuffle(records)
    TRAIN.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    print(json.dumps({"general": len(general), "asked": len(questions), "train": len(records)}))


if __name__ == "__main__":
    main()
