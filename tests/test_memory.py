"""amh.train.memory's plan against exact counts on the tiny model, the 8-bit optimizer, and the fp32-master rule."""
from __future__ import annotations

import json
import math
import sys

import pytest
import torch

from amh.config import ConfigError, load_config
from amh.train.memory import (MemoryPlanError, MicroBatch, ModelFacts, plan_memory, saved_activation_bytes,
                        storage_bytes, worst_micro_batches)
from amh.train.optim import build_optimizer, check_deepspeed_master_weights, param_groups


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from amh.fixtures.tiny_xtts import build_tiny_xtts, tiny_vocab
    from amh.train.step import apply_model_options
    from amh.xtts.forward import XttsGptForTraining

    vocab = tmp_path_factory.mktemp("vocab") / "vocab.json"
    vocab.write_text(json.dumps(tiny_vocab()), encoding="utf-8")
    xtts, _ = build_tiny_xtts(vocab)
    model = XttsGptForTraining(xtts.gpt)
    apply_model_options(model)
    return model.train()


def config(*overrides):
    return load_config(None, ["data.path=x", *overrides])


def inputs(batch: int, seconds: float, tokens: int, cond_seconds: float):
    g = torch.Generator().manual_seed(0)
    samples = int(seconds * 22050)
    frames = int(cond_seconds * 22050) // 256 + 1
    return (torch.randint(3, 40, (batch, tokens), generator=g), torch.full((batch,), tokens),
            torch.randint(0, 64, (batch, math.ceil(samples / 1024)), generator=g), torch.full((batch,), samples),
            torch.randn(batch, 80, frames, generator=g), torch.tensor([[0, int(cond_seconds * 22050)]] * batch))


def step(model, optimizer, batch):
    loss = model(*batch).total
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def test_weights_grads_and_adamw_state_are_exact(tiny_model):
    plan = plan_memory(config("train.precision=fp32"), tiny_model, "cpu")
    params = list(tiny_model.parameters())
    assert plan.parts["weights"] == sum(p.numel() * 4 for p in params) + sum(b.nbytes for b in tiny_model.buffers())
    assert plan.parts["grads"] == sum(p.numel() * 4 for p in params if p.requires_grad)
    optimizer = build_optimizer(tiny_model, config().optim)
    step(tiny_model, optimizer, inputs(1, 2.0, 10, 1.0))
    state = [v for s in optimizer.state.values() for v in s.values()]
    assert plan.parts["optimizer"] == storage_bytes(state)
    # exp_avg + exp_avg_sq: 8 bytes per parameter, plus the fused step's fp32 scalar per tensor.
    assert plan.parts["optimizer"] == 8 * sum(p.numel() for p in params) + 4 * len(params)
    assert "16-bit copies" not in plan.parts
    assert plan.total == sum(plan.parts.values())


def test_bf16_plan_counts_autocast_weight_copies(tiny_model):
    plan = plan_memory(config("train.precision=bf16"), tiny_model, "cuda")
    from transformers.pytorch_utils import Conv1D

    matmul = [m.weight for m in tiny_model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, Conv1D))]
    assert plan.parts["16-bit copies"] == 2 * sum(w.numel() for w in matmul)


@pytest.mark.parametrize("batch,seconds,tokens,ckpt", [(1, 11.0, 200, False), (2, 6.0, 80, False),
                                                       (3, 2.0, 20, False), (2, 11.0, 200, True)])
def test_saved_activations_match_autograd(tiny_model, batch, seconds, tokens, ckpt):
    """The forward's saved tensors, counted by autograd's hooks (parameters excluded), vs the formula."""
    from amh.train.step import apply_model_options

    model = tiny_model
    if ckpt:
        import copy

        model = apply_model_options(copy.deepcopy(tiny_model), gradient_checkpointing=True)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    cond = min(6.0, seconds)
    batch_inputs = inputs(batch, seconds, tokens, cond)
    saved: dict[int, int] = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in params:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(*batch_inputs)
    mb = MicroBatch(batch, tokens + 2, batch_inputs[2].shape[1] + 5, batch_inputs[4].shape[2])
    planned = saved_activation_bytes(ModelFacts.of(model), mb, "cpu", "fp32", ckpt)
    measured = sum(saved.values())
    assert planned == pytest.approx(measured, rel=0.10)


def test_worst_micro_batch_follows_the_data_config():
    (mb,) = worst_micro_batches(config("train.batch_size=3", "data.max_audio_seconds=11", "data.max_text_tokens=200"))
    assert (mb.batch, mb.text_positions, mb.mel_positions) == (3, 202, math.ceil(11 * 22050 / 1024) + 5)
    assert mb.cond_frames == int(6.0 * 22050) // 256 + 1
    budget = worst_micro_batches(config("data.max_batch_seconds=22", "data.min_audio_seconds=1"))
    assert {b.batch for b in budget} >= {2, 22}  # two 11 s clips ... twenty-two 1 s clips
    capped = worst_micro_batches(config("data.max_batch_seconds=22", "data.min_audio_seconds=1",
                                        "data.max_batch_size=8"))
    assert max(b.batch for b in capped) == 8 and min(b.batch for b in capped) == 2


def test_token_budget_plans_the_worst_clip_length(tiny_model):
    by_count = plan_memory(config("train.batch_size=2"), tiny_model, "cuda")
    by_seconds = plan_memory(config("data.max_batch_seconds=22"), tiny_model, "cuda")
    # Short clips pack more samples (latents, text and prompt per sample): never less than 2 full clips.
    assert by_seconds.parts["activations"] >= by_count.parts["activations"]


def test_check_names_the_keys_to_change(tiny_model):
    plan = plan_memory(config("train.batch_size=4", "train.precision=bf16"), tiny_model, "cuda")
    plan.check(plan.total + 2**30)  # fits: no error
    with pytest.raises(MemoryPlanError) as err:
        plan.check(plan.total // 2, reserve_bytes=0)
    message = str(err.value)
    assert "\n" not in message
    for key in ("optim.optimizer=adamw8bit", "model.gradient_checkpointing=true", "train.batch_size=2",
                "data.max_audio_seconds=5.5", "docs/memory.md"):
        assert key in message
    smaller = plan.replan({"optim.optimizer": "adamw8bit", "model.gradient_checkpointing": True})
    assert smaller.total < plan.total
    assert "8-bit AdamW" in smaller.describe() and "checkpointing on" in smaller.describe()
    # A token budget whose worst batch is many short clips: capping their number comes first, and saves.
    budget = plan_memory(config("data.max_batch_seconds=22", "data.min_audio_seconds=1"), tiny_model, "cuda")
    with pytest.raises(MemoryPlanError) as err:
        budget.check(budget.total // 2, reserve_bytes=0)
    assert "data.max_batch_size=11" in str(err.value) and "data.max_batch_seconds=11" in str(err.value)
    capped = budget.replan({"data.max_batch_size": 11})
    assert capped.total < budget.total and "max_batch_size 11" in capped.describe()


def test_describe_is_one_line_with_every_part(tiny_model):
    line = plan_memory(config(), tiny_model, "cpu", resident={"dvae": 123 * 2**20}).describe()
    assert "\n" not in line
    for part in ("weights", "grads", "optimizer", "activations", "dvae 0.12", "batch 2 x 11 s"):
        assert part in line


def test_adamw8bit_trains_with_the_projects_groups(tiny_model):
    pytest.importorskip("bitsandbytes")
    import copy

    model = copy.deepcopy(tiny_model)
    cfg = config("optim.optimizer=adamw8bit", "optim.lr=1e-3")
    optimizer = build_optimizer(model, cfg.optim, cfg.train.clip_groups)
    assert type(optimizer).__name__ == "AdamW8bit"
    expected = param_groups(model, cfg.optim.weight_decay, cfg.train.clip_groups)
    assert [(g["clip_group"], g["weight_decay"], len(g["params"])) for g in optimizer.param_groups] == \
        [(g["clip_group"], g["weight_decay"], len(g["params"])) for g in expected]
    batch = inputs(2, 2.0, 10, 1.0)
    losses = [step(model, optimizer, batch) for _ in range(8)]
    assert losses[-1] < losses[0]
    big = [p for p in model.parameters() if p.numel() >= 4096]
    assert big and all(optimizer.state[p]["state1"].dtype == torch.uint8 for p in big)
    state = [v for s in optimizer.state.values() for v in s.values()]
    assert plan_memory(cfg, model, "cpu").parts["optimizer"] == storage_bytes(state)


def test_adamw8bit_without_bitsandbytes_is_one_clear_line(tiny_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"pip install \.\[bnb\]") as err:
        build_optimizer(tiny_model, config("optim.optimizer=adamw8bit").optim)
    assert "optim.optimizer" in str(err.value) and "\n" not in str(err.value)


def test_unknown_optimizer_is_refused():
    with pytest.raises(ConfigError, match="optim.optimizer.*'adamw8bit'"):
        config("optim.optimizer=sgd")


def test_bf16_master_weights_are_refused(tiny_model):
    import copy

    model = copy.deepcopy(tiny_model).to(torch.bfloat16)
    with pytest.raises(ConfigError, match="master weights must stay fp32"):
        build_optimizer(model, config().optim)
    with pytest.raises(ConfigError, match="ds.json: bf16.bf16_master_weights_and_grads"):
        check_deepspeed_master_weights({"bf16": {"enabled": True, "bf16_master_weights_and_grads": True}}, "ds.json")
    check_deepspeed_master_weights({"bf16": {"enabled": True}, "zero_optimization": {"stage": 2}}, "ds.json")


def test_bf16_rounds_away_a_fine_tuning_update():
    """The docs' argument (docs/memory.md): lr 2e-6 moves a weight of 0.02 by less than half a bf16 step."""
    w = torch.tensor(0.02)
    update = torch.tensor(2e-6)  # Adam's step is ~lr when the moment ratio is ~1
    assert (w.bfloat16() - update.bfloat16()).item() == w.bfloat16().item()
    assert (w - update).item() != w.item()


def test_adamw8bit_skipped_step_changes_nothing(tiny_model):
    """The NaN guard's skip (amh.train.step.optimizer_step) holds for the 8-bit optimizer too (host-side decision)."""
    pytest.importorskip("bitsandbytes")
    import copy

    from amh.train.clipping import GroupClipper
    from amh.train.nan_guard import NanGuard
    from amh.train.precision import Precision
    from amh.train.step import optimizer_step

    model = copy.deepcopy(tiny_model)
    cfg = config("optim.optimizer=adamw8bit", "optim.lr=1e-3")
    optimizer = build_optimizer(model, cfg.optim, cfg.train.clip_groups)
    clipper = GroupClipper(model.named_parameters(), cfg.train.clip_groups)
    guard, precision = NanGuard(5), Precision("fp32", torch.device("cpu"))
    batch = inputs(2, 2.0, 10, 1.0)

    def snapshot():
        state = {id(p): {k: v.clone() for k, v in s.items() if torch.is_tensor(v)} for p, s in optimizer.state.items()}
        return [p.detach().clone() for p in model.parameters()], state

    loss = model(*batch).total
    loss.backward()
    optimizer_step(optimizer, clipper, guard, precision, loss)  # a real step: 8-bit state exists
    weights, state = snapshot()
    loss = model(*batch).total
    (loss * float("nan")).backward()
    stepped, _ = optimizer_step(optimizer, clipper, guard, precision, loss * float("nan"))
    assert not bool(stepped)
    after_weights, after_state = snapshot()
    assert all(torch.equal(a, b) for a, b in zip(weights, after_weights))
    assert all(torch.equal(state[k][n], after_state[k][n]) for k in state for n in state[k])
    assert all(s["step"] == 1 for s in optimizer.state.values())
