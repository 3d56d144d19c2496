"""What identifies the model a checkpoint belongs to, so that a resume with another one is refused.

Kept small and cheap to compute at every start: hashes of the small files (config.json, the
vocab), the size of the large one (model.pth; hashing 1.8 GB at each start would cost seconds),
and the shape of the GPT that was built from them.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from torch import nn


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def model_identity(release: Path, vocab: Path, gpt: nn.Module) -> dict:
    release = Path(release)
    return {
        "release_config_sha256": _sha256(release / "config.json"),
        "release_model_bytes": (release / "model.pth").stat().st_size,
        "vocab_sha256": _sha256(vocab),
        "vocab_size": int(gpt.text_embedding.weight.shape[0]),
        "gpt_layers": len(gpt.gpt.h),
        "gpt_width": int(gpt.text_embedding.weight.shape[1]),
    }
