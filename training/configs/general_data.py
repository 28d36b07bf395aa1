"""No-retrieval turns for the default model's training data: the base model's own answers.

`python training/configs/general_data.py` (after `default_data.py`) asks the untrained base
(SmolLM2-135M-Instruct) `COUNT` everyday requests that need no document (greetings, short writing,
rewording, advice, everyday facts and arithmetic), built from this file's templates, and adds each request
with the base's greedy answer, without `[RQ]`, to `data/default/train.jsonl`. Training on them
teaches the model when *not* to retrieve and keeps its ordinary replies as they were (answers the
base did not finish within `MAX_NEW_TOKENS` are dropped). Rerunning replaces the earlier ones.
Batched on a GPU this takes seconds; on a 2-core x86 CPU 6 minutes (304 of the 400 finished).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from onegen_evaluation.datasets import CHAT_REQUESTS
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

from onegen_integrations.default_model import default_model_dir

TRAIN = Path("data/default/train.jsonl")
PREFIX = "general-"
COUNT = 400
MAX_NEW_TOKENS = 128
BATCH = 32
SEED = 1

_TOPICS = "autumn|the sea|a lighthouse|morning coffee|a city at night|snow|a cat|old books|spring rain|the moon|" \
          "a train journey|a garden|friendship|a thunderstorm|the desert".split("|")
_SKILLS = "learning a language|running a first marathon|cooking rice|saving money|sleeping better|public speaking|" \
          "keeping houseplants alive|studying for an exam|writing a cover letter|staying focused".split("|")
_CONCEPTS = "photosynthesis|gravity|a prime number|inflation|an algorithm|democracy|a metaphor|evaporation|" \
            "an atom|a noun|the internet|a vaccine|renewable energy|a budget".split("|")
_COUNTRIES = "France|Japan|Italy|Spain|Germany|Canada|Egypt|Brazil|India|Australia|Mexico|Kenya|Portugal|Greece|" \
             "Norway|Sweden|Poland|Ireland|Argentina|Chile|Peru|China|Russia|Turkey|Thailand|Vietnam|Morocco|" \
             "Nigeria|Austria|Belgium|Netherlands|Denmark|Finland|Cuba|Colombia|Indonesia|Iran|Hungary".split("|")
_SENTENCES = ["the meeting got moved to friday cause the boss is sick",
              "we cant come to the party, sorry, our car broke down",
              "pls send me the report asap, its late",
              "the new phone is way better than the old one and it was cheap too",
              "i think we should maybe try to finish the project earlier",
              "me and him goes to the gym every mornings",
              "thanks for the gift, we really love it and use it everyday"]
_SMALL_TALK = ["Hello", "Hi!", "Hi there, how are you?", "Good morning!", "Thanks for your help!", "Who are you?",
               "What can you do?", "Tell me a joke.", "Can you help me?", "Good night!", "Thank you, that was useful.",
               "How is your day going?", "What's your name?", "Nice to meet you.", "Hey!", "Thanks!", "Bye for now.",
               "Are you a robot?", "I'm bored.", "I had a long day.", "That's great, thank you.", "Ok, thanks.",
               "See you tomorrow!", "Good afternoon.", "Can we chat for a bit?", "You're funny.", "Tell me a riddle.",
               "I'm feeling a bit sad today.", "What do you like to talk about?", "Cheers!"]
_UNITS = [("days", "a week"), ("hours", "a day"), ("minutes", "an hour"), ("seconds", "a minute"), ("months", "a year"),
          ("centimetres", "a metre"), ("grams", "a kilogram"), ("metres", "a kilometre"), ("legs", "a spider"),
          ("sides", "a triangle"), ("sides", "a square"), ("wheels", "a bicycle"), ("players", "a football team")]
_WORDS = "hot|happy|fast|light|early|open|strong|quiet|young|full|rich|hard|ancient|brave|tiny".split("|")
_NOUNS = "child|mouse|tooth|leaf|city|box|goose|knife|woman|person|fish|cactus".split("|")
_PHRASES = ["good morning", "thank you", "where is the station?", "I like tea", "see you soon", "how much is it?"]
_LANGUAGES = "French|Spanish|German|Italian".split("|")
_CATEGORIES = "fruits|colours|musical instruments|sea animals|board games|kinds of trees|vegetables|birds|" \
              "sports played with a ball|breakfast foods|things to do on a rainy day".split("|")
_THINGS = "a ripe banana|grass|snow|a fire engine|coal|a lemon|the sky on a clear day|milk|a carrot".split("|")
_PRODUCE = "a tomato|a carrot|an apple|a cucumber|a potato|a strawberry|an onion|a pear|a pumpkin".split("|")
_PAIRS = [("weather", "climate"), ("a virus", "a bacterium"), ("speed", "velocity"), ("a lake", "a sea"),
          ("a simile", "a metaphor"), ("a frog", "a toad"), ("affect", "effect"), ("a town", "a city")]
_NOTES = ["a birthday card message for my dad", "a short apology for missing a call", "an invitation to a picnic",
          "a get-well-soon message for a colleague", "a welcome message for a new neighbour",
          "a congratulations note for a graduation"]
_TRIPS = "a beach holiday|a weekend of camping|a ski trip|a business trip|a long flight|a hike in the mountains".split("|")


def prompts(rng: random.Random, count: int) -> list[str]:
    """`count` distinct requests that need no retrieved document (never one of the evaluation's
    `CHAT_REQUESTS`)."""
    makers = [
        lambda: rng.choice(_SMALL_TALK),
        lambda: f"Write {rng.choice(['a haiku', 'a limerick', 'a short poem', 'two rhyming lines'])} about {rng.choice(_TOPICS)}.",
        lambda: f"{rng.choice(['Describe', 'Sum up'])} {rng.choice(_TOPICS)} in three words.",
        lambda: f"Write a one-sentence story about {rng.choice(_TOPICS)}.",
        lambda: f"{rng.choice(['Give me three tips for', 'How do I get better at'])} {rng.choice(_SKILLS)}?",
        lambda: f"Explain {rng.choice(_CONCEPTS)} {rng.choice(['in one sentence', 'to a child', 'simply'])}.",
        lambda: f"What is the capital of {rng.choice(_COUNTRIES)}?",
        lambda: f"What is {rng.randint(2, 60)} {rng.choice(['plus', 'minus'])} {rng.randint(2, 40)}?",
        lambda: "How many {} are in {}?".format(*rng.choice(_UNITS)),
        lambda: f"What is the opposite of '{rng.choice(_WORDS)}'?",
        lambda: f"Give me a synonym for '{rng.choice(_WORDS)}'.",
        lambda: f"What is the plural of '{rng.choice(_NOUNS)}'?",
        lambda: f"Translate '{rng.choice(_PHRASES)}' into {rng.choice(_LANGUAGES)}.",
        lambda: f"List three {rng.choice(_CATEGORIES)}.",
        lambda: f"What colour is {rng.choice(_THINGS)}?",
        lambda: f"Is {rng.choice(_PRODUCE)} a fruit or a vegetable?",
        lambda: "What is the difference between {} and {}?".format(*rng.choice(_PAIRS)),
        lambda: f"Write {rng.choice(_NOTES)}.",
        lambda: f"What should I pack for {rng.choice(_TRIPS)}?",
        lambda: f"{rng.choice(['Rewrite this more formally', 'Correct the spelling and grammar', 'Make this shorter', 'Make this sound friendlier'])}: {rng.choice(_SENTENCES)}",
        lambda: f"Suggest a name for a shop that sells {rng.choice(['tea', 'bicycles', 'plants', 'books', 'cheese'])}.",
    ]
    quota = count // len(makers) * 2  # no kind may crowd out the rest
    made: list[list[str]] = [[] for _ in makers]
    seen: set[str] = set(CHAT_REQUESTS)
    for _ in range(count * 50):
        open_kinds = [i for i, kind in enumerate(made) if len(kind) < quota]
        if not open_kinds or sum(map(len, made)) == count:
            break
        index = rng.choice(open_kinds)
        prompt = makers[index]()
        if prompt not in seen:
            seen.add(prompt)
            made[index].append(prompt)
    return [prompt for kind in made for prompt in kind]


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
