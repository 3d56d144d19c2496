#!/usr/bin/env python3
"""Fine-tune XTTS v2's GPT on a new language (Amharic first) with Hugging Face Accelerate.

    accelerate launch train.py --config configs/demo.yaml [section.key=value ...]

The loop, top to bottom: config -> text front-end -> release + extended vocab (matched-std rows)
-> frozen DVAE codec -> optimizer, per-group clipper, precision, NaN guard -> data -> resume ->
for each batch: codes, forward under autocast, scaled backward; at each optimizer step: unscale,
per-group norms, skip if non-finite else clip + step, update the loss scale -> log, eval,
checkpoint -> export.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from amh.checkpoint import Checkpointer, resolve_resume
from amh.clipping import GroupClipper
from amh.config import Config, load_config, save_config
from amh.data.pipeline import build_loader
from amh.deepspeed_step import ZeroStep, fp32_state_dict
from amh.distributed import launch_mode
from amh.frontend import FrontendSettings
from amh.metrics import Throughput, memory_mb
from amh.nan_guard import NanGuard
from amh.optim import build_optimizer, lr_at, set_lr
from amh.precision import Precision
from amh.step import apply_model_options, batch_counts, forward_backward, model_inputs, optimizer_step, to_device
from amh.xtts.codes import AudioCodec
from amh.xtts.export import export_model
from amh.xtts.forward import XttsGptForTraining
from amh.xtts.language import canonical_language, register
from amh.xtts.release import build_xtts, resolve_release
from amh.xtts.synthesis import EvalSynthesizer
from amh.xtts.text_encoder import TextEncoder
from amh.xtts.vocab_choice import choose_vocab

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: "stopped on request, checkpoint written, requeue me"
EXIT_CODE_FILE = "exit_code"  # in output_dir: the exit code, for launchers that lose it
log = logging.getLogger("amh.train")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="YAML config (see amh/config.py for every key)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.max_steps=100 output_dir=runs/x")
    return parser.parse_args(argv)


def frontend_settings(cfg: Config) -> FrontendSettings:
    t = cfg.text
    return FrontendSettings(language=canonical_language(t.language), homophones=t.homophones, g2p=t.g2p,
                            expand_numbers=t.expand_numbers, expand_abbreviations=t.expand_abbreviations,
                            latin=t.latin)


@torch.no_grad()
def evaluate(model, loader, codec, precision, accelerator, max_batches: int) -> tuple[dict[str, float], np.ndarray | None]:
    """Mean eval losses over all ranks, and the first eval clip (a voice reference for test sentences)."""
    model.eval()
    totals = torch.zeros(4, device=accelerator.device)  # text, mel, total, batches
    first_clip = None
    for i, batch in enumerate(loader):
        if i >= max_batches:
            break
        if first_clip is None:
            first_clip = batch["wav"][0, 0, : int(batch["wav_lengths"][0])].numpy()
        batch = to_device(batch, accelerator.device)
        with precision.autocast():
            out = model(*model_inputs(batch, codec))
        totals += torch.stack([out.text.float(), out.mel.float(), out.total.float(), torch.ones((), device=totals.device)])
    totals = accelerator.reduce(totals, reduction="sum")
    model.train()
    n = max(1.0, totals[3].item())
    return {"eval/loss_text_ce": totals[0].item() / n, "eval/loss_mel_ce": totals[1].item() / n,
            "eval/loss": totals[2].item() / n}, first_clip


def log_test_sentences(synthesizer, model, accelerator, reference: Path, clip, sample_rate: int, step: int) -> None:
    """Speak the configured test sentences with the current weights; log them as TensorBoard audio."""
    if not reference.exists():
        sf.write(reference, clip, sample_rate)
    wavs = synthesizer(accelerator.unwrap_model(model).gpt, reference)
    writer = accelerator.get_tracker("tensorboard", unwrap=True)
    for i, wav in enumerate(wavs):
        writer.add_audio(f"test_sentences/{i}", torch.from_numpy(wav)[None], step, sample_rate=synthesizer.sample_rate)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    out = Path(cfg.output_dir)
    # One process, DDP or DeepSpeed ZeRO-1/2, as the launcher says (amh/distributed.py); precision is
    # train.precision, so Accelerate autocasts nothing itself.
    launch = launch_mode(cfg, os.environ)
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.train.grad_accum,
        log_with="tensorboard" if cfg.log.tensorboard else None,
        project_dir=str(out),
        mixed_precision=launch.mixed_precision,
        cpu=launch.cpu,
        deepspeed_plugin=launch.deepspeed_plugin,
        # Every GPT parameter receives a gradient in the v2 configuration.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False), *launch.kwargs_handlers],
    )
    # SIGUSR1 (Slurm's warning before preemption) / SIGTERM: finish this step, checkpoint, exit 75.
    # Installed first thing, so that a signal during start-up stops the run at its first step. Slurm
    # signals every process of the step: forked DataLoader workers inherit this handler and must not
    # act on it (a CUDA tensor in a forked worker kills it), hence the pid check.
    trainer_pid = os.getpid()
    for sig in (signal.SIGUSR1, signal.SIGTERM):
        signal.signal(sig, lambda *_: accelerator.set_trigger() if os.getpid() == trainer_pid else None)
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    set_seed(cfg.train.seed, device_specific=True)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        (out / EXIT_CODE_FILE).unlink(missing_ok=True)
    log.info("run directory %s, %d process(es) on %s, precision %s", out, accelerator.num_processes,
             accelerator.device, cfg.train.precision)
    log.info("launch: %s", launch.description)

    # Text front-end: the same function in training and (through frontend.json) in inference.
    settings = frontend_settings(cfg)
    register(settings)

    # Release + extended vocab, new rows at the pretrained rows' std (the seed's Fix 1).
    release = resolve_release(cfg.model.release, revision=cfg.model.revision, cache_dir=cfg.model.cache_dir)
    vocab = choose_vocab(cfg, release)
    xtts, resize = build_xtts(release, vocab, std_factor=cfg.model.init_std_factor, seed=cfg.train.seed)
    log.info("Checkpoint vocab size: %d", resize.checkpoint_rows)
    log.info("Extended vocab size: %d (%+d tokens, vocab %s)", resize.vocab_rows, resize.added, vocab)
    for key, std in resize.pretrained_std.items():
        log.info("Using MATCHED init scale for %s: pretrained std=%.5f, new rows std=%.5f (factor %g)",
                 key, std, resize.new_std[key], cfg.model.init_std_factor)
    model = XttsGptForTraining(xtts.gpt, text_weight=cfg.train.text_ce_weight, mel_weight=cfg.train.mel_ce_weight)
    apply_model_options(model, gradient_checkpointing=cfg.model.gradient_checkpointing, compile=cfg.model.compile)
    codec = AudioCodec.from_release(release, accelerator.device)
    del xtts  # HiFi-GAN is not trained; the export takes it from the release file.

    optimizer = build_optimizer(model, cfg.optim, cfg.train.clip_groups)  # groups = clip group x decay
    clipper = GroupClipper(model.named_parameters(), cfg.train.clip_groups)
    log.info(clipper.describe())
    precision = Precision(cfg.train.precision, accelerator.device, init_scale=cfg.train.init_loss_scale,
                          growth_interval=cfg.train.loss_scale_growth_interval)
    guard = NanGuard(cfg.train.max_consecutive_skips)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    # DeepSpeed scales the loss and steps inside accelerator.backward: ZeroStep puts the per-group clip
    # and the NaN guard into its step, and stands in for `precision` (amh/deepspeed_step.py).
    zero = ZeroStep(model, cfg.train.clip_groups, guard, precision) if launch.deepspeed else None
    precision = zero or precision

    # Each rank streams its own shard; the loaders are not passed to `prepare` because sharding,
    # bucketing and exact resume are done by amh.data (Accelerate would re-shard the stream).
    loader_args = dict(batch_size=cfg.train.batch_size, text_encoder=TextEncoder(vocab, settings), rank=accelerator.process_index,
                       world_size=accelerator.num_processes, seed=cfg.train.seed)
    train_loader = build_loader(cfg.data, split="train", training=True, **loader_args)
    eval_loader = build_loader(cfg.data, split="eval", training=False, **loader_args)

    step, epoch = 0, 0
    checkpoints = Checkpointer(out / "checkpoints", accelerator, cfg.train.keep_last)
    resume_from = resolve_resume(cfg.train.resume, out / "checkpoints")
    if resume_from is not None:
        state = checkpoints.load(resume_from)
        step, epoch = state["step"], state["epoch"]
        guard.load_state_dict(state["guard"])
        precision.load_state_dict(state["scaler"])
        train_loader.load_state_dict(state["data"])
        log.info("resumed from %s at step %d (epoch %d)", resume_from, step, epoch)

    def trainer_state() -> dict:
        return {"step": step, "epoch": epoch, "guard": guard.state_dict(), "scaler": precision.state_dict(),
                "data": train_loader.state_dict()}

    accelerator.init_trackers("tensorboard", config={"output_dir": cfg.output_dir})
    # Test sentences are spoken on the main process, with a voice from the eval set unless configured.
    synthesizer = None
    if accelerator.is_main_process and cfg.log.tensorboard and cfg.log.test_sentences:
        with torch.random.fork_rng():  # building a model draws random numbers; the resumed RNG must not move
            synthesizer = EvalSynthesizer(release, vocab, cfg.log.test_sentences, settings.language, accelerator.device)
    reference = Path(cfg.log.speaker_wav) if cfg.log.speaker_wav else out / "eval_reference.wav"
    max_steps = cfg.train.max_steps
    meter = Throughput(cfg.data.sample_rate)
    bar = tqdm(total=max_steps, initial=step, disable=not accelerator.is_main_process, desc="train", unit="step")
    loss_sum = torch.zeros(4, device=accelerator.device)  # text, mel, total, micro-batches
    set_lr(optimizer, lr_at(step, cfg.optim, max_steps))
    exit_code, stop, saved_step = 0, False, step
    while not stop and (max_steps is None or step < max_steps) and epoch < cfg.train.epochs:
        train_loader.set_epoch(epoch)
        for batch in train_loader:
            meter.add(**batch_counts(batch))
            batch = to_device(batch, accelerator.device)
            with accelerator.accumulate(model):
                loss = forward_backward(model, batch, codec, precision, accelerator)
            loss_sum += torch.stack([loss.text.detach().float(), loss.mel.detach().float(), loss.total.detach().float(),
                                     torch.ones((), device=loss_sum.device)])
            if not accelerator.sync_gradients:
                continue

            # One optimizer step: unscale -> per-group norms -> skip if non-finite, else clip + step.
            if zero is not None:  # DeepSpeed already took (or skipped) it inside accelerator.backward
                stepped, norms = zero.stepped, zero.norms
            else:
                stepped, norms = optimizer_step(optimizer, clipper, guard, precision, loss.total)
            if not stepped:
                log.warning("step %d: non-finite %s; step skipped (%d in a row, %d total)", step,
                            ", ".join(guard.last_bad_groups), guard.consecutive, guard.skipped_total)
            step += 1
            set_lr(optimizer, lr_at(step, cfg.optim, max_steps))
            bar.update(1)

            if step % cfg.train.log_every == 0 or step == max_steps:
                summed = accelerator.reduce(loss_sum, reduction="sum")
                losses = (summed[:3] / summed[3].clamp_min(1)).tolist()
                values = {"train/loss_text_ce": losses[0], "train/loss_mel_ce": losses[1], "train/loss": losses[2],
                          "train/lr": optimizer.param_groups[0]["lr"], "train/loss_scale": precision.loss_scale,
                          "train/skipped_steps": guard.skipped_total, "train/memory_mb": memory_mb(accelerator.device),
                          **{f"grad_norm/{k}": v.item() for k, v in norms.items()},
                          **{f"perf/{k}": v for k, v in meter.rates().items()},
                          **embedding_stats(accelerator.unwrap_model(model), resize.checkpoint_rows),
                          **train_loader.filter_stats().all_reduce().scalars(prefix="data/")}
                accelerator.log(values, step=step)
                bar.set_postfix(loss=f"{losses[2]:.3f}", mel=f"{losses[1]:.3f}", lr=f"{values['train/lr']:.1e}",
                                sps=f"{values['perf/samples_per_s']:.1f}")
                loss_sum.zero_()
                meter.reset()
            if step % cfg.train.eval_every == 0 or step == max_steps:
                metrics, clip = evaluate(model, eval_loader, codec, precision, accelerator, cfg.train.eval_batches)
                accelerator.log(metrics, step=step)
                if synthesizer is not None and (cfg.log.speaker_wav or clip is not None):
                    log_test_sentences(synthesizer, model, accelerator, reference, clip, cfg.data.sample_rate, step)
            if guard.should_stop():
                log.error(guard.diagnosis(step, cfg.train.precision))
                exit_code, stop = 1, True
                break
            preempted = accelerator.check_trigger()
            if step % cfg.train.save_every == 0 or preempted:
                path = checkpoints.save(step, trainer_state())
                saved_step = step
                log.info("checkpoint %s", path)
            if preempted:
                log.warning("stop requested (signal): checkpoint written at step %d, exiting with %d", step, EXIT_PREEMPTED)
                exit_code, stop = EXIT_PREEMPTED, True
                break
            if max_steps is not None and step >= max_steps:
                break
        else:
            epoch += 1
    bar.close()

    if exit_code == 0:
        if saved_step != step:  # a decision every rank makes alike: saving is a collective
            checkpoints.save(step, trainer_state())
        summary = train_loader.filter_stats().all_reduce()
        log.info("data: %s", summary)
        gpt_state = fp32_state_dict(model) if zero is not None else accelerator.get_state_dict(model)
        if accelerator.is_main_process:
            path = export_model(release_dir=release, vocab=vocab, gpt_state=gpt_state, frontend_settings=settings,
                                language=settings.language, out_dir=out / "export")
            log.info("export written to %s (load with Xtts.load_checkpoint, see scripts/synthesize.py)", path)
    accelerator.end_training()
    if accelerator.is_main_process:
        # `accelerate launch` (torchrun) turns any failed worker into exit code 1; scripts/slurm reads this.
        (out / EXIT_CODE_FILE).write_text(f"{exit_code}\n")
    return exit_code


def embedding_stats(model, old_rows: int) -> dict[str, float]:
    weight = model.gpt.text_embedding.weight.detach()
    stats = {"embedding/pretrained_std": weight[:old_rows].float().std().item()}
    if weight.shape[0] > old_rows + 1:
        stats["embedding/new_std"] = weight[old_rows:].float().std().item()
    return stats


if __name__ == "__main__":
    sys.exit(main())
