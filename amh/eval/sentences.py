"""Test-sentence files: one sentence a line, "#" comments; the shipped held-out Amharic set by default."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from amh.eval.text import scoring_text


def default_sentences_path() -> Path:
    """amh/eval/sentences_am.txt: written for the project, disjoint from the training fixtures."""
    return Path(str(resources.files("amh.eval") / "sentences_am.txt"))


def load_sentences(path: str | Path | None = None) -> list[str]:
    """The sentences of `path` (default: the shipped set); a line with no words to score is refused."""
    path = Path(path) if path is not None else default_sentences_path()
    if not path.is_file():
        raise FileNotFoundError(f"--sentences {path}: no such file (one sentence a line, '#' for comments)")
    sentences = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not scoring_text(line):
            raise ValueError(f"{path}:{number}: {line!r} has no words left to score after normalisation")
        sentences.append(line)
    if not sentences:
        raise ValueError(f"{path}: no sentences (one a line; lines starting with '#' are comments)")
    return sentences
