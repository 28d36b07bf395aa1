"""OneGen for the RAG frameworks people use: one LLM that generates and retrieves in one pass."""
