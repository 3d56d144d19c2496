"""An XTTS v2 release: find it (local or Hub), load it safely, size its GPT for an extended vocab.

Vocabulary extension follows the seed's Fix 1: new rows of `gpt.text_embedding.weight` and
`gpt.text_head.weight` are drawn from N(0, s^2) where s is the std of the pretrained rows of the
same tensor (times a config factor); new `gpt.text_head.bias` entries are 0; old rows stay
bit-identical. Upstream's GPTTrainer instead appends std-1 rows (50x the trained scale) and the
seed's original code 1e-4 rows (200x too small); both precede the NaN-at-step-50 reports.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

RELEASE_FILES = ("model.pth", "config.json", "vocab.json", "dvae.pth", "mel_stats.pth")
TEXT_ROWS = ("gpt.text_embedding.weight", "gpt.text_head.weight")
TEXT_BIAS = "gpt.text_head.bias"


def resolve_release(release: str, *, revision: str | None = None, cache_dir: str | None = None) -> Path:
    """A local directory as is, or a Hub repo id (e.g. "coqui/XTTS-v2") downloaded to the HF cache."""
    path = Path(release).expanduser()
    if path.is_dir():
        directory = path
    elif "/" in release and not path.exists() and not release.startswith((".", "/")):
        from huggingface_hub import snapshot_download

        log.info("downloading %s (revision %s) from the Hugging Face Hub", release, revision or "main")
        directory = Path(snapshot_download(repo_id=release, revision=revision, cache_dir=cache_dir,
                                           allow_patterns=list(RELEASE_FILES)))
    else:
        raise FileNotFoundError(f"model.release: {release!r} is neither a directory nor a Hub repo id like 'coqui/XTTS-v2'")
    missing = [name for name in RELEASE_FILES if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{directory}: missing {', '.join(missing)}; an XTTS v2 release holds {', '.join(RELEASE_FILES)} "
            "(download coqui/XTTS-v2, or run scripts/make_tiny_xtts.py for the offline test model)"
        )
    return directory


def _legacy_config_classes() -> list:
    """Classes a pickled release `config` may contain; nothing else is unpickled."""
    from TTS.config.shared_configs import BaseAudioConfig, BaseDatasetConfig
    from TTS.tts.configs.xtts_config import XttsArgs, XttsAudioConfig, XttsConfig
    from TTS.tts.models.xtts import XttsArgs as XttsArgs2

    return [XttsConfig, XttsAudioConfig, XttsArgs, XttsArgs2, BaseDatasetConfig, BaseAudioConfig]


def load_checkpoint_state(model_pth: Path) -> dict[str, torch.Tensor]:
    """The `model` state dict of a release or trainer checkpoint, loaded without running pickles.

    `weights_only=True` first; the real release pickles its config object, so a second attempt
    allows exactly the XTTS config classes. The file is never rewritten (upstream
    `Xtts._load_checkpoint` does rewrite it, which breaks read-only caches).
    """
    try:
        checkpoint = torch.load(model_pth, map_location="cpu", weights_only=True)
    except Exception as first:  # noqa: BLE001 - any unpickling refusal leads to the allow-list attempt
        try:
            with torch.serialization.safe_globals(_legacy_config_classes()):
                checkpoint = torch.load(model_pth, map_location="cpu", weights_only=True)
        except Exception as second:
            raise ValueError(
                f"{model_pth}: cannot be loaded safely ({second}); first attempt: {first}. "
                "Only tensors and XTTS config objects are accepted."
            ) from second
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not any(k.startswith(("gpt.", "xtts.gpt.")) for k in state):
        raise ValueError(f"{model_pth}: no XTTS state dict (expected a 'model' entry with 'gpt.*' keys)")
    # Coqui-trainer checkpoints prefix `xtts.` and carry the frozen DVAE/mel modules; drop those.
    dropped = ("dvae.", "torch_mel_spectrogram_style_encoder.", "torch_mel_spectrogram_dvae.")
    return {k.removeprefix("xtts."): v for k, v in state.items() if not k.startswith(dropped)}


def load_xtts_config(config_json: Path):
    from TTS.tts.configs.xtts_config import XttsConfig

    config = XttsConfig()
    config.load_json(str(config_json))
    return config


@dataclass
class VocabResize:
    checkpoint_rows: int
    vocab_rows: int
    pretrained_std: dict[str, float]
    new_std: dict[str, float]

    @property
    def added(self) -> int:
        return self.vocab_rows - self.checkpoint_rows


def number_of_tokens(vocab_json: Path) -> int:
    """Rows the GPT needs for this vocab: max id + 1 (as upstream `get_number_tokens`)."""
    from tokenizers import Tokenizer

    return max(Tokenizer.from_file(str(vocab_json)).get_vocab().values()) + 1


def extend_text_rows(state: dict[str, torch.Tensor], rows: int, *, std_factor: float = 1.0,
                     seed: int = 0) -> VocabResize:
    """Append matched-std rows to the text embedding and head (in place on `state`)."""
    old = state[TEXT_ROWS[0]].shape[0]
    if state[TEXT_ROWS[1]].shape[0] != old or state[TEXT_BIAS].shape[0] != old:
        raise ValueError(f"checkpoint: text embedding/head/bias disagree on the vocab size ({old}, "
                         f"{state[TEXT_ROWS[1]].shape[0]}, {state[TEXT_BIAS].shape[0]})")
    if rows < old:
        raise ValueError(f"vocab has {rows} tokens but the checkpoint has {old} text rows: a vocab may only "
                         "extend the checkpoint's (append tokens), never shrink it")
    pretrained, new = {}, {}
    generator = torch.Generator().manual_seed(seed)
    for key in TEXT_ROWS:
        weight = state[key]
        std = weight.float().std().item()
        pretrained[key] = std
        extra = torch.randn((rows - old, weight.shape[1]), generator=generator) * (std * std_factor)
        state[key] = torch.cat([weight, extra.to(weight.dtype)], dim=0)
        new[key] = extra.std().item() if rows - old > 1 else float("nan")
    bias = state[TEXT_BIAS]
    state[TEXT_BIAS] = torch.cat([bias, torch.zeros(rows - old, dtype=bias.dtype)])
    return VocabResize(old, rows, pretrained, new)


def check_vocab_extends(release_vocab: Path, vocab: Path) -> None:
    """Every token of the release keeps its id in `vocab`, and ids stay contiguous."""
    base = json.loads(Path(release_vocab).read_text(encoding="utf-8"))["model"]["vocab"]
    ext = json.loads(Path(vocab).read_text(encoding="utf-8"))["model"]["vocab"]
    moved = [(tok, i, ext.get(tok)) for tok, i in base.items() if ext.get(tok) != i]
    if moved:
        tok, old, new = moved[0]
        raise ValueError(f"{vocab}: {len(moved)} token(s) of the release vocab changed id, e.g. {tok!r} {old} -> {new}; "
                         "an extended vocab must keep every old id (re-run scripts/extend_vocab.py on the release's vocab.json)")
    ids = sorted(ext.values())
    if ids != list(range(len(ids))):
        gap = next(i for i, v in enumerate(ids) if v != i)
        raise ValueError(f"{vocab}: token ids are not contiguous (first gap at id {gap})")


def build_xtts(release_dir: Path, vocab: Path, *, std_factor: float = 1.0, seed: int = 0):
    """Upstream `Xtts` with its GPT sized for `vocab`, weights from the release, new rows matched-std.

    Returns (xtts, VocabResize). The release's own vocab.json must have as many tokens as its
    checkpoint has text rows; `vocab` must extend it.
    """
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts

    config = load_xtts_config(release_dir / "config.json")
    state = load_checkpoint_state(release_dir / "model.pth")
    checkpoint_rows = state[TEXT_ROWS[0]].shape[0]
    release_rows = number_of_tokens(release_dir / "vocab.json")
    if release_rows != checkpoint_rows:
        raise ValueError(f"{release_dir}: vocab.json has {release_rows} tokens but model.pth has {checkpoint_rows} "
                         "text rows; the release is inconsistent")
    if Path(vocab).resolve() != (release_dir / "vocab.json").resolve():
        check_vocab_extends(release_dir / "vocab.json", vocab)
    resize = extend_text_rows(state, number_of_tokens(vocab), std_factor=std_factor, seed=seed)
    config.model_args.tokenizer_file = str(vocab)
    xtts = Xtts(config)
    xtts.tokenizer = VoiceBpeTokenizer(str(vocab))
    xtts.init_models()
    xtts.load_state_dict(state, strict=True)
    return xtts, resize
