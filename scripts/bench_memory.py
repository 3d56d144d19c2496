#!/usr/bin/env python3
"""Measure the memory of each part of a training step at full size (the 441 M XTTS v2 GPT) against
amh.train.memory's plan, and print which profiles fit 8 / 12 / 24 / 80 GB cards.

    python scripts/bench_memory.py --runs fp32:adamw:off:1                # CPU: one measured row
    python scripts/bench_memory.py --runs fp32:adamw:on:1,fp32:adamw8bit:on:2
    python scripts/bench_memory.py --device cuda --runs bf16:adamw8bit:on:2,bf16:adamw:off:2
    python scripts/bench_memory.py --runs none                            # the card table only
    python scripts/bench_memory.py --calibrate                            # saved-activation bytes

A run is precision:optimizer:checkpointing:batch. Each runs in its own process (a fresh allocator)
on the full-size GPT (amh.fixtures.bench_release.FULL_ARGS, random GPT-2-scale weights, built in
memory), with micro-batches of --seconds of audio and --text-tokens tokens and two micro-batches
per optimizer step (gradient accumulation, so grads are alive while activations are built: the
plan's peak). Phases, each a difference against the one before:
weights (model built), grads (after the first backward), optimizer (after the first step),
activations (peak of a later micro-batch's forward + backward above what was resident before it),
total (peak of the second optimizer step above the start). CPU: resident set size, sampled every
millisecond by a thread, with glibc told to return every freed block of >= 64 KiB to the system
(mallopt), so the RSS follows torch's live tensors. CUDA: torch.cuda.memory_allocated and
max_memory_allocated.

--calibrate counts, exactly, the bytes autograd saves in one forward at full width with 1-2
blocks (saved-tensor hooks, parameters excluded) against amh.train.memory.saved_activation_bytes.
"""
from __future__ import annotations

import argparse
import ctypes
import dataclasses
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CARDS_GIB = (8, 12, 24, 80)
# The seed's run, then the profiles of docs/memory.md: 8 GB, 12 GB, 24 GB, 80 GB cards.
TABLE_RUNS = ("fp32:adamw:off:2", "bf16:adamw:off:2", "bf16:adamw:on:2", "bf16:adamw8bit:off:2", "bf16:adamw8bit:on:2",
              "bf16:adamw8bit:on:4", "bf16:adamw:on:8", "bf16:adamw:off:8", "bf16:adamw:off:16", "bf16:adamw:on:32",
              "bf16:adamw:off:64", "bf16:adamw:on:128")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--runs", default="fp32:adamw:on:1",
                   help="measured runs precision:optimizer:checkpointing(on|off):batch, comma-separated, or none")
    p.add_argument("--seconds", type=float, default=11.0, help="audio per sample (data.max_audio_seconds)")
    p.add_argument("--text-tokens", type=int, default=200, help="text tokens per sample (data.max_text_tokens)")
    p.add_argument("--cond-seconds", type=float, default=6.0, help="prompt length (data.max_conditioning_seconds)")
    p.add_argument("--layers", type=int, default=30, help="GPT blocks (30: the real model; fewer for a quick look)")
    p.add_argument("--calibrate", action="store_true", help="saved-activation bytes at 1-2 blocks, then exit")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one run in this process
    return p.parse_args(argv)


def make_config(precision: str, optimizer: str, ckpt: bool, batch: int, args):
    from amh.config import load_config

    return load_config(None, [
        "data.path=bench", f"train.precision={precision}", f"optim.optimizer={optimizer}",
        f"model.gradient_checkpointing={str(ckpt).lower()}", f"train.batch_size={batch}", "train.grad_accum=2",
        f"data.max_audio_seconds={args.seconds}", f"data.max_text_tokens={args.text_tokens}",
        f"data.max_conditioning_seconds={args.cond_seconds}", f"data.min_conditioning_seconds={min(3.0, args.cond_seconds)}",
        "data.conditioning=same_speaker",
    ])


def build_model(layers: int, ckpt: bool, seed: int = 0):
    """The full-size GPT (bench_release's FULL_ARGS) in train mode, with train.py's model options."""
    from amh.fixtures.bench_release import FULL_ARGS, full_vocab
    from amh.fixtures.tiny_xtts import build_random_xtts
    from amh.train.step import apply_model_options
    from amh.xtts.forward import XttsGptForTraining

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "vocab.json").write_text(json.dumps(full_vocab()), encoding="utf-8")
        xtts, _ = build_random_xtts(Path(d) / "vocab.json", dict(FULL_ARGS, gpt_layers=layers), seed)
    model = XttsGptForTraining(xtts.gpt)
    del xtts
    gc.collect()
    apply_model_options(model, gradient_checkpointing=ckpt)
    return model.train()


def fake_batch(cfg, device):
    """A micro-batch of the config's worst shape: every clip max_audio_seconds, max_text_tokens tokens."""
    import torch

    from amh.train.memory import SAMPLES_PER_CODE, worst_micro_batches

    mb = worst_micro_batches(cfg)[0]
    d = cfg.data
    samples = int(d.max_audio_seconds * d.sample_rate)
    g = torch.Generator().manual_seed(0)
    b = mb.batch
    return [t.to(device) for t in (
        torch.randint(3, 6000, (b, d.max_text_tokens), generator=g), torch.full((b,), d.max_text_tokens),
        torch.randint(0, 1024, (b, -(-samples // SAMPLES_PER_CODE)), generator=g), torch.full((b,), samples),
        torch.randn(b, 80, mb.cond_frames, generator=g), torch.tensor([[-1, -1]] * b))]


class Meter:
    """Current and peak memory: RSS sampled by a thread on CPU, the caching allocator's counters on CUDA."""

    def __init__(self, device):
        import torch

        self.cuda = device.type == "cuda"
        self.torch = torch
        if not self.cuda:
            import psutil

            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD: blocks >= 64 KiB come from (and go back to) mmap
            libc.mallopt(-1, 64 * 1024)  # M_TRIM_THRESHOLD: trim the heap top early
            self.proc = psutil.Process()
            self.peak_rss = 0
            self._stop = False
            threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self):
        while not self._stop:
            self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)
            time.sleep(0.001)

    def now(self) -> int:
        gc.collect()
        if self.cuda:
            self.torch.cuda.synchronize()
            return self.torch.cuda.memory_allocated()
        return self.proc.memory_info().rss

    def reset_peak(self) -> None:
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()
        else:
            self.peak_rss = self.proc.memory_info().rss

    def peak(self) -> int:
        if self.cuda:
            self.torch.cuda.synchronize()
            return self.torch.cuda.max_memory_allocated()
        time.sleep(0.01)
        return self.peak_rss


def measure_one(spec: str, args) -> dict:
    """Build, step twice, and report each part's measured and planned bytes."""
    import torch

    from amh.train.memory import plan_memory
    from amh.train.optim import build_optimizer
    from amh.train.precision import Precision

    precision, optimizer, ckpt, batch = spec.split(":")
    ckpt = ckpt == "on"
    cfg = make_config(precision, optimizer, ckpt, int(batch), args)
    device = torch.device(args.device)
    torch.manual_seed(0)
    meter = Meter(device)
    start = meter.now()
    model = build_model(args.layers, ckpt).to(device)
    after_weights = meter.now()
    plan = plan_memory(cfg, model, device)
    opt = build_optimizer(model, cfg.optim, cfg.train.clip_groups)
    amp = Precision(precision, device)
    inputs = fake_batch(cfg, device)

    def micro_batch():
        with amp.autocast():
            loss = model(*inputs)
        amp.scale(loss.total).backward()
        del loss

    def opt_step():
        amp.unscale_(opt)
        amp.scaler.step(opt) if amp.scaler.is_enabled() else opt.step()
        amp.update()
        opt.zero_grad(set_to_none=True)

    t0 = time.perf_counter()
    before = meter.now()
    micro_batch()
    after_grads = meter.now()
    micro_batch()
    opt_step()
    after_opt = meter.now()
    # Step 2, the steady state: optimizer state resident, grads alive during the second micro-batch.
    meter.reset_peak()
    micro_batch()
    resident = meter.now()
    meter.reset_peak()
    micro_batch()
    act_peak = meter.peak() - resident
    step_peak = meter.peak() - start
    opt_step()
    seconds = time.perf_counter() - t0
    # After the first step the grads are freed (set_to_none): what it left is the optimizer's state.
    measured = {"weights": after_weights - start, "grads": after_grads - before, "optimizer": after_opt - before,
                "activations": act_peak, "total": step_peak}
    planned = dict(plan.parts)
    planned["total"] = plan.total
    return {"run": spec, "device": args.device, "layers": args.layers, "seconds": args.seconds,
            "text_tokens": args.text_tokens, "measured": measured, "planned": planned, "wall_s": round(seconds, 1),
            "describe": plan.describe()}


def run_isolated(spec: str, args) -> dict:
    """One run in a child process, so no allocator state leaks between runs."""
    cmd = [sys.executable, __file__, "--one", spec, "--device", args.device, "--seconds", str(args.seconds),
           "--text-tokens", str(args.text_tokens), "--cond-seconds", str(args.cond_seconds), "--layers", str(args.layers)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        raise SystemExit(f"run {spec} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def print_measured(results: list[dict]) -> None:
    gib = 2**30
    print("measured vs planned (GiB; CPU: RSS deltas, CUDA: allocator)")
    print(f"{'run (precision:optimizer:ckpt:batch)':38} {'part':12} {'measured':>9} {'planned':>9} {'plan/meas':>9}")
    for r in results:
        for part in ("weights", "grads", "optimizer", "activations", "total"):
            m, p = r["measured"][part], r["planned"].get(part, 0)
            ratio = f"{p / m:.3f}" if m > 0 else "n/a"
            print(f"{r['run']:38} {part:12} {m / gib:9.3f} {p / gib:9.3f} {ratio:>9}")
        print(f"  ({r['wall_s']} s; {r['describe']})")


def facts_at_layers(layers: int):
    """ModelFacts of the `layers`-block GPT from a 1-block build: every block has the same tensors, so
    the rest is exact, and the table needs no 441 M-parameter build (the measured runs build one)."""
    from transformers.pytorch_utils import Conv1D

    from amh.train.memory import ModelFacts

    one = build_model(1, ckpt=False)
    facts = ModelFacts.of(one)
    block = list(one.gpt.gpt.h[0].parameters())
    block_matmul = sum(m.weight.numel() for m in one.gpt.gpt.h[0].modules() if isinstance(m, Conv1D))
    extra = layers - 1
    return dataclasses.replace(
        facts, layers=layers, weight_bytes=facts.weight_bytes + extra * sum(p.nbytes for p in block),
        trainable=facts.trainable + extra * tuple((p.numel(), p.element_size()) for p in block),
        matmul_weight_numel=facts.matmul_weight_numel + extra * block_matmul)


def card_table(args) -> list[dict]:
    """Planned totals at full size on CUDA for the profile rows, and which cards they fit."""
    import torch

    from amh.train.memory import CUDA_RESERVE_BYTES, plan_memory

    from amh.train.memory import _plan

    facts = facts_at_layers(args.layers)
    rows = []
    for spec in TABLE_RUNS:
        precision, optimizer, ckpt, batch = spec.split(":")
        cfg = make_config(precision, optimizer, ckpt == "on", int(batch), args)
        plan = _plan(cfg, facts, "cuda", {})
        rows.append({"run": spec, "parts": plan.parts, "total": plan.total,
                     "fits": {c: plan.fits(c * 2**30) for c in CARDS_GIB}})
    gib = 2**30
    print(f"\nplanned on CUDA, {facts.layers} blocks, {facts.trainable_numel / 1e6:.1f} M trainable ({args.seconds:g} s clips, {args.text_tokens} text tokens; "
          f"a card fits when total <= card - {CUDA_RESERVE_BYTES / gib:.1f} GiB)")
    names = list(dict.fromkeys(k for r in rows for k in r["parts"]))
    print(f"{'precision:optimizer:ckpt:batch':32}" + "".join(f"{n:>14}" for n in names) + f"{'total':>8}"
          + "".join(f"{str(c) + ' GB':>7}" for c in CARDS_GIB))
    for r in rows:
        print(f"{r['run']:32}" + "".join(f"{r['parts'].get(n, 0) / gib:14.2f}" for n in names) + f"{r['total'] / gib:8.2f}"
              + "".join(f"{'yes' if r['fits'][c] else 'no':>7}" for c in CARDS_GIB))
    return rows


def calibrate(args) -> list[dict]:
    import torch

    from amh.train.memory import MicroBatch, ModelFacts, saved_activation_bytes

    rows = []
    for layers, batch, seconds, tokens, ckpt in ((1, 1, 11.0, 200, False), (2, 1, 11.0, 200, False),
                                                 (2, 2, 11.0, 200, False), (2, 1, 5.0, 100, False),
                                                 (2, 3, 3.0, 40, False), (2, 1, 11.0, 200, True)):
        model = build_model(layers, ckpt)
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        samples = int(seconds * 22050)
        cond = min(6.0, seconds)
        frames = int(cond * 22050) // 256 + 1
        codes = -(-samples // 1024)
        inputs = (torch.randint(3, 6000, (batch, tokens)), torch.full((batch,), tokens),
                  torch.randint(0, 1024, (batch, codes)), torch.full((batch,), samples),
                  torch.randn(batch, 80, frames), torch.tensor([[0, int(cond * 22050)]] * batch))
        saved: dict[int, int] = {}

        def pack(t):
            s = t.untyped_storage()
            if s.data_ptr() not in params:
                saved[s.data_ptr()] = s.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(*inputs)
        planned = saved_activation_bytes(ModelFacts.of(model), MicroBatch(batch, tokens + 2, codes + 5, frames),
                                         "cpu", "fp32", ckpt)
        measured = sum(saved.values())
        rows.append({"layers": layers, "batch": batch, "seconds": seconds, "text_tokens": tokens,
                     "checkpointing": ckpt, "measured": measured, "planned": planned})
        print(f"blocks {layers} batch {batch} {seconds:4.1f} s {tokens:3d} tokens ckpt {'on ' if ckpt else 'off'}: "
              f"saved {measured / 2**20:7.1f} MiB, planned {planned / 2**20:7.1f} MiB, plan/measured {planned / measured:.3f}",
              flush=True)
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(args.one, args)))
        return 0
    out: dict = {}
    if args.calibrate:
        out["calibration"] = calibrate(args)
    else:
        runs = [] if args.runs == "none" else args.runs.split(",")
        out["measured"] = []
        for spec in runs:
            out["measured"].append(run_isolated(spec, args))
            print_measured(out["measured"][-1:])
        out["cards"] = card_table(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
