"""What a run shows a person: the progress bar, the log lines, the end-of-run summary, TensorBoard's layout.

- `estimate_epoch(cfg, world_size)`: optimizer steps per epoch from what the source knows without
  reading the audio (a "ready" CSV's rows, a prepared folder's report or shard metadata, a Hub
  dataset's `info.splits`); `RunProgress` puts it into the tqdm bar as a total (so tqdm shows an
  ETA) and replaces it by the measured count once a whole epoch has run.
- `format_step_line`, `EvalHistory.line`, `format_summary`: the plain log lines (the tqdm postfix is
  overwritten; these stay in the log file).
- `log_run_start` (layout, config, data estimate), `data_scalars` + `log_data_summary` (drops: one
  total scalar, a table by reason), `log_test_audio`, `log_final_hparams`: TensorBoard.
  The Scalars dashboard orders plots by tag name; the custom-scalars layout puts losses, learning
  rate and gradient norms first whatever the names.
"""
from __future__ import annotations

import json
import math
import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from amh.config import Config, DataConfig

# ---------------------------------------------------------------------------------------------
# Steps per epoch


@dataclass(frozen=True)
class EpochEstimate:
    """Optimizer steps per epoch (per rank: every rank steps together) and where the number comes from."""

    steps: float
    basis: str  # e.g. "metadata_train.csv: 185 rows", for the start-up log line


@dataclass(frozen=True)
class SourceSize:
    rows: int
    seconds: float | None  # total audio, when the source records durations
    basis: str


def source_size(cfg: DataConfig) -> SourceSize | None:
    """Rows (and audio seconds) of the training split, from metadata only; None when the source does
    not say (a Hub dataset without split sizes, a folder `datasets` has to infer)."""
    from amh.data.sources import split_name

    name = split_name(cfg, "train")
    size = {"ready": _ready_size, "parquet": _parquet_size, "hub": _hub_size}[cfg.source](cfg, name)
    if size is None or cfg.eval_split is not None:
        return size
    # Held-out eval: `in_split` hashes ~eval_fraction of each speaker's rows out of the train split.
    keep = 1.0 - cfg.eval_fraction
    return SourceSize(round(size.rows * keep), size.seconds * keep if size.seconds is not None else None,
                      f"{size.basis}, minus the held-out {cfg.eval_fraction:.0%}")


def _ready_size(cfg: DataConfig, name: str) -> SourceSize | None:
    from amh.data.sources import _read_ready_csv  # the loader's own parser, so both count the same rows

    meta = Path(cfg.path) / f"metadata_{name}.csv"
    if not meta.is_file():
        return None
    rows = len(_read_ready_csv(meta))
    return SourceSize(rows, None, f"{meta.name}: {rows} rows")


def _parquet_size(cfg: DataConfig, name: str) -> SourceSize | None:
    import pyarrow.parquet as pq

    from amh.data.prepare import REPORT
    from amh.data.sources import _shard_files

    root = Path(cfg.path)
    report = root / REPORT
    if report.is_file():  # written by scripts/prepare_dataset.py: kept rows and hours per split
        split = json.loads(report.read_text(encoding="utf-8")).get("splits", {}).get(name)
        if split:
            return SourceSize(int(split["rows_kept"]), float(split["hours_kept"]) * 3600,
                              f"{REPORT}: {split['rows_kept']} rows, {split['hours_kept']} h")
    if (root / "dataset_dict.json").exists() or (root / "state.json").exists():
        import datasets

        ds = datasets.load_from_disk(str(root))
        ds = ds.get(name) if isinstance(ds, datasets.DatasetDict) else ds
        return SourceSize(len(ds), None, f"{root.name} (save_to_disk): {len(ds)} rows") if ds is not None else None
    files = [f for f in _shard_files(root, name) if f.endswith(".parquet")]
    if not files:
        return None
    rows, seconds = 0, 0.0
    for f in files:
        meta = pq.ParquetFile(f)
        rows += meta.metadata.num_rows
        if seconds is not None and "duration" in meta.schema_arrow.names:
            seconds += float(sum(v for v in pq.read_table(f, columns=["duration"]).column(0).to_pylist() if v))
        else:
            seconds = None
    hours = f", {seconds / 3600:.2f} h" if seconds is not None else ""
    return SourceSize(rows, seconds, f"{len(files)} parquet shard(s): {rows} rows{hours}")


def _hub_size(cfg: DataConfig, name: str) -> SourceSize | None:
    import datasets

    try:  # the dataset card's metadata only; nothing is downloaded but the card and the builder script
        splits = datasets.load_dataset_builder(cfg.path, cfg.name).info.splits
    except Exception:  # noqa: BLE001 - a size is a nicety: no total on the bar, never a failed run
        return None
    split = (splits or {}).get(name)
    if split is None or not split.num_examples:
        return None
    return SourceSize(int(split.num_examples), None, f"{cfg.path} info.splits[{name!r}]: {split.num_examples} rows")


def estimate_epoch(cfg: Config, world_size: int) -> EpochEstimate | None:
    """Steps per epoch ~ rows per rank / batch_size / grad_accum, or, with data.max_batch_seconds and
    known durations, audio seconds per rank / max_batch_seconds / grad_accum. An upper bound when rows
    are filtered out, a lower one when bucketing pads; `RunProgress` replaces it after epoch 1."""
    size = source_size(cfg.data)
    if size is None or size.rows == 0:
        return None
    t = cfg.train
    if cfg.data.max_batch_seconds and size.seconds:
        batches = size.seconds / world_size / cfg.data.max_batch_seconds
        how = f"{size.seconds / 3600:.2f} h / {world_size} rank(s) / {cfg.data.max_batch_seconds:g} s per batch"
        capped = size.rows / world_size / cfg.data.max_batch_size if cfg.data.max_batch_size else 0.0
        if capped > batches:  # the clip cap, not the seconds, sizes the batches
            batches = capped
            how = f"{size.rows} rows / {world_size} rank(s) / at most {cfg.data.max_batch_size} clips per batch"
    else:
        batches = size.rows / world_size / t.batch_size
        how = f"{size.rows} rows / {world_size} rank(s) / batch {t.batch_size}"
    steps = max(1.0, batches / t.grad_accum)
    return EpochEstimate(steps, f"{size.basis}; {how} / grad_accum {t.grad_accum} = ~{steps:.0f} steps per epoch")


def planned_steps(max_steps: int | None, epochs: int, steps_per_epoch: float | None) -> int | None:
    """The run's total optimizer steps: max_steps, or epochs x steps per epoch, whichever ends first."""
    by_epochs = math.ceil(epochs * steps_per_epoch) if steps_per_epoch else None
    if max_steps is None:
        return by_epochs
    return min(max_steps, by_epochs) if by_epochs else max_steps


class RunProgress:
    """The tqdm bar of the loop: total = planned steps (so tqdm shows the ETA), the epoch in its label.

    Call `step(step, epoch)` after each optimizer step and `epoch_done(step)` when the loader is
    exhausted; the first epoch seen from its start replaces the estimate by the measured steps.
    While the bar is open, log records go through `tqdm.write` (tqdm's `logging_redirect_tqdm`), so
    a log line never lands in the middle of the bar.
    """

    def __init__(self, *, max_steps: int | None, epochs: int, estimate: EpochEstimate | None,
                 step: int = 0, epoch: int = 0, disable: bool = False, **tqdm_kwargs):
        from tqdm.auto import tqdm

        self.max_steps, self.epochs = max_steps, epochs
        self.steps_per_epoch = estimate.steps if estimate else None
        self.measured = False
        self.epoch = epoch
        self._epoch_start = step
        # A resumed run starts mid-epoch (as far as this object knows): that epoch is not measured.
        self._whole_epoch = step == 0
        self.bar = tqdm(total=self.total, initial=step, disable=disable, desc=self._desc(), unit="step",
                        dynamic_ncols=True, **tqdm_kwargs)
        self._redirect = None
        if not disable:
            from tqdm.contrib.logging import logging_redirect_tqdm

            self._redirect = logging_redirect_tqdm(tqdm_class=type(self.bar))
            self._redirect.__enter__()

    @property
    def total(self) -> int | None:
        return planned_steps(self.max_steps, self.epochs, self.steps_per_epoch)

    def _desc(self) -> str:
        return f"epoch {self.epoch + 1}/{self.epochs}"

    def step(self, step: int, epoch: int) -> None:
        self.epoch = epoch
        self.bar.update(step - self.bar.n)

    def epoch_done(self, step: int) -> None:
        if self._whole_epoch and not self.measured and step > self._epoch_start:
            self.steps_per_epoch = float(step - self._epoch_start)
            self.measured = True
            self.bar.total = self.total
        self._epoch_start, self._whole_epoch = step, True
        if self.epoch + 1 < self.epochs:  # after the last epoch the bar keeps showing it, not "epoch 11/10"
            self.epoch += 1
            self.bar.set_description(self._desc(), refresh=False)
        self.bar.refresh()

    def set_postfix(self, **values) -> None:
        self.bar.set_postfix(values)

    def close(self) -> None:
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
            self._redirect = None
        self.bar.close()


# ---------------------------------------------------------------------------------------------
# Log lines


def _of(step: int, total: int | None) -> str:
    return f"{step}/{total} ({100 * step / total:.1f}%)" if total else str(step)


def format_step_line(step: int, values: Mapping[str, float], *, total: int | None, epoch: int, epochs: int) -> str:
    """One plain log line from the scalars train.py logs at a log step (keys as in TensorBoard:
    train/loss, train/loss_text_ce, train/loss_mel_ce, train/lr, train/loss_scale,
    train/skipped_steps, grad_norm/<group>, perf/samples_per_s, perf/audio_seconds_per_s)."""
    v = values
    norms = " ".join(f"{k.removeprefix('grad_norm/')} {x:.3g}" for k, x in v.items() if k.startswith("grad_norm/"))
    parts = [
        f"step {_of(step, total)}",
        f"epoch {epoch + 1}/{epochs}",
        f"loss {v['train/loss']:.4f} (text {v['train/loss_text_ce']:.4f}, mel {v['train/loss_mel_ce']:.4f})",
        f"lr {v['train/lr']:.2e}",
        f"grad norm {norms or '-'}",
        f"loss scale {v['train/loss_scale']:g}",
        f"skipped {int(v['train/skipped_steps'])}",
        # audio seconds per second is audio hours per hour, the unit the data is counted in
        f"{v['perf/samples_per_s']:.1f} samples/s, {v['perf/audio_seconds_per_s']:.1f} audio-h/h",
    ]
    return " | ".join(parts)


EVAL_KEYS = (("eval/loss", "loss"), ("eval/loss_text_ce", "text"), ("eval/loss_mel_ce", "mel"))
# Shown when present: the training objective on the eval set and the speech eval (amh/eval).
OPTIONAL_EVAL_KEYS = (("eval/objective", "objective"), ("eval/cer", "CER"), ("eval/wer", "WER"),
                      ("eval/speaker_sim", "speaker sim"), ("eval/rtf", "RTF"))


class EvalHistory:
    """The eval losses seen so far: the change since the previous eval, and the best loss and its step."""

    def __init__(self):
        self.previous: dict[str, float] | None = None
        self.best: tuple[float, int] | None = None  # (eval/loss, step)
        self.last: tuple[dict[str, float], int] | None = None

    def line(self, step: int, metrics: Mapping[str, float]) -> str:
        """Record an eval and return its `EVAL` log line."""
        parts = []
        for key, label in EVAL_KEYS + tuple(k for k in OPTIONAL_EVAL_KEYS if k[0] in metrics):
            value = metrics[key]
            change = f" ({value - self.previous[key]:+.4f})" if self.previous and key in self.previous else ""
            parts.append(f"{label} {value:.4f}{change}")
        loss = metrics["eval/loss"]
        new_best = self.best is None or loss < self.best[0]
        if new_best:
            self.best = (loss, step)
        self.previous = dict(metrics)
        self.last = (dict(metrics), step)
        best = "new best" if new_best else f"best {self.best[0]:.4f} at step {self.best[1]}"
        return f"EVAL step {step} | " + " | ".join(parts) + f" | {best}"

    def state_dict(self) -> dict:
        return {"previous": self.previous, "best": list(self.best) if self.best else None}

    def load_state_dict(self, state: dict) -> None:
        self.previous = state.get("previous")
        self.best = tuple(state["best"]) if state.get("best") else None


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def shell_path(path: str | Path) -> str:
    """A path as a user pastes it: relative to the working directory when inside it, shell-quoted."""
    absolute = Path(os.path.abspath(path))  # not resolve(): a venv's python is a symlink to name as it is
    try:
        shown = str(absolute.relative_to(Path(os.path.abspath(Path.cwd()))))
    except ValueError:
        shown = str(path)
    return shlex.quote(shown)


def _tool(name: str) -> str:
    """The venv's own console script when the trainer runs from a venv, else the bare name."""
    candidate = Path(sys.executable).parent / name
    return shell_path(candidate) if candidate.exists() else name


@dataclass
class RunSummary:
    """What the end-of-run summary reports; train.py fills it at the end."""

    run_dir: Path
    first_step: int  # the step the run (re)started from
    last_step: int
    seconds: float
    exit_code: int = 0
    best_eval: tuple[float, int] | None = None  # EvalHistory.best
    data: object = None  # amh.data.filters.FilterStats of the training split
    export_dir: Path | None = None
    speaker_wav: Path | None = None
    sentence: str = "ሰላም፣ እንዴት ነህ?"
    checkpoint: Path | None = None  # newest complete checkpoint, for runs that stopped without an export


def format_summary(s: RunSummary) -> str:
    """The closing block: steps, time, best eval, data, and the commands to look at and use the model."""
    trained = s.last_step - s.first_step
    rate = f", {trained / s.seconds:.2f} steps/s" if s.seconds > 0 and trained else ""
    resumed = f" (from step {s.first_step})" if s.first_step else ""
    status = "finished" if s.exit_code == 0 else f"stopped with exit code {s.exit_code}"
    lines = [f"run {status}: step {s.last_step}, {trained} steps this run{resumed} in {_duration(s.seconds)}{rate}"]
    if s.best_eval is not None:
        lines.append(f"best eval loss {s.best_eval[0]:.4f} at step {s.best_eval[1]}")
    else:
        lines.append("best eval loss: no eval ran (train.eval_every > steps)")
    if s.data is not None:
        d = s.data
        drops = ", ".join(f"{reason} {n}" for reason, n in d.top_reasons(len(d.counts))) or "none"
        lines.append(f"data: {d.kept} of {d.seen} rows kept ({d.kept_seconds / 3600:.2f} h), {d.dropped} dropped ({drops})")
    run_dir = Path(s.run_dir)
    lines.append(f"run dir      {shell_path(run_dir)}")
    lines.append(f"TensorBoard  {_tool('tensorboard')} --logdir {shell_path(run_dir / 'tensorboard')}"
                 "   (Custom Scalars tab: losses, lr, grad norms first)")
    python = _tool("python")
    if s.export_dir is not None:
        lines.append(f"export       {shell_path(s.export_dir)}")
        speaker = shell_path(s.speaker_wav) if s.speaker_wav else "REFERENCE.wav"
        lines.append(f"speak        {python} scripts/synthesize.py --export {shell_path(s.export_dir)} "
                     f"--speaker-wav {speaker} --text {shlex.quote(s.sentence)} --out hello.wav")
    elif s.checkpoint is not None:
        lines.append(f"export it    {python} scripts/export.py --checkpoint {shell_path(s.checkpoint)}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# TensorBoard


def tensorboard_layout(clip_groups: list[str]) -> dict:
    """The custom-scalars layout (`SummaryWriter.add_custom_scalars`): categories in this order, each
    chart a Multiline of tag regexes. Train and eval share a chart, so the gap between them shows."""
    return {
        "1. losses": {
            "loss (train, eval)": ["Multiline", [r"^train/loss$", r"^eval/loss$"]],
            "mel CE (train, eval)": ["Multiline", [r"^train/loss_mel_ce$", r"^eval/loss_mel_ce$"]],
            "text CE (train, eval)": ["Multiline", [r"^train/loss_text_ce$", r"^eval/loss_text_ce$"]],
        },
        "2. optimisation": {
            "learning rate": ["Multiline", [r"^train/lr$"]],
            "grad norm per group (before clipping)": ["Multiline", [rf"^grad_norm/{g}$" for g in clip_groups]],
            "loss scale": ["Multiline", [r"^train/loss_scale$"]],
            "skipped steps": ["Multiline", [r"^train/skipped_steps$"]],
        },
        "3. throughput": {
            "samples/s": ["Multiline", [r"^perf/samples_per_s$"]],
            "audio s/s": ["Multiline", [r"^perf/audio_seconds_per_s$"]],
            "padding efficiency": ["Multiline", [r"^perf/padding_efficiency$"]],
            "memory MB": ["Multiline", [r"^train/memory_mb$"]],
        },
        "4. embeddings": {"text embedding std": ["Multiline", [r"^embedding/.*"]]},
        "5. data": {
            "rows (seen, kept, dropped)": ["Multiline", [r"^data/rows_seen$", r"^data/rows_kept$", r"^data/rows_dropped$"]],
            "hours kept": ["Multiline", [r"^data/hours_kept$"]],
        },
    }


def data_scalars(stats, prefix: str = "data/") -> dict[str, float]:
    """Drop counts as TensorBoard scalars: one total, not a flat-zero plot per reason (the reasons go
    to `drop_table`)."""
    return {f"{prefix}rows_seen": float(stats.seen), f"{prefix}rows_kept": float(stats.kept),
            f"{prefix}rows_dropped": float(stats.dropped), f"{prefix}hours_kept": stats.kept_seconds / 3600}


def drop_table(stats) -> str:
    """A markdown table of the dropped rows by reason, with example row ids (TensorBoard's Text tab)."""
    from amh.data.filters import ADVICE, Reason

    lines = [f"**{stats.seen}** rows seen, **{stats.kept}** kept ({stats.kept_seconds / 3600:.2f} h), "
             f"**{stats.dropped}** dropped", ""]
    if not stats.dropped:
        return "\n".join(lines[:1])
    lines += ["| reason | rows | e.g. | what to change |", "|---|---:|---|---|"]
    for reason, count in stats.top_reasons(len(stats.counts)):
        examples = ", ".join(f"`{e}`" for e in stats.examples.get(reason, [])[:3])
        lines.append(f"| {reason} | {count} | {examples} | {ADVICE[Reason(reason)]} |")
    return "\n".join(lines)


def code_block(text: str, language: str = "") -> str:
    """Markdown that TensorBoard's Text tab shows verbatim (it renders markdown)."""
    return f"```{language}\n{text.rstrip()}\n```"


def log_run_start(writer, cfg: Config, *, epoch_basis: str | None = None, step: int = 0) -> None:
    """The layout, the resolved config and the data estimate, once at start-up (main process)."""
    import yaml

    from amh.config import to_dict

    writer.add_custom_scalars(tensorboard_layout([g.name for g in cfg.train.clip_groups]))
    writer.add_text("run/config", code_block(yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True), "yaml"),
                    step)
    if epoch_basis:
        writer.add_text("run/data", epoch_basis, step)


def log_data_summary(writer, stats, step: int) -> None:
    writer.add_text("run/data_dropped", drop_table(stats), step)


def log_test_audio(writer, wavs, sentences: list[str], step: int, sample_rate: int) -> None:
    """Each test sentence as one audio tag, `test_sentences/<i>`, titled "<i>: <sentence>" in the Audio
    tab. TensorBoard shows no per-clip caption for the audio `add_audio` writes, but it shows a tag's
    display name (and its description, behind the (i) icon): both go into the summary metadata."""
    import torch
    from torch.utils.tensorboard.summary import audio

    for i, (wav, sentence) in enumerate(zip(wavs, sentences)):
        summary = audio(f"test_sentences/{i}", torch.as_tensor(wav).reshape(-1, 1), sample_rate=sample_rate)
        summary.value[0].metadata.display_name = f"{i}: {sentence}"  # the clip's title in the Audio tab
        summary.value[0].metadata.summary_description = sentence
        # SummaryWriter.add_audio cannot attach metadata; its file writer takes the finished proto.
        writer._get_file_writer().add_summary(summary, step)


def log_final_hparams(writer, cfg: Config, metrics: Mapping[str, float]) -> None:
    """The HParams tab, in the run itself (not the empty timestamped sub-run that
    `SummaryWriter.add_hparams` and Accelerate's `init_trackers(config=...)` create), with the final
    metrics: `metrics` are written as scalars `hparams/<name>` and named in the experiment."""
    from torch.utils.tensorboard.summary import hparams

    t, o = cfg.train, cfg.optim
    params = {"lr": o.lr, "schedule": o.schedule, "batch_size": t.batch_size, "grad_accum": t.grad_accum,
              "precision": t.precision, "init_std_factor": cfg.model.init_std_factor,
              "g2p": str(cfg.text.g2p), "max_audio_seconds": cfg.data.max_audio_seconds,
              **{f"clip/{g.name}": g.max_norm for g in t.clip_groups}}
    tagged = {f"hparams/{k}": float(v) for k, v in metrics.items()}
    exp, ssi, sei = hparams(params, tagged)
    file_writer = writer._get_file_writer()  # add_hparams would write to a new sub-run
    for summary in (exp, ssi, sei):
        file_writer.add_summary(summary)
    for tag, value in tagged.items():
        writer.add_scalar(tag, value)
    writer.flush()


__all__ = [
    "EpochEstimate", "EvalHistory", "RunProgress", "RunSummary", "data_scalars", "drop_table",
    "estimate_epoch", "format_step_line", "format_summary", "log_data_summary", "log_final_hparams",
    "log_run_start", "log_test_audio", "planned_steps", "source_size", "tensorboard_layout",
]
