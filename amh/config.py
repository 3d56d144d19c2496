"""The one training configuration: typed dataclasses, loaded from YAML with dotted overrides.

Every field is documented where it is defined. `load_config(path, overrides)` refuses unknown keys,
wrong types and impossible combinations with a message that names the key and the valid choices.
"""
from __future__ import annotations

import dataclasses
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
class Config:
    output_dir: str = "runs/amharic"
    model: ModelConfig = field(default_factory=ModelConfig)
    text: TextConfig = field(default_factory=TextConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)


# ---------------------------------------------------------------------------------------------
# Loading. Hand-written rather than a config library because the checks we need (every key and
# Literal choice named in the error, tuples from YAML lists, dotted CLI overrides) are ~100 lines
# and the libraries that do this (OmegaConf, tyro) would add a dependency for less precise errors.


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Read YAML `path` (if any), apply `key.sub=value` overrides, validate, return a Config."""
    raw: dict[str, Any] = {}
    if path is not None:
        text = Path(path).read_text(encoding="utf-8")
        raw = yaml.safe_load(text) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        _set_dotted(raw, key.strip(), yaml.safe_load(value))
    cfg = _build(Config, raw, "")
    validate(cfg)
    return cfg


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
    for name in ("batch_size", "grad_accum", "epochs", "log_every", "eval_every", "save_every", "keep_last",
                 "max_consecutive_skips"):
        if getattr(t, name) < 1:
            raise ConfigError(f"train.{name}: must be >= 1, got {getattr(t, name)}")
    if t.max_steps is not None and t.max_steps < 1:
        raise ConfigError(f"train.max_steps: must be >= 1 or null, got {t.max_steps}")
    if not t.clip_groups:
        raise ConfigError("train.clip_groups: at least one group is needed (use patterns ['*'] for one global group)")
    names = [g.name for g in t.clip_groups]
    if len(set(names)) != len(names):
        raise ConfigError(f"train.clip_groups: group names must be unique, got {names}")
    for g in t.clip_groups:
        if g.max_norm <= 0:
            raise ConfigError(f"train.clip_groups[{g.name}].max_norm: must be > 0, got {g.max_norm}")
    if cfg.optim.lr <= 0:
        raise ConfigError(f"optim.lr: must be > 0, got {cfg.optim.lr}")
    if cfg.model.init_std_factor <= 0:
        raise ConfigError(f"model.init_std_factor: must be > 0, got {cfg.model.init_std_factor}")
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
