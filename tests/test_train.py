"""train.py end to end on CPU: the loss falls, every precision trains, resume is exact, export loads."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from amh.run.checkpoint import MARKER, latest
from trainrun import audio_tags, demo_overrides, run_train, scalars

pytestmark = pytest.mark.slow

EXPECTED_SCALARS = {
    "train/loss_text_ce", "train/loss_mel_ce", "train/loss", "train/lr", "train/loss_scale", "train/skipped_steps",
    "train/memory_mb", "grad_norm/embedding", "grad_norm/rest", "perf/samples_per_s", "perf/audio_seconds_per_s",
    "perf/tokens_per_s", "perf/padding_efficiency", "embedding/pretrained_std", "embedding/new_std",
    "eval/loss_text_ce", "eval/loss_mel_ce", "eval/loss", "eval/objective", "eval/objective_mel_ce",
    "eval/objective_text_ce", "eval/cer", "eval/wer", "eval/speaker_sim", "eval/rtf",
}


@pytest.fixture(scope="module")
def demo_run(tiny_release, demo_corpus, demo_vocab, tiny_mms, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    proc = run_train(demo_overrides(tiny_release, demo_corpus, out, demo_vocab, **{
        "train.max_steps": 30, "train.batch_size": 4, "train.eval_every": 15, "train.save_every": 15,
        "optim.lr": 2e-3, "data.num_workers": 1, "eval.enabled": "true", "eval.asr_model": str(tiny_mms),
        "eval.best_metric": "cer"}))
    return out, proc


def test_demo_mel_loss_falls(demo_run):
    out, proc = demo_run
    mel = [v for _, v in scalars(out)["train/loss_mel_ce"]]
    start, end = np.mean(mel[:3]), np.mean(mel[-3:])
    print(f"demo mel loss: start {start:.3f}, end {end:.3f}")
    assert end < start - 0.5, (start, end)


def test_startup_log_names_the_fixes(demo_run):
    _, proc = demo_run
    log = proc.stderr
    for needle in ("Checkpoint vocab size: 76", "Extended vocab size:", "Using MATCHED init scale",
                   "Per-layer gradient clipping ACTIVE", "embedding    max_norm=0.1", "rest         max_norm=1"):
        assert needle in log, needle


def test_tensorboard_has_the_scalars(demo_run):
    out, _ = demo_run
    found = scalars(out)
    assert EXPECTED_SCALARS <= set(found), EXPECTED_SCALARS - set(found)
    assert [s for s, _ in found["train/loss"]] == list(range(1, 31))
    # The logged lr is the one each step used: warmup step 1 of 10 at optim.lr=2e-3 ran at 2e-4.
    assert found["train/lr"][0] == (1, pytest.approx(2e-4))
    new, old = found["embedding/new_std"][0][1], found["embedding/pretrained_std"][0][1]
    assert abs(new - old) / old < 0.1
    # The tiny release has a vocoder: the test sentence is spoken at each eval and logged as audio.
    assert any(tag.startswith("eval_speech/") for tag in audio_tags(out))  # spoken, scored, labelled


def test_resolved_config_and_checkpoints_written(demo_run):
    out, _ = demo_run
    assert (out / "config.yaml").is_file()
    assert latest(out / "checkpoints").name == "step_00000030"


def test_export_loads_upstream_strictly_and_speaks_amharic(demo_run, demo_corpus, tmp_path):
    from amh.xtts.synthesis import load_export, synthesize

    out, _ = demo_run
    export = out / "export"
    assert {p.name for p in export.iterdir()} == {"model.pth", "config.json", "vocab.json", "frontend.json", "training_summary.json"}
    model, settings = load_export(export)  # Xtts.load_checkpoint(..., strict=True)
    assert settings.language == "am" and "am" in model.config.languages
    sd = torch.load(export / "model.pth", weights_only=True)["model"]
    assert all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())
    ref = next((demo_corpus / "ready" / "wavs").iterdir())
    torch.manual_seed(0)
    wav, sr = synthesize(model, settings, "ሰላም፣ እንዴት ነህ? 25 ብር", ref)
    assert sr == 24000 and wav.size > 0 and np.isfinite(wav).all()


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_each_precision_trains(precision, tiny_release, demo_corpus, demo_vocab, tmp_path):
    out = tmp_path / precision
    run_train(demo_overrides(tiny_release, demo_corpus, out, demo_vocab, **{
        "train.max_steps": 3, "train.precision": precision}))
    found = scalars(out)
    losses = [v for _, v in found["train/loss"]]
    assert len(losses) == 3 and all(np.isfinite(losses))
    scale = found["train/loss_scale"][-1][1]
    assert (scale > 1) if precision == "fp16" else scale == 1.0


def test_resume_is_the_same_training(tiny_release, demo_corpus, demo_vocab, tmp_path):
    common = {"train.precision": "fp32", "train.save_every": 3, "data.num_workers": 1}
    straight = tmp_path / "straight"
    run_train(demo_overrides(tiny_release, demo_corpus, straight, demo_vocab, **common, **{"train.max_steps": 6}))
    split = tmp_path / "split"
    run_train(demo_overrides(tiny_release, demo_corpus, split, demo_vocab, **common, **{"train.max_steps": 3}))
    # A checkpoint killed mid-write (temp folder, and a folder without its COMPLETE marker) is ignored.
    shutil.copytree(split / "checkpoints" / "step_00000003", split / "checkpoints" / ".tmp-step_00000005")
    shutil.copytree(split / "checkpoints" / "step_00000003", split / "checkpoints" / "step_00000004")
    (split / "checkpoints" / "step_00000004" / MARKER).unlink()
    proc = run_train(demo_overrides(tiny_release, demo_corpus, split, demo_vocab, **common, **{
        "train.max_steps": 6, "train.resume": "auto"}))
    assert "resumed from" in proc.stderr and "step_00000003" in proc.stderr
    a = [v for _, v in scalars(straight)["train/loss"]]
    b = sorted(scalars(split)["train/loss"])
    assert [s for s, _ in b] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([v for _, v in b], a, rtol=1e-5, atol=1e-6)


def test_prepared_codes_keep_the_dvae_off_the_device(tiny_release, demo_corpus, demo_vocab, tmp_path):
    """Data prepared with codes (prepare_dataset.py --codes-from): the run says the DVAE stays off the
    device, plans no memory for it and trains; the demo's ready folder keeps it on the device."""
    import subprocess
    import sys

    from trainrun import REPO

    prepared = tmp_path / "prepared"
    subprocess.run([sys.executable, str(REPO / "scripts" / "prepare_dataset.py"), "--config",
                    str(REPO / "configs" / "demo.yaml"), "--out", str(prepared), "--codes-from", str(tiny_release),
                    "--vocab", str(demo_vocab), f"data.path={demo_corpus / 'ready'}", "data.source=ready"],
                   check=True, capture_output=True, text=True, timeout=600)
    proc = run_train(demo_overrides(tiny_release, demo_corpus, tmp_path / "run", demo_vocab, **{
        "train.max_steps": 2, "data.source": "parquet", "data.path": str(prepared)}))
    log = proc.stdout + proc.stderr
    assert "DVAE: kept off the device (both splits carry precomputed codes)" in log
    plan = next(line for line in log.splitlines() if "memory plan:" in line)
    assert "dvae" not in plan
    assert "moving the DVAE" not in log
    assert len(scalars(tmp_path / "run")["train/loss"]) == 2

    online = run_train(demo_overrides(tiny_release, demo_corpus, tmp_path / "online", demo_vocab,
                                      **{"train.max_steps": 1}))
    online_log = online.stdout + online.stderr
    assert "DVAE: on cpu, encoding every batch" in online_log
    assert "dvae" in next(line for line in online_log.splitlines() if "memory plan:" in line)
