"""Extend an XTTS `vocab.json` for Amharic without moving any existing id.

Modes:
  chars  every character of the front-end's output that the vocab lacks (~250-350 for real Amharic)
  bpe    those characters + a BPE trained on the corpus with `tokenizers` (merges appended)
  ipa    the same over the phonemised corpus (needs FrontendSettings.g2p)
and always the language token `[am]`.

The rules that keep the pretrained GPT valid (research notes §4.1): old ids never change (`[STOP]=0
[UNK]=1 [SPACE]=2`, `[START]`, languages); new ids follow the old maximum contiguously; added tokens
are pinned into `model.vocab`, because `tokenizers` renumbers an added token it cannot find there;
new merges go after the old ones (lowest priority) in the file's own format ([a, b] or "a b"); the
base file's normalizer and pre-tokenizer are kept and the BPE is trained through them, on the words
XTTS's `encode` produces (it replaces " " by the [SPACE] token, so words are never merged across).
"""
from __future__ import annotations

import copy
import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import Tokenizer, trainers

from amh.text.frontend import LANGUAGE, FrontendSettings, TextFrontend

MODES = ("chars", "bpe", "ipa")
LANGUAGE_TOKEN = f"[{LANGUAGE}]"
SPACE_TOKEN = "[SPACE]"
FIXED_IDS = {"[STOP]": 0, "[UNK]": 1, "[SPACE]": 2}  # XTTS hard-codes these


@dataclass
class VocabReport:
    """What an extension added and how the corpus encodes before and after."""

    out: Path
    mode: str
    base_size: int
    new_size: int
    added_chars: list[str]
    added_merges: int
    added_tokens: int
    lines: int
    characters: int
    coverage_before: float
    coverage_after: float
    tokens_per_char_before: float
    tokens_per_char_after: float
    frontend: dict = field(default_factory=dict)

    def __str__(self) -> str:
        chars = "".join(self.added_chars)
        shown = chars if len(chars) <= 120 else chars[:120] + "…"
        return "\n".join(
            [
                f"vocab extension ({self.mode}) -> {self.out}",
                f"  rows: {self.base_size} -> {self.new_size} (+{self.added_tokens}: "
                f"{len(self.added_chars)} characters, {self.added_merges} merges, language token {LANGUAGE_TOKEN})",
                f"  corpus: {self.lines} lines, {self.characters} characters after the front-end",
                f"  coverage (characters not [UNK]): {self.coverage_before:.2%} -> {self.coverage_after:.2%}",
                f"  tokens per character: {self.tokens_per_char_before:.3f} -> {self.tokens_per_char_after:.3f}",
                f"  new characters: {shown}",
                f"  front-end: {json.dumps(self.frontend, ensure_ascii=False, sort_keys=True)}",
            ]
        )


def _token_ids(vocab) -> dict[str, int]:
    """token -> id as upstream sees it (after `tokenizers` loads the file), from a path, Tokenizer or dict."""
    if isinstance(vocab, Mapping):
        return dict(vocab)
    if isinstance(vocab, Tokenizer):
        return vocab.get_vocab(with_added_tokens=True)
    return Tokenizer.from_file(str(vocab)).get_vocab(with_added_tokens=True)


def check_extension(old_vocab, new_vocab) -> None:
    """Raise ValueError unless `new_vocab` keeps every token of `old_vocab` at its id and appends new
    tokens contiguously after the old maximum id. Each argument: a vocab.json path, a Tokenizer or a
    token -> id dict."""
    old, new = _token_ids(old_vocab), _token_ids(new_vocab)
    moved = [f"{t!r}: {i} -> {new.get(t)}" for t, i in old.items() if new.get(t) != i]
    if moved:
        raise ValueError(
            f"{len(moved)} token(s) of the old vocab moved or vanished ({', '.join(moved[:5])}); the pretrained "
            "GPT rows are indexed by id, so rebuild the vocab from the original with amh.xtts.vocab.extend_vocab"
        )
    if len(set(new.values())) != len(new):
        shared = [i for i, n in Counter(new.values()).items() if n > 1]
        raise ValueError(f"several tokens share the id(s) {shared[:5]}; each token needs its own id")
    start = max(old.values(), default=-1) + 1
    added = sorted(i for t, i in new.items() if t not in old)
    if added != list(range(start, start + len(added))):
        raise ValueError(
            f"new ids must continue the old ones contiguously from {start}; got {added[:5]}…{added[-3:]} "
            "(a gap leaves GPT rows without a token)"
        )


def _pinned_base(base: dict, base_path: Path) -> dict:
    """A copy of the base JSON with every added token pinned into model.vocab at its real id."""
    data = copy.deepcopy(base)
    real = Tokenizer.from_file(str(base_path))
    vocab = data["model"]["vocab"]
    for token in data.get("added_tokens", []):
        token_id = real.token_to_id(token["content"])
        vocab.setdefault(token["content"], token_id)
        token["id"] = vocab[token["content"]]
    for token, token_id in FIXED_IDS.items():
        if vocab.get(token) != token_id:
            raise ValueError(
                f"{base_path}: {token} has id {vocab.get(token)}, XTTS needs {token_id}; is this an XTTS vocab.json?"
            )
    return data


def _training_tokenizer(base: dict) -> Tokenizer:
    """An empty BPE with the base file's model options, normalizer and pre-tokenizer."""
    data = copy.deepcopy(base)
    data["added_tokens"] = []
    data["model"] = {**base["model"], "vocab": {}, "merges": []}
    return Tokenizer.from_str(json.dumps(data))


def _words(lines: Iterable[str]) -> Iterable[str]:
    """What `encode` tokenizes between [SPACE] tokens."""
    for line in lines:
        yield from (w for w in line.split(" ") if w)


def _encoded_stats(tokenizer: Tokenizer, lines: list[str]) -> tuple[int, int, int]:
    """(characters, characters inside [UNK] tokens, tokens) for the lines encoded as XTTS does."""
    unk = tokenizer.token_to_id("[UNK]")
    chars = unk_chars = tokens = 0
    for line in lines:
        enc = tokenizer.encode(line.replace(" ", SPACE_TOKEN))
        unk_chars += sum(end - start for token_id, (start, end) in zip(enc.ids, enc.offsets) if token_id == unk)
        chars += len(line)
        tokens += len(enc.ids)
    return chars, unk_chars, tokens


def _write_json(data: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.name, dir=out.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=2)
        f.write("\n")
    os.replace(tmp, out)


def extend_vocab(
    base_vocab: Path,
    texts: Iterable[str],
    out: Path,
    *,
    mode: str = "chars",
    frontend: FrontendSettings = FrontendSettings(),
    bpe_size: int = 2000,
) -> VocabReport:
    """Write `out`: `base_vocab` + what the corpus `texts` (raw; run through `frontend` here) needs.

    `bpe_size` is the size of the BPE trained on the corpus (its characters plus merges), so at most
    that many new tokens besides the characters the BPE needed and the language token.
    """
    base_vocab, out = Path(base_vocab), Path(out)
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: expected one of {', '.join(MODES)}")
    if mode == "ipa" and frontend.g2p is None:
        raise ValueError("mode 'ipa' needs a G2P backend: pass FrontendSettings(g2p='hybrid') (or --g2p hybrid)")
    if bpe_size < 1:
        raise ValueError(f"bpe_size={bpe_size}: expected a positive number of tokens")
    lines = [line for line in TextFrontend(frontend).batch(list(texts)) if line]
    if not lines:
        raise ValueError("the corpus is empty after the front-end; pass the Amharic sentences the model will read")

    base = json.loads(base_vocab.read_text(encoding="utf-8"))
    data = _pinned_base(base, base_vocab)
    vocab, merges = data["model"]["vocab"], data["model"]["merges"]
    next_id = max(vocab.values()) + 1
    base_size = next_id

    def add(token: str) -> bool:
        nonlocal next_id
        if token in vocab:
            return False
        vocab[token] = next_id
        next_id += 1
        return True

    trainer_view = _training_tokenizer(base)
    normalizer = trainer_view.normalizer
    seen = "".join(normalizer.normalize_str(w) if normalizer else w for w in _words(lines))
    added_chars = [c for c in sorted(set(seen)) if not c.isspace() and add(c)]

    added_merges = 0
    if mode in ("bpe", "ipa"):
        trainer = trainers.BpeTrainer(vocab_size=bpe_size, min_frequency=2, show_progress=False, special_tokens=[])
        trainer_view.train_from_iterator(_words(lines), trainer=trainer)
        trained = json.loads(trainer_view.to_str())["model"]
        strings = bool(merges) and isinstance(merges[0], str)
        existing = {tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges}
        for a, b in (m.split(" ") if isinstance(m, str) else m for m in trained["merges"]):
            if (a, b) in existing:
                continue
            if a not in vocab or b not in vocab:
                raise RuntimeError(f"BPE merge ({a!r}, {b!r}) uses a token missing from the vocab")
            merges.append(f"{a} {b}" if strings else [a, b])
            existing.add((a, b))
            add(a + b)
            added_merges += 1

    if add(LANGUAGE_TOKEN):
        data.setdefault("added_tokens", []).append(
            {"id": vocab[LANGUAGE_TOKEN], "content": LANGUAGE_TOKEN, "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True}
        )  # fmt: skip
    _write_json(data, out)
    check_extension(base_vocab, out)

    chars, unk_before, tokens_before = _encoded_stats(Tokenizer.from_file(str(base_vocab)), lines)
    _, unk_after, tokens_after = _encoded_stats(Tokenizer.from_file(str(out)), lines)
    if unk_after:
        raise RuntimeError(f"{out}: {unk_after} corpus characters still encode as [UNK]; this is a bug in amh.xtts.vocab")
    return VocabReport(
        out=out,
        mode=mode,
        base_size=base_size,
        new_size=next_id,
        added_chars=added_chars,
        added_merges=added_merges,
        added_tokens=next_id - base_size,
        lines=len(lines),
        characters=chars,
        coverage_before=1 - unk_before / chars,
        coverage_after=1 - unk_after / chars,
        tokens_per_char_before=tokens_before / chars,
        tokens_per_char_after=tokens_after / chars,
        frontend=frontend.to_dict(),
    )
