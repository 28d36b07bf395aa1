"""Second-round hard negatives: re-mine a training file's retrievals with a trained model.

`python -m onegen_training mine --model runs/default/model --docs data/default/docs.jsonl
--records data/default/train.jsonl --out data/default/train-mined.jsonl --negatives 3`

Every `[RQ]` runs teacher-forced, exactly as training sees it, and the whole corpus is
embedded as `"{doc}[RD]"`; each retrieval's negatives become the documents the model ranks
highest that are not its positives (`negatives.by_model`). These are the model's own
confusions, such as the neighbouring paragraph of the right article, which word-overlap
mining finds only by luck. Everything else in the records is kept.
"""

from __future__ import annotations

from pathlib import Path

from accelerate import Accelerator
from onegen_training.collator import OneGenCollator
from onegen_training.data import Record, load_documents, load_records, write_jsonl
from onegen_training.evaluation import retrieval_vectors
from onegen_training.modeling import OneGenObjective
from onegen_training.negatives import by_model

from onegen_integrations.model import OneGenModel


def remine(model: OneGenModel, docs: dict[str, str], records: list[Record], negatives: int, *,
           max_doc_tokens: int = 256, batch_size: int = 16, chunk_tokens: int | None = None) -> list[Record]:
    """Copies of `records` whose retrievals carry `negatives` model-mined negatives each.

    A retrieval with several positives is ranked by its `[RQ]` vector like any other.
    `chunk_tokens` skips the padding's compute as in training (worth it on a CPU).
    """
    collator = OneGenCollator(model.tokenizer, model.config, docs, max_doc_tokens=max_doc_tokens, standalone_queries=False)
    queries, positives, documents, doc_ids = retrieval_vectors(
        OneGenObjective(model.hf_model, chunk_tokens), collator, records, Accelerator(), batch_size, corpus=list(docs), progress="mining")
    mined = iter(by_model(queries, positives, documents, negatives))
    out = []
    for record in records:
        record = record.model_copy(deep=True)
        for message in record.messages:
            for retrieval in message.retrievals:
                retrieval.negatives = [doc_ids[column] for column in next(mined)]
        out.append(record)
    return out


def remine_file(model: str | Path, docs: Path, records: Path, out: Path, negatives: int, **options: int | None) -> int:
    """`remine` from files to a file; return how many records were written."""
    loaded = OneGenModel.load(model, backend="torch")  # mining runs the training objective
    corpus = load_documents(docs)
    return write_jsonl(out, remine(loaded, corpus, load_records(records, corpus, loaded.config.tokens), negatives, **options))
