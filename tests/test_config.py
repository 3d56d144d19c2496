"""Config: YAML + dotted overrides; unknown keys, wrong types and bad combinations are refused by name."""
from __future__ import annotations

import dataclasses
import math
import re
import typing
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


# One bad value per constrained field: each passes the type check and must be refused by its range,
# naming the key, the valid range and the value.
BAD_VALUES = [
    ("optim.min_lr_ratio", -0.5, "in [0, 1]"),
    ("optim.min_lr_ratio", 1.5, "in [0, 1]"),
    ("train.eval_batches", 0, ">= 1"),
    ("optim.lr", ".nan", "> 0"),
    ("optim.lr", ".inf", "> 0"),
    ("optim.lr", 0, "> 0"),
    ("data.sample_rate", 0, ">= 1"),
    ("optim.warmup_steps", -1, ">= 0"),
    ("optim.betas", "[0.9, 1.0]", "in [0, 1)"),
    ("optim.betas", "[-0.1, 0.9]", "in [0, 1)"),
    ("optim.eps", 0, "> 0"),
    ("optim.weight_decay", -0.01, ">= 0"),
    ("train.init_loss_scale", 0, "> 0"),
    ("train.init_loss_scale", -1, "> 0"),
    ("data.max_batch_seconds", 0, "> 0"),
    ("data.max_batch_seconds", -3, "> 0"),
    ("data.eval_fraction", 0, "in (0, 1)"),
    ("data.eval_fraction", 1, "in (0, 1)"),
    ("train.text_ce_weight", -0.01, ">= 0"),
    ("train.mel_ce_weight", -1, ">= 0"),
    ("data.num_workers", -1, ">= 0"),
    ("data.min_rms", -1e-3, ">= 0"),
    ("data.shuffle_buffer", 0, ">= 1"),
    ("data.bucket_buffer", -1, ">= 0"),
    ("data.max_text_tokens", 0, ">= 1"),
    ("data.min_audio_seconds", -1, "> 0"),
    ("data.max_conditioning_seconds", 0, "> 0"),
    ("model.init_std_factor", 0, "> 0"),
    ("train.max_steps", 0, ">= 1"),
    ("train.epochs", 0, ">= 1"),
    ("train.save_every", 0, ">= 1"),
    ("train.log_every", 0, ">= 1"),
    ("train.eval_every", 0, ">= 1"),
    ("train.keep_last", 0, ">= 1"),
    ("train.max_consecutive_skips", 0, ">= 1"),
    ("train.loss_scale_growth_interval", 0, ">= 1"),
    ("train.grad_accum", 0, ">= 1"),
]


@pytest.mark.parametrize("key, value, valid", BAD_VALUES, ids=[f"{k}={v}" for k, v, _ in BAD_VALUES])
def test_out_of_range_values_are_refused_with_key_and_range(key, value, valid):
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "demo.yaml", [f"{key}={value}"])
    message = str(err.value)
    assert message.startswith(f"{key}: must be {valid}, got "), message


def _just_outside(valid) -> list:
    out = [valid.lo if valid.lo_open else valid.lo - 1]
    if valid.hi != math.inf:
        out.append(valid.hi if valid.hi_open else valid.hi + 1)
    return out


def test_every_range_refuses_just_outside_its_bounds_and_accepts_them():
    from amh.config import RANGES, to_dict

    defaults = to_dict(load_config(CONFIGS / "demo.yaml"))
    for key, valid in RANGES.items():
        section, name = key.split(".")
        default = defaults[section][name]
        for bad in _just_outside(valid):
            value = [bad, *default[1:]] if isinstance(default, list) else bad
            with pytest.raises(ConfigError, match=rf"^{re.escape(key)}: must be "):
                load_config(CONFIGS / "demo.yaml", [f"{key}={value}"])
    # The bounds themselves where they are closed, and an unset optional field, are accepted.
    cfg = load_config(CONFIGS / "demo.yaml", ["optim.min_lr_ratio=0", "optim.warmup_steps=0", "optim.betas=[0, 0.999]",
                                              "train.text_ce_weight=0", "data.num_workers=0", "data.min_rms=0",
                                              "data.max_batch_seconds=null", "optim.min_lr_ratio=1"])
    assert cfg.optim.min_lr_ratio == 1 and cfg.data.max_batch_seconds is None


def test_every_numeric_field_has_a_range():
    """A new int/float field must say its valid range in amh.config.RANGES (or be listed as unbounded)."""
    from amh.config import _UNBOUNDED, RANGES, Config

    numeric = set()
    for section, cls in typing.get_type_hints(Config).items():
        if not dataclasses.is_dataclass(cls):
            continue
        for name, tp in typing.get_type_hints(cls).items():
            kinds = {tp, *typing.get_args(tp)}
            if kinds & {int, float}:
                numeric.add(f"{section}.{name}")
    missing = numeric - set(RANGES) - _UNBOUNDED
    assert not missing, f"add these to amh.config.RANGES: {sorted(missing)}"


def test_a_clip_cap_without_a_token_budget_is_refused():
    with pytest.raises(ConfigError, match="data.max_batch_size=8: caps token-budget batches, so it needs "
                                          "data.max_batch_seconds"):
        load_config(CONFIGS / "demo.yaml", ["data.max_batch_size=8"])
    cfg = load_config(CONFIGS / "demo.yaml", ["data.max_batch_size=8", "data.max_batch_seconds=60"])
    assert (cfg.data.max_batch_size, cfg.data.max_batch_seconds) == (8, 60.0)


def test_both_loss_weights_zero_is_refused():
    with pytest.raises(ConfigError, match="train.text_ce_weight, train.mel_ce_weight: both are 0"):
        load_config(CONFIGS / "demo.yaml", ["train.text_ce_weight=0", "train.mel_ce_weight=0"])


def test_clip_group_nan_max_norm_is_refused():
    with pytest.raises(ConfigError, match=r"train.clip_groups\[embedding\].max_norm: must be > 0, got nan"):
        load_config(CONFIGS / "demo.yaml", ["train.clip_groups=[{name: embedding, patterns: ['*'], max_norm: .nan}]"])


def test_yaml_syntax_error_names_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("output_dir: runs/x\ntrain:\n  batch_size: [2\n  epochs: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    message = str(err.value)
    assert message.startswith(f"{bad}: not valid YAML at line ") and "\n" not in message, message
    with pytest.raises(ConfigError, match="override 'train.epochs=\\[3': the value is not valid YAML"):
        load_config(CONFIGS / "demo.yaml", ["train.epochs=[3"])
    with pytest.raises(ConfigError, match="nope.yaml: no such config file"):
        load_config(tmp_path / "nope.yaml")
