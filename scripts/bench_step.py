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
import csv
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# Dense bf16 tensor-core peaks (TFLOP/s) by device-name fragment, most specific first.
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.4), ("H200", 989.4), ("GH200", 989.4), ("B200", 2250.0),
                    ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0), ("A10G", 70.0))
ROWS = ("steps/s", "samples/s", "audio s/s", "GPT tokens/s", "padding eff.", "prompt frames/sample", "peak memory MB",
        "MFU")
HOP = 256  # conditioning mel hop (samples per frame)


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
    p.add_argument("--workers", type=int, help="DataLoader workers for both loops (default: 0 on CPU, 4 on CUDA)")
    p.add_argument("--threads", type=int, help="torch intra-op threads for every loop (default: torch's choice)")
    p.add_argument("--lr", type=float, default=5e-6, help="the recipe's learning rate, for both loops")
    p.add_argument("--peak-tflops", type=float, help="device bf16 peak for MFU (default: looked up by name)")
    p.add_argument("--fixtures", type=Path,
                   default=Path(os.environ.get("AMH_FIXTURES_DIR", REPO / "build" / "fixtures")))
    p.add_argument("--json", type=Path, help="also write the results here")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# What a timed stretch of steps did


@dataclass
class Work:
    """Real work of some steps, counted on the host from the batches' lengths (no device sync)."""

    steps: int = 0
    samples: int = 0
    audio_samples: int = 0
    padded_audio_samples: int = 0
    tokens: int = 0
    seq_sq: int = 0  # sum over samples of (32 conditioning latents + tokens)^2, for attention FLOPs
    prompt_frames: int = 0  # padded prompt mel frames per sample, summed over steps

    def add(self, text_lengths, wav_lengths, padded_len: int, prompt_frames: int) -> None:
        from amh.train.metrics import gpt_tokens

        per_sample = [int(gpt_tokens(t[None], w[None])) for t, w in zip(text_lengths, wav_lengths)]
        self.steps += 1
        self.samples += len(per_sample)
        self.audio_samples += int(wav_lengths.sum())
        self.padded_audio_samples += len(per_sample) * int(padded_len)
        self.tokens += sum(per_sample)
        self.seq_sq += sum((n + 32) ** 2 for n in per_sample)
        self.prompt_frames += prompt_frames


@dataclass
class Chunk:
    seconds: float
    work: Work
    peak_mb: float
    threads: int  # torch intra-op threads while the chunk ran


# ---------------------------------------------------------------------------------------------
# Shared inputs: release, corpus, extended vocab, front-end


@dataclass
class Inputs:
    release: Path
    ready: Path
    vocab: Path
    settings: object  # FrontendSettings
    sample_rate: int = 22050


def prepare_inputs(args, work_dir: Path) -> Inputs:
    from amh.fixtures.bench_release import make_bench_release
    from amh.fixtures.demo_corpus import make_demo_corpus
    from amh.text.frontend import FrontendSettings
    from amh.xtts.vocab import extend_vocab
    from amh.xtts.language import register

    release = make_bench_release(args.fixtures / f"bench_{args.size}", args.size)  # one size per run_size
    ready = make_demo_corpus(args.fixtures / "demo_corpus") / "ready"
    settings = FrontendSettings()
    register(settings)  # both loops tokenize "am" through the same front-end
    texts = []
    for name in ("metadata_train.csv", "metadata_eval.csv"):
        with open(ready / name, encoding="utf-8", newline="") as f:
            texts += [row["text"] for row in csv.DictReader(f, delimiter="|")]
    vocab = work_dir / "vocab_extended.json"
    extend_vocab(release / "vocab.json", texts, vocab, mode="chars", frontend=settings)
    return Inputs(release, ready, vocab, settings)


def data_config(cfg, inputs: Inputs, workers: int):
    """Our loop's data settings: the config's bucketing, the recipe's limits (upstream's max clip)."""
    return replace(cfg.data, source="ready", path=str(inputs.ready), num_workers=workers, max_audio_seconds=11.6)


def precompute_codes(inputs: Inputs, data_cfg, device, out: Path) -> tuple[object, float]:
    """The corpus as the data pipeline's prepared parquet (scripts/prepare_dataset.py --codes-from):
    DVAE codes and a fixed prompt's mel per utterance, computed once. Returns our loop's data config
    for it and the seconds it took, so the one-off cost is reported next to the per-step gain."""
    from amh.data.prepare import PrepareOptions, prepare
    from amh.text.frontend import TextFrontend
    from amh.xtts.codes import AudioCodec
    from amh.xtts.text_encoder import TextEncoder

    start = time.perf_counter()
    codec = AudioCodec.from_release(inputs.release, device)
    prepare(data_cfg, PrepareOptions(out=str(out), workers=1), normalize=TextFrontend(inputs.settings).normalize,
            text_encoder=TextEncoder(inputs.vocab, inputs.settings), codec=codec, progress_bar=False)
    return replace(data_cfg, source="parquet", path=str(out)), time.perf_counter() - start


# ---------------------------------------------------------------------------------------------
# The two loops. Each `step()` is one optimizer step including fetching its batch.


def gpu_memory(device) -> int:
    import torch

    return torch.cuda.memory_allocated(device) if device.type == "cuda" else 0


class OurLoop:
    """train.py's inner loop, composed from the same components (amh.train.step)."""

    def __init__(self, name: str, cfg, inputs: Inputs, accelerator, data_cfg, *, codes_cached: bool,
                 checkpointing: bool, compile: bool):
        import torch
        from accelerate.utils import set_seed

        from amh.train.clipping import GroupClipper
        from amh.data import build_loader
        from amh.train.nan_guard import NanGuard
        from amh.train.optim import build_optimizer
        from amh.train.precision import Precision
        from amh.train.step import apply_model_options
        from amh.xtts.codes import AudioCodec
        from amh.xtts.forward import XttsGptForTraining
        from amh.xtts.release import build_xtts
        from amh.xtts.text_encoder import TextEncoder

        self.name, self.codes_cached = name, codes_cached
        self.device = accelerator.device
        set_seed(cfg.train.seed)
        xtts, _ = build_xtts(inputs.release, inputs.vocab, std_factor=cfg.model.init_std_factor, seed=cfg.train.seed)
        model = XttsGptForTraining(xtts.gpt, text_weight=cfg.train.text_ce_weight, mel_weight=cfg.train.mel_ce_weight)
        del xtts
        apply_model_options(model, gradient_checkpointing=checkpointing, compile=compile)
        self.codec = AudioCodec.from_release(inputs.release, self.device)
        self.optimizer = build_optimizer(model, cfg.optim, cfg.train.clip_groups)
        self.clipper = GroupClipper(model.named_parameters(), cfg.train.clip_groups)
        self.precision = Precision(cfg.train.precision, self.device, init_scale=cfg.train.init_loss_scale,
                                   growth_interval=cfg.train.loss_scale_growth_interval)
        self.guard = NanGuard(cfg.train.max_consecutive_skips)
        self.model, self.optimizer = accelerator.prepare(model, self.optimizer)
        self.model.train()
        self.accelerator = accelerator
        self.loader = build_loader(data_cfg, split="train", training=True, batch_size=cfg.train.batch_size,
                                   text_encoder=TextEncoder(inputs.vocab, inputs.settings), rank=0, world_size=1,
                                   seed=cfg.train.seed)
        self.batches = self._endless()
        self.n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        self.n_lookup = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
        self.layers = model.gpt.gpt.config.n_layer
        self.width = model.gpt.gpt.config.n_embd
        self.attention = model.gpt.gpt.config._attn_implementation

    def _endless(self):
        while True:
            yield from self.loader

    def next_batch(self):
        return next(self.batches)

    def run(self, batch, work: Work) -> None:
        from amh.train.step import forward_backward, optimizer_step, to_device

        frames = batch["cond_mels"].shape[-1] if "cond_mels" in batch else batch["cond"].shape[-1] // HOP + 1
        work.add(batch["text_lengths"], batch["wav_lengths"], int(batch["wav_lengths"].max()), frames)
        if self.codes_cached != ("codes" in batch):
            raise RuntimeError(f"{self.name}: the loader's batches {'lack' if self.codes_cached else 'carry'} codes")
        batch = to_device(batch, self.device)
        with self.accelerator.accumulate(self.model):
            loss = forward_backward(self.model, batch, self.codec, self.precision, self.accelerator)
        optimizer_step(self.optimizer, self.clipper, self.guard, self.precision, loss.total)


class CoquiLoop:
    """The official XTTS v2 recipe (recipes/ljspeech/xtts_v2/train_gpt_xtts.py): GPTTrainer in the
    Coqui Trainer, stepped exactly as `Trainer.train_epoch` does, batch by batch."""

    name = "coqui"

    def __init__(self, cfg, inputs: Inputs, args, out_dir: Path, threads: int):
        import torch

        from TTS.config.shared_configs import BaseDatasetConfig
        from TTS.tts.configs.xtts_config import XttsAudioConfig
        from TTS.tts.datasets import load_tts_samples
        from TTS.tts.layers.xtts.trainer.gpt_trainer import GPTArgs, GPTTrainer, GPTTrainerConfig
        from trainer import Trainer, TrainerArgs

        from amh.xtts.release import build_xtts

        # Importing upstream's XTTS dataset module ran torch.set_num_threads(1) (research notes §2).
        torch.set_num_threads(threads)
        release_args = json.loads((inputs.release / "config.json").read_text())["model_args"]
        d = cfg.data
        sr = inputs.sample_rate
        ours = dict(
            max_conditioning_length=round(d.max_conditioning_seconds * sr),
            min_conditioning_length=round(d.min_conditioning_seconds * sr),
            max_wav_length=round(11.6 * sr), max_text_length=d.max_text_tokens,
            mel_norm_file=str(inputs.release / "mel_stats.pth"), dvae_checkpoint=str(inputs.release / "dvae.pth"),
            tokenizer_file=str(inputs.vocab), gpt_use_masking_gt_prompt_approach=True,
            gpt_use_perceiver_resampler=True, debug_loading_failures=False,
        )
        shape = {k: v for k, v in release_args.items() if k in GPTArgs.__dataclass_fields__ and k not in ours}
        model_args = GPTArgs(**shape, **ours)
        dataset = BaseDatasetConfig(formatter="coqui", dataset_name="demo", path=str(inputs.ready),
                                    meta_file_train="metadata_train.csv", language=inputs.settings.language)
        mixed = args.precision != "fp32"
        config = GPTTrainerConfig(
            output_path=str(out_dir), model_args=model_args, run_name="coqui_recipe", project_name="bench",
            dashboard_logger="tensorboard",
            audio=XttsAudioConfig(sample_rate=sr, dvae_sample_rate=sr, output_sample_rate=24000),
            batch_size=cfg.train.batch_size, eval_batch_size=cfg.train.batch_size, num_loader_workers=args.workers,
            print_step=50, plot_step=100, log_model_step=1000, save_step=10**9, save_checkpoints=False,
            optimizer="AdamW", optimizer_wd_only_on_weights=True,
            optimizer_params={"betas": [0.9, 0.96], "eps": 1e-8, "weight_decay": 1e-2}, lr=args.lr,
            lr_scheduler="MultiStepLR", lr_scheduler_params={"milestones": [900000, 2700000, 5400000], "gamma": 0.5,
                                                             "last_epoch": -1},
            test_sentences=[], mixed_precision=mixed, precision=args.precision if mixed else "fp16",
            datasets=[dataset], run_eval=False,
        )
        model = GPTTrainer.init_from_config(config)
        # The recipe loads `xtts_checkpoint` with strict=False, which fails on an extended vocab (shape
        # mismatch); load the very state our loop starts from instead.
        xtts, _ = build_xtts(inputs.release, inputs.vocab, std_factor=cfg.model.init_std_factor, seed=cfg.train.seed)
        model.xtts.load_state_dict(xtts.state_dict(), strict=True)
        del xtts
        samples, _ = load_tts_samples(config, eval_split=False)
        self.trainer = Trainer(TrainerArgs(grad_accum_steps=1), config, output_path=str(out_dir), model=model,
                               train_samples=samples, parse_command_line_args=False)
        torch.set_num_threads(threads)
        self.loader = self.trainer.prepare_accelerate_loader(self.trainer.get_train_dataloader(samples, verbose=False))
        self.batches = self._endless()

    def _endless(self):
        from trainer.generic_utils import KeepAverage

        # Trainer._fit + train_epoch, without eval, test, checkpoints and the per-epoch scheduler step
        # (the recipe's MultiStepLR milestones are never reached, so its LR is constant anyway).
        while True:
            self.trainer.keep_avg_train = KeepAverage()
            self.trainer.model.train()
            self.trainer.callbacks.on_train_epoch_start(self.trainer)
            for cur_step, batch in enumerate(self.loader):
                yield cur_step, batch

    def next_batch(self):
        return next(self.batches)

    def run(self, item, work: Work) -> None:
        loader_start = time.time()
        cur_step, batch = item
        work.add(batch["text_lengths"], batch["wav_lengths"], batch["wav"].shape[-1],
                 batch["conditioning"].shape[-1] // HOP + 1)
        self.trainer.train_step(batch, len(self.loader), cur_step, loader_start)


# ---------------------------------------------------------------------------------------------
# Measurement


def timed(loop, steps: int, device, others_resident: int) -> Chunk:
    import torch

    from amh.train.metrics import memory_mb

    work = Work()
    batches = [loop.next_batch() for _ in range(steps)]  # data loading stays outside the clock
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for batch in batches:
        loop.run(batch, work)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(device) - others_resident) / 2**20
    else:
        peak = memory_mb(device)  # the process's peak RSS: shared by every loop in it
    return Chunk(seconds, work, peak, torch.get_num_threads())


def host_syncs(loop, device) -> list[str]:
    """Where one more optimizer step of `loop` makes the host wait for the GPU (CUDA's sync debug
    mode; each entry is file:line of the Python caller)."""
    import warnings

    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            loop.run(loop.next_batch(), Work())
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return [f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)]


def rates(chunk: Chunk, sample_rate: int, flops_per: tuple[float, float] | None, peak_flops: float | None) -> dict:
    w, s = chunk.work, chunk.seconds
    out = {"steps/s": w.steps / s, "samples/s": w.samples / s, "audio s/s": w.audio_samples / sample_rate / s,
           "GPT tokens/s": w.tokens / s, "padding eff.": w.audio_samples / max(1, w.padded_audio_samples),
           "prompt frames/sample": w.prompt_frames / max(1, w.steps),
           "peak memory MB": chunk.peak_mb, "MFU": float("nan")}
    if flops_per and peak_flops:
        per_token, per_seq_sq = flops_per
        out["MFU"] = (per_token * w.tokens + per_seq_sq * w.seq_sq) / s / peak_flops
    return out


def peak_tflops(args, device) -> float | None:
    import torch

    if args.peak_tflops:
        return args.peak_tflops
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS if k in name), None)


def parse_variants(text: str) -> list[tuple[str, bool, bool, bool]]:
    out = []
    for name in (v.strip() for v in text.split(",") if v.strip()):
        codes, *opts = name.split("+")
        if codes not in ("cached", "online") or set(opts) - {"ckpt", "compile"}:
            raise SystemExit(f"--variants: {name!r} is not cached|online[+ckpt][+compile]")
        out.append((name, codes == "cached", "ckpt" in opts, "compile" in opts))
    return out


def format_table(names: list[str], medians: dict[str, dict], baseline: str | None, device_type: str) -> str:
    def fmt(row: str, v: float) -> str:
        if v != v:  # NaN
            return "n/a"
        if row == "padding eff.":
            return f"{v:.1%}"
        if row == "MFU":
            return f"{v:.1%}"
        return f"{v:,.2f}" if v < 100 else f"{v:,.0f}"

    cols = list(names) + ([baseline] if baseline else [])
    ratio_cols = [f"{n}/{baseline}" for n in names] if baseline else []
    header = ["metric (median)"] + cols + ratio_cols
    lines = []
    for row in ROWS:
        if row == "MFU" and device_type != "cuda":
            continue
        cells = [row] + [fmt(row, medians[c][row]) for c in cols]
        for n in names if baseline else []:
            mine, theirs = medians[n][row], medians[baseline][row]
            shared_rss = row == "peak memory MB" and device_type != "cuda"
            cells.append("n/a" if shared_rss or not theirs or theirs != theirs else f"{mine / theirs:.2f}x")
        lines.append(cells)
    widths = [max(len(r[i]) for r in [header] + lines) for i in range(len(header))]
    render = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([render(header), render(["-" * w for w in widths])] + [render(r) for r in lines])


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
            loops.append((CoquiLoop(cfg, inputs, args, work_dir / "coqui", threads), before))
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
