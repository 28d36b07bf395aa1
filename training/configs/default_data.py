"""Training data of the shipped default model (`training/configs/smollm2-135m-lora-default.yaml`).

`python training/configs/default_data.py SQUAD_DIR` writes `data/default/{docs,train,eval}.jsonl`,
where SQUAD_DIR holds the two SQuAD v1.1 files named in `FILES`, from:
1. single-hop SQuAD (`python -m onegen_training convert squad`, `NEGATIVES` overlap-mined hard negatives),
2. SQuAD-built three-turn dialogues with pronoun follow-ups (`python -m onegen_training convert dialogue`,
   `DIALOGUE_ROUNDS` reshuffled passes over each article, so each follow-up recurs after other turns),
3. synthetic two- and three-turn dialogues over fictional entities generated from this file's templates,
   in the style of the demo corpus: an organisation, its founder (with a spouse and a best-known
   work) and the founder's home town, asked about with pronoun and "that town" follow-ups, each
   retrieval with the same kind of document of another entity as its hard negative. Names are
   built from syllables; any name that also occurs in `onegen_integrations/demo/corpus.jsonl` is
   dropped so no demo entity is ever trained on (that file is read for that check only).

Passages are cut to their first `MAX_WORDS` words to bound sequence length; records whose answer is
no longer in the cut passage are dropped (generation must never learn to answer without evidence).
Sources (SQuAD v1.1, CC BY-SA 4.0, Rajpurkar et al. 2016; the derived data stays CC BY-SA 4.0):
the 11 articles of train-v1.1.first11articles.json.gz (the first 11 of SQuAD v1.1 train; whole articles,
two of them held out for Recall@1 during training), and the dev articles of dev-v1.1.articles-even.json.gz
(the even-numbered half of the SQuAD v1.1 dev articles; https://rajpurkar.github.io/SQuAD-explorer/) except the
`EVAL_ARTICLES` that `onegen eval` draws from (`evaluation_articles`, the same rule on the same
conversion), which are dropped before anything is written: no evaluation article is trained on.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

from onegen_evaluation.datasets import article_of, evaluation_articles

from onegen_integrations.ingest import demo_documents

FILES = {"train": "train-v1.1.first11articles.json.gz", "dev": "dev-v1.1.articles-even.json.gz"}
"""The SQuAD v1.1 files read from the directory given on the command line."""
OUT = Path("data/default")
MAX_WORDS = 250
SEED = 0
DIALOGUE_ROUNDS = 5
NEGATIVES = 3
"""Overlap-mined hard negatives per retrieval: other paragraphs of the same article."""
COUNTS = {"squad": 7000, "dialogue": 4000, "synthetic": 1000}
"""Most training records of each kind (the SQuAD file yields fewer of the first two: all are used)."""


def _cut(text: str) -> str:
    words = text.split()
    return text if len(words) <= MAX_WORDS else " ".join(words[:MAX_WORDS])


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _answers_present(record: dict, docs: dict[str, str]) -> bool:
    for message in record["messages"][1::2]:
        answer = message["content"].replace("[RQ]", "").strip()
        if not all(answer in docs[d] for r in message["retrievals"] for d in r["positives"]):
            return False
    return True


def _convert(
    kind: str, squad: Path, source: str, eval_fraction: float, *extra: str
) -> tuple[dict[str, str], list[dict], list[dict]]:
    out = OUT / f"{source}-{kind}"
    subprocess.run([sys.executable, "-m", "onegen_training", "convert", kind, str(squad / FILES[source]), str(out),
                    "--eval-fraction", str(eval_fraction), "--negatives", str(NEGATIVES), "--seed", str(SEED), *extra], check=True)
    docs = {d["id"]: _cut(d["text"]) for d in _read(out / "docs.jsonl")}
    train = [r for r in _read(out / "train.jsonl") if _answers_present(r, docs)]
    held_out = [r for r in _read(out / "eval.jsonl") if _answers_present(r, docs)]
    return docs, train, held_out


def _squad_data(squad: Path) -> tuple[dict[str, str], list[dict], list[dict], list[dict]]:
    """Docs, single-hop and dialogue training records, and held-out single-hop records, from
    both SQuAD files; the evaluation's dev articles are dropped."""
    rounds = ("--turns", "3", "--rounds", str(DIALOGUE_ROUNDS))
    docs, single, held_out = _convert("squad", squad, "train", 0.1)
    _, dialogue, _ = _convert("dialogue", squad, "train", 0.1, *rounds)
    held_out_groups = {r["group"] for r in held_out}
    dialogue = [r for r in dialogue if r["group"] not in held_out_groups]
    dev_docs, dev_single, _ = _convert("squad", squad, "dev", 0)
    _, dev_dialogue, _ = _convert("dialogue", squad, "dev", 0, *rounds)
    evaluated = set(evaluation_articles(OUT / "dev-dialogue"))
    docs |= {d: t for d, t in dev_docs.items() if article_of(d) not in evaluated}
    single += [r for r in dev_single if r["group"] not in evaluated]
    dialogue += [r for r in dev_dialogue if r["group"] not in evaluated]
    return docs, single, dialogue, held_out


# ---- synthetic fictional entities -------------------------------------------------------------
_ONSETS = "b br c d dr f g gr h k l m n p r s st t tr v w z".split()
_VOWELS = "a e i o u ai ea ou".split()
_CODAS = "l n r s th nd rn st ck m".split()
_FIRST = {"she": "Alba Brida Cosima Delphine Edda Fenna Greta Hedda Ilsa Jorun Katya Lise Maren Nadja "
                 "Orla Petra Rosalind Sanne Tilde Ulla Vera Wenna Yvette Zora".split(),
          "he": "Anselm Bruno Casimir Dario Elias Felix Gustav Henrik Ivo Jonas Kasper Lorenz Milan "
                "Nils Oskar Pavel Quentin Ruben Stefan Teodor Urs Viktor Wim Yannick".split()}
_TOWN_ENDS = "brook ford mere wick holm by stead haven moor field gate dale".split()
_ORG_KINDS = [("Institute", "research institute for {field}"), ("Foundation", "charitable foundation for {field}"),
              ("Museum", "museum of {field}"), ("Society", "learned society for {field}"),
              ("Laboratory", "laboratory for {field}"), ("Academy", "academy of {field}")]
_FIELDS = "marine chemistry|glass making|clock making|botany|astronomy|textile design|river engineering|" \
          "folk music|printing|mineralogy|bee keeping|navigation".split("|")
_PROFESSIONS = "chemist|engineer|botanist|astronomer|printer|architect|physician|geologist|merchant|composer".split("|")
_REGIONS = "northern|southern|eastern|western|coastal|upland|lake".split("|")
_INDUSTRIES = "wool weaving|paper milling|shipbuilding|salt works|brewing|slate quarrying|fishing".split("|")


def _word(rng: random.Random, syllables: int) -> str:
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)]
    return ("".join(parts) + rng.choice(_CODAS)).capitalize()


def _synthetic(rng: random.Random, count: int, banned: set[str]) -> tuple[dict[str, str], list[dict]]:
    """`count` three-turn dialogues, each over its own organisation, founder and town."""
    docs: dict[str, str] = {}
    records: list[dict] = []
    used: set[str] = set(banned)
    previous: dict[str, str] = {}

    def fresh(make) -> str:
        while True:
            name = make()
            if name.lower() not in used and not any(part.lower() in banned for part in name.split()):
                used.add(name.lower())
                return name

    while len(records) < count:
        pronoun = rng.choice(["she", "he"])
        person = f"{rng.choice(_FIRST[pronoun])} {fresh(lambda: _word(rng, 2))}"
        org_kind, org_text = rng.choice(_ORG_KINDS)
        org = f"{fresh(lambda: _word(rng, 2))} {org_kind}"
        home = fresh(lambda: _word(rng, 1) + rng.choice(_TOWN_ENDS))
        seat = fresh(lambda: _word(rng, 1) + rng.choice(_TOWN_ENDS))
        river = fresh(lambda: _word(rng, rng.choice([1, 2])))
        field, profession = rng.choice(_FIELDS), rng.choice(_PROFESSIONS)
        founded, born = rng.randint(1820, 1960), rng.randint(1780, 1920)
        region, industry = rng.choice(_REGIONS), rng.choice(_INDUSTRIES)
        staff, population = rng.choice([40, 80, 120, 200, 350]), rng.choice([4000, 9000, 15000, 30000])
        poss = "her" if pronoun == "she" else "his"
        org_id, person_id, town_id = (re.sub(r"\W+", "-", x.lower()) + "-syn" for x in (org, person, home))
        docs[org_id] = (f"The {org} is a {org_text.format(field=field)} in the town of {seat}. It was founded in "
                        f"{founded} by the {profession} {person}. It employs about {staff} staff.")
        docs[person_id] = (f"{person} was a {profession}, born in {born} in the town of {home}. {pronoun.capitalize()} "
                           f"studied {field} and later worked in {seat}. {poss.capitalize()} best known work was a "
                           f"study of {industry}.")
        docs[town_id] = (f"{home} is a town in the {region} region. The River {river} runs through {home}, which has "
                         f"a population of about {population}. Its main industry is {industry}.")
        spouse = f"{rng.choice(_FIRST['he' if pronoun == 'she' else 'she'])} {fresh(lambda: _word(rng, 2))}"
        docs[person_id] += f" In {born + rng.randint(22, 35)} {pronoun} married {spouse}."
        asks_org = rng.choice([(f"Who founded the {org}?", person), (f"Who was the founder of the {org}?", person),
                               (f"Which {profession} founded the {org}?", person),
                               (f"Who started the {org} in {founded}?", person)])
        asks_person = rng.choice([(f"Where was {pronoun} born?", home), (f"In which town was {pronoun} born?", home),
                                  (f"What town was {pronoun} born in?", home), (f"What was {poss} birthplace?", home),
                                  (f"Who did {pronoun} marry?", spouse), (f"Whom did {pronoun} marry?", spouse),
                                  (f"What was {poss} best known work about?", f"a study of {industry}")])
        asks_town = rng.choice([("What river runs through that town?", f"the River {river}"),
                                ("Which river flows through it?", f"the River {river}"),
                                ("What is the main industry of that town?", industry),
                                ("In which region is that town?", f"the {region} region"),
                                ("How many people live there?", f"about {population}")])
        turns = [(asks_org, org_id), (asks_person, person_id)]
        if asks_person[1] == home:
            turns.append((asks_town, town_id))
        if rng.random() < 0.3:  # start from the person, by name: the follow-up points back to them
            turns = [((f"Where was {person} born?", home), person_id), (asks_town, town_id)]
        kinds = {org_id: "org", person_id: "person", town_id: "town"}
        messages = []
        for (question, answer), doc_id in turns:
            retrieval = {"positives": [doc_id]}
            if previous:  # the same kind of document from the record before: a hard negative by shape
                retrieval["negatives"] = [previous[kinds[doc_id]]]
            messages.append({"role": "user", "content": question})
            messages.append({"role": "assistant", "content": f"[RQ] {answer}", "retrievals": [retrieval]})
        previous = {"org": org_id, "person": person_id, "town": town_id}
        records.append({"id": f"synthetic-{len(records)}", "group": f"synthetic-{len(records)}", "messages": messages})
    return docs, records


def main(argv: list[str] | None = None) -> None:
    """Write `data/default/{docs,train,eval}.jsonl` from the SQuAD files in the directory given."""
    args = sys.argv[1:] if argv is None else argv
    squad = Path(args[0]) if args else None
    missing = [name for name in FILES.values() if squad is None or not (squad / name).is_file()]
    if missing:
        sys.exit(f"default_data.py SQUAD_DIR: SQUAD_DIR must hold {' and '.join(missing)} (SQuAD v1.1, CC BY-SA 4.0, "
                 "https://rajpurkar.github.io/SQuAD-explorer/; training/README.md says how they are cut)")
    rng = random.Random(SEED)
    OUT.mkdir(parents=True, exist_ok=True)
    squad_docs, squad_train, dialogue_train, squad_eval = _squad_data(squad)
    banned = {w.lower() for doc in demo_documents()
              for w in re.findall(r"[A-Z][a-z]+", doc.metadata["title"] + " " + doc.text)}
    synthetic_docs, synthetic = _synthetic(rng, COUNTS["synthetic"], banned)
    rng.shuffle(squad_train)
    rng.shuffle(dialogue_train)
    train = squad_train[: COUNTS["squad"]] + dialogue_train[: COUNTS["dialogue"]] + synthetic
    rng.shuffle(train)
    docs = {**squad_docs, **synthetic_docs}
    (OUT / "docs.jsonl").write_text("".join(json.dumps({"id": k, "text": v}, ensure_ascii=False) + "\n" for k, v in docs.items()))
    (OUT / "train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in train))
    rng.shuffle(squad_eval)
    (OUT / "eval.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in squad_eval))
    print(json.dumps({"docs": len(docs), "train": len(train), "eval": len(squad_eval),
                      "squad": min(len(squad_train), COUNTS["squad"]),
                      "dialogue": min(len(dialogue_train), COUNTS["dialogue"]), "synthetic": len(synthetic)}))


if __name__ == "__main__":
    main()
