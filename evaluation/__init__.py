"""Measuring retrieval and answers, and the separate-retriever baselines OneGen is compared with."""
