"""Where rows come from: a streaming `datasets.IterableDataset` for each source kind, and the
canonical row every later stage sees.

- "hub": `datasets.load_dataset(path, name, split=..., streaming=True)`;
- "parquet": a local folder of parquet/arrow shards (`<split>/*.parquet`, `data/<split>-*.parquet`,
  a `save_to_disk` folder, or anything `load_dataset(folder)` understands, e.g. an audiofolder);
- "ready": a Coqui / xtts-finetune-webui folder, `metadata_<split>.csv` lines `audio_file|text|speaker_name`
  with wav paths relative to the folder.

Audio is never decoded here (the column is cast to `Audio(decode=False)`): rows carry the encoded
bytes or a path, and the workers decode. A canonical row is a dict with `id`, `audio` (bytes, a
path, or {bytes, path}), `text`, `speaker`, and, when the source has them, the precomputed columns
of `PRECOMPUTED`.
"""
from __future__ import annotations

import csv
import io
import logging
import re
from pathlib import Path
from typing import Literal

import datasets

from amh.config import DataConfig
from amh.data.samples import stable_hash

logger = logging.getLogger(__name__)

# Columns written by scripts/prepare_dataset.py that the loader uses when present.
PRECOMPUTED = ("codes", "cond_mels", "cond_start", "cond_end")
ID_COLUMN = "id"
READY_COLUMNS = ("audio_file", "text", "speaker_name")
# Rows per shard of a "ready" folder: many small shards let ranks and workers split by shard.
READY_ROWS_PER_SHARD = 32
_SHARD_EXTENSIONS = ("parquet", "arrow")
_AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus")


class SourceError(ValueError):
    """The configured source cannot be opened; the message names the key to change."""


def split_name(cfg: DataConfig, split: Literal["train", "eval"]) -> str:
    """The source's split that `split` reads (with held-out eval, both read the train split)."""
    if split == "train" or cfg.eval_split is None:
        return cfg.train_split
    return cfg.eval_split


def carries_codes(cfg: DataConfig) -> bool:
    """True when every row of both splits comes with DVAE codes and a prompt mel (a folder written by
    scripts/prepare_dataset.py --codes-from): then training needs no DVAE on the device.

    Read off the first parquet shard's schema of each split (prepare writes a whole folder with or
    without codes); any other layout or source answers False, so the DVAE is kept at hand.
    """
    if cfg.source != "parquet" or not Path(cfg.path).is_dir():
        return False
    import pyarrow.parquet as pq

    for split in ("train", "eval"):
        files = [f for f in _shard_files(Path(cfg.path), split_name(cfg, split)) if f.endswith(".parquet")]
        if not files or not {"codes", "cond_mels", "cond_start"} <= set(pq.ParquetFile(files[0]).schema_arrow.names):
            return False
    return True


def describe(cfg: DataConfig, split: Literal["train", "eval"]) -> str:
    held = f", {'held-out' if split == 'eval' else 'minus held-out'} {cfg.eval_fraction:.0%} by speaker" \
        if cfg.eval_split is None else ""
    return f"data.source={cfg.source} {cfg.path!r} split {split_name(cfg, split)!r}{held}"


def open_rows(cfg: DataConfig, split: Literal["train", "eval"]) -> datasets.IterableDataset:
    """The split's raw rows, streaming, with only the columns we use. Rows still need `canonical_row`."""
    name = split_name(cfg, split)
    opener = {"hub": _open_hub, "parquet": _open_local, "ready": _open_ready}[cfg.source]
    ds = opener(cfg, name)
    return _select_columns(ds, cfg)


def columns(cfg: DataConfig) -> tuple[str, str, str]:
    """The source's (audio, text, speaker) column names (a "ready" folder's are fixed)."""
    if cfg.source == "ready":
        return "audio", "text", "speaker"
    return cfg.audio_column, cfg.text_column, cfg.speaker_column


def canonical_row(raw: dict, cfg: DataConfig) -> dict:
    """Rename the configured columns to audio/text/speaker and give the row a stable id."""
    audio, text, speaker = columns(cfg)
    row = {"audio": raw.get(audio), "text": raw.get(text), "speaker": str(raw.get(speaker) or "")}
    for key in PRECOMPUTED:
        if key in raw:
            row[key] = raw[key]
    row["id"] = str(raw.get(ID_COLUMN) or "") or _derived_id(row)
    return row


def in_split(row: dict, split: Literal["train", "eval"], cfg: DataConfig) -> bool:
    """With data.eval_split=None, hold out ~eval_fraction of every speaker's rows by hashing
    (speaker, id): the same rows are eval in every run and on every rank."""
    if cfg.eval_split is not None:
        return True
    is_eval = stable_hash("holdout", row["speaker"], row["id"]) / 2**64 < cfg.eval_fraction
    return is_eval == (split == "eval")


def _derived_id(row: dict) -> str:
    audio = row["audio"]
    path = audio.get("path") if isinstance(audio, dict) else audio if isinstance(audio, str) else None
    if path:
        return str(path)
    data = audio.get("bytes") if isinstance(audio, dict) else audio
    return f"sha:{stable_hash(bytes(data or b'')[:65536], row['text']):016x}"


# ---------------------------------------------------------------------------------------------
# Openers


def _open_hub(cfg: DataConfig, name: str) -> datasets.IterableDataset:
    try:
        return datasets.load_dataset(cfg.path, cfg.name, split=name, streaming=True)
    except ValueError as err:
        if "split" in str(err).lower():
            raise SourceError(f"data.path={cfg.path!r}: {err}. Set data.train_split/data.eval_split to one of "
                              "its splits, or data.eval_split: null to hold out data.eval_fraction") from err
        raise


def _open_local(cfg: DataConfig, name: str) -> datasets.IterableDataset:
    root = Path(cfg.path)
    if not root.is_dir():
        raise SourceError(f"data.path={cfg.path!r}: not a directory (data.source=parquet needs a local folder)")
    if (root / "dataset_dict.json").exists() or (root / "state.json").exists():  # Dataset.save_to_disk
        ds = datasets.load_from_disk(str(root))
        if isinstance(ds, datasets.DatasetDict):
            if name not in ds:
                raise SourceError(f"data.path={cfg.path!r} has splits {sorted(ds)}, not {name!r}")
            ds = ds[name]
        return ds.to_iterable_dataset(num_shards=min(len(ds), 256) or 1)
    files = _shard_files(root, name)
    if files:
        builder = files[0].rsplit(".", 1)[-1]
        return datasets.load_dataset(builder, data_files={name: files}, split=name, streaming=True)
    if (root / name).is_dir() and any(p.suffix.lower() in _AUDIO_EXTENSIONS for p in (root / name).rglob("*")):
        return datasets.load_dataset("audiofolder", data_dir=str(root / name), split="train", streaming=True)
    try:  # a README with `configs:`, or a layout datasets infers
        return datasets.load_dataset(str(root), cfg.name, split=name, streaming=True)
    except (ValueError, FileNotFoundError) as err:
        raise SourceError(
            f"data.path={cfg.path!r}: no shards for split {name!r} (looked for {name}/*.parquet, "
            f"data/{name}-*.parquet, {name}-*.parquet, {name}/ audio + metadata, arrow likewise); "
            f"datasets says: {err}") from err


def _shard_files(root: Path, name: str) -> list[str]:
    for ext in _SHARD_EXTENSIONS:
        patterns = (f"{name}/**/*.{ext}", f"data/{name}-*.{ext}", f"{name}-*.{ext}", f"{name}.{ext}",
                    f"**/{name}-*.{ext}")
        for pattern in patterns:
            found = sorted(str(p) for p in root.glob(pattern) if p.is_file())
            if found:
                return found
    return []


def _open_ready(cfg: DataConfig, name: str) -> datasets.IterableDataset:
    root = Path(cfg.path)
    if not root.is_dir():
        raise SourceError(f"data.path={cfg.path!r}: not a directory (data.source=ready needs a folder with "
                          "metadata_train.csv, metadata_eval.csv and the wavs)")
    meta = root / f"metadata_{name}.csv"
    if not meta.is_file():
        have = sorted(p.name for p in root.glob("metadata_*.csv")) if root.is_dir() else []
        hint = "data.eval_split: null holds out data.eval_fraction of each speaker" if name == cfg.eval_split else \
            "set data.train_split"
        raise SourceError(f"data.path={cfg.path!r}: no {meta.name} (found {have or 'nothing'}); {hint}")
    rows = _read_ready_csv(meta)
    chunks = [rows[i:i + READY_ROWS_PER_SHARD] for i in range(0, len(rows), READY_ROWS_PER_SHARD)]
    features = datasets.Features({
        "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
        "text": datasets.Value("string"), "speaker": datasets.Value("string"), ID_COLUMN: datasets.Value("string"),
    })
    return datasets.IterableDataset.from_generator(_ready_rows, features=features,
                                                   gen_kwargs={"chunks": chunks, "root": str(root)})


def _read_ready_csv(meta: Path) -> list[tuple[str, str, str, str]]:
    """The (audio_file, text, speaker_name, row id) rows, decoded row by row.

    The file is decoded with "surrogateescape", so one byte that is not UTF-8 spoils only its own
    row: that row's fields get U+FFFD in its place (the text check rejects it as `text_error`) and
    its id names the line, so the skip message says where to look. The rest of the file trains.
    """
    text = meta.read_bytes().decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="|")
    records = [(reader.line_num, fields) for fields in reader]
    records = [(n, fields) for n, fields in records if any(x.strip() for x in fields)]
    if not records:
        return []
    _check_delimiter(meta, records[0][1])
    header = [h.strip() for h in records[0][1]]
    if "audio_file" in header and "text" in header:
        cols = [header.index(c) if c in header else None for c in READY_COLUMNS]
        records = records[1:]
    else:  # headerless: audio_file|text|speaker_name
        cols = [0, 1, 2]
    out, undecodable = [], []
    for n, fields in records:
        get = [fields[c] if c is not None and c < len(fields) else "" for c in cols]
        row_id = None
        if any(_NOT_UTF8.search(x) for x in get):
            undecodable.append(n)
            get = [_NOT_UTF8.sub("\ufffd", x) for x in get]
            row_id = f"{meta.name} line {n}: {get[0]}"
        if not get[0]:
            logger.warning("%s line %d: no audio_file; skipped", meta, n)
            continue
        out.append((get[0], get[1], get[2], row_id or get[0]))
    if undecodable:
        logger.warning("%s: %d line(s) hold bytes that are not UTF-8 (first: line %d); those rows are skipped as "
                       "text_error, the rest trains. Re-save the file as UTF-8 to keep them.",
                       meta, len(undecodable), undecodable[0])
    return out


# Lone surrogates are where "surrogateescape" kept a byte that is not UTF-8.
_NOT_UTF8 = re.compile("[\udc80-\udcff]")


def _check_delimiter(meta: Path, first: list[str]) -> None:
    """A "ready" CSV is '|'-separated; a first line with one column is another format, not bad rows."""
    if len(first) > 1:
        return
    found = next((d for d in (",", "\t", ";") if d in first[0]), None)
    what = f"found {found!r}" if found else f"found one column ({first[0][:60]!r})"
    raise SourceError(f"{meta}: expected '|'-separated columns audio_file|text|speaker_name, {what}")


def _ready_rows(chunks: list[list[tuple[str, str, str, str]]], root: str):
    for chunk in chunks:
        for audio_file, text, speaker, row_id in chunk:
            path = str(Path(root) / audio_file)
            yield {"audio": {"bytes": None, "path": path}, "text": text, "speaker": speaker, ID_COLUMN: row_id}


def _select_columns(ds: datasets.IterableDataset, cfg: DataConfig) -> datasets.IterableDataset:
    """Read only what we use (on the Hub this is bandwidth), and keep audio undecoded."""
    features = ds.features
    if cfg.source == "ready" or features is None:
        return ds
    have = list(features)
    for key in ("audio_column", "text_column"):
        if getattr(cfg, key) not in features:
            raise SourceError(f"data.{key}={getattr(cfg, key)!r} is not a column of {cfg.path!r}; columns: {have}")
    if cfg.speaker_column not in features:
        logger.warning("%s has no column data.speaker_column=%r (columns %s): every row is one speaker",
                       cfg.path, cfg.speaker_column, have)
    wanted = (cfg.audio_column, cfg.text_column, cfg.speaker_column, ID_COLUMN, *PRECOMPUTED)
    keep = [c for c in wanted if c in features]
    ds = ds.select_columns(keep)
    if isinstance(features[cfg.audio_column], datasets.Audio):
        ds = ds.cast_column(cfg.audio_column, datasets.Audio(decode=False))
    return ds
