"""Write a source once as training-ready parquet shards (the `datasets` format, push-ready for the Hub).

Each kept row becomes: `id`, `audio` (22.05 kHz mono FLAC, the `datasets` Audio feature), `text`
(normalised by the front-end, not phonemised: G2P still runs at training time), `speaker`,
`duration` (s), `n_text_tokens`; with a codec also `codes` (DVAE codes of the stored audio) and a
fixed prompt, `cond_start`/`cond_end` plus its `cond_mels`, so training does no DVAE work. Rows
go through the same checks as training (`filters.Reason`); the report counts them.

Resumable: shards of `rows_per_shard` kept rows are written atomically and after each one the
source reader's `datasets` state goes to `.prepare_progress.json`; a rerun continues from there.
Decoding runs in a process pool, one bounded chunk of rows at a time (a Pool's imap would read
the whole source ahead).
"""
from __future__ import annotations

import io
import json
import logging
import math
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import soundfile as sf

from amh.config import DataConfig
from amh.data.audio import encode_flac
from amh.data.conditioning import prompt_span
from amh.data.filters import FilterStats, Reason, Rejected, check_text
from amh.data.samples import SampleMaker, TextEncoder, stable_hash
from amh.data.sources import canonical_row, in_split, open_rows

log = logging.getLogger(__name__)

PROGRESS = ".prepare_progress.json"
REPORT = "prepare_report.json"
ROW_GROUP = 100  # rows per parquet row group: the Hub's choice for audio, and `reshard()`'s unit
SPLITS = ("train", "eval")


@dataclass(frozen=True)
class PrepareOptions:
    out: str
    rows_per_shard: int = 1000
    workers: int = max(1, (os.cpu_count() or 2) - 1)
    seed: int = 0  # fixes each row's prompt slice when codes are computed
    codes_batch: int = 8  # rows per codec call


def features(with_codes: bool, sample_rate: int) -> datasets.Features:
    cols = {
        "id": datasets.Value("string"), "audio": datasets.Audio(sampling_rate=sample_rate),
        "text": datasets.Value("string"), "speaker": datasets.Value("string"),
        "duration": datasets.Value("float32"), "n_text_tokens": datasets.Value("int32"),
    }
    if with_codes:
        cols.update({"codes": datasets.List(datasets.Value("int16")), "cond_start": datasets.Value("int32"),
                     "cond_end": datasets.Value("int32"),
                     "cond_mels": datasets.Array2D(shape=(None, 80), dtype="float16")})
    return datasets.Features(cols)


# ---------------------------------------------------------------------------------------------
# Per-row work, in pool processes. The pool's initializer leaves one `_Worker` per process (the
# standard multiprocessing pattern: workers cannot be handed objects per call cheaply).


class _Worker:
    def __init__(self, cfg: DataConfig, normalize: Callable[[str], str], text_encoder: TextEncoder):
        self.cfg, self.normalize = cfg, normalize
        self.maker = SampleMaker(cfg, text_encoder, seed=0, training=False)

    def __call__(self, row: dict) -> dict | tuple[str, Rejected]:
        try:
            text = self.normalize(check_text(row.get("text")))
        except Rejected as why:
            return row["id"], why
        except Exception as err:  # noqa: BLE001 - a bad row must not stop the job
            return row["id"], Rejected(Reason.TEXT_ERROR, f"normalisation: {type(err).__name__}: {err}")
        try:
            ids = self.maker.text_ids({"text": text})
            wav = self.maker.waveform(row)
        except Rejected as why:
            return row["id"], why
        audio = {"bytes": encode_flac(wav, self.cfg.sample_rate), "path": _file_name(row["id"])}
        return {"id": row["id"], "audio": audio,
                "text": text, "speaker": row["speaker"], "duration": len(wav) / self.cfg.sample_rate,
                "n_text_tokens": len(ids)}


_worker: _Worker | None = None


def _init_worker(worker: _Worker) -> None:
    global _worker
    _worker = worker


def _run_worker(row: dict):
    return _worker(row)


def _file_name(row_id: str) -> str:
    return re.sub(r"[^\w.-]+", "_", Path(row_id).stem or row_id)[:120] + ".flac"


# ---------------------------------------------------------------------------------------------


class _Progress:
    """What is written, per split, and where the source reader stood after it."""

    def __init__(self, path: Path, fingerprint: dict):
        self.path = path
        self.data = {"fingerprint": fingerprint, "splits": {}}
        if path.exists():
            old = json.loads(path.read_text(encoding="utf-8"))
            if old["fingerprint"] != fingerprint:
                raise ValueError(f"{path.parent} was prepared with other settings ({old['fingerprint']}); "
                                 f"use another --out or delete it")
            self.data = old

    def split(self, name: str) -> dict:
        return self.data["splits"].setdefault(name, {"done": False, "shards": 0, "reader": None,
                                                     "stats": FilterStats().to_dict(), "speakers": {}})

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.path)


def prepare(cfg: DataConfig, opts: PrepareOptions, *, normalize: Callable[[str], str], text_encoder: TextEncoder,
            codec=None, fingerprint: dict | None = None, progress_bar: bool = True) -> dict:
    """Write `opts.out` from the source in `cfg`; returns (and writes) the report.

    `normalize`: the front-end's text normalisation; `text_encoder`: text -> ids (for the checks and
    token counts); `codec`: an `amh.xtts.codes.AudioCodec` to precompute codes and prompt mels, or None.
    """
    from tqdm import tqdm

    out = Path(opts.out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    fp = {"data": asdict(cfg), "rows_per_shard": opts.rows_per_shard, "seed": opts.seed,
          "codes": codec is not None, **(fingerprint or {})}
    progress = _Progress(out / PROGRESS, json.loads(json.dumps(fp)))
    feats = features(codec is not None, cfg.sample_rate)
    worker = _Worker(cfg, normalize, text_encoder)
    with get_context("fork").Pool(opts.workers, initializer=_init_worker, initargs=(worker,)) as pool:
        for split in SPLITS:
            state = progress.split(split)
            if state["done"]:
                continue
            rows = open_rows(cfg, split)
            if state["reader"] is not None:
                rows.load_state_dict(state["reader"])
            bar = tqdm(desc=f"prepare {split}", unit="row", disable=not progress_bar)
            _write_split(rows, split, cfg, opts, pool, codec, feats, progress, state, bar)
            bar.close()
    report = _report(progress, cfg)
    _write_readme(out, report)
    (out / REPORT).write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return report


def _write_split(rows, split, cfg, opts, pool, codec, feats, progress, state, bar) -> None:
    stats = FilterStats.from_dict(state["stats"])
    speakers: dict[str, list] = state["speakers"]
    kept: list[dict] = []
    reader_after: dict = state["reader"]
    chunk = max(1, opts.workers) * 16
    source = iter(rows)

    def flush() -> None:
        nonlocal kept
        _write_shard(Path(opts.out) / "data" / f"{split}-{state['shards']:05d}.parquet", kept, feats)
        state.update(shards=state["shards"] + 1, reader=reader_after, stats=stats.to_dict(), speakers=speakers)
        progress.save()
        kept = []

    while True:
        batch, readers = [], []
        for raw in source:
            row = canonical_row(raw, cfg)
            if in_split(row, split, cfg):
                batch.append(row)
                readers.append(rows.state_dict())
                if len(batch) == chunk:
                    break
        if not batch:
            break
        for result, reader in zip(pool.map(_run_worker, batch), readers):
            bar.update(1)
            if isinstance(result, tuple):
                message = stats.add_rejected(result[0], result[1])
                if message:
                    log.warning("%s: %s", split, message)
                continue
            stats.add_kept(result["duration"])
            count = speakers.setdefault(result["speaker"], [0, 0.0])
            count[0], count[1] = count[0] + 1, count[1] + result["duration"]
            kept.append(result)
            reader_after = reader
            if len(kept) == opts.rows_per_shard:
                if codec is not None:
                    _add_codes(kept, codec, cfg, opts)
                flush()
        bar.set_postfix(kept=stats.kept, hours=f"{stats.kept_seconds / 3600:.2f}")
    if kept:
        if codec is not None:
            _add_codes(kept, codec, cfg, opts)
        flush()
    state.update(done=True, stats=stats.to_dict(), speakers=speakers)
    progress.save()


def _add_codes(records: list[dict], codec, cfg: DataConfig, opts: PrepareOptions) -> None:
    """DVAE codes of the audio as stored (decoded back from FLAC) and the mel of a fixed prompt,
    zero-padded to data.max_conditioning_seconds as upstream pads prompts."""
    import torch

    min_cond = round(cfg.min_conditioning_seconds * cfg.sample_rate)
    max_cond = round(cfg.max_conditioning_seconds * cfg.sample_rate)
    for i in range(0, len(records), opts.codes_batch):
        group = records[i:i + opts.codes_batch]
        wavs = [sf.read(io.BytesIO(r["audio"]["bytes"]), dtype="float32")[0] for r in group]
        wav = torch.zeros(len(group), 1, max(len(w) for w in wavs))
        cond = torch.zeros(len(group), 1, max_cond)
        spans = []
        for k, (r, w) in enumerate(zip(group, wavs)):
            wav[k, 0, : len(w)] = torch.from_numpy(w)
            start, end = prompt_span(len(w), min_cond, max_cond, np.random.default_rng(stable_hash(opts.seed, r["id"])))
            cond[k, 0, : end - start] = torch.from_numpy(w[start:end])
            spans.append((start, end))
        device = next(codec.parameters()).device
        codes = codec.codes(wav.to(device)).cpu()
        mels = codec.cond_mels(cond.to(device)).cpu()
        for k, (r, w) in enumerate(zip(group, wavs)):
            r["codes"] = codes[k, : math.ceil(len(w) / 1024)].to(torch.int16).tolist()
            r["cond_start"], r["cond_end"] = spans[k]
            r["cond_mels"] = mels[k].T.to(torch.float16).numpy()


def _write_shard(path: Path, records: list[dict], feats: datasets.Features) -> None:
    table = datasets.Dataset.from_dict({k: [r[k] for r in records] for k in feats}, features=feats).data.table
    tmp = path.with_suffix(".partial")
    with pq.ParquetWriter(tmp, table.schema) as writer:
        writer.write_table(table, row_group_size=ROW_GROUP)
    os.replace(tmp, path)


def _report(progress: _Progress, cfg: DataConfig) -> dict:
    report = {"source": f"{cfg.source} {cfg.path}", "splits": {}}
    for split, state in progress.data["splits"].items():
        stats = FilterStats.from_dict(state["stats"])
        report["splits"][split] = {
            "shards": state["shards"], "rows_seen": stats.seen, "rows_kept": stats.kept,
            "hours_kept": round(stats.kept_seconds / 3600, 4), "dropped": {k: v for k, v in stats.counts.items() if v},
            "dropped_examples": {k: v for k, v in stats.examples.items() if v},
            "speakers": {s: {"rows": n, "hours": round(sec / 3600, 4)}
                         for s, (n, sec) in sorted(state["speakers"].items())},
        }
    return report


def _write_readme(out: Path, report: dict) -> None:
    """A dataset card whose `configs` name the splits, so `load_dataset(out)` and the Hub read
    train/eval as such (a folder named eval would otherwise become the "test" split)."""
    splits = [s for s in SPLITS if report["splits"].get(s, {}).get("shards")]
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    lines += [f"  - split: {s}\n    path: data/{s}-*.parquet" for s in splits]
    lines += ["---", "", "# Prepared speech data (amh-xtts)", "",
              "Written by `scripts/prepare_dataset.py`: 22.05 kHz mono FLAC, normalised text. Train with "
              "`data.source=parquet data.path=<this folder>` or push it to the Hub and use `data.source=hub`.", ""]
    for s in splits:
        r = report["splits"][s]
        lines.append(f"- {s}: {r['rows_kept']} rows, {r['hours_kept']} h, {len(r['speakers'])} speakers; "
                     f"dropped {r['dropped'] or 'none'}")
    (out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def format_report(report: dict) -> str:
    lines = [f"prepared {report['source']}"]
    for split, r in report["splits"].items():
        lines.append(f"  {split}: kept {r['rows_kept']} of {r['rows_seen']} rows ({r['hours_kept']} h) in "
                     f"{r['shards']} shard(s), {len(r['speakers'])} speaker(s)")
        for reason, n in sorted(r["dropped"].items(), key=lambda kv: -kv[1]):
            lines.append(f"    dropped {reason}: {n} (e.g. {', '.join(r['dropped_examples'][reason][:3])})")
    return "\n".join(lines)

