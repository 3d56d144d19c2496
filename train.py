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
import math
import signal
import sys
import time
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import set_seed

from amh.run import report
from amh.run.logs import setup_logging
from amh.xtts.publish import training_summary
from amh.run.checkpoint import CheckpointDamaged, Checkpointer, latest, read_health, resolve_resume
from amh.train.clipping import GroupClipper
from amh.config import Config, ConfigError, load_config, save_config
from amh.data.pipeline import DataError, build_loader
from amh.data.sources import SourceError, carries_codes
from amh.train.deepspeed_step import ZeroStep, fp32_state_dict
from amh.train.distributed import launch_mode
from amh.eval.score import SpeechScorer, Take
from amh.eval.tensorboard import log_takes
from amh.errors import UserError
from amh.text.frontend import FrontendSettings
from amh.run.launcher_watch import LauncherWatch
from amh.train.memory import plan_memory
from amh.train.metrics import Throughput, memory_mb
from amh.train.nan_guard import NanGuard
from amh.train.optim import build_optimizer, lr_at, set_lr
from amh.train.precision import Precision
from amh.run.run_lock import RunLock
from amh.train.step import (apply_model_options, batch_counts, forward_backward, model_inputs, optimizer_step, to_device,
                      window_scale)
from amh.xtts.codes import AudioCodec
from amh.xtts.export import export_model
from amh.xtts.forward import XttsGptForTraining
from amh.xtts.identity import model_identity
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
def evaluate(model, loader, codec, precision, accelerator, max_batches: int, weights: tuple[float, float]
             ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Eval losses over all ranks, and this rank's first eval clip of each speaker (voice references).

    eval/loss* follow upstream's eval (GPTTrainer.eval_step: no prompt mask, token means), weighted
    by tokens over the whole pass rather than averaged per batch, so they compare with the Coqui
    recipe's numbers; eval/objective* is the training objective (prompt masked, per-sample means,
    weighted by samples), comparable with train/loss*. docs/training.md explains both.
    """
    model.eval()
    gpt = accelerator.unwrap_model(model)
    sums = torch.zeros(7, device=accelerator.device)
    clips: dict[str, np.ndarray] = {}  # the first eval clip of each speaker: voices for the test sentences
    for i, batch in enumerate(loader):
        if i >= max_batches:
            break
        if "wav" in batch:
            for j, speaker in enumerate(batch["speakers"]):
                if speaker not in clips:
                    clips[speaker] = batch["wav"][j, 0, : int(batch["wav_lengths"][j])].numpy()
        batch = to_device(batch, accelerator.device)
        with precision.autocast():
            sums += gpt.eval_sums(*model_inputs(batch, codec)).float()
    sums = accelerator.reduce(sums, reduction="sum")  # one process: returned as it is
    model.train()
    text, mel = (sums[0] / sums[1].clamp_min(1)).item(), (sums[2] / sums[3].clamp_min(1)).item()
    n = sums[6].clamp_min(1)
    obj_text, obj_mel = (sums[4] / n).item(), (sums[5] / n).item()
    text_w, mel_w = weights
    return {"eval/loss_text_ce": text, "eval/loss_mel_ce": mel, "eval/loss": text_w * text + mel_w * mel,
            "eval/objective_text_ce": obj_text, "eval/objective_mel_ce": obj_mel,
            "eval/objective": text_w * obj_text + mel_w * obj_mel, "eval/samples": sums[6].item()}, clips


def speak_test_sentences(synthesizer, scorer, model, accelerator, references: dict[str, Path], step: int
                         ) -> dict[str, float]:
    """Speak the test sentences with the current weights in each reference voice; log them as TensorBoard
    audio, and with the speech eval on, score them (CER/WER, speaker similarity, RTF; amh/eval)."""
    gpt = accelerator.unwrap_model(model).gpt
    writer = accelerator.get_tracker("tensorboard", unwrap=True)
    takes = []
    for speaker, reference in references.items():
        start = time.perf_counter()
        wavs = synthesizer(gpt, reference)
        seconds = time.perf_counter() - start
        total = sum(len(w) for w in wavs) or 1  # the call's time shared by audio length
        takes += [Take(text, wav, synthesizer.sample_rate, seconds * len(wav) / total, reference, speaker)
                  for text, wav in zip(synthesizer.sentences, wavs)]
    if scorer is None:  # audio only, each clip titled with its sentence
        report.log_test_audio(writer, [t.wav for t in takes], [t.text for t in takes], step, synthesizer.sample_rate)
        return {}
    scores = scorer.score(takes)
    accelerator.log(scores.scalars, step=step)
    log_takes(writer, takes, scores, step)
    return scores.scalars


def reference_clips(cfg: Config, out: Path, clips: dict[str, np.ndarray], sample_rate: int) -> dict[str, Path]:
    """log.speaker_wav, else the first eval clip of up to eval.speakers speakers, written once under OUTPUT."""
    if cfg.log.speaker_wav:
        return {"speaker_wav": Path(cfg.log.speaker_wav)}
    wanted = cfg.eval.speakers if cfg.eval.enabled else 1
    refs = {}
    for speaker, clip in sorted(clips.items())[:wanted]:
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in speaker) or "speaker"
        path = out / "eval_references" / f"{safe}.wav"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, clip, sample_rate)
        refs[safe] = path
    return refs


def main(argv=None) -> int:
    """Run the trainer; a problem the user can fix (UserError, ConfigError, DataError) is one line, exit 2."""
    try:
        return train(parse_args(argv))
    except (UserError, ConfigError, SourceError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def train(args) -> int:
    cfg = load_config(args.config, args.overrides)
    out = Path(cfg.output_dir)
    # One process, DDP or DeepSpeed ZeRO-1/2, as the launcher says (amh/train/distributed.py); precision is
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
    # act on it (a CUDA tensor in a forked worker kills it), hence the pid check. The launcher's death
    # arrives as SIGTERM too (amh/run/launcher_watch.py), or is noticed at the next step.
    trainer_pid = os.getpid()
    for sig in (signal.SIGUSR1, signal.SIGTERM):
        signal.signal(sig, lambda *_: accelerator.set_trigger() if os.getpid() == trainer_pid else None)
    launcher = LauncherWatch(os.environ)
    setup_logging(accelerator.is_main_process)
    started = time.monotonic()
    set_seed(cfg.train.seed, device_specific=True)
    # One run per output_dir: a second trainer on it is refused before it writes anything.
    lock = RunLock(out).acquire() if accelerator.is_main_process else None
    if accelerator.is_main_process:
        save_config(cfg, out / "config.yaml")
        (out / EXIT_CODE_FILE).unlink(missing_ok=True)
    log.info("run directory %s, %d process(es) on %s, precision %s", out, accelerator.num_processes,
             accelerator.device, cfg.train.precision)
    log.info("launch: %s", launch.description)
    for warning in launch.warnings:
        log.warning("%s", warning)

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
    identity = model_identity(release, vocab, xtts.gpt)
    model = XttsGptForTraining(xtts.gpt, text_weight=cfg.train.text_ce_weight, mel_weight=cfg.train.mel_ce_weight)
    apply_model_options(model, gradient_checkpointing=cfg.model.gradient_checkpointing, compile=cfg.model.compile)
    # Data prepared with codes (scripts/prepare_dataset.py --codes-from) needs no DVAE on the device.
    precomputed = carries_codes(cfg.data)
    codec = AudioCodec.from_release(release, accelerator.device, dvae_on_device=not precomputed)
    log.info("DVAE: %s", "kept off the device (both splits carry precomputed codes)" if precomputed
             else f"on {accelerator.device}, encoding every batch (prepare the data with codes to skip it)")
    del xtts  # HiFi-GAN is not trained; the export takes it from the release file.
    # What this run will hold on the device (weights, grads, optimizer, activations at the worst batch);
    # on a GPU, a plan that does not fit is refused with the keys to change (docs/memory.md).
    plan = plan_memory(cfg, model, accelerator.device, resident={} if precomputed else {"dvae": codec})
    log.info(plan.describe())
    if accelerator.device.type == "cuda":
        plan.check(torch.cuda.get_device_properties(accelerator.device).total_memory)

    optimizer = build_optimizer(model, cfg.optim, cfg.train.clip_groups)  # groups = clip group x decay
    clipper = GroupClipper(model.named_parameters(), cfg.train.clip_groups)
    log.info(clipper.describe())
    precision = Precision(cfg.train.precision, accelerator.device, init_scale=cfg.train.init_loss_scale,
                          growth_interval=cfg.train.loss_scale_growth_interval)
    guard = NanGuard(cfg.train.max_consecutive_skips)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    # DeepSpeed scales the loss and steps inside accelerator.backward: ZeroStep puts the per-group clip
    # and the NaN guard into its step, and stands in for `precision` (amh/train/deepspeed_step.py).
    zero = ZeroStep(model, cfg.train.clip_groups, guard, precision) if launch.deepspeed else None
    precision = zero or precision

    # Each rank streams its own shard; the loaders are not passed to `prepare` because sharding,
    # bucketing and exact resume are done by amh.data (Accelerate would re-shard the stream).
    loader_args = dict(batch_size=cfg.train.batch_size, text_encoder=TextEncoder(vocab, settings), rank=accelerator.process_index,
                       world_size=accelerator.num_processes, seed=cfg.train.seed)
    train_loader = build_loader(cfg.data, split="train", training=True, **loader_args)
    eval_loader = build_loader(cfg.data, split="eval", training=False, **loader_args)
    # The eval split is read at start-up (its first batch; a fully filtered split is read to its end
    # and refused with the reasons), not after eval_every steps of training. The train split's first
    # batch is the first thing the loop reads.
    with torch.random.fork_rng(devices=[]):
        next(iter(eval_loader), None)

    # The LR schedule's horizon: train.max_steps, else epochs x the steps an epoch is estimated to take.
    epoch_estimate = report.estimate_epoch(cfg, accelerator.num_processes)
    if epoch_estimate is not None:
        log.info("epoch length: %s", epoch_estimate.basis)
    horizon = schedule_horizon(cfg, epoch_estimate)
    step, epoch = 0, 0
    history = report.EvalHistory()
    checkpoints = Checkpointer(out / "checkpoints", accelerator, cfg.train.keep_last, identity=identity,
                               best_metric="eval_cer" if cfg.eval.best_metric == "cer" else "eval_loss")
    resumed = resume(checkpoints, cfg.train.resume, out / "checkpoints")
    if resumed is not None:
        resume_from, state = resumed
        step, epoch = state["step"], state["epoch"]
        history.load_state_dict(state.get("eval", {}))
        guard.load_state_dict(state["guard"])
        precision.load_state_dict(state["scaler"])
        train_loader.load_state_dict(state["data"])
        log.info("resumed from %s at step %d (epoch %d)", resume_from, step, epoch)
        saved_horizon = state.get("horizon", horizon)
        if saved_horizon != horizon and cfg.optim.schedule != "constant":
            log.warning("the LR schedule's horizon changed on resume: %s steps before, %s now (train.max_steps or "
                        "the epoch estimate changed); the cosine decay continues from step %d on the new horizon",
                        saved_horizon, horizon, step)
        if (cfg.train.max_steps is not None and step >= cfg.train.max_steps) or epoch >= cfg.train.epochs:
            log.warning("this run already finished (step %d, epoch %d; train.max_steps=%s, train.epochs=%d): nothing "
                        "to train. Raise train.max_steps/train.epochs to continue it, or use another output_dir "
                        "(or train.resume=none) to start a new run", step, epoch, cfg.train.max_steps, cfg.train.epochs)

    def trainer_state() -> dict:
        return {"step": step, "epoch": epoch, "guard": guard.state_dict(), "scaler": precision.state_dict(),
                "data": train_loader.state_dict(), "horizon": horizon,
                "eval": history.state_dict()}

    # No config= here: Accelerate would write it as an empty hparams sub-run; report.log_run_start logs
    # it as text, report.log_final_hparams fills the HParams tab at the end.
    accelerator.init_trackers("tensorboard")
    writer = accelerator.get_tracker("tensorboard", unwrap=True) if cfg.log.tensorboard and accelerator.is_main_process else None
    if writer is not None:
        report.log_run_start(writer, cfg, epoch_basis=epoch_estimate.basis if epoch_estimate else None, step=step)
    first_step = step
    # Test sentences are spoken on the main process, with a voice from the eval set unless configured.
    synthesizer = scorer = None
    if accelerator.is_main_process and cfg.log.tensorboard and cfg.log.test_sentences:
        with torch.random.fork_rng():  # building a model draws random numbers; the resumed RNG must not move
            synthesizer = EvalSynthesizer(release, vocab, cfg.log.test_sentences, settings.language, accelerator.device)
            if cfg.eval.enabled:  # the ASR and speaker models stay on the CPU between evals
                scorer = SpeechScorer.from_config(cfg.eval, device=str(accelerator.device))
    max_steps = cfg.train.max_steps
    meter = Throughput(cfg.data.sample_rate)
    bar = report.RunProgress(max_steps=max_steps, epochs=cfg.train.epochs, estimate=epoch_estimate, step=step,
                             epoch=epoch, disable=not accelerator.is_main_process)
    loss_sum = torch.zeros(4, device=accelerator.device)  # text, mel, total (per-sample sums), samples
    smoothed = None  # EMA of the logged train loss: a checkpoint's health
    window: list[dict] = []  # the micro-batches of one optimizer step
    exit_code, stop, saved_step, save_due = 0, False, step, False
    while not stop and (max_steps is None or step < max_steps) and epoch < cfg.train.epochs:
        train_loader.set_epoch(epoch)
        for batch in train_loader:
            window.append(batch)
            if len(window) < cfg.train.grad_accum:
                continue

            # One optimizer step over the window: every sample of the window (all ranks) weighs the same.
            scale = window_scale([int(b["wav_lengths"].shape[0]) for b in window], accelerator)
            lr = lr_at(step, cfg.optim, horizon)
            set_lr(optimizer, lr)
            window_loss = torch.zeros(2, device=accelerator.device)  # summed per-sample loss, samples
            for micro in window:
                meter.add(**batch_counts(micro))
                micro = to_device(micro, accelerator.device)
                with accelerator.accumulate(model):
                    loss = forward_backward(model, micro, codec, precision, accelerator, scale)
                per_sample = torch.stack([loss.text_per_sample.detach().float().sum(),
                                          loss.mel_per_sample.detach().float().sum(),
                                          loss.total_per_sample.detach().float().sum(),
                                          torch.tensor(float(loss.total_per_sample.shape[0]), device=loss_sum.device)])
                loss_sum += per_sample
                window_loss += per_sample[2:]
            window = []
            # Unscale -> per-group norms -> clip -> step unless the NaN guard refuses (non-finite loss or
            # norm). The decision stays on the device; it is read at log time and before a checkpoint.
            # Under DeepSpeed the step already happened inside the last accelerator.backward.
            if zero is not None:
                norms = zero.norms
            else:
                _, norms = optimizer_step(optimizer, clipper, guard, precision, loss.total)
            step += 1
            bar.step(step, epoch)
            if saved_step == step - 1 and saved_step > 0:
                # The loss of the first window after a checkpoint is the loss of the checkpoint's weights:
                # the health `best()` trusts (the loss logged before a save predates its last update).
                # All ranks' samples, like the logged loss (a collective, on every rank, only after a save).
                window_loss = accelerator.reduce(window_loss, reduction="sum")
                checkpoints.record(saved_step, next_loss=(window_loss[0] / window_loss[1].clamp_min(1)).item())

            reading = None  # the NaN guard's counters: read off the device at log steps and before a save
            if step % cfg.train.log_every == 0 or step == max_steps:
                summed = accelerator.reduce(loss_sum, reduction="sum")
                losses = (summed[:3] / summed[3].clamp_min(1)).tolist()
                smoothed = losses[2] if smoothed is None or smoothed != smoothed else 0.7 * smoothed + 0.3 * losses[2]
                reading = guard.read()
                if reading.new_skips:
                    log.warning("%d optimizer step(s) skipped since the last log line (non-finite: %s); %d in a row, "
                                "%d in all", reading.new_skips, ", ".join(reading.last_bad_groups),
                                reading.consecutive, reading.skipped_total)
                values = {"train/loss_text_ce": losses[0], "train/loss_mel_ce": losses[1], "train/loss": losses[2],
                          "train/lr": lr, "train/loss_scale": precision.loss_scale,
                          "train/skipped_steps": reading.skipped_total, "train/memory_mb": memory_mb(accelerator.device),
                          **{f"grad_norm/{k}": v.item() for k, v in norms.items()},
                          **{f"perf/{k}": v for k, v in meter.rates().items()},
                          **embedding_stats(accelerator.unwrap_model(model), resize.checkpoint_rows),
                          **report.data_scalars(train_loader.filter_stats().all_reduce())}
                accelerator.log(values, step=step)
                log.info("%s", report.format_step_line(step, values, total=bar.total, epoch=epoch, epochs=cfg.train.epochs))
                bar.set_postfix(loss=f"{losses[2]:.3f}", mel=f"{losses[1]:.3f}", lr=f"{lr:.1e}",
                                sps=f"{values['perf/samples_per_s']:.1f}")
                loss_sum.zero_()
                meter.reset()
            preempted = accelerator.check_trigger() or launcher.parent_died()
            save_due = save_due or step % cfg.train.save_every == 0
            if reading is None and (save_due or preempted):  # log steps have read it already
                reading = guard.read()
            if reading is not None and reading.tripped:
                good = checkpoints.best()
                where = (f"Resume from {good} (its health: {read_health(good)}) with train.resume={good} and the "
                         "change above." if good is not None else "No healthy checkpoint was written before the "
                         "divergence: start again (train.resume=none) with the change above.")
                log.error("%s %s", guard.diagnosis(step, cfg.train.precision), where)
                exit_code, stop = 1, True
                break
            # Never during a skip streak: a diverging run must not rotate healthy checkpoints out.
            # A stop request saves anyway (skipped steps changed no weight); its health says so.
            if (save_due and reading.consecutive == 0) or preempted:
                path = checkpoints.save(step, trainer_state(), {"train_loss_smoothed": smoothed,
                                                                "skipped_total": reading.skipped_total,
                                                                "skip_streak": reading.consecutive})
                saved_step, save_due = step, False
                log.info("checkpoint %s", path)
            if preempted:
                log.warning("stop requested (signal or launcher gone): checkpoint written at step %d, exiting with %d",
                            step, EXIT_PREEMPTED)
                exit_code, stop = EXIT_PREEMPTED, True
                break
            # Eval after the checkpoint: a failing eval cannot lose the steps since the last save.
            if step % cfg.train.eval_every == 0 or step == max_steps:
                metrics, clips = evaluate(model, eval_loader, codec, precision, accelerator, cfg.train.eval_batches,
                                         (cfg.train.text_ce_weight, cfg.train.mel_ce_weight))
                accelerator.log(metrics, step=step)
                if synthesizer is not None:  # main process: speak (and with eval.enabled, score) the test sentences
                    references = reference_clips(cfg, out, clips, cfg.data.sample_rate)
                    if references:
                        metrics.update(speak_test_sentences(synthesizer, scorer, model, accelerator, references, step))
                log.info("%s", history.line(step, metrics))
                stats = train_loader.filter_stats().all_reduce()  # a collective: every rank
                if writer is not None:
                    report.log_data_summary(writer, stats, step)
                if saved_step == step:
                    checkpoints.record(step, eval_loss=metrics["eval/loss"],
                                       **({"eval_cer": metrics["eval/cer"]} if "eval/cer" in metrics else {}))
            if max_steps is not None and step >= max_steps:
                break
        else:
            bar.epoch_done(step)
            epoch += 1
    bar.close()
    if window and exit_code == 0:
        log.info("the last %d micro-batch(es) (%d samples) did not fill an accumulation window of %d and were not "
                 "trained on", len(window), sum(int(b["wav_lengths"].shape[0]) for b in window), cfg.train.grad_accum)

    if exit_code == 0:
        if saved_step != step:  # a decision every rank makes alike: saving is a collective
            reading = guard.read()
            checkpoints.save(step, trainer_state(), {"train_loss_smoothed": smoothed,
                                                     "skipped_total": reading.skipped_total,
                                                     "skip_streak": reading.consecutive})
        summary = train_loader.filter_stats().all_reduce()
        log.info("data: %s", summary)
        gpt_state = fp32_state_dict(model) if zero is not None else accelerator.get_state_dict(model)
        if accelerator.is_main_process:
            training = training_summary(cfg, step=step, epoch=epoch, best_eval=history.best,
                                        last_eval=history.last[0] if history.last else None, data=summary)
            path = export_model(release_dir=release, vocab=vocab, gpt_state=gpt_state, frontend_settings=settings,
                                language=settings.language, out_dir=out / "export", training=training)
            log.info("export written to %s (load with Xtts.load_checkpoint, see scripts/synthesize.py)", path)
    if writer is not None:
        final = {"step": step, **({"best_eval_loss": history.best[0]} if history.best else {}),
                 **({"final_train_loss": smoothed} if smoothed is not None else {})}
        report.log_final_hparams(writer, cfg, final)
    if accelerator.is_main_process:
        log.info("run summary\n%s", report.format_summary(report.RunSummary(
            run_dir=out, first_step=first_step, last_step=step, seconds=time.monotonic() - started, exit_code=exit_code,
            best_eval=history.best, data=train_loader.filter_stats(),
            export_dir=out / "export" if exit_code == 0 else None,
            speaker_wav=(Path(cfg.log.speaker_wav) if cfg.log.speaker_wav
                         else next(iter(sorted((out / "eval_references").glob("*.wav"))), None)),
            sentence=cfg.log.test_sentences[0] if cfg.log.test_sentences else "ሰላም፣ እንዴት ነህ?",
            checkpoint=latest(out / "checkpoints"))))
    accelerator.end_training()
    if accelerator.is_main_process:
        # `accelerate launch` (torchrun) turns any failed worker into exit code 1; scripts/slurm reads this.
        (out / EXIT_CODE_FILE).write_text(f"{exit_code}\n")
    if lock is not None:
        lock.release()
    return exit_code


def schedule_horizon(cfg: Config, epoch_estimate) -> int | None:
    """Optimizer steps the LR schedule spans: train.max_steps, else train.epochs x the estimated epoch length."""
    if cfg.train.max_steps is not None:
        return cfg.train.max_steps
    per_epoch = math.ceil(epoch_estimate.steps) if epoch_estimate is not None else None
    if per_epoch is None:
        if cfg.optim.schedule == "cosine":
            raise UserError("optim.schedule=cosine needs a horizon: set train.max_steps, or use a data source whose "
                            "size is known (prepare_dataset's parquet shards, a ready/ folder, a Hub dataset with "
                            "split sizes)")
        return None
    return per_epoch * cfg.train.epochs


def resume(checkpoints: Checkpointer, setting: str, root: Path) -> tuple[Path, dict] | None:
    """The checkpoint to continue from and this rank's trainer state, or None for a fresh start.

    resume=auto takes the newest complete checkpoint that loads, falling back past damaged ones
    (marked, kept, warned about); an explicit path that is damaged is an error naming the file.
    """
    candidates = resolve_resume(setting, root)
    if not candidates:
        return None
    if setting != "auto":
        try:
            return candidates[0], checkpoints.load(candidates[0])
        except CheckpointDamaged as err:
            raise UserError(f"train.resume: checkpoint {err}; resume from another one, or train.resume=auto") from None
    found = checkpoints.load_latest_good(candidates)
    if found is None:
        raise UserError(f"every checkpoint in {root} is damaged (see the warnings above; each is marked DAMAGED and "
                        "kept); start afresh with train.resume=none and another output_dir")
    return found


def embedding_stats(model, old_rows: int) -> dict[str, float]:
    weight = model.gpt.text_embedding.weight.detach()
    stats = {"embedding/pretrained_std": weight[:old_rows].float().std().item()}
    if weight.shape[0] > old_rows + 1:
        stats["embedding/new_std"] = weight[old_rows:].float().std().item()
    return stats


if __name__ == "__main__":
    sys.exit(main())
