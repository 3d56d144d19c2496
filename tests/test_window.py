"""Every split of the same samples is the same update: 4x1 == 2x2 == 3+1 == two ranks with 3 and 1.

The objective of an optimizer step is the mean per-sample loss over the whole accumulation window
on all ranks (amh.train.step.window_scale). A mean of micro-batch means (the old weighting) is shown to
differ for an uneven split, so these tests fail on it.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from amh.data.pipeline import build_loader
from amh.config import load_config
from amh.text.frontend import FrontendSettings
from amh.train.precision import Precision
from amh.train.step import forward_backward, window_scale
from amh.xtts.codes import AudioCodec
from amh.xtts.forward import XttsGptForTraining
from amh.xtts.release import build_xtts
from amh.xtts.text_encoder import TextEncoder

from launching.launch_runs import REPO, accelerate_command, run

PROBE = REPO / "tests" / "launching" / "zero_step_probe.py"


@pytest.fixture(scope="module")
def setup(tiny_release, demo_corpus, demo_vocab):
    cfg = load_config(REPO / "configs" / "demo.yaml", [f"data.path={demo_corpus / 'ready'}", "data.num_workers=0",
                                                       "data.shuffle_buffer=8", "data.bucket_buffer=8"])
    loader = build_loader(cfg.data, split="train", batch_size=4, text_encoder=TextEncoder(demo_vocab, FrontendSettings()),
                          rank=0, world_size=1, seed=0, training=True)
    batch = next(iter(loader))
    assert batch["wav_lengths"].shape[0] == 4
    xtts, _ = build_xtts(tiny_release, demo_vocab, seed=0)
    model = XttsGptForTraining(xtts.gpt)
    model.eval()  # dropout off: the splits must agree to rounding
    return model, AudioCodec.from_release(tiny_release, torch.device("cpu")), batch


def _rows(batch: dict, start: int, stop: int) -> dict:
    n = batch["wav_lengths"].shape[0]
    return {k: (v[start:stop] if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == n else v)
            for k, v in batch.items()}


def _gradients(setup, sizes: list[int], weighted: bool = True) -> torch.Tensor:
    model, codec, batch = setup
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=len(sizes))
    precision = Precision("fp32", torch.device("cpu"))
    model.zero_grad(set_to_none=True)
    micro = [_rows(batch, sum(sizes[:i]), sum(sizes[:i + 1])) for i in range(len(sizes))]
    scale = window_scale([s for s in sizes], accelerator) if weighted else None
    for m in micro:
        with accelerator.accumulate(model):
            forward_backward(model, m, codec, precision, accelerator, scale)
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def _relative(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


def test_any_split_of_a_window_gives_the_same_gradient(setup):
    reference = _gradients(setup, [4])
    for sizes in ([2, 2], [3, 1], [1, 3], [1, 1, 2]):
        assert _relative(_gradients(setup, sizes), reference) < 1e-5, sizes  # fp32 rounding (measured ~2e-7)


def test_a_mean_of_micro_batch_means_misweighs_an_uneven_split(setup):
    reference = _gradients(setup, [4])
    even = _gradients(setup, [2, 2], weighted=False)
    uneven = _gradients(setup, [3, 1], weighted=False)
    assert _relative(even, reference) < 1e-5  # equal micro-batches: the old weighting was right
    assert _relative(uneven, reference) > 0.05  # the lone sample of the 3+1 split weighed 3x


@pytest.mark.slow
def test_two_ranks_with_three_and_one_samples_equal_one_process(tmp_path):
    """The toy probe (train.py's step) in one process with 4 samples, one process 3+1 accumulated, and
    DDP over 2 ranks holding 3 and 1 samples: same per-step losses, norms and final weights."""
    runs = {"one 4x1": ("one", 1, ["--global-batch", "4", "--accum", "1"]),
            "one 3+1": ("one", 1, ["--global-batch", "2", "--accum", "2", "--split", "3,1"]),
            "ddp 3|1": ("ddp", 2, ["--global-batch", "4", "--accum", "1", "--split", "3,1"])}
    results = {}
    for name, (mode, nproc, args) in runs.items():
        out = tmp_path / name.replace(" ", "_").replace("|", "_").replace("+", "_")
        run(accelerate_command(mode, nproc, PROBE, ["--out", str(out), "--steps", "3", *args], tmp_path),
            tmp_path / f"{out.name}.log")
        results[name] = json.loads((out / "result.json").read_text())
    reference = results["one 4x1"]
    for name, result in results.items():
        for got, want in zip(result["steps"], reference["steps"]):
            assert got["loss"] == pytest.approx(want["loss"], rel=1e-5), name
            for group, norm in want["norms"].items():
                assert got["norms"][group] == pytest.approx(norm, rel=1e-5), (name, group)
        for key, values in reference["weights"].items():
            torch.testing.assert_close(torch.tensor(result["weights"][key]), torch.tensor(values), rtol=1e-5,
                                       atol=1e-6, msg=f"{name}: {key}")
