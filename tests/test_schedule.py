"""The LR schedule's horizon: train.max_steps, else epochs x the estimated epoch; never a silent constant."""
from __future__ import annotations

import importlib.util

import pytest

from amh.config import load_config
from amh.errors import UserError
from amh.train.optim import lr_at
from amh.run.report import estimate_epoch
from trainrun import REPO

spec = importlib.util.spec_from_file_location("train_script", REPO / "train.py")
train = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train)


def test_cosine_without_max_steps_decays_over_the_estimated_epochs(demo_corpus):
    cfg = load_config(REPO / "configs" / "demo.yaml", [f"data.path={demo_corpus / 'ready'}", "train.max_steps=null",
                                                       "train.epochs=3", "optim.schedule=cosine", "optim.warmup_steps=0"])
    estimate = estimate_epoch(cfg, 1)
    horizon = train.schedule_horizon(cfg, estimate)
    assert horizon == 3 * -(-185 // 4)  # 185 train rows, batch 4: 47 steps an epoch
    assert lr_at(0, cfg.optim, horizon) == pytest.approx(cfg.optim.lr)
    assert lr_at(horizon, cfg.optim, horizon) == pytest.approx(cfg.optim.lr * cfg.optim.min_lr_ratio)
    assert lr_at(horizon // 2, cfg.optim, horizon) < 0.6 * cfg.optim.lr  # it decays: not constant


def test_cosine_with_no_horizon_at_all_is_refused():
    cfg = load_config(None, ["data.source=hub", "data.path=someone/unknown", "optim.schedule=cosine"])
    with pytest.raises(UserError, match="optim.schedule=cosine needs a horizon: set train.max_steps"):
        train.schedule_horizon(cfg, None)
