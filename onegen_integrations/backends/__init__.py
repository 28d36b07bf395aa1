"""Inference backends: what runs the forward passes under `OneGenModel`.

`torch` runs the transformers model (exact, trainable, any device); `llama.cpp` runs a GGUF
export of it through llama-cpp-python (fewer bytes per weight: several times faster on a CPU).
The engine, the store and the adapters see only `Backend`.
"""
