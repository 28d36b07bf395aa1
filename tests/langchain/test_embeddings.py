"""OneGenEmbeddings: the model's `[RD]` and `[RQ]` vectors as plain Python lists."""

from __future__ import annotations

import numpy as np

from onegen_integrations.langchain import OneGenEmbeddings
from onegen_integrations.model import OneGenModel

TEXTS = ["Selbrook lies on the River Tamsey.", "Corvant is a port city.", "The RV Petrel is a research vessel."]


def test_documents_are_embedded_with_rd_as_python_floats(tiny_model: OneGenModel) -> None:
    vectors = OneGenEmbeddings(onegen_model=tiny_model, batch_size=2).embed_documents(TEXTS)
    assert all(type(x) is float for vector in vectors for x in vector)
    np.testing.assert_allclose(vectors, tiny_model.embed_documents(TEXTS), atol=1e-5)


def test_queries_are_embedded_with_rq(tiny_model: OneGenModel) -> None:
    vector = OneGenEmbeddings(onegen_model=tiny_model).embed_query("Which river?")
    assert len(vector) == tiny_model.dimension
    np.testing.assert_allclose(vector, tiny_model.embed_query("Which river?"), atol=1e-5)


def test_no_documents_give_no_vectors(tiny_model: OneGenModel) -> None:
    assert OneGenEmbeddings(onegen_model=tiny_model).embed_documents([]) == []


def test_collection_metadata_records_the_models_fingerprint(tiny_model: OneGenModel) -> None:
    metadata = OneGenEmbeddings(onegen_model=tiny_model).collection_metadata()
    assert metadata["onegen_fingerprint"] == tiny_model.fingerprint
