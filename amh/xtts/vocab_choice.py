"""Which vocab.json a run trains with: the configured one, one shipped in the ready/ folder, or the release's."""
from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def _has_token(vocab: Path, token: str) -> bool:
    data = json.loads(vocab.read_text(encoding="utf-8"))
    return token in data["model"]["vocab"] or any(t["content"] == token for t in data.get("added_tokens", []))


def choose_vocab(cfg, release: Path) -> Path:
    """model.vocab if set; else a `vocab_extended*.json` next to a ready/ folder's metadata (existing
    Amharic tools save `vocab_extended_amharic.json` there); else the release's vocab.json.
    The chosen vocab must carry the language token, or the model could not be told the language."""
    language = cfg.text.language if cfg.text.language != "amh" else "am"
    if cfg.model.vocab:
        vocab = Path(cfg.model.vocab)
        if not vocab.is_file():
            raise FileNotFoundError(f"model.vocab: {vocab} does not exist (make one with scripts/extend_vocab.py)")
        log.info("vocab: %s (model.vocab)", vocab)
    else:
        found = sorted(Path(cfg.data.path).glob("vocab_extended*.json")) if cfg.data.source == "ready" else []
        if len(found) > 1:
            raise ValueError(f"{cfg.data.path}: several extended vocabs {[p.name for p in found]}; choose one with model.vocab=PATH")
        vocab = found[0] if found else release / "vocab.json"
        log.info("vocab: %s (%s)", vocab, "found in the ready/ folder" if found else "the release's own")
    if not _has_token(vocab, f"[{language}]"):
        raise ValueError(
            f"{vocab}: has no [{language}] token, so XTTS cannot learn the language. Extend it first: "
            f"python scripts/extend_vocab.py --base-vocab {release / 'vocab.json'} --corpus METADATA.csv --out VOCAB --mode chars")
    return vocab
