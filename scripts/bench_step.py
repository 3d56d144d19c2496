#!/usr/bin/env python3
"""Time optimizer steps of our training loop, and with --baseline coqui of the official XTTS recipe
(upstream GPTTrainer + Coqui Trainer), on the same release, data, batch size and precision.

    python scripts/bench_step.py                                   # CPU, tiny bench release
    python scripts/bench_step.py --baseline coqui --repeats 5      # + the recipe, our/their ratios
    python scripts/bench_step.py --size mid,tiny --baseline coqui  # CPU: full width, 4 layers; then tiny
    python scripts/bench_step.py --device cuda --baseline coqui    # full-size 441 M GPT in bf16

Both loops start from identical weights (the release + the demo corpus's extended vocab, new rows
at matched std), tokenize through the same Amharic front-end and read the same ready/ folder.
After `--warmup` steps per loop, the loops take turns running `--steps` optimizer steps, `--repeats`
times; every number in the table is the median over the repeats. Each loop's batches for a timed
stretch are fetched before its clock starts (data loading is outside the timed region for both
loops; `scripts/bench_data.py` measures the pipeline); a step is the rest: the copy to the device,
the DVAE (online and the recipe), forward, backward, clipping and the optimizer step. Both loops
pad every prompt to data.max_conditioning_seconds (upstream's convention, ours too since issue 13).
By default (--recipe-data ours) the recipe steps on the very batches our `online` loop steps on,
converted to its dataset's layout: the same samples, padding and prompts, step for step (the
`cached` loop reads the same clips from the prepared copy, in its own bucketed order);
--recipe-data own gives it its own XTTSDataset batches (random draws, its own padding).

Our loop ("variants", --variants): `cached` reads DVAE codes precomputed once per utterance
(the one-off cost is printed), `online` runs the frozen DVAE every step as the recipe does; `+ckpt`
adds activation checkpointing, `+compile` torch.compile (amh.config ModelConfig flags).
Table rows: optimizer steps/s, samples/s, audio seconds/s, GPT tokens/s (real text + audio-code
positions, no padding), padding efficiency (real / padded audio), peak memory, and on a GPU the
model FLOPs utilisation: (6 * N * tokens + 12 * layers * width * sum(seq^2)) / time / peak bf16,
N = trainable GPT parameters except embedding tables (lookups cost no matmul).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The loops, their inputs and the table live in amh.bench; this script is the command line.
from amh.bench.step_inputs import data_config, precompute_codes, prepare_inputs  # noqa: E402
from amh.bench.step_loops import Chunk, CoquiLoop, OurLoop, Work, gpu_memory, host_syncs, timed, train_loader  # noqa: E402
from amh.bench.step_report import ROWS, format_table, parse_variants, peak_tflops, rates  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--size", help="bench release(s), comma-separated: tiny|mid|full (default: tiny on CPU, full on "
                                  "CUDA); mid is full width with 4 layers, where the GPT dominates a CPU step")
    p.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml",
                   help="training config for our loop's data/optim/clipping settings")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), help="default: fp32 on CPU, bf16 on CUDA")
    p.add_argument("--steps", type=int, default=10, help="optimizer steps per timed repeat")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per loop first")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--variants", default="cached,online",
                   help="our loop's variants, comma-separated: cached|online[+ckpt][+compile]")
    p.add_argument("--baseline", choices=("none", "coqui"), default="none")
    p.add_argument("--recipe-data", choices=("ours", "own"), default="ours",
                   help="the recipe's batches: our online loop's (identical work, the default) or its own dataset's")
    p.add_argument("--workers", type=int, help="DataLoader workers for both loops (default: 0 on CPU, 4 on CUDA)")
    p.add_argument("--threads", type=int, help="torch intra-op threads for every loop (default: torch's choice)")
    p.add_argument("--lr", type=float, default=5e-6, help="the recipe's learning rate, for both loops")
    p.add_argument("--peak-tflops", type=float, help="device bf16 peak for MFU (default: looked up by name)")
    p.add_argument("--fixtures", type=Path,
                   default=Path(os.environ.get("AMH_FIXTURES_DIR", REPO / "build" / "fixtures")))
    p.add_argument("--json", type=Path, help="also write the results here")
    return p.parse_args(argv)


def _without(argv: list[str], *options: str) -> list[str]:
    """argv minus the given options and their values (`--opt v` or `--opt=v`)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in options:
            skip = True
        elif not any(a.startswith(o + "=") for o in options):
            out.append(a)
    return out


def several_sizes(argv: list[str], sizes: list[str], json_out: Path | None) -> int:
    """One child run per size (separate processes: each builds its own models and the Coqui Trainer
    configures process-wide state), then one row per size: our/recipe steps/s, median of the
    per-repeat ratios, and audio seconds/s."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_sizes.") as tmp:
        for size in sizes:
            out = Path(tmp) / f"{size}.json"
            print(f"==== size {size}", flush=True)
            proc = subprocess.run([sys.executable, __file__, *_without(argv, "--size", "--json"), "--size", size,
                                   "--json", str(out)])
            if proc.returncode:
                return proc.returncode
            results[size] = json.loads(out.read_text())
    names = list(next(iter(results.values()))["medians"])
    ours = [n for n in names if n != "coqui"]
    print()
    header = ["size", "GPT params"] + [f"{n} audio s/s" for n in names]
    header += [f"{n}/coqui steps/s (median of paired)" for n in ours if "coqui" in names]
    rows = []
    for size, r in results.items():
        row = [size, f"{r['gpt_params'] / 1e6:.1f} M"] + [f"{r['medians'][n]['audio s/s']:.2f}" for n in names]
        if "coqui" in names:
            for n in ours:
                ratios = [a["steps/s"] / b["steps/s"] for a, b in zip(r["per_repeat"][n], r["per_repeat"]["coqui"])]
                row.append(f"{statistics.median(ratios):.2f}x")
        rows.append(row)
    widths = [max(len(x[i]) for x in [header] + rows) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths]] + rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(results, indent=1, default=float))
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.size and "," in args.size:
        return several_sizes(argv, [x.strip() for x in args.size.split(",") if x.strip()], args.json)
    if args.size and args.size not in ("tiny", "mid", "full"):
        raise SystemExit(f"--size {args.size!r}: choose tiny, mid or full (comma-separated for several)")
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the Coqui Trainer takes any visible GPU
    import torch
    from accelerate import Accelerator

    from amh.config import load_config

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    args.size = args.size or ("full" if device.type == "cuda" else "tiny")
    args.precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    args.workers = args.workers if args.workers is not None else (4 if device.type == "cuda" else 0)
    if args.baseline == "coqui" and args.precision == "fp16" and device.type == "cpu":
        raise SystemExit("--precision fp16 on CPU: the Coqui Trainer runs CPU autocast in bf16 only; use fp32 or bf16")
    variants = parse_variants(args.variants)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()

    cfg = load_config(args.config, [f"train.precision={args.precision}", f"train.batch_size={args.batch_size}",
                                    "train.grad_accum=1", f"optim.lr={args.lr}", "optim.schedule=constant",
                                    "optim.warmup_steps=0"])
    work_dir = Path(tempfile.mkdtemp(prefix="bench_step."))
    try:
        inputs = prepare_inputs(args, work_dir)
        data_cfg = data_config(cfg, inputs, args.workers)
        accelerator = Accelerator(cpu=device.type == "cpu")
        device = accelerator.device

        loops, resident, notes = [], {}, []
        cached_cfg = None
        if any(cached for _, cached, _, _ in variants):
            cached_cfg, seconds = precompute_codes(inputs, data_cfg, device, work_dir / "prepared")
            notes.append(f"cached: codes and prompt mels precomputed once (train + eval splits) in {seconds:.1f} s "
                         "(one-off, not in the step times)")
        for name, cached, ckpt, comp in variants:
            before = gpu_memory(device)
            loop = OurLoop(name, cfg, inputs, accelerator, cached_cfg if cached else data_cfg,
                           codes_cached=cached, checkpointing=ckpt, compile=comp)
            loops.append((loop, before))
        if args.baseline == "coqui":
            before = gpu_memory(device)
            shared = train_loader(cfg, inputs, data_cfg) if args.recipe_data == "ours" else None
            loops.append((CoquiLoop(cfg, inputs, args, work_dir / "coqui", threads, shared=shared), before))
            notes.append("coqui: " + ("steps on the batches our online loop steps on (same samples, padding, prompts)"
                                      if shared is not None else "its own XTTSDataset batches (--recipe-data own)"))
            torch.set_num_threads(threads)

        for loop, before in loops:  # warm-up: lazy optimizer state, first kernels, compile
            start = time.perf_counter()
            for _ in range(args.warmup):
                loop.run(loop.next_batch(), Work())
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            resident[loop.name] = gpu_memory(device) - before
            notes.append(f"{loop.name}: {args.warmup} warm-up steps in {time.perf_counter() - start:.1f} s")

        chunks: dict[str, list[Chunk]] = {loop.name: [] for loop, _ in loops}
        for _ in range(args.repeats):  # take turns, so drift in machine speed hits every loop alike
            for loop, _ in loops:
                others = gpu_memory(device) - resident[loop.name]
                chunks[loop.name].append(timed(loop, args.steps, device, others))

        syncs = {}
        if device.type == "cuda":
            syncs = {loop.name: host_syncs(loop, device) for loop, _ in loops if isinstance(loop, OurLoop)}
        ours = loops[0][0]
        per_token = 6.0 * (ours.n_params - ours.n_lookup)
        flops_per = (per_token, 12.0 * ours.layers * ours.width)
        peak = peak_tflops(args, device)
        peak_flops = peak * 1e12 if peak else None
        per_repeat = {name: [rates(c, inputs.sample_rate, flops_per, peak_flops) for c in cs]
                      for name, cs in chunks.items()}
        medians = {name: {row: statistics.median(r[row] for r in rs) for row in ROWS}
                   for name, rs in per_repeat.items()}

        used = {c.threads for cs in chunks.values() for c in cs}
        if used != {threads}:
            raise RuntimeError(f"torch threads changed during the run: {sorted(used)} (expected {threads})")
        load = os.getloadavg()
        names = [n for n, *_ in variants]
        baseline = "coqui" if args.baseline == "coqui" else None
        dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        print()
        print(f"device: {dev_name}; release: {inputs.release.name} ({ours.n_params / 1e6:.1f} M GPT parameters, "
              f"{ours.layers} layers x {ours.width}, attention: {ours.attention}); precision: {args.precision}; "
              f"batch size {args.batch_size}; loader workers {args.workers}; torch threads {threads} for every loop"
              + ("; the Coqui run's import set 1 thread, restored" if baseline else ""))
        print(f"{args.repeats} repeats x {args.steps} optimizer steps per loop after {args.warmup} warm-up steps; "
              f"medians over the repeats; machine load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
              "(1/5/15 min)")
        print(format_table(names, medians, baseline, device.type))
        for name, rs in per_repeat.items():
            print(f"  {name} steps/s per repeat: " + ", ".join(f"{r['steps/s']:.2f}" for r in rs))
        if baseline:
            for name in names:
                ratios = [a["steps/s"] / b["steps/s"] for a, b in zip(per_repeat[name], per_repeat[baseline])]
                print(f"  {name}/{baseline} steps/s ratio: median {statistics.median(ratios):.2f}x "
                      f"(per repeat {', '.join(f'{r:.2f}' for r in ratios)})")
        for name, where in syncs.items():
            print(f"  {name}: {len(where)} host sync(s) in one optimizer step"
                  + (f" at {', '.join(where)}" if where else ""))
        for note in notes:
            print(f"  {note}")
        if device.type != "cuda":
            print("  peak memory on CPU is the process's peak RSS, shared by all loops (no per-loop figure)")
        if device.type == "cuda" and not peak:
            print("  MFU: unknown device peak; pass --peak-tflops")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({
                "device": dev_name, "precision": args.precision, "batch_size": args.batch_size,
                "steps": args.steps, "repeats": args.repeats, "warmup": args.warmup, "workers": args.workers,
                "threads": threads, "release": inputs.release.name, "gpt_params": ours.n_params,
                "medians": medians, "per_repeat": per_repeat, "notes": notes, "host_syncs": syncs,
                "load_average": load,
            }, indent=1, default=float))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
