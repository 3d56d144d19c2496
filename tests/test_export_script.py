"""scripts/export.py: any complete checkpoint of a run becomes an export upstream XTTS loads."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from trainrun import demo_overrides, run_train

REPO = Path(__file__).resolve().parent.parent
EXPORT = REPO / "scripts" / "export.py"


def export(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXPORT), *args], cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def stopped_run(tiny_release, demo_corpus, demo_vocab, tmp_path_factory):
    """A 4-step run that saved at steps 2 and 4 (as a preempted or still-running run has checkpoints)."""
    out = tmp_path_factory.mktemp("export_script") / "run"
    run_train(demo_overrides(tiny_release, demo_corpus, out, demo_vocab, **{
        "train.max_steps": 4, "train.save_every": 2, "train.keep_last": 3, "train.precision": "fp32",
        "log.test_sentences": "[]", "eval.enabled": "false"}))
    return out


@pytest.mark.slow
def test_exports_an_intermediate_checkpoint_that_upstream_loads(stopped_run, tmp_path):
    from amh.xtts.synthesis import load_export

    checkpoint = stopped_run / "checkpoints" / "step_00000002"
    proc = export("--checkpoint", str(checkpoint))
    assert proc.returncode == 0, proc.stderr
    out = stopped_run / "exports" / "step_00000002"
    assert f"export written to {out}" in proc.stdout
    assert {p.name for p in out.iterdir()} == {"model.pth", "config.json", "vocab.json", "frontend.json",
                                               "training_summary.json"}
    summary = json.loads((out / "training_summary.json").read_text(encoding="utf-8"))
    assert summary["step"] == 2 and summary["checkpoint"] == str(checkpoint)
    model, settings = load_export(out)  # upstream Xtts.load_checkpoint(strict=True)
    assert settings.language == "am"
    trained = load_file(str(checkpoint / "model.safetensors"))
    # The export holds step 2's weights, not the release's nor step 4's.
    torch.testing.assert_close(model.gpt.text_embedding.weight, trained["gpt.text_embedding.weight"])
    later = load_file(str(stopped_run / "checkpoints" / "step_00000004" / "model.safetensors"))
    assert not torch.equal(trained["gpt.text_embedding.weight"], later["gpt.text_embedding.weight"])


@pytest.mark.slow
def test_refuses_a_vocab_that_does_not_fit(stopped_run, tiny_release, tmp_path):
    from amh.text.frontend import FrontendSettings
    from amh.xtts.vocab import extend_vocab

    other = tmp_path / "other_vocab.json"  # has [am], but far fewer tokens than the run trained with
    extend_vocab(tiny_release / "vocab.json", ["ሰላም"], other, mode="chars", frontend=FrontendSettings())
    proc = export("--checkpoint", str(stopped_run / "checkpoints" / "step_00000004"), "--out", str(tmp_path / "x"),
                  "--vocab", str(other))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "text rows but" in proc.stderr and "pass the run's vocab with --vocab" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_refuses_an_incomplete_checkpoint(tmp_path):
    partial = tmp_path / "run" / "checkpoints" / "step_00000007"
    partial.mkdir(parents=True)
    (partial / "model.safetensors").write_bytes(b"")
    proc = export("--checkpoint", str(partial))
    assert proc.returncode == 2 and "not complete (no COMPLETE file" in proc.stderr and "Traceback" not in proc.stderr


def test_names_the_missing_run_config(tmp_path):
    lone = tmp_path / "run" / "checkpoints" / "step_00000007"
    lone.mkdir(parents=True)
    (lone / "COMPLETE").write_text("{}")
    proc = export("--checkpoint", str(lone))
    assert proc.returncode == 2 and "config.yaml: no run config" in proc.stderr and "--config" in proc.stderr
