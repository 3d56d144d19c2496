"""Per-group clipping bounds each group's norm; a non-finite step leaves weights and optimizer untouched."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from amh.clipping import GroupClipper, assign_groups
from amh.config import ClipGroup, OptimConfig
from amh.nan_guard import NanGuard
from amh.optim import build_optimizer
from amh.precision import Precision
from amh.step import optimizer_step

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
