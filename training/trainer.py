"""The training loop: accelerate for devices and accumulation, exact checkpoints, Recall@k."""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, set_seed
from onegen_training.checkpoint import Checkpointed, read_checkpoint, write_checkpoint, writing
from onegen_training.collator import Example, OneGenCollator
from onegen_training.config import TrainConfig
from onegen_training.data import load_documents, load_records
from onegen_training.evaluation import evaluate
from onegen_training.export import export_model
from onegen_training.losses import anchor_loss, generation_anchor_loss, retrieval_loss
from onegen_training.modeling import OneGenObjective, anchor_reference, build_model
from tqdm.auto import tqdm
from transformers import get_scheduler

CHECKPOINTS = "checkpoints"
LOG_FILE = "log.jsonl"
MODEL_DIR = "model"
LOSS_TERMS = ("ce", "retrieval", "anchor", "generation_anchor")
"""The loss's terms, as the log names them."""


@dataclass
class TrainingState:
    """Where a run stands; saved with every checkpoint. The data position follows from `step`."""

    step: int = 0
    """Optimizer steps completed."""
    run_id: str = ""

    def state_dict(self) -> dict[str, Any]:
        """For checkpoints (`state.json`)."""
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """From a checkpoint; refuses values of the wrong type rather than training from them."""
        step, run_id = state["step"], state["run_id"]
        if not isinstance(step, int) or isinstance(step, bool) or step < 0 or not isinstance(run_id, str):
            raise ValueError(f"training state needs an integer step >= 0 and a string run_id, got {state!r}")
        self.step, self.run_id = step, run_id


@dataclass
class EpochBatches:
    """Which examples form each micro-batch: a seeded shuffle per epoch, cut to whole steps.

    Every process sees `steps_per_epoch × grad_accum` micro-batches per epoch (process `r`
    takes every `world`-th), so the position after `step` optimizer steps is known exactly.
    """

    count: int
    batch_size: int
    grad_accum: int
    world: int
    seed: int
    steps_per_epoch: int = field(init=False)

    def __post_init__(self) -> None:
        self.steps_per_epoch = self.count // (self.batch_size * self.grad_accum * self.world)

    def micro_batches(self, epoch: int, rank: int) -> list[list[int]]:
        """This process's micro-batches of `epoch`, as example indices."""
        order = list(range(self.count))
        random.Random(f"{self.seed}:{epoch}").shuffle(order)
        size = self.batch_size
        batches = [order[i : i + size] for i in range(0, self.steps_per_epoch * self.grad_accum * self.world * size, size)]
        return batches[rank :: self.world]


StepCallback = Callable[[TrainingState, dict[str, Any]], None]


class Trainer:
    """Trains a OneGen model as `config` says and exports it to `output_dir/model`.

    Args:
        config: the run's settings.
        callbacks: called after every optimizer step (after any checkpoint) with the state and
            that step's log record; raising stops the run (the newest checkpoint survives).
    """

    def __init__(self, config: TrainConfig, callbacks: Sequence[StepCallback] = ()) -> None:
        self.config = config
        self.callbacks = list(callbacks)
        self.accelerator = Accelerator(
            gradient_accumulation_steps=config.grad_accum,
            mixed_precision=config.mixed_precision,
            step_scheduler_with_optimizer=False,
        )
        if config.chunk_tokens is not None and self.accelerator.num_processes > 1:
            raise ValueError("chunk_tokens makes the number of forward passes differ between processes, "
                             "which sharded models cannot follow: use it in a one-process run (a CPU)")
        set_seed(config.seed)
        self.model = build_model(config)
        tokens = self.model.onegen.tokens
        docs = load_documents(config.docs)
        records = load_records(config.train, docs, tokens)[: config.max_train_records]
        self.eval_records = load_records(config.eval, docs, tokens)[: config.max_eval_records] if config.eval else []
        options = dict(max_doc_tokens=config.max_doc_tokens, in_batch_negatives=config.in_batch_negatives,
                       hard_negatives=config.hard_negatives)
        self.collator = OneGenCollator(self.model.tokenizer, self.model.onegen, docs, standalone_queries=config.standalone_queries, **options)
        self.eval_collator = OneGenCollator(self.model.tokenizer, self.model.onegen, docs, standalone_queries=False, **options)
        encoded = [self.collator.encode(r) for r in records]
        self.examples: list[Example] = [e for e in encoded if len(e.input_ids) <= config.max_length]
        self.skipped = len(encoded) - len(self.examples)
        self.plan = EpochBatches(len(self.examples), config.batch_size, config.grad_accum, self.accelerator.num_processes, config.seed)
        if self.plan.steps_per_epoch == 0:
            raise ValueError(
                f"{len(self.examples)} usable training records cannot fill one step of "
                f"batch_size × grad_accum × processes = {config.batch_size * config.grad_accum * self.accelerator.num_processes}: "
                "add data, lower them, or raise max_length"
            )
        self.total_steps = config.max_steps or math.ceil(config.epochs * self.plan.steps_per_epoch)
        objective = OneGenObjective(self.model.lm, config.chunk_tokens)
        anchored = config.anchor or config.anchor_generation
        self.reference = anchor_reference(self.model, config).to(self.accelerator.device) if anchored else None
        self.parameters = [p for p in objective.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(self.parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.scheduler = get_scheduler(config.schedule, optimizer, config.warmup_steps, self.total_steps)
        self.objective, self.optimizer = self.accelerator.prepare(objective, optimizer)
        self.state = TrainingState(run_id=config.run_id or f"{Path(config.output_dir).name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}")
        # DeepSpeed's engine (and FSDP) own sharded weights and optimizer state and save them with torch.save:
        # they keep accelerate's save_state/load_state, which unpickle (resume only from a directory you trust)
        self._sharded = self.accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP)
        if self._sharded:
            self.accelerator.register_for_checkpointing(self.scheduler, self.state)
            self.accelerator.register_save_state_pre_hook(self._keep_trainable_weights)
        self.output_dir = Path(config.output_dir)

    def train(self) -> Path:
        """Run (or resume) to `total_steps`, then export; return the model directory."""
        config, accelerator = self.config, self.accelerator
        resumed = self._resume() if config.resume else None
        self._log({"event": "start", "run_id": self.state.run_id, "resumed_from": resumed, "steps": self.total_steps,
                   "records": len(self.examples), "skipped_too_long": self.skipped, "processes": accelerator.num_processes})
        self.objective.train()
        bar = tqdm(total=self.total_steps, initial=self.state.step, disable=not accelerator.is_main_process, desc="training")
        for group in self._step_groups():
            started, tokens, parts = time.perf_counter(), 0, []
            for batch in group:
                tokens += int(batch["attention_mask"].sum() + batch["row_mask"].sum())
                with accelerator.accumulate(self.objective):
                    loss, terms = self._loss(batch)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and config.max_grad_norm:
                        accelerator.clip_grad_norm_(self.parameters, config.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad()
                parts.append(torch.stack([loss.detach(), *(term.detach() for term in terms.values())]))
            self.scheduler.step()
            self.state.step += 1
            record = self._step_record(parts, tokens, time.perf_counter() - started)
            if self.eval_records and (self.state.step % config.eval_every == 0 or self.state.step == self.total_steps):
                record.update(self.evaluate())
            if self.state.step % config.log_every == 0 or "recall@1" in record:
                self._log(record)
            if self.state.step % config.save_every == 0 or self.state.step == self.total_steps:
                self.save_checkpoint()
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.3f}")
            for callback in self.callbacks:
                callback(self.state, record)
        bar.close()
        return self.export()

    def evaluate(self) -> dict[str, float]:
        """Recall@1/@5 of the held-out `[RQ]` vectors (every process must call it)."""
        objective = self.accelerator.unwrap_model(self.objective)
        scores = evaluate(objective, self.eval_collator, self.eval_records, self.accelerator, self.config.eval_batch_size)
        return {f"eval_{k}": v for k, v in scores.items()}

    def save_checkpoint(self) -> Path:
        """Save trainable weights, optimizer, scheduler, RNG and step to `checkpoints/step-N`
        (written aside and renamed into place: a kill mid-save keeps the previous ones); prune
        all but the newest `keep_checkpoints`."""
        path = self.output_dir / CHECKPOINTS / f"step-{self.state.step:08d}"
        with writing(path, self.accelerator) as partial:
            if self._sharded:
                self.accelerator.save_state(str(partial))
            else:
                write_checkpoint(partial, self.accelerator, self._checkpointed())
        if self.accelerator.is_main_process:
            for old in self._checkpoints()[: -self.config.keep_checkpoints]:
                shutil.rmtree(old)
        return path

    def export(self) -> Path:
        """Write the final model to `output_dir/model` (main process; weights gathered first)."""
        directory = self.output_dir / MODEL_DIR
        self.accelerator.wait_for_everyone()
        with self._gathered():
            if self.accelerator.is_main_process:
                export_model(self.model, self.config.base_model, directory, self.state.run_id)
        self.accelerator.wait_for_everyone()
        self._log({"event": "exported", "path": str(directory)})
        return directory

    def _loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weighted total, and its terms by their log names (`LOSS_TERMS`), unweighted."""
        config = self.config
        out = self.objective(**batch)
        ret = retrieval_loss(out["queries"], out["documents"], batch["positive_mask"], batch["negative_mask"],
                             config.retrieval_loss, config.temperature)
        anchor = generation = out["ce"].new_zeros(())
        if self.reference is not None:
            with torch.no_grad():
                held = self.reference.anchors(**batch)
            anchor = anchor_loss(torch.cat([out["queries"], out["documents"]]), torch.cat([held["queries"], held["documents"]]))
            generation = generation_anchor_loss(out["held_logits"], held["held_logits"])
        total = (config.lambda_gen * out["ce"] + config.lambda_ret * ret + config.anchor * anchor
                 + config.anchor_generation * generation)
        return total, dict(zip(LOSS_TERMS, (out["ce"], ret, anchor, generation), strict=True))

    def _step_groups(self) -> Iterator[list[dict[str, torch.Tensor]]]:
        """Micro-batches grouped per optimizer step, from the current step to the end."""
        device, rank, accum = self.accelerator.device, self.accelerator.process_index, self.config.grad_accum
        while self.state.step < self.total_steps:
            epoch, offset = divmod(self.state.step, self.plan.steps_per_epoch)
            batches = self.plan.micro_batches(epoch, rank)
            for start in range(offset * accum, len(batches), accum):
                group = [self.collator([self.examples[i] for i in b]) for b in batches[start : start + accum]]
                yield [{k: v.to(device) for k, v in batch.items()} for batch in group]
                if self.state.step >= self.total_steps:
                    return

    def _step_record(self, parts: list[torch.Tensor], tokens: int, seconds: float) -> dict[str, Any]:
        loss, *terms = self.accelerator.reduce(torch.stack(parts).mean(dim=0), reduction="mean").tolist()
        tokens = int(self.accelerator.reduce(torch.tensor(tokens, device=self.accelerator.device), reduction="sum"))
        names = LOSS_TERMS if self.reference is not None else LOSS_TERMS[:2]  # the anchors' terms when they run
        record = {"step": self.state.step, "epoch": self.state.step / self.plan.steps_per_epoch, "loss": loss,
                  **dict(zip(names, terms)),
                  "lr": self.scheduler.get_last_lr()[0], "seconds": seconds, "tokens_per_s": tokens / seconds}
        return record

    def _resume(self) -> str | None:
        checkpoints = self._checkpoints()
        if not checkpoints:
            return None
        if self._sharded:
            self.accelerator.load_state(str(checkpoints[-1]), strict=False)
        else:
            read_checkpoint(checkpoints[-1], self.accelerator, self._checkpointed())
        return str(checkpoints[-1])

    def _checkpointed(self) -> Checkpointed:
        return Checkpointed(self.accelerator.unwrap_model(self.objective), self.optimizer, self.scheduler, self.state,
                            self.accelerator.scaler)

    def _checkpoints(self) -> list[Path]:
        return sorted((self.output_dir / CHECKPOINTS).glob("step-*"))

    def _keep_trainable_weights(self, models: list[torch.nn.Module], weights: list[dict[str, Any]], _: str) -> None:
        """Checkpoint only what trains (accelerate's path): frozen base weights are rebuilt from the base model."""
        for model, state in zip(models, weights):
            trainable = {name for name, p in model.named_parameters() if p.requires_grad}
            for name in [n for n in state if n not in trainable]:
                del state[name]

    def _gathered(self) -> contextlib.AbstractContextManager[Any]:
        """Full parameters on every process under DeepSpeed ZeRO-3; nothing to do otherwise."""
        plugin = self.accelerator.state.deepspeed_plugin
        if self.accelerator.distributed_type != DistributedType.DEEPSPEED or plugin.zero_stage != 3:
            return contextlib.nullcontext()
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(self.model.lm.parameters()), modifier_rank=None)

    def _log(self, record: dict[str, Any]) -> None:
        if self.accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            with open(self.output_dir / LOG_FILE, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
