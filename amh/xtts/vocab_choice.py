"""Which vocab.json a run trains with: the configured one, one shipped in the ready/ folder, or the release's."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from amh.config import ConfigError

log = logging.getLogger(__name__)


def _has_token(vocab: Path, token: str) -> bool:
    try:
        data = json.loads(vocab.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{vocab}: not a JSON vocab ({err.msg} at line {err.lineno} column {err.colno}); "
                          "give a tokenizer vocab.json (scripts/extend_vocab.py writes one)") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{vocab}: not a JSON vocab (byte {err.start} is not UTF-8)") from None
    try:
        return token in data["model"]["vocab"] or any(t["content"] == token for t in data.get("added_tokens", []))
    except (KeyError, TypeError):
        raise ConfigError(f"{vocab}: JSON, but not a tokenizer vocab.json (no model.vocab mapping)") from None


def choose_vocab(cfg, release: Path) -> Path:
    """model.vocab if set; else a `vocab_extended*.json` next to a ready/ folder's metadata (existing
    Amharic tools save `vocab_extended_amharic.json` there); else the release's vocab.json.
    The chosen vocab must carry the language token, or the model could not be told the language."""
    language = cfg.text.language if cfg.text.language != "amh" else "am"
    # A local data folder that is not there would otherwise fall through to the release's vocab
    # and be reported as that vocab lacking the language token.
    if cfg.data.source in ("ready", "parquet") and not Path(cfg.data.path).is_dir():
        raise ConfigError(f"data.path: {cfg.data.path!r} is not a directory (data.source={cfg.data.source} "
                          "needs a local folder)")
    if cfg.model.vocab:
        vocab = Path(cfg.model.vocab)
        if not vocab.is_file():
            raise ConfigError(f"model.vocab: {vocab} does not exist (make one with scripts/extend_vocab.py)")
        log.info("vocab: %s (model.vocab)", vocab)
    else:
        found = sorted(Path(cfg.data.path).glob("vocab_extended*.json")) if cfg.data.source == "ready" else []
        if len(found) > 1:
            raise ConfigError(f"{cfg.data.path}: several extended vocabs {[p.name for p in found]}; "
                              "choose one with model.vocab=PATH")
        vocab = found[0] if found else release / "vocab.json"
        log.info("vocab: %s (%s)", vocab, "found in the ready/ folder" if found else "the release's own")
    if not _has_token(vocab, f"[{language}]"):
        raise ConfigError(
            f"{vocab}: has no [{language}] token, so XTTS cannot learn the language. Extend it first: "
            f"python scripts/extend_vocab.py --base-vocab {release / 'vocab.json'} --corpus METADATA.csv --out VOCAB --mode chars")
    return vocab
