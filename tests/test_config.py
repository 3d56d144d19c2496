"""Config: YAML + dotted overrides; unknown keys, wrong types and bad combinations are refused by name."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from amh.config import ConfigError, load_config, save_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_demo_config_and_overrides():
    cfg = load_config(CONFIGS / "demo.yaml", ["train.max_steps=7", "optim.lr=2e-6", "output_dir=/tmp/x",
                                              "optim.betas=[0.8, 0.9]"])
    assert cfg.train.max_steps == 7 and cfg.optim.lr == 2e-6 and cfg.output_dir == "/tmp/x"
    assert cfg.optim.betas == (0.8, 0.9)
    assert [g.name for g in cfg.train.clip_groups] == ["embedding", "rest"]


def test_real_recipe_is_the_seeds():
    cfg = load_config(CONFIGS / "amharic_110h.yaml", ["data.path=user/amharic"])
    assert (cfg.train.batch_size, cfg.train.grad_accum, cfg.optim.lr) == (2, 8, 2e-6)
    assert cfg.data.max_audio_seconds == 11.0 and 10 <= cfg.train.epochs <= 15 and cfg.train.save_every == 1000
    assert cfg.model.release == "coqui/XTTS-v2" and cfg.data.source == "hub"


@pytest.mark.parametrize("override, message", [
    ("train.precison=fp16", "unknown key 'train.precison'; valid keys in train: "),
    ("train.precision=fp8", "train.precision: 'fp8' is not a valid choice; choose one of 'bf16', 'fp16', 'fp32'"),
    ("train.batch_size=two", "train.batch_size: expected int"),
    ("train.batch_size=0", "train.batch_size: must be >= 1"),
    ("data.max_audio_seconds=12", "255995 samples"),
    ("train.clip_groups=[]", "train.clip_groups: at least one group"),
    ("text.g2p=magic", "text.g2p"),
    ("nosection", "not of the form section.key=value"),
])
def test_refusals_name_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "demo.yaml", [override])
    assert message in str(err.value)


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(CONFIGS / "demo.yaml", ["train.max_steps=3"])
    save_config(cfg, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again == cfg
    assert yaml.safe_load((tmp_path / "c.yaml").read_text())["train"]["max_steps"] == 3
