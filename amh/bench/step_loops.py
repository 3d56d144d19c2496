"""The step benchmark's two loops, our training loop and the official XTTS v2 recipe, each stepped
one optimizer step at a time, and the timing of a stretch of their steps: the work it did (counted
on the host) and its wall-clock seconds and peak memory."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from amh.bench.step_inputs import Inputs

HOP = 256  # conditioning mel hop (samples per frame)


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
# The two loops. Each `step()` is one optimizer step including fetching its batch.


def gpu_memory(device) -> int:
    import torch

    return torch.cuda.memory_allocated(device) if device.type == "cuda" else 0


def train_loader(cfg, inputs: Inputs, data_cfg):
    """Our training loader for the bench: the same for every loop that asks, so two loaders built
    from the same data config hand out the same batches in the same order."""
    from amh.data import build_loader
    from amh.xtts.text_encoder import TextEncoder

    return build_loader(data_cfg, split="train", training=True, batch_size=cfg.train.batch_size,
                        text_encoder=TextEncoder(inputs.vocab, inputs.settings), rank=0, world_size=1,
                        seed=cfg.train.seed)


def recipe_batch(batch: dict) -> dict:
    """One of our online batches (waveforms + padded prompts) in the layout upstream's
    `XTTSDataset.collate_fn` hands `GPTTrainer` with the masking-prompt approach (cond_lens None),
    so the recipe steps on exactly our samples, padding and prompts. Copied: upstream's forward
    rescales cond_idxs in place."""
    return {"wav": batch["wav"].clone(), "wav_lengths": batch["wav_lengths"].clone(),
            "padded_text": batch["text"].int(), "text_lengths": batch["text_lengths"].clone(),
            "conditioning": batch["cond"][:, None].clone(), "cond_lens": None,
            "cond_idxs": batch["cond_idxs"].clone(), "filenames": list(batch["ids"])}


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
        self.loader = train_loader(cfg, inputs, data_cfg)
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

    def __init__(self, cfg, inputs: Inputs, args, out_dir: Path, threads: int, shared=None):
        """`shared`: an iterable of our online batches to step on (identical work); None: the recipe's
        own XTTSDataset batches (random draws, its own padding)."""
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
        self.batches = self._endless() if shared is None else self._shared(shared)

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

    def _shared(self, batches):
        from trainer.generic_utils import KeepAverage

        self.trainer.keep_avg_train = KeepAverage()
        self.trainer.model.train()
        self.trainer.callbacks.on_train_epoch_start(self.trainer)
        while True:
            for cur_step, batch in enumerate(batches):
                yield cur_step, recipe_batch(batch)

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
