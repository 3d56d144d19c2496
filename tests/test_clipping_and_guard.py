"""Per-group clipping bounds each group's norm; a non-finite step leaves weights and optimizer untouched."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from amh.train.clipping import GroupClipper, assign_groups
from amh.config import ClipGroup, OptimConfig
from amh.train.nan_guard import NanGuard
from amh.train.optim import build_optimizer
from amh.train.precision import Precision
from amh.train.step import optimizer_step

GROUPS = [ClipGroup("embedding", ["text_embedding.*", "text_head.*"], 0.1), ClipGroup("rest", ["*"], 1.0)]


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.text_embedding = nn.Embedding(10, 4)
        self.text_head = nn.Linear(4, 10)
        self.body = nn.Linear(4, 4)

    def forward(self, ids):
        return self.text_head(self.body(self.text_embedding(ids))).logsumexp(-1).mean()


def _group_norm(params):
    return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])).item()


def test_groups_by_pattern_first_match_wins():
    groups = assign_groups(Toy().named_parameters(), GROUPS)
    assert [g.names for g in groups] == [
        ["text_embedding.weight", "text_head.weight", "text_head.bias"], ["body.weight", "body.bias"]]


def test_unmatched_or_empty_groups_are_refused():
    with pytest.raises(ValueError, match="match no group"):
        assign_groups(Toy().named_parameters(), GROUPS[:1])
    with pytest.raises(ValueError, match="match no parameter"):
        assign_groups(Toy().named_parameters(), [ClipGroup("x", ["nothing*"], 1.0), ClipGroup("rest", ["*"], 1.0)])


def test_each_group_is_bounded_by_its_own_max_norm():
    model = Toy()
    (model(torch.arange(10)) * 1000).backward()
    clipper = GroupClipper(model.named_parameters(), GROUPS)
    norms = clipper.norms()
    emb, rest = clipper.groups
    assert norms["embedding"].item() == pytest.approx(_group_norm(emb.params), rel=1e-5)
    assert norms["embedding"].item() > 0.1 and norms["rest"].item() > 1.0
    clipper.clip_(norms)
    assert _group_norm(emb.params) == pytest.approx(0.1, rel=1e-4)
    assert _group_norm(rest.params) == pytest.approx(1.0, rel=1e-4)


def test_small_gradients_are_left_alone():
    model = Toy()
    (model(torch.arange(10)) * 1e-6).backward()
    clipper = GroupClipper(model.named_parameters(), GROUPS)
    before = [p.grad.clone() for p in model.parameters()]
    clipper.clip_(clipper.norms())
    for b, p in zip(before, model.parameters()):
        torch.testing.assert_close(p.grad, b, rtol=1e-5, atol=0)


@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
@pytest.mark.parametrize("mode", ["fp32", "fp16"])
def test_non_finite_gradient_changes_no_weight_and_no_optimizer_state(poison, mode):
    torch.manual_seed(0)
    model = Toy()
    optimizer = build_optimizer(model, OptimConfig(lr=1e-2))
    precision = Precision(mode, torch.device("cpu"))
    clipper = GroupClipper(model.named_parameters(), GROUPS)
    guard = NanGuard(max_consecutive=3)

    def one_step(poisoned: bool) -> bool:
        loss = model(torch.arange(10))
        precision.scale(loss).backward()
        if poisoned:
            model.text_embedding.weight.grad[3, 1] = poison
        stepped, _ = optimizer_step(optimizer, clipper, guard, precision, loss)  # the trainer's own step
        return stepped

    assert one_step(False)
    weights = copy.deepcopy(model.state_dict())
    opt_state = copy.deepcopy(optimizer.state_dict())
    scale = precision.loss_scale
    assert not one_step(True)
    assert guard.last_bad_groups == ["embedding"]
    assert guard.skipped_total == 1 and guard.consecutive == 1
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    after = optimizer.state_dict()
    for pid, st in opt_state["state"].items():
        for name, value in st.items():
            assert torch.equal(after["state"][pid][name], value), (pid, name)
    if mode == "fp16":
        assert precision.loss_scale == scale / 2  # dynamic scaler backs off
    assert one_step(False) and guard.consecutive == 0


def test_guard_stops_after_n_in_a_row_with_a_diagnosis():
    guard = NanGuard(max_consecutive=2)
    nan = torch.tensor(float("nan"))
    assert not guard.check(nan, {"rest": torch.tensor(1.0)})
    assert not guard.should_stop()
    assert not guard.check(nan, {"rest": torch.tensor(1.0)})
    assert guard.should_stop()
    text = guard.diagnosis(step=7, precision="fp16")
    assert "2 optimizer steps in a row" in text and "loss" in text and "bf16" in text


class _HostSyncs(TorchDispatchMode):
    """Records every op that makes the host wait for a value on the device: `item()`, `bool()`,
    `tolist()` all dispatch `_local_scalar_dense`; `nonzero`-like ops need the result's size."""

    SYNCING = ("_local_scalar_dense", "nonzero", "masked_select", "unique", "repeat_interleave")

    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name in self.SYNCING:
            self.seen.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("mode", ["fp32", "fp16"])
@pytest.mark.parametrize("poisoned", [False, True])
def test_optimizer_step_makes_no_host_sync(mode, poisoned):
    torch.manual_seed(0)
    model = Toy()
    optimizer = build_optimizer(model, OptimConfig(lr=1e-2))  # fused AdamW: skips on found_inf
    precision = Precision(mode, torch.device("cpu"))
    clipper = GroupClipper(model.named_parameters(), GROUPS)
    guard = NanGuard(max_consecutive=3)
    for _ in range(2):  # the second step runs with optimizer state present
        loss = model(torch.arange(10))
        precision.scale(loss).backward()
        if poisoned:
            model.body.weight.grad[0, 0] = float("nan")
        with _HostSyncs() as syncs:
            stepped, norms = optimizer_step(optimizer, clipper, guard, precision, loss)
        assert syncs.seen == [], syncs.seen
    assert isinstance(stepped, torch.Tensor) and bool(stepped) is not poisoned
    reading = guard.read()  # the one sync, at log time
    assert (reading.skipped_total, reading.new_skips, reading.consecutive) == ((2, 2, 2) if poisoned else (0, 0, 0))
    assert reading.last_bad_groups == (["rest"] if poisoned else [])
    assert guard.read().new_skips == 0  # counted from the previous read


def test_foreach_norms_equal_per_tensor_norms():
    model = Toy()
    (model(torch.arange(10)) * 3).backward()
    clipper = GroupClipper(model.named_parameters(), GROUPS)
    for group, norm in zip(clipper.groups, clipper.norms().values()):
        expected = torch.linalg.vector_norm(torch.stack([p.grad.double().norm() for p in group.params]))
        assert norm.dtype == torch.float32
        torch.testing.assert_close(norm.double(), expected, rtol=1e-6, atol=0)


def _poisoned_step(model, optimizer, clipper, guard, precision, poison: bool):
    loss = model(torch.arange(10))
    precision.scale(loss).backward()
    if poison:
        model.text_head.bias.grad[0] = float("inf")
    return optimizer_step(optimizer, clipper, guard, precision, loss)[0]


def test_a_tripped_guard_refuses_later_steps_until_the_loop_reads_it():
    # The loop reads the guard only at log time; a finite step after N skips in a row must not
    # move the weights, so a late stop ends where an immediate one would.
    torch.manual_seed(0)
    model = Toy()
    optimizer = build_optimizer(model, OptimConfig(lr=1e-2))
    precision = Precision("fp32", torch.device("cpu"))
    clipper = GroupClipper(model.named_parameters(), GROUPS)
    guard = NanGuard(max_consecutive=2)
    assert _poisoned_step(model, optimizer, clipper, guard, precision, False)
    weights = copy.deepcopy(model.state_dict())
    opt_state = copy.deepcopy(optimizer.state_dict()["state"])
    for poison in (True, True, False, False):
        assert not _poisoned_step(model, optimizer, clipper, guard, precision, poison)
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    for pid, st in optimizer.state_dict()["state"].items():
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(st[name], opt_state[pid][name]), (pid, name)
    reading = guard.read()
    assert reading.tripped and guard.should_stop()
    assert (reading.skipped_total, reading.consecutive, reading.steps_after_trip) == (2, 2, 2)
    assert reading.last_bad_groups == ["embedding"]
    assert "noticed 2 step(s) later" in guard.diagnosis(step=5, precision="fp32")


def test_optimizer_without_found_inf_still_skips_on_the_host():
    torch.manual_seed(0)
    model = Toy()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, foreach=False)  # no found_inf support
    precision = Precision("fp32", torch.device("cpu"))
    clipper = GroupClipper(model.named_parameters(), GROUPS)
    guard = NanGuard(max_consecutive=3)
    assert _poisoned_step(model, optimizer, clipper, guard, precision, False)
    weights = copy.deepcopy(model.state_dict())
    assert not _poisoned_step(model, optimizer, clipper, guard, precision, True)
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    assert guard.skipped_total == 1


def test_guard_state_round_trips_and_a_resumed_streak_still_trips():
    guard = NanGuard(max_consecutive=3)
    nan = torch.tensor(float("nan"))
    guard.check(nan, {"rest": torch.tensor(1.0)})
    guard.check(nan, {"rest": torch.tensor(1.0)})
    resumed = NanGuard(max_consecutive=3)
    resumed.load_state_dict(guard.state_dict())
    assert resumed.state_dict() == {"skipped_total": 2, "consecutive": 2} and not resumed.should_stop()
    assert resumed.read().new_skips == 0  # skips before the resume were reported by the first run
    assert not resumed.check(nan, {"rest": torch.tensor(1.0)})
    assert resumed.should_stop() and resumed.read().new_skips == 1
