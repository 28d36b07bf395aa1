"""Training: turn a causal LM into a OneGen model directory (`OneGenModel.load(dir)`).

See training/README.md. The runtime package `onegen_integrations` never imports this one.
"""
