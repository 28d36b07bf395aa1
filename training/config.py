"""Training configuration, read from YAML (`python -m onegen_training --config file.yaml`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class LoraSettings(BaseModel):
    """LoRA on linear layers (what `onegen_integrations.adapter` merges at load time)."""

    model_config = ConfigDict(extra="forbid")

    r: int = 16
    """Rank of each adapter."""
    alpha: int = 32
    """Scale numerator: the update is `alpha / r · B @ A`."""
    dropout: float = 0.05
    """Dropout on the adapter's input."""
    target_modules: list[str] | str = "all-linear"
    """Module names to adapt; `all-linear` is every linear layer but the output head."""
    rslora: bool = False
    """Rank-stabilised scaling `alpha / sqrt(r)`."""
    layers: int | None = Field(default=None, ge=1)
    """Adapt only the last N decoder layers (none: all). The layers below then run without
    gradients and the OneGen input rows get no gradient (their output-head rows still train),
    so the backward pass stops at the lowest adapted layer: the CPU-sized recipe."""


class TrainConfig(BaseModel):
    """Everything a training run needs. Relative paths are relative to the working directory."""

    model_config = ConfigDict(extra="forbid")

    # model
    base_model: str = "default"
    """`default` (the embedded SmolLM2-135M-Instruct) or a local transformers model directory."""
    method: Literal["lora", "full"] = "lora"
    """LoRA (adapter + OneGen token rows train) or full fine-tuning."""
    lora: LoraSettings = Field(default_factory=LoraSettings)
    """LoRA settings (used when `method: lora`)."""
    init_from: Path | None = None
    """A trained OneGen LoRA model directory (what `export` writes, such as the shipped default)
    whose adapter and token rows training starts from, to teach it more instead of training
    again; its base must be `base_model` and its adapter the shape `lora` describes."""
    anchor_model: Path | None = None
    """The model the anchors hold (a OneGen LoRA model directory whose adapter is the shape `lora`
    describes); none: `init_from`. Set it when training continues from an intermediate model but the
    retrieval and answers to keep are another's, such as the shipped default's."""
    onegen: dict[str, Any] = Field(default_factory=dict)
    """Overrides of the OneGen contract (`OneGenConfig` fields: tokens, templates, system_prompt)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Dtype the weights are loaded in (use `mixed_precision` for autocast)."""
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    """Autocast mode, passed to accelerate."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, ~30% more time)."""
    chunk_tokens: int | None = Field(default=None, ge=1)
    """Run a batch's sequences and document rows longest first, in chunks of at most this many
    padded tokens. The losses are the same; the padding's compute and memory are skipped, which
    pays on a CPU (none: one forward per batch, best on a GPU)."""

    # data
    docs: Path
    """`docs.jsonl`."""
    train: Path
    """`train.jsonl`."""
    eval: Path | None = None
    """Held-out `eval.jsonl` for Recall@k during training (none: no evaluation)."""
    max_length: int = 1024
    """Longest training sequence; longer records are skipped (with a count in the log)."""
    max_doc_tokens: int = 256
    """Longest document row; longer documents are cut before their `[RD]`."""
    max_train_records: int | None = None
    """Use only the first N training records."""
    max_eval_records: int | None = 200
    """Evaluate on the first N held-out records."""
    standalone_queries: bool = True
    """Also train `"{question}[RQ]"` rows so `OneGenModel.embed_query` retrieves."""
    in_batch_negatives: bool = True
    """Use the other documents of a micro-batch as negatives too."""
    hard_negatives: int | None = Field(default=None, ge=0)
    """Use at most the first (hardest) N hard negatives of each retrieval (none: all). Every
    document row costs a forward and backward pass, so this is the main knob on step time."""

    # objective
    lambda_gen: float = 1.0
    """Weight λg of the generation (CE) loss."""
    lambda_ret: float = 1.0
    """Weight λr of the retrieval loss."""
    retrieval_loss: Literal["infonce", "bpr"] = "infonce"
    """Contrastive loss on unit vectors."""
    temperature: float = 0.05
    """InfoNCE temperature."""
    anchor: float = Field(default=0.0, ge=0.0)
    """Weight of the anchor loss: the mean cosine distance of every `[RQ]` and `[RD]` vector from
    the one `anchor_model` (frozen) gives the same input, so that teaching a trained model more keeps
    its retrieval (0: no anchor). Costs one more forward pass a step, without gradients."""
    anchor_generation: float = Field(default=0.0, ge=0.0)
    """Weight of the generation anchor: KL divergence of the next-token distributions from the
    frozen `anchor_model`'s, over the answer tokens of records that offer no tools (the replayed
    ones), so that what the model learns elsewhere leaves those answers as they were (0: none)."""

    # optimisation
    batch_size: int = 4
    """Records per micro-batch (per process)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    """Clip the gradient norm (none: no clipping)."""
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    """Learning-rate decay after warmup."""
    warmup_steps: int = 0
    """Steps of linear warmup."""
    max_steps: int | None = None
    """Optimizer steps to run; default: `epochs` worth."""
    epochs: float = 1.0
    """Passes over the training data when `max_steps` is not set."""
    seed: int = 0

    # run
    output_dir: Path = Path("runs/onegen")
    """Where checkpoints, the log and the final model (`output_dir/model`) go."""
    run_id: str | None = None
    """Identifier written to `onegen.json` (default: output directory name + time)."""
    save_every: int = 100
    """Checkpoint every N steps (and at the end)."""
    keep_checkpoints: int = 2
    """How many checkpoints to keep (oldest deleted first)."""
    eval_every: int = 100
    """Evaluate Recall@1/@5 every N steps (and at the end)."""
    log_every: int = 1
    """Write a log line every N steps."""
    eval_batch_size: int = 16
    resume: bool = True
    """Continue from the newest checkpoint in `output_dir/checkpoints` when there is one."""

    @model_validator(mode="after")
    def _anchor_needs_a_start(self) -> TrainConfig:
        if (self.anchor > 0 or self.anchor_generation > 0) and self.init_from is None and self.anchor_model is None:
            raise ValueError("the anchors hold a trained model: set init_from (or anchor_model), or anchor and "
                             "anchor_generation to 0")
        if self.anchor_model is not None and self.method != "lora":
            raise ValueError("anchor_model holds a LoRA adapter: use method: lora, or leave anchor_model unset")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
        """Read a YAML config, applying `overrides` (dotted keys allowed: `lora.r`)."""
        import yaml

        data = yaml.safe_load(Path(path).read_text()) or {}
        for key, value in (overrides or {}).items():
            *parents, leaf = key.split(".")
            node = data
            for parent in parents:
                node = node.setdefault(parent, {})
            node[leaf] = value
        return cls.model_validate(data)
