"""The stability study's clip probe (amh.bench.clip_probe): what per-group clipping does to AdamW's
updates, on synthetic gradient streams where the answer is known; and its report section."""
from __future__ import annotations

import pytest
import torch

from amh.bench.clip_probe import STEADY_FACTOR, ClipUnderAdam


def run_probe(norm: float, max_norm: float, steps: int = 80, spike_step: int = 20, spike_factor: float = 100.0,
              lr: float = 1e-3, name: str = "g") -> ClipUnderAdam:
    gen = torch.Generator().manual_seed(0)
    param = torch.nn.Parameter(torch.randn(64, 16, generator=gen) * 0.02)
    probe = ClipUnderAdam(name, [param], [0.0], max_norm, betas=(0.9, 0.96), eps=1e-8, spike_step=spike_step,
                          spike_factor=spike_factor)
    for _ in range(steps):
        g = torch.randn(64, 16, generator=gen)
        probe.step([g * (norm / g.norm())], lr)
    return probe


def test_first_update_is_lr_sign_g_clipped_or_not():
    probe = run_probe(norm=1.0, max_norm=0.1)  # clipped by 10x on every step
    first = probe.records[0]
    assert first["coef"] == pytest.approx(0.1, rel=1e-4)
    assert first["max_abs_raw_over_lr"] == pytest.approx(1.0, abs=1e-4)
    assert first["max_abs_diff_clip_over_lr"] < 1e-2  # eps matters only where abs(g) is tiny


def test_a_steady_clip_factor_barely_changes_adams_step():
    probe = run_probe(norm=1.0, max_norm=0.1)
    s = probe.summary()
    assert s["clipped_steps"] == s["steps"]  # norm 1 > max_norm 0.1: every step is clipped
    assert s["max_rel_scaled"] < 1e-4  # x0.1 on every step
    assert STEADY_FACTOR == 0.1
    # A constant norm makes the clip factor constant too: the update moves far less than SGD's 0.9.
    assert s["mean_rel_clip_when_clipped"] < 0.05 < 0.9 == pytest.approx(s["mean_sgd_rel_when_clipped"], abs=1e-3)


def test_an_unclipped_spike_shrinks_later_updates_and_a_clipped_one_does_not():
    probe = run_probe(norm=0.05, max_norm=0.1)  # below the threshold: only the spike is clipped
    s = probe.summary()
    assert s["clipped_steps"] == 0
    assert s["v_raw_spike_0"] > 100 and s["v_clip_spike_0"] < 3
    assert s["min_size_raw_after"] < 0.5 and s["min_size_clip_after"] > 0.6
    assert s["recovery_raw"] is None or s["recovery_raw"] > 20
    assert s["recovery_clip"] is not None and s["recovery_clip"] < s["steps"] - s["spike_step"]


def test_the_report_section_states_the_measured_numbers():
    from amh.bench.stability import History
    from amh.bench.stability_report import clip_adam_section

    probes = {name: run_probe(norm=norm, max_norm=0.1, name=name) for name, norm in (("embedding", 0.05), ("rest", 1.0))}
    history = History(clip_probe={k: p.summary() for k, p in probes.items()},
                      clip_records={k: p.records for k, p in probes.items()})
    text = clip_adam_section(history, 1e-3, "x.png")
    emb = probes["embedding"].summary()
    assert text.startswith("## What per-group clipping does under AdamW")
    assert f"v of group 'embedding' jumped x{emb['v_raw_spike_0']:.3g}" in text
    assert "| embedding | 0.1 | 0 of 80 |" in text and "| rest | 0.1 | 80 of 80 |" in text
    assert text.endswith("![clipping under AdamW](./x.png)")


def test_a_run_that_ends_at_the_spike_summarises_without_its_after_spike_numbers():
    s = run_probe(norm=0.05, max_norm=0.1, steps=20, spike_step=20).summary()  # steps are counted from 1
    assert s["steps"] == 20 and s["recovery_raw"] is None
    assert s["min_size_raw_after"] != s["min_size_raw_after"]  # nan: no step after the spike


def test_the_command_line_refuses_a_spike_outside_the_run_and_makes_the_json_folder(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "scripts" / "stability_study.py"
    spec = importlib.util.spec_from_file_location("stability_study_cli", script)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    with pytest.raises(SystemExit) as err:
        cli.main(["--steps", "3", "--spike-step", "3", "--quick", "--fixtures", str(tmp_path / "unused")])
    assert "--spike-step 3: must be at least 1 and below --steps 3" in str(err.value.code)
    assert not (tmp_path / "unused").exists()  # refused before any fixture is built
    args = cli.parse_args(["--steps", "3", "--spike-step", "2", "--json", str(tmp_path / "new" / "deep" / "s.json")])
    assert (tmp_path / "new" / "deep").is_dir() and args.spike_step == 2
