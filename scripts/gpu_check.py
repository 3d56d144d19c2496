#!/usr/bin/env python3
"""The one-call GPU check's measurements (run by scripts/gpu_check.sh, which sets up the environment).

    python scripts/gpu_check.py --out DIR            # one H100/H200: full-size XTTS v2 GPT, < 9 minutes
    python scripts/gpu_check.py --out DIR --dry-run  # CPU, tiny release, a few steps: the same code paths

Parts, each under its own time cap and all under one deadline (a part that fails or runs out of
time is reported in the table, and the next part still runs):

1. throughput: our step (amh.train.step, as train.py runs it) on synthetic batches of B clips x 11 s with
   a 6 s prompt and 100 text tokens: bf16 at B = 2, 4, 8, ... until out of memory, then at B = 2
   and at the largest B that fits: cached codes, fp16, activation checkpointing, and whether
   checkpointing fits 2x the largest batch. Rows: steps/s, GPT tokens/s, audio s/s, MFU, peak memory.
2. ratio: scripts/bench_step.py --baseline coqui (ours vs upstream GPTTrainer + Coqui Trainer on the
   demo corpus: same weights, data, batch 2, bf16, prompt padding), full size.
3. stability: 200 fp16 steps at the seed's recipe (lr 2e-6, batch 2, per-group clipping) from the
   matched init and from the seed's old N(0, 1e-4) new rows (amh.bench.stability.run_variant).

MFU = 6 x (trainable non-embedding GPT parameters) x tokens / time / dense bf16 peak (fp16 has the
same peak), the nanoGPT/PaLM convention without the attention term; the table also gives the
attention-inclusive figure of scripts/bench_step.py.
The table goes to DIR/gpu_check.md (and stdout); raw rows to DIR/gpu_check.json.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SAMPLE_RATE = 22050


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny release, fp32, a few steps")
    p.add_argument("--budget-s", type=float, help="wall-clock budget for all parts (default: 510 s on the GPU; "
                                                    "none in a dry run, whose few tiny steps only check the code paths)")
    p.add_argument("--fixtures", type=Path, default=Path(os.environ.get("AMH_FIXTURES_DIR", REPO / "build" / "fixtures")))
    p.add_argument("--peak-tflops", type=float, help="dense bf16 peak (default: looked up by device name)")
    return p.parse_args(argv)


class Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


# ---------------------------------------------------------------------------------------------
# 1. throughput on synthetic batches


def throughput(args, deadline: Deadline, cap_s: float) -> tuple[list[dict], dict]:
    import torch
    from accelerate import Accelerator

    from amh.train.clipping import GroupClipper
    from amh.config import load_config
    from amh.fixtures.bench_release import make_bench_release
    from amh.train.nan_guard import NanGuard
    from amh.train.optim import build_optimizer
    from amh.train.precision import Precision
    from amh.train.step import apply_model_options, forward_backward, optimizer_step, to_device
    from amh.xtts.codes import AudioCodec
    from amh.xtts.forward import XttsGptForTraining
    from amh.xtts.release import build_xtts
    from amh.bench.step_report import peak_tflops

    part_end = time.monotonic() + min(cap_s, deadline.left())
    dry = args.dry_run
    size = "tiny" if dry else "full"
    release = make_bench_release(args.fixtures / f"bench_{size}", size)
    cfg = load_config(REPO / "configs" / "demo.yaml", ["train.grad_accum=1", "optim.lr=2e-6", "optim.schedule=constant"])
    accelerator = Accelerator(cpu=dry)
    device = accelerator.device
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True  # the DVAE and mels run in fp32, outside autocast
        torch.backends.cudnn.allow_tf32 = True
    xtts, _ = build_xtts(release, release / "vocab.json", std_factor=cfg.model.init_std_factor, seed=0)
    model = XttsGptForTraining(xtts.gpt, text_weight=cfg.train.text_ce_weight, mel_weight=cfg.train.mel_ce_weight)
    del xtts
    apply_model_options(model)
    codec = AudioCodec.from_release(release, device)
    optimizer = build_optimizer(model, cfg.optim, cfg.train.clip_groups)
    clipper = GroupClipper(model.named_parameters(), cfg.train.clip_groups)
    guard = NanGuard(cfg.train.max_consecutive_skips)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    core = accelerator.unwrap_model(model)
    gpt_cfg = core.gpt.gpt.config
    n_params = sum(p.numel() for p in core.parameters() if p.requires_grad)
    n_lookup = sum(m.weight.numel() for m in core.modules() if isinstance(m, torch.nn.Embedding))
    peak = args.peak_tflops or peak_tflops(argparse.Namespace(peak_tflops=None), device)
    info = {"device": torch.cuda.get_device_name(device) if cuda else "CPU", "gpt_params": n_params,
            "layers": gpt_cfg.n_layer, "width": gpt_cfg.n_embd, "peak_tflops": peak, "size": size}
    seconds, prompt_s, text_tokens = (1.0, 0.5, 20) if dry else (11.0, 6.0, 100)
    steps, warmup = (2, 1) if dry else (6, 2)
    n_wav, n_codes = round(seconds * SAMPLE_RATE), math.ceil(seconds * SAMPLE_RATE / 1024)
    seq = (text_tokens + 2) + (n_codes + 2) + 32  # text + [START]/[STOP], codes + start/stop, 32 prompt latents

    def batch(b: int, cached: bool) -> dict:
        g = torch.Generator().manual_seed(b)
        rows = core.gpt.text_embedding.num_embeddings
        out = {"text": torch.randint(3, rows - 2, (b, text_tokens), generator=g),
               "text_lengths": torch.full((b,), text_tokens), "wav_lengths": torch.full((b,), n_wav),
               "wav": 0.1 * torch.randn(b, 1, n_wav, generator=g),
               "cond": 0.1 * torch.randn(b, 1, round(prompt_s * SAMPLE_RATE), generator=g),
               "cond_idxs": torch.tensor([[0, round(prompt_s * SAMPLE_RATE)]] * b)}
        if cached:  # what prepare_dataset --codes-from stores: no DVAE in the step
            out["codes"] = codec.codes(out["wav"].to(device)).cpu()
            out["cond_mels"] = codec.cond_mels(out.pop("cond").to(device)).cpu()
            del out["wav"]
        return {k: (v.pin_memory() if cuda else v) for k, v in out.items()}

    def checkpointing(on: bool) -> None:
        for m in core.gpt.gpt.modules():
            if hasattr(m, "gradient_checkpointing"):
                m.gradient_checkpointing = False
        if on:
            apply_model_options(core, gradient_checkpointing=True)

    def measure(b: int, precision: str, cached: bool = False, ckpt: bool = False) -> dict:
        row = {"batch": b, "precision": precision, "codes": "cached" if cached else "online", "ckpt": ckpt}
        if time.monotonic() > part_end:
            return {**row, "status": "skipped (time)"}
        checkpointing(ckpt)
        prec = Precision(precision, device, init_scale=cfg.train.init_loss_scale)
        try:
            x = to_device(batch(b, cached), device)
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            for i in range(warmup + steps):
                if i == warmup:
                    if cuda:
                        torch.cuda.synchronize()
                    start = time.perf_counter()
                with accelerator.accumulate(model):
                    loss = forward_backward(model, x, codec, prec, accelerator)
                stepped, _ = optimizer_step(optimizer, clipper, guard, prec, loss.total)
            if cuda:
                torch.cuda.synchronize()
            dt = (time.perf_counter() - start) / steps
        except torch.OutOfMemoryError:
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            return {**row, "status": "OOM"}
        tokens = b * ((text_tokens + 2) + (n_codes + 2))
        flops_6n = 6.0 * (n_params - n_lookup) * tokens
        flops_attn = flops_6n + 12.0 * gpt_cfg.n_layer * gpt_cfg.n_embd * b * seq ** 2
        mfu = (lambda f: f / dt / (peak * 1e12)) if peak else (lambda f: math.nan)
        return {**row, "status": "ok", "steps_s": 1 / dt, "tokens_s": tokens / dt, "audio_s_s": b * seconds / dt,
                "mfu": mfu(flops_6n), "mfu_attn": mfu(flops_attn), "finite": bool(torch.isfinite(loss.total)),
                "peak_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else math.nan}

    main = "fp32" if dry else "bf16"
    rows, largest = [], None
    for b in ((2, 4) if dry else (2, 4, 8, 16, 32, 64, 128, 256)):
        r = measure(b, main)
        rows.append(r)
        print(format_row(r), flush=True)
        if r["status"] != "ok":
            break
        largest = b
    for b in sorted({2, largest or 2}):
        for precision, kw in ((main, {"cached": True}), ("fp32" if dry else "fp16", {}), (main, {"ckpt": True})):
            r = measure(b, precision, **kw)
            rows.append(r)
            print(format_row(r), flush=True)
    if largest:
        r = measure(2 * largest, main, ckpt=True)  # does checkpointing fit twice the batch?
        rows.append(r)
        print(format_row(r), flush=True)
    checkpointing(False)
    info["largest_batch"] = largest
    if cuda:  # where one step waits for the GPU (none expected: amh.train.step keeps the guard on the device)
        import warnings

        x = to_device(batch(2, False), device)
        prec = Precision(main, device)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                with accelerator.accumulate(model):
                    loss = forward_backward(model, x, codec, prec, accelerator)
                optimizer_step(optimizer, clipper, guard, prec, loss.total)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        info["host_syncs"] = [f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)]
    return rows, info


def format_row(r: dict) -> str:
    head = f"B={r['batch']:<4} {r['precision']:<4} {r['codes']:<6} ckpt={'on ' if r['ckpt'] else 'off'}"
    if r["status"] != "ok":
        return f"{head} {r['status']}"
    return (f"{head} {r['steps_s']:7.3f} steps/s {r['tokens_s']:9.0f} tok/s {r['audio_s_s']:8.1f} audio-s/s "
            f"MFU {r['mfu']:.1%} (with attention {r['mfu_attn']:.1%}) peak {r['peak_gb']:.1f} GiB")


# ---------------------------------------------------------------------------------------------
# 2. ours vs the recipe, 3. stability


def ratio(args, deadline: Deadline, cap_s: float) -> dict:
    out = args.out / "bench_step.json"
    size_args = (["--device", "cpu", "--size", "tiny", "--precision", "fp32", "--steps", "1", "--repeats", "1",
                  "--warmup", "1", "--threads", "1"] if args.dry_run else
                 ["--device", "cuda", "--size", "full", "--precision", "bf16", "--steps", "10", "--repeats", "3",
                  "--warmup", "3"])
    cmd = [sys.executable, str(REPO / "scripts" / "bench_step.py"), "--baseline", "coqui", "--variants", "cached,online",
           "--batch-size", "2", *size_args, "--fixtures", str(args.fixtures), "--json", str(out)]
    if args.peak_tflops:
        cmd += ["--peak-tflops", str(args.peak_tflops)]
    timeout = max(1.0, min(cap_s, deadline.left()))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {timeout:.0f} s"}
    (args.out / "bench_step.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        return {"status": f"failed (rc {proc.returncode}, see bench_step.log)"}
    result = json.loads(out.read_text())
    per = result["per_repeat"]
    ratios = {n: sorted(a["steps/s"] / b["steps/s"] for a, b in zip(per[n], per["coqui"]))
              for n in ("cached", "online")}
    return {"status": "ok", "medians": result["medians"],
            "ratio": {n: r[len(r) // 2] for n, r in ratios.items()}}


def stability(args, deadline: Deadline, cap_s: float) -> dict:
    import csv

    from accelerate import Accelerator

    from amh.bench import stability as study
    from amh.config import load_config
    from amh.fixtures.bench_release import make_bench_release
    from amh.fixtures.demo_corpus import make_demo_corpus
    from amh.text.frontend import FrontendSettings
    from amh.xtts.vocab import extend_vocab
    from amh.xtts.language import register

    part_end = time.monotonic() + min(cap_s, deadline.left())
    size, steps = ("tiny", 3) if args.dry_run else ("full", 200)
    release = make_bench_release(args.fixtures / f"bench_{size}", size)
    ready = make_demo_corpus(args.fixtures / "demo_corpus") / "ready"
    settings = FrontendSettings()
    register(settings)
    texts = []
    for name in ("metadata_train.csv", "metadata_eval.csv"):
        with open(ready / name, encoding="utf-8", newline="") as f:
            texts += [row["text"] for row in csv.DictReader(f, delimiter="|")]
    vocab = args.out / "vocab_extended.json"
    extend_vocab(release / "vocab.json", texts, vocab, mode="chars", frontend=settings)
    cfg = load_config(REPO / "configs" / "demo.yaml", [
        "train.batch_size=2", "train.grad_accum=1", "optim.lr=2e-6", "optim.schedule=constant",
        "optim.warmup_steps=0", f"data.path={ready}", "data.source=ready", f"data.num_workers={0 if args.dry_run else 2}"])
    accelerator = Accelerator(cpu=args.dry_run)
    precision = "fp32" if args.dry_run else "fp16"  # CPU autocast has no fp16 GradScaler path worth timing
    inputs = {"release": release, "vocab": vocab, "settings": settings}
    out = {}
    for variant in (study.Variant("matched", "matched", True, precision=precision),
                    study.Variant("old 1e-4", "old", True, precision=precision)):
        if time.monotonic() > part_end - (0 if not out else 5):
            out[variant.name] = {"status": "skipped (time)"}
            continue
        h = study.run_variant(variant, cfg, inputs, accelerator, steps, 0)
        finite = [x for x in h.loss if math.isfinite(x)]
        last = finite[-20:] or [math.nan]
        out[variant.name] = {"status": "ok", "steps": len(h.loss), "first_loss": h.loss[0],
                             "last20_loss": sum(last) / len(last), "text_ce": h.loss_text[-1],
                             "skipped": sum(h.skipped), "stopped_at": h.stopped_at,
                             "max_embedding_norm": max(h.norms.get("embedding", [math.nan])),
                             "final_scale": h.scale[-1], "seconds": h.seconds}
        print(f"stability {variant.name}: {out[variant.name]}", flush=True)
    return out


# ---------------------------------------------------------------------------------------------
# The table


def markdown(info: dict, rows: list[dict], rat: dict, stab: dict, dry: bool, started: str, wall: float) -> str:
    lines = [f"## GPU check{' (DRY RUN: CPU, tiny release, fp32 - code paths only, not a measurement)' if dry else ''}",
             "", f"{started}; {info.get('device', '?')}; release bench_{info.get('size', '?')} "
             f"({info.get('gpt_params', 0) / 1e6:.1f} M GPT parameters, {info.get('layers')} x {info.get('width')}); "
             f"dense bf16 peak {info.get('peak_tflops')} TFLOP/s; {wall:.0f} s in all.", "",
             "Synthetic batches: B clips x 11 s, 6 s prompt, 100 text tokens (dry run: 1 s, 0.5 s, 20).", "",
             "| B | precision | codes | ckpt | steps/s | GPT tokens/s | audio s/s | MFU (6N) | MFU (+attn) | peak GiB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['batch']} | {r['precision']} | {r['codes']} | {'on' if r['ckpt'] else 'off'} | "
                         f"{r['status']} | | | | | |")
            continue
        lines.append(f"| {r['batch']} | {r['precision']} | {r['codes']} | {'on' if r['ckpt'] else 'off'} | "
                     f"{r['steps_s']:.3f} | {r['tokens_s']:,.0f} | {r['audio_s_s']:.1f} | {r['mfu']:.1%} | "
                     f"{r['mfu_attn']:.1%} | {r['peak_gb']:.1f} |")
    lines.append("")
    lines.append(f"Largest bf16 batch that fits: {info.get('largest_batch')}. Host syncs in one optimizer step: "
                 f"{info.get('host_syncs', 'not audited (CPU)')}.")
    lines.append("")
    if rat.get("status") == "ok":
        m = rat["medians"]
        lines += ["Ours vs the Coqui recipe (scripts/bench_step.py --baseline coqui, batch 2, demo corpus):", "",
                  "| loop | steps/s | audio s/s | GPT tokens/s | ours/recipe steps/s (median of paired) |",
                  "|---|---|---|---|---|"]
        for n in ("cached", "online", "coqui"):
            ratio_cell = f"{rat['ratio'][n]:.2f}x" if n in rat["ratio"] else ""
            lines.append(f"| {n} | {m[n]['steps/s']:.3f} | {m[n]['audio s/s']:.1f} | {m[n]['GPT tokens/s']:,.0f} | "
                         f"{ratio_cell} |")
    else:
        lines.append(f"Ours vs the Coqui recipe: {rat.get('status')}")
    lines += ["", "Stability (seed's recipe: lr 2e-6, batch 2, per-group clipping; fp16 on the GPU):", "",
              "| init | steps | first loss | last-20 mean | text CE | skipped | max embedding-group norm | final scale |",
              "|---|---|---|---|---|---|---|---|"]
    for name, s in stab.items():
        if s.get("status") != "ok":
            lines.append(f"| {name} | {s.get('status')} | | | | | | |")
            continue
        lines.append(f"| {name} | {s['steps']} | {s['first_loss']:.3f} | {s['last20_loss']:.3f} | {s['text_ce']:.3f} | "
                     f"{s['skipped']} | {s['max_embedding_norm']:.3g} | {s['final_scale']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    args.out.mkdir(parents=True, exist_ok=True)
    budget = args.budget_s or (10**6 if args.dry_run else 510.0)
    deadline = Deadline(budget)
    started, t0 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), time.monotonic()
    rows, info, rat, stab, failures = [], {}, {"status": "not run"}, {}, []
    # Caps (s) on the GPU: throughput 190, ratio 170, stability what is left (~150 for 2 x 200 steps).
    caps = (("throughput", 190), ("ratio", 170), ("stability", 10**6))
    for name, cap in ((n, 10**6 if args.dry_run else c) for n, c in caps):
        try:
            if name == "throughput":
                rows, info = throughput(args, deadline, cap)
            elif name == "ratio":
                rat = ratio(args, deadline, cap)
            else:
                stab = stability(args, deadline, cap)
        except Exception as err:  # noqa: BLE001 - report the part and go on to the next
            import traceback

            traceback.print_exc()
            failures.append(f"{name}: {type(err).__name__}: {err}")
    table = markdown(info, rows, rat, stab, args.dry_run, started, time.monotonic() - t0)
    if failures:
        table += "\nFailed parts: " + "; ".join(failures) + "\n"
    (args.out / "gpu_check.md").write_text(table, encoding="utf-8")
    (args.out / "gpu_check.json").write_text(json.dumps({"info": info, "rows": rows, "ratio": rat, "stability": stab,
                                                          "failures": failures}, indent=1, default=str))
    print(table)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
