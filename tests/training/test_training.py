"""Training end to end on tiny random models: learning, exact resume, LoRA rows, export."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import save_tiny_base, train_config
from onegen_training.cli import main
from onegen_training.data import load_documents, load_records
from onegen_training.losses import generation_anchor_loss
from onegen_training.modeling import OneGenObjective, anchor_reference, build_model
from onegen_training.trainer import Trainer
from transformers import LlamaForCausalLM

from onegen_integrations.config import OneGenConfig
from onegen_integrations.model import OneGenModel
from tests.conftest import ListRetriever


class Interrupted(Exception):
    """Stands in for a kill after a checkpoint."""


def stop_after(step: int):
    def callback(state, record) -> None:
        if state.step == step:
            raise Interrupted

    return callback


def load(directory: Path) -> OneGenModel:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a trained model loads without the untrained warning
        return OneGenModel.load(directory, device="cpu")


def test_retrieval_is_learned_from_chance_and_ce_falls(learned: dict) -> None:
    assert learned["before"]["eval_recall@1"] <= 0.25
    last = learned["log"][-1]
    assert last["eval_recall@1"] >= 0.9
    assert last["ce"] < learned["log"][0]["ce"] - 1.0


def test_full_fine_tune_directory_loads_and_retrieves(learned: dict, facts: Path) -> None:
    model = load(learned["dir"])
    assert model.trained and model.config.training_run == "test-run"
    docs = load_documents(facts / "docs.jsonl")
    records = load_records(facts / "train.jsonl", docs)
    vectors = model.embed_documents(list(docs.values()))
    ids = list(docs)
    queries = model.embed_queries([r.messages[0].content for r in records])
    found = [ids[int(np.argmax(vectors @ q))] == r.messages[1].retrievals[0].positives[0] for q, r in zip(queries, records)]
    assert np.mean(found) >= 0.75  # standalone "{question}[RQ]" rows were trained too


def test_full_fine_tune_hidden_states_survive_the_round_trip(learned: dict) -> None:
    model = load(learned["dir"])
    objective = learned["trainer"].accelerator.unwrap_model(learned["trainer"].objective).eval()
    ids = torch.tensor([model.tokenize("The code of Lima is 123.[RD]")])
    with torch.no_grad():
        expected = objective.states(ids, torch.ones_like(ids))
        actual = model.hf_model.get_decoder()(input_ids=ids).last_hidden_state
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_session_retrieves_with_the_trained_model(learned: dict, facts: Path) -> None:
    model = load(learned["dir"])
    docs = load_documents(facts / "docs.jsonl")
    records = load_records(facts / "train.jsonl", docs)
    texts = list(docs.values())
    retriever = ListRetriever(model, texts)
    hits = []
    for record in records:
        done = model.session(retriever, retrieval="always", max_new_tokens=1, max_retrievals=1).ask(record.messages[0].content)
        expected = docs[record.messages[1].retrievals[0].positives[0]]
        hits.append(done.retrievals[0].hits[0].text == expected)
    assert np.mean(hits) >= 0.9


def test_resume_after_a_kill_ends_with_the_same_weights(tiny_base: Path, facts: Path, tmp_path: Path) -> None:
    settings = dict(method="lora", max_steps=6, save_every=3, batch_size=2, grad_accum=2, learning_rate=1e-3,
                    schedule="cosine", warmup_steps=2, max_eval_records=4, eval_every=3)
    straight = Trainer(train_config(tiny_base, facts, tmp_path / "straight", **settings))
    straight.train()
    killed = train_config(tiny_base, facts, tmp_path / "killed", **settings)
    with pytest.raises(Interrupted):
        Trainer(killed, callbacks=[stop_after(3)]).train()
    resumed = Trainer(killed)
    resumed.train()
    assert resumed.state.step == 6
    expected, actual = straight.objective.state_dict(), resumed.objective.state_dict()
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    assert resumed.scheduler.get_last_lr() == straight.scheduler.get_last_lr()


def test_the_train_command_prints_a_data_problem_and_fails(tiny_base: Path, facts: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(facts / "docs.jsonl", data / "docs.jsonl")
    record = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "[RQ] a", "retrievals": [{"positives": [["d0"]]}]}]}
    (data / "train.jsonl").write_text(json.dumps(record) + "\n")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(train_config(tiny_base, data, tmp_path / "run").model_dump(mode="json")))
    assert main(["train", "--config", str(config)]) == 1
    assert "train.jsonl:1: message 1, retrieval 0: 'positives' item 0 must be a document id" in capsys.readouterr().err
    (data / "train.jsonl").unlink()
    assert main(["train", "--config", str(config)]) == 1
    assert capsys.readouterr().err.endswith(f"\nerror: {data / 'train.jsonl'}: no such file or directory: check the path\n")


def test_the_mine_command_prints_a_data_problem_and_fails(learned: dict, facts: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "train.jsonl").write_text("\n\n")
    argv = ["mine", "--model", str(learned["dir"]), "--docs", str(facts / "docs.jsonl"),
            "--records", str(tmp_path / "train.jsonl"), "--out", str(tmp_path / "mined.jsonl")]
    assert main(argv) == 1
    assert "train.jsonl holds no records" in capsys.readouterr().err
    assert not (tmp_path / "mined.jsonl").exists()


def lora_gradients(tiny_base: Path, facts: Path, tmp_path: Path, lambda_gen: float) -> tuple[Trainer, torch.Tensor]:
    """One backward pass under LoRA; returns the trainer and the OneGen rows' gradient."""
    trainer = Trainer(train_config(tiny_base, facts, tmp_path, method="lora", lambda_gen=lambda_gen))
    loss, _ = trainer._loss(trainer.collator(trainer.examples[:4]))
    loss.backward()
    return trainer, trainer.model.lm.get_input_embeddings().delta.grad


def test_lora_retrieval_gradient_reaches_the_rows_of_the_tokens_in_the_batch(tiny_base: Path, facts: Path, tmp_path: Path) -> None:
    trainer, grad = lora_gradients(tiny_base, facts, tmp_path, lambda_gen=0.0)
    tokens = trainer.model.onegen.tokens
    # single-turn facts: the passage after [RQ] cannot reach an earlier vector (causal attention)
    used = [tokens.query, tokens.document]
    assert [bool(row.abs().sum() > 0) for row in grad] == [t in used for t in tokens.all()]


def test_chunked_forward_gives_the_same_losses_and_gradients(tiny_base: Path, facts: Path, tmp_path: Path) -> None:
    data = tmp_path / "ragged"
    data.mkdir()
    # questions and documents of very different lengths, so that the batch is mostly padding
    docs = [json.loads(line) for line in (facts / "docs.jsonl").read_text().splitlines()]
    records = [json.loads(line) for line in (facts / "train.jsonl").read_text().splitlines()]
    for i, (doc, record) in enumerate(zip(docs, records)):
        doc["text"] += " It is noted." * (5 * (i % 3))
        record["messages"][0]["content"] = "Please, " * (6 * (i % 4)) + record["messages"][0]["content"]
    (data / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    results = []
    for chunk_tokens in (None, 120):  # LoRA dropout off: its masks depend on the tensor shapes
        config = train_config(tiny_base, data, tmp_path / str(chunk_tokens), method="lora", lora={"dropout": 0.0}, chunk_tokens=chunk_tokens)
        trainer = Trainer(config)
        batch = trainer.collator(trainer.examples[:8])
        loss, terms = trainer._loss(batch)
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in trainer.parameters])
        results.append((loss.detach(), terms["ce"].detach(), terms["retrieval"].detach(), grads))
    widths = batch["attention_mask"].sum(dim=1)
    assert widths.max() > 2 * widths.min()  # the chunks really are cut shorter than the batch
    for plain, chunked in zip(*results):
        torch.testing.assert_close(chunked, plain, rtol=1e-4, atol=1e-5)


def test_lora_trains_only_adapters_and_onegen_rows(tiny_base: Path, facts: Path, tmp_path: Path) -> None:
    trainer, grad = lora_gradients(tiny_base, facts, tmp_path, lambda_gen=1.0)
    assert bool((grad.abs().sum(dim=1) > 0).all())  # the tied head gives every new row a CE gradient
    lm = trainer.model.lm
    assert lm.get_input_embeddings().embedding.weight.grad is None
    lora = [p for n, p in lm.named_parameters() if "lora_" in n]
    assert lora and all(p.grad is not None for p in lora)
    trainable = {n for n, p in lm.named_parameters() if p.requires_grad}
    assert all("lora_" in n or n.endswith("delta") for n in trainable)


def test_lora_on_the_last_layers_stops_the_backward_pass_there(tiny_base: Path, facts: Path, tmp_path: Path) -> None:
    trainer = Trainer(train_config(tiny_base, facts, tmp_path, method="lora", lora={"layers": 1}))
    lm = trainer.model.lm
    below: list[bool] = []
    lm.get_decoder().layers[0].register_forward_hook(lambda module, args, out: below.append(out[0].requires_grad))
    loss, _ = trainer._loss(trainer.collator(trainer.examples[:4]))
    loss.backward()
    assert below and not any(below)  # the frozen first layer builds no graph
    lora = {n: p for n, p in lm.named_parameters() if "lora_" in n}
    assert lora and all(".layers.1." in n and p.grad is not None for n, p in lora.items())
    delta = lm.get_input_embeddings().delta
    assert bool((delta.grad.abs().sum(dim=1) > 0).all())  # the tied head still trains every row


def test_lora_layers_beyond_the_model_depth_are_refused(tiny_base: Path, facts: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="has 2 layers"):
        Trainer(train_config(tiny_base, facts, tmp_path, method="lora", lora={"layers": 3}))


@pytest.mark.parametrize(("tied", "layers"), [(True, None), (False, None), (False, 1)])
def test_lora_directory_loads_with_the_trained_hidden_states(facts: Path, tmp_path: Path, tied: bool, layers: int | None) -> None:
    base = save_tiny_base(tmp_path / "base", tied=tied)
    trainer = Trainer(train_config(base, facts, tmp_path / "run", method="lora", max_steps=3, learning_rate=1e-2, lora={"layers": layers}))
    directory = trainer.train()
    config = OneGenConfig.read(directory)
    assert (config.trained, config.adapter, config.base_model) == (True, "adapter", "../../base")
    from safetensors.torch import load_file

    rows = load_file(directory / config.token_embeddings)
    assert rows["input"].shape == (len(config.tokens.all()), 64)
    assert ("output" in rows) == (not tied)
    model = load(directory)
    objective = trainer.accelerator.unwrap_model(trainer.objective).eval()
    ids = torch.tensor([model.tokenize("Where is [RQ]<paragraph>Lima</paragraph> 42[RD]")])
    with torch.no_grad():
        expected_states = objective.states(ids, torch.ones_like(ids))
        expected_logits = trainer.model.lm.get_output_embeddings()(expected_states)
        actual_states = model.hf_model.get_decoder()(input_ids=ids).last_hidden_state
        actual_logits = model.hf_model.get_output_embeddings()(actual_states)
    torch.testing.assert_close(actual_states, expected_states, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(actual_logits, expected_logits, rtol=1e-4, atol=1e-4)
    untrained = load_file_untrained_rows(base, config)
    assert torch.equal(rows["input"], untrained) == (layers is not None)  # untied and partial: input rows stay


def load_file_untrained_rows(base: Path, config: OneGenConfig) -> torch.Tensor:
    """The OneGen rows of the base before training."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    return model.get_input_embeddings().weight[tokenizer.convert_tokens_to_ids(config.tokens.all())].detach()


def test_init_from_starts_where_the_trained_model_left_off(facts: Path, tmp_path: Path) -> None:
    base = save_tiny_base(tmp_path / "base", tied=False)
    trained = Trainer(train_config(base, facts, tmp_path / "run", method="lora", max_steps=3, learning_rate=1e-2)).train()
    again = build_model(train_config(base, facts, tmp_path / "again", method="lora", init_from=trained))
    model = load(trained)
    ids = torch.tensor([model.tokenize("Where is [RQ]<paragraph>Lima</paragraph> 42[RD]")])
    with torch.no_grad():
        states = OneGenObjective(again.lm).eval().states(ids, torch.ones_like(ids))
        logits = again.lm.get_output_embeddings()(states)
        expected = model.hf_model.get_decoder()(input_ids=ids).last_hidden_state
    torch.testing.assert_close(states, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(logits, model.hf_model.get_output_embeddings()(expected), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="does not fit"):
        build_model(train_config(base, facts, tmp_path / "other", method="lora", lora={"r": 4}, init_from=trained))


def test_the_anchor_keeps_retrieval_vectors_where_the_starting_model_left_them(facts: Path, tmp_path: Path) -> None:
    base = save_tiny_base(tmp_path / "base", tied=False)
    start = Trainer(train_config(base, facts, tmp_path / "start", method="lora", max_steps=3, learning_rate=1e-2)).train()
    texts = list(load_documents(facts / "docs.jsonl").values())
    before = load(start).embed_documents(texts)

    def drift(anchor: float) -> tuple[float, list[dict]]:
        output = tmp_path / f"anchor-{anchor}"
        Trainer(train_config(base, facts, output, method="lora", max_steps=12, learning_rate=5e-3, init_from=start, anchor=anchor,
                              lora={"dropout": 0.0})).train()
        after = load(output / "model").embed_documents(texts)
        log = [json.loads(line) for line in (output / "log.jsonl").read_text().splitlines()]
        return float(np.mean(1 - (before * after).sum(axis=1))), [r for r in log if "step" in r]

    free, free_log = drift(0.0)
    held, held_log = drift(50.0)
    assert "anchor" not in free_log[0]
    assert held_log[0]["anchor"] < 1e-5  # step 1 starts at the reference (no dropout)
    assert free > 1e-3 and held < free / 4
    with pytest.raises(ValueError, match="set init_from \\(or anchor_model\\)"):
        train_config(base, facts, tmp_path / "nowhere", anchor=1.0)


def test_the_generation_anchor_keeps_the_answers_of_records_without_tools(facts: Path, tmp_path: Path) -> None:
    base = save_tiny_base(tmp_path / "base", tied=False)
    start = Trainer(train_config(base, facts, tmp_path / "start", method="lora", max_steps=3, learning_rate=1e-2)).train()
    lora = {"dropout": 0.0}
    reference = OneGenObjective(build_model(train_config(base, facts, tmp_path / "ref", method="lora", init_from=start, lora=lora)).lm).eval()

    def drift(weight: float) -> tuple[float, list[dict]]:
        output = tmp_path / f"generation-{weight}"
        config = train_config(base, facts, output, method="lora", max_steps=12, learning_rate=5e-3, init_from=start,
                              anchor_generation=weight, lora=lora)
        trainer = Trainer(config)
        trainer.train()
        batch = trainer.collator(trainer.examples[:8])
        with torch.no_grad():
            moved = trainer.objective(**batch)["held_logits"]
            held = reference.anchors(**batch)["held_logits"]
        log = [json.loads(line) for line in (output / "log.jsonl").read_text().splitlines()]
        return generation_anchor_loss(moved, held).item(), [r for r in log if "step" in r]

    free, free_log = drift(0.0)
    held, held_log = drift(200.0)
    assert "generation_anchor" not in free_log[0] and held_log[0]["generation_anchor"] < 1e-5  # step 1 is the start
    assert free > 1e-2 and held < free / 4


def test_anchor_model_makes_the_anchors_hold_another_model_than_the_start(facts: Path, tmp_path: Path) -> None:
    base = save_tiny_base(tmp_path / "base", tied=False)
    start = Trainer(train_config(base, facts, tmp_path / "start", method="lora", max_steps=3, learning_rate=1e-2)).train()
    kept = Trainer(train_config(base, facts, tmp_path / "kept", method="lora", max_steps=3, learning_rate=1e-2, seed=7)).train()
    lora = {"dropout": 0.0}
    config = train_config(base, facts, tmp_path / "run", method="lora", init_from=start, anchor_model=kept, anchor=1.0, lora=lora)
    reference = anchor_reference(build_model(config), config)
    ids = torch.tensor([load(kept).tokenize("Where is [RQ]<paragraph>Lima</paragraph> 42[RD]")])
    with torch.no_grad():
        held = reference.states(ids, torch.ones_like(ids))
        started = OneGenObjective(build_model(config).lm).eval().states(ids, torch.ones_like(ids))
        wanted = load(kept).hf_model.get_decoder()(input_ids=ids).last_hidden_state
    torch.testing.assert_close(held, wanted, rtol=1e-4, atol=1e-4)
    assert (held - started).abs().max() > 1e-2  # the start is another model
    assert not any(p.requires_grad for p in reference.parameters())
    with pytest.raises(ValueError, match="anchor_model's adapter does not fit"):
        smaller = train_config(base, facts, tmp_path / "smaller", method="lora", lora={"r": 4}, anchor_model=kept, anchor=1.0)
        anchor_reference(build_model(smaller), smaller)
    with pytest.raises(ValueError, match="use method: lora"):
        train_config(base, facts, tmp_path / "full", method="full", anchor_model=kept, anchor=1.0)


def test_a_blend_of_two_lora_models_updates_the_base_by_their_weighted_updates(facts: Path, tmp_path: Path) -> None:
    from onegen_training.configs import blend_models

    base = save_tiny_base(tmp_path / "base", tied=False)
    first, second = (
        Trainer(train_config(base, facts, tmp_path / name, method="lora", max_steps=2, learning_rate=1e-2, seed=seed)).train()
        for name, seed in (("first", 0), ("second", 1))
    )
    blend_models.blend(first, second, 0.25, tmp_path / "blend" / "model")
    weights = {name: load(d).hf_model.state_dict() for name, d in [("first", first), ("second", second), ("blend", tmp_path / "blend" / "model")]}
    plain = LlamaForCausalLM.from_pretrained(base).state_dict()
    key = "model.layers.1.self_attn.q_proj.weight"
    expected = plain[key] + 0.75 * (weights["first"][key] - plain[key]) + 0.25 * (weights["second"][key] - plain[key])
    torch.testing.assert_close(weights["blend"][key], expected, rtol=1e-5, atol=1e-6)
    rows = {n: load_file_rows(d) for n, d in [("first", first), ("second", second), ("blend", tmp_path / "blend" / "model")]}
    torch.testing.assert_close(rows["blend"]["output"], 0.75 * rows["first"]["output"] + 0.25 * rows["second"]["output"])


def load_file_rows(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(directory / OneGenConfig.read(directory).token_embeddings)
