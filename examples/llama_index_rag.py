"""Index text files with OneGen in LlamaIndex, then ask a question and stream the answer.

    python examples/llama_index_rag.py                      # the bundled demo corpus
    python examples/llama_index_rag.py --docs notes/ --question "What did we decide?"

One `OneGenModel` is the LLM and the embedding model (`Settings.llm`, `Settings.embed_model`);
documents go into an in-memory Chroma collection; the query engine retrieves where the model
emits `[RQ]`, with that token's hidden state as the query vector, in one generation pass.
"""

from __future__ import annotations

import argparse
import warnings

from llama_index.core import Document, Settings, SimpleDirectoryReader, StorageContext, VectorStoreIndex

from onegen_integrations.ingest import demo_documents
from onegen_integrations.llama_index import OneGenEmbedding, OneGenLLM, OneGenQueryEngine
from onegen_integrations.model import OneGenModel, UntrainedRetrievalWarning


def demo_corpus() -> list[Document]:
    """The bundled demo corpus (fictional people and places), one Document per entry."""
    return [Document(text=d.text, id_=d.id, metadata={"title": d.metadata["title"]}) for d in demo_documents()]


def load_example_model(name: str, model: OneGenModel | None = None) -> OneGenModel:
    """`model`, else the model `name` names ('default' or a directory); an untrained one is fine here."""
    if model is not None:
        return model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedRetrievalWarning)
        return OneGenModel.load(name)


def conversation_arguments(description: str, argv: list[str] | None) -> argparse.Namespace:
    """The options of the conversation examples: `--script`, `--model`, `--max-new-tokens`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--script", help="a file with one user message per line")
    parser.add_argument("--model", default="default", help="'default' or a OneGen model directory")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    return parser.parse_args(argv)


def demo_index(model: OneGenModel, collection: str) -> VectorStoreIndex:
    """The demo corpus in an in-memory Chroma collection, embedded by `model`."""
    embed_model = OneGenEmbedding(model)
    vector_store = embed_model.chroma_vector_store(collection=collection)
    storage_context = StorageContext.from_defaults(vector_store=vector_store)
    return VectorStoreIndex.from_documents(demo_corpus(), storage_context=storage_context, embed_model=embed_model)


def main(argv: list[str] | None = None, model: OneGenModel | None = None) -> None:
    """Run the example; `model` skips loading one (tests pass the one they hold)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", help="a folder of text files (default: the demo corpus)")
    parser.add_argument("--question", default="Who founded the Varenne Institute?")
    parser.add_argument("--model", default="default", help="'default' or a OneGen model directory")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args(argv)

    model = load_example_model(args.model, model)
    Settings.llm = OneGenLLM(model, max_new_tokens=args.max_new_tokens)
    Settings.embed_model = embed_model = OneGenEmbedding(model)

    documents = SimpleDirectoryReader(args.docs).load_data() if args.docs else demo_corpus()
    vector_store = embed_model.chroma_vector_store(collection="llama-index-rag")
    index = VectorStoreIndex.from_documents(
        documents, storage_context=StorageContext.from_defaults(vector_store=vector_store)
    )
    print(f"indexed {len(documents)} documents with {model.name}")

    engine = OneGenQueryEngine.from_index(index, streaming=True, max_new_tokens=args.max_new_tokens)
    response = engine.query(args.question)
    print(f"Q: {args.question}\nA: ", end="", flush=True)
    response.print_response_stream()
    print()
    for node in response.source_nodes:
        title = node.node.metadata.get("title") or node.node.metadata.get("file_name") or node.node.node_id
        print(f"  source: {title}")


if __name__ == "__main__":
    main()
