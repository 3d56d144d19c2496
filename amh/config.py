"""The one training configuration: typed dataclasses, loaded from YAML with dotted overrides.

Every field is documented where it is defined. `load_config(path, overrides)` refuses unknown keys,
wrong types and impossible combinations with a message that names the key and the valid choices.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key and what is allowed."""


@dataclass
class ModelConfig:
    # Local release directory (model.pth, config.json, vocab.json, dvae.pth, mel_stats.pth)
    # or a Hugging Face Hub repo id such as "coqui/XTTS-v2".
    release: str = "coqui/XTTS-v2"
    # Hub revision (branch, tag or commit) when `release` is a repo id.
    revision: str | None = None
    # Where Hub downloads are cached (None: the huggingface_hub default).
    cache_dir: str | None = None
    # An extended vocab.json. None: look for one in the data's ready/ folder
    # (vocab_extended*.json), else train with the release's own vocab.
    vocab: str | None = None
    # New embedding/head rows ~ N(0, (pretrained_std * init_std_factor)^2) (the seed's Fix 1).
    init_std_factor: float = 1.0
    # Recompute GPT-2 block activations in the backward pass (saves memory, costs ~30% time).
    gradient_checkpointing: bool = False
    # torch.compile the GPT forward (measure before enabling: scripts/bench_step.py).
    compile: bool = False


@dataclass
class TextConfig:
    # Language code the model learns; "amh" is accepted as an alias of "am".
    language: str = "am"
    # Merge homophone letters (ሐ/ኀ/ኸ -> ሀ, ሠ -> ሰ, ዐ -> አ, ፀ -> ጸ).
    homophones: bool = True
    # None trains on Ethiopic script; a backend name trains on IPA phonemes.
    g2p: Literal["epitran", "rules", "espeak", "hybrid", "transphone"] | None = None
    expand_numbers: bool = True
    expand_abbreviations: bool = True
    # What to do with Latin-script words: keep them (XTTS knows Latin letters) or drop them.
    latin: Literal["keep", "drop"] = "keep"


@dataclass
class DataConfig:
    # "hub": a Hub dataset id; "parquet": a local folder of parquet/arrow shards;
    # "ready": a Coqui/xtts-finetune-webui folder with metadata_train.csv/metadata_eval.csv.
    source: Literal["hub", "parquet", "ready"] = "hub"
    # Hub dataset id, or a local directory for "parquet"/"ready".
    path: str = ""
    # Hub dataset configuration name.
    name: str | None = None
    train_split: str = "train"
    # Eval split name in the source; None holds out `eval_fraction` of each speaker by hashing.
    eval_split: str | None = "eval"
    eval_fraction: float = 0.02
    # Column names in the source.
    audio_column: str = "audio"
    text_column: str = "text"
    speaker_column: str = "speaker"
    sample_rate: int = 22050
    min_audio_seconds: float = 0.5
    # 11 s by default; hard ceiling is XTTS's 255995 samples (~11.6 s).
    max_audio_seconds: float = 11.0
    max_text_tokens: int = 200
    # Conditioning clip: a random 3-6 s slice of the same utterance (upstream's masking
    # approach; its span is masked out of the loss) or another utterance of the same speaker.
    conditioning: Literal["same_utterance", "same_speaker"] = "same_utterance"
    min_conditioning_seconds: float = 3.0
    max_conditioning_seconds: float = 6.0
    # Streaming shuffle buffer (samples) and length-bucketing window (samples).
    shuffle_buffer: int = 1000
    bucket_buffer: int = 256
    # Cap batches by total audio seconds instead of a sample count (None: use train.batch_size).
    max_batch_seconds: float | None = None
    # With max_batch_seconds: at most this many clips a batch (None: no cap). Short clips each bring
    # their own 6 s prompt and 32 latents, so a budget of seconds alone packs hundreds of them.
    max_batch_size: int | None = None
    num_workers: int = 2
    # Silence floor: clips whose RMS is below this are dropped.
    min_rms: float = 1e-3


@dataclass
class OptimConfig:
    lr: float = 2e-6
    betas: tuple[float, float] = (0.9, 0.96)
    eps: float = 1e-8
    weight_decay: float = 1e-2
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0
    # Cosine decays to lr * min_lr_ratio.
    min_lr_ratio: float = 0.1
    # "adamw": torch's fused AdamW, fp32 state (8 bytes/parameter). "adamw8bit": bitsandbytes'
    # block-wise 8-bit AdamW (~2 bytes/parameter; `pip install .[bnb]`), the 8/12 GB-card profile
    # (docs/memory.md). Master weights stay fp32 either way.
    optimizer: Literal["adamw", "adamw8bit"] = "adamw"


@dataclass
class ClipGroup:
    name: str
    # fnmatch patterns over GPT parameter names (as in `gpt.named_parameters()`).
    patterns: list[str]
    max_norm: float


def _default_clip_groups() -> list[ClipGroup]:
    return [
        ClipGroup("embedding", ["text_embedding.*", "text_head.*"], 0.1),
        ClipGroup("rest", ["*"], 1.0),
    ]


@dataclass
class TrainConfig:
    # bf16 or fp16 autocast for the GPT (fp16 with a dynamic loss scaler); fp32 is the seed's
    # "nuclear option".
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"
    batch_size: int = 2
    grad_accum: int = 8
    # Stop after this many optimizer steps (None: run `epochs`).
    max_steps: int | None = None
    epochs: int = 10
    seed: int = 1234
    # Per-group clipping on true (unscaled, all-reduced) gradients; first matching group wins.
    clip_groups: list[ClipGroup] = field(default_factory=_default_clip_groups)
    # Stop the run after this many non-finite steps in a row.
    max_consecutive_skips: int = 5
    text_ce_weight: float = 0.01
    mel_ce_weight: float = 1.0
    log_every: int = 10
    eval_every: int = 1000
    eval_batches: int = 50
    save_every: int = 1000
    keep_last: int = 3
    # "auto": continue from the newest complete checkpoint in output_dir; "none"; or a path.
    resume: str = "auto"
    # fp16 dynamic loss scaler.
    init_loss_scale: float = 2.0**16
    loss_scale_growth_interval: int = 2000


@dataclass
class LogConfig:
    tensorboard: bool = True
    # Sentences synthesised at eval time when the release has a vocoder (logged as audio).
    test_sentences: list[str] = field(default_factory=lambda: ["ሰላም፣ እንዴት ነህ?"])
    # Reference clip for test synthesis (None: the first eval sample's audio).
    speaker_wav: str | None = None


@dataclass
class EvalConfig:
    """Does it speak? At each eval the test sentences (log.test_sentences) are spoken for a few eval
    speakers, transcribed by an ASR model and scored (amh/eval, docs/evaluation.md)."""

    # Log eval/cer, eval/wer, eval/speaker_sim, eval/rtf and labelled audio at each eval.
    enabled: bool = False
    # "transformers": a Hub id or local folder of a Whisper or MMS (wav2vec2 CTC) checkpoint;
    # "pocketsphinx": its shipped US-English model (offline, English only).
    asr_backend: Literal["transformers", "pocketsphinx"] = "transformers"
    # facebook/mms-1b-all reads Amharic with its "amh" adapter (why not Whisper: docs/evaluation.md).
    asr_model: str = "facebook/mms-1b-all"
    # MMS adapter code (ISO 639-3, "amh"); for a Whisper model it is mapped to Whisper's "am".
    asr_language: str = "amh"
    # "resemblyzer": its pretrained encoder ships in the wheel; "transformers": an x-vector model
    # named by speaker_model (e.g. microsoft/wavlm-base-plus-sv).
    speaker_encoder: Literal["resemblyzer", "transformers"] = "resemblyzer"
    speaker_model: str | None = None
    # How many eval-set speakers read the test sentences (each with one of their clips as reference).
    speakers: int = 2
    # Which eval scalar selects the best checkpoint: "eval_loss" (eval/loss) or "cer" (eval/cer).
    best_metric: Literal["eval_loss", "cer"] = "eval_loss"


@dataclass
class Config:
    output_dir: str = "runs/amharic"
    model: ModelConfig = field(default_factory=ModelConfig)
    text: TextConfig = field(default_factory=TextConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# ---------------------------------------------------------------------------------------------
# Valid ranges of the numeric fields, one line per field, checked by `validate` after the types.
# A value outside its range would pass the type check and then train wrongly or crash much later
# (a negative min_lr_ratio gives negative learning rates, eval_batches=0 logs an eval loss of 0.0).
# To add one: `"section.field": Range(lo, hi)`; `lo_open`/`hi_open` exclude the bound; None
# values (optional fields left unset) are not checked; NaN and inf are always refused; tuples are
# checked element by element. tests/test_config.py checks every numeric field is listed here or in
# `_UNBOUNDED`.


@dataclass(frozen=True)
class Range:
    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, x: float) -> bool:
        if not math.isfinite(x):  # no field of the table means anything at inf or NaN
            return False
        above = x > self.lo if self.lo_open else x >= self.lo
        below = x < self.hi if self.hi_open else x <= self.hi
        return above and below

    def __str__(self) -> str:
        if self.hi == math.inf:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"


_POSITIVE, _NON_NEGATIVE, _AT_LEAST_ONE = Range(0, math.inf, lo_open=True), Range(0), Range(1)
_FRACTION_OPEN = Range(0, 1, lo_open=True, hi_open=True)

RANGES: dict[str, Range] = {
    "model.init_std_factor": _POSITIVE,
    "data.eval_fraction": _FRACTION_OPEN,
    "data.sample_rate": _AT_LEAST_ONE,
    "data.min_audio_seconds": _POSITIVE,
    "data.max_audio_seconds": _POSITIVE,
    "data.max_text_tokens": _AT_LEAST_ONE,
    "data.min_conditioning_seconds": _POSITIVE,
    "data.max_conditioning_seconds": _POSITIVE,
    "data.shuffle_buffer": _AT_LEAST_ONE,
    "data.bucket_buffer": _NON_NEGATIVE,  # 0: no length bucketing
    "data.max_batch_seconds": _POSITIVE,
    "data.max_batch_size": _AT_LEAST_ONE,
    "data.num_workers": _NON_NEGATIVE,
    "data.min_rms": _NON_NEGATIVE,
    "optim.lr": _POSITIVE,
    "optim.betas": Range(0, 1, hi_open=True),
    "optim.eps": _POSITIVE,
    "optim.weight_decay": _NON_NEGATIVE,
    "optim.warmup_steps": _NON_NEGATIVE,
    "optim.min_lr_ratio": Range(0, 1),
    "train.batch_size": _AT_LEAST_ONE,
    "train.grad_accum": _AT_LEAST_ONE,
    "train.max_steps": _AT_LEAST_ONE,
    "train.epochs": _AT_LEAST_ONE,
    "train.max_consecutive_skips": _AT_LEAST_ONE,
    "train.text_ce_weight": _NON_NEGATIVE,
    "train.mel_ce_weight": _NON_NEGATIVE,
    "train.log_every": _AT_LEAST_ONE,
    "train.eval_every": _AT_LEAST_ONE,
    "train.eval_batches": _AT_LEAST_ONE,
    "train.save_every": _AT_LEAST_ONE,
    "train.keep_last": _AT_LEAST_ONE,
    "train.init_loss_scale": _POSITIVE,
    "train.loss_scale_growth_interval": _AT_LEAST_ONE,
    "eval.speakers": _AT_LEAST_ONE,
}
# Numeric fields any value of which is valid.
_UNBOUNDED = {"train.seed"}


def _check_ranges(cfg: Config) -> None:
    for key, valid in RANGES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        for v in value if isinstance(value, tuple) else (value,):
            if v is not None and v not in valid:
                raise ConfigError(f"{key}: must be {valid}, got {value!r}")


# ---------------------------------------------------------------------------------------------
# Loading. Hand-written rather than a config library because the checks we need (every key and
# Literal choice named in the error, tuples from YAML lists, dotted CLI overrides) are ~100 lines
# and the libraries that do this (OmegaConf, tyro) would add a dependency for less precise errors.


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Read YAML `path` (if any), apply `key.sub=value` overrides, validate, return a Config."""
    raw: dict[str, Any] = {}
    if path is not None:
        if not Path(path).is_file():
            raise ConfigError(f"{path}: no such config file")
        text = Path(path).read_text(encoding="utf-8")
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML{_yaml_where(err)}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: the value is not valid YAML{_yaml_where(err)}") from None
        _set_dotted(raw, key.strip(), parsed)
    cfg = _build(Config, raw, "")
    validate(cfg)
    return cfg


def _yaml_where(err: yaml.YAMLError) -> str:
    """' at line L column C: problem' from PyYAML's marks (0-based there)."""
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
    problem = getattr(err, "problem", None)
    return f"{where}: {problem}" if problem else where


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        tree = tree.setdefault(part, {})
        if not isinstance(tree, dict):
            raise ConfigError(f"override {dotted!r}: {part!r} is not a section")
    tree[parts[-1]] = value


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key {_join(where, unknown[0])!r}; valid keys in {where or 'the top level'}: "
            + ", ".join(sorted(fields))
        )
    values = {name: _coerce(hints[name], raw[name], _join(where, name)) for name in raw}
    return cls(**values)


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} fits none of {tp}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not a valid choice; choose one of {', '.join(map(repr, args))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:  # YAML 1.1 reads "2e-6" as a string
            return float(value)
        except ValueError:
            pass
    if tp in (int, float, str, bool):
        if type(value) is not tp:
            raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r} ({type(value).__name__})")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")


def validate(cfg: Config) -> None:
    """Refuse impossible combinations, naming the keys involved."""
    t, d = cfg.train, cfg.data
    _check_ranges(cfg)
    if d.source in ("parquet", "ready") and not d.path:
        raise ConfigError(f"data.path: required for data.source={d.source!r} (a local directory)")
    if d.source == "hub" and not d.path:
        raise ConfigError("data.path: required for data.source='hub' (a dataset id such as 'user/amharic-speech')")
    if not 0 < d.min_audio_seconds < d.max_audio_seconds:
        raise ConfigError("data.min_audio_seconds must be > 0 and < data.max_audio_seconds")
    if d.max_audio_seconds * d.sample_rate > 255995:
        raise ConfigError("data.max_audio_seconds: XTTS accepts at most 255995 samples (~11.6 s at 22.05 kHz)")
    if not 0 < d.min_conditioning_seconds <= d.max_conditioning_seconds:
        raise ConfigError("data.min_conditioning_seconds must be > 0 and <= data.max_conditioning_seconds")
    if d.max_batch_size is not None and d.max_batch_seconds is None:
        raise ConfigError(f"data.max_batch_size={d.max_batch_size}: caps token-budget batches, so it needs "
                          "data.max_batch_seconds; for batches of a fixed size set train.batch_size instead")
    if t.text_ce_weight == t.mel_ce_weight == 0:
        raise ConfigError("train.text_ce_weight, train.mel_ce_weight: both are 0, so nothing would be learned")
    if not t.clip_groups:
        raise ConfigError("train.clip_groups: at least one group is needed (use patterns ['*'] for one global group)")
    names = [g.name for g in t.clip_groups]
    if len(set(names)) != len(names):
        raise ConfigError(f"train.clip_groups: group names must be unique, got {names}")
    for g in t.clip_groups:
        if not g.max_norm > 0:  # inf is allowed: no clipping for that group
            raise ConfigError(f"train.clip_groups[{g.name}].max_norm: must be > 0, got {g.max_norm}")
    if cfg.eval.enabled and not cfg.log.test_sentences:
        raise ConfigError("eval.enabled: the speech eval speaks log.test_sentences, which is empty; add sentences "
                          "or set eval.enabled=false")
    if cfg.eval.best_metric == "cer" and not cfg.eval.enabled:
        raise ConfigError("eval.best_metric='cer' needs eval.enabled=true (the CER comes from the speech eval)")
    if cfg.eval.speaker_encoder == "transformers" and not cfg.eval.speaker_model:
        raise ConfigError("eval.speaker_model: required for eval.speaker_encoder='transformers' "
                          "(e.g. microsoft/wavlm-base-plus-sv)")
    if t.resume not in ("auto", "none") and not Path(t.resume).exists():
        raise ConfigError(f"train.resume: {t.resume!r} is neither 'auto', 'none' nor an existing checkpoint directory")


def to_dict(cfg: Config) -> dict:
    """Plain data for YAML/JSON (tuples become lists)."""
    def plain(x: Any) -> Any:
        if isinstance(x, tuple):
            return [plain(v) for v in x]
        if isinstance(x, list):
            return [plain(v) for v in x]
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x
    return plain(dataclasses.asdict(cfg))


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True), encoding="utf-8")
