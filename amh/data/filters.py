"""Why rows are dropped: the reasons, the per-row checks, and the counts kept per rank.

A row that fails a check is skipped, never raised: the pipeline counts it under exactly one reason
(the first check it fails, in the order of `Reason`) and remembers the first few row ids per reason
with a message saying what was wrong. `FilterStats` travels from the DataLoader workers with the
batches (the main process logs the messages) and merges across workers, epochs and ranks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from amh.config import DataConfig

# How many row ids per reason are kept (and logged) per worker, and after merging.
EXAMPLES_PER_REASON = 5
UNK_ID = 1  # XTTS's [UNK]; upstream hard-codes it (research notes §2)


class Reason(str, Enum):
    """Why a row was dropped. Checks run in this order; a row counts under the first it fails."""

    EMPTY_TEXT = "empty_text"
    TEXT_ERROR = "text_error"  # bytes that are not UTF-8, or the text encoder raised (it is meant to raise nothing)
    UNKNOWN_TOKEN = "unknown_token"
    TEXT_TOO_LONG = "text_too_long"
    DECODE_ERROR = "decode_error"
    NON_FINITE = "non_finite"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    SILENCE = "silence"


# What to change when a reason dominates (used in the "everything was filtered" error).
ADVICE = {
    Reason.EMPTY_TEXT: "check data.text_column",
    Reason.TEXT_ERROR: "the text is not UTF-8 or the text encoder raised; see the logged rows",
    Reason.UNKNOWN_TOKEN: "the vocabulary lacks characters of the text: extend it (amh.xtts.vocab) or enable the front-end",
    Reason.TEXT_TOO_LONG: "raise data.max_text_tokens or split long utterances",
    Reason.DECODE_ERROR: "check data.audio_column and that the files are audio",
    Reason.NON_FINITE: "the audio holds NaN/inf samples",
    Reason.TOO_SHORT: "lower data.min_audio_seconds",
    Reason.TOO_LONG: "raise data.max_audio_seconds (at most 11.6 s) or split long utterances",
    Reason.SILENCE: "lower data.min_rms",
}


class Rejected(Exception):
    """A row failed a check; carries the reason and a human-readable detail."""

    def __init__(self, reason: Reason, detail: str = ""):
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail

    def __reduce__(self):  # exceptions pickle their args by default, which __init__ does not take
        return Rejected, (self.reason, self.detail)


# What a source puts where its file held bytes that are not UTF-8 (amh.data.sources reads "ready"
# CSVs row by row with it); no Amharic text needs it, and as a token it would only be [UNK].
REPLACEMENT_CHAR = "\ufffd"


def check_text(text: object) -> str:
    if not isinstance(text, str) or not text.strip():
        raise Rejected(Reason.EMPTY_TEXT, f"text is {text!r}")
    if REPLACEMENT_CHAR in text:
        raise Rejected(Reason.TEXT_ERROR, f"the text holds bytes that are not UTF-8 (shown as U+FFFD) in {text[:40]!r}; "
                                          "re-save the file as UTF-8")
    return text


def check_tokens(ids: list[int], text: str, max_tokens: int) -> None:
    if not ids:
        raise Rejected(Reason.EMPTY_TEXT, f"text {text[:40]!r} encodes to no tokens")
    if UNK_ID in ids:
        raise Rejected(Reason.UNKNOWN_TOKEN, f"{ids.count(UNK_ID)} [UNK] in {text[:40]!r}")
    if len(ids) > max_tokens:
        raise Rejected(Reason.TEXT_TOO_LONG, f"{len(ids)} tokens > data.max_text_tokens={max_tokens}")


def check_audio(wav: np.ndarray, cfg: DataConfig) -> None:
    """Checks on the decoded, resampled, not yet clipped waveform (clipping would hide inf)."""
    if not np.isfinite(wav).all():
        raise Rejected(Reason.NON_FINITE, f"{int((~np.isfinite(wav)).sum())} non-finite samples")
    check_length(len(wav), cfg)
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64))))
    if rms < cfg.min_rms:
        raise Rejected(Reason.SILENCE, f"RMS {rms:.2e} < data.min_rms={cfg.min_rms}")


def check_length(n_samples: int, cfg: DataConfig) -> None:
    """The duration checks alone: what a prepared row (precomputed codes) is still checked for
    without decoding its audio (it passed the non-finite and silence checks when it was prepared)."""
    seconds = n_samples / cfg.sample_rate
    if seconds < cfg.min_audio_seconds:
        raise Rejected(Reason.TOO_SHORT, f"{seconds:.2f} s < data.min_audio_seconds={cfg.min_audio_seconds}")
    if seconds > cfg.max_audio_seconds:
        raise Rejected(Reason.TOO_LONG, f"{seconds:.2f} s > data.max_audio_seconds={cfg.max_audio_seconds}")


@dataclass
class FilterStats:
    """Rows seen, kept and dropped per reason (with the first few dropped row ids per reason)."""

    seen: int = 0
    kept: int = 0
    kept_seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=lambda: {r.value: 0 for r in Reason})
    examples: dict[str, list[str]] = field(default_factory=lambda: {r.value: [] for r in Reason})
    # "row id: reason: detail" for the rows in `examples`, for the log
    messages: list[str] = field(default_factory=list)

    def add_kept(self, seconds: float) -> None:
        self.seen += 1
        self.kept += 1
        self.kept_seconds += seconds

    def add_rejected(self, row_id: str, why: Rejected) -> str | None:
        """Count the row; the log message when it is among the first few of its reason, else None."""
        self.seen += 1
        reason = why.reason.value
        self.counts[reason] += 1
        if len(self.examples[reason]) >= EXAMPLES_PER_REASON:
            return None
        self.examples[reason].append(row_id)
        self.messages.append(f"skipped row {row_id!r}: {why}")
        return self.messages[-1]

    @property
    def dropped(self) -> int:
        return sum(self.counts.values())

    def merge(self, other: FilterStats) -> FilterStats:
        out = FilterStats(self.seen + other.seen, self.kept + other.kept, self.kept_seconds + other.kept_seconds)
        for r in Reason:
            out.counts[r.value] = self.counts[r.value] + other.counts[r.value]
            out.examples[r.value] = (self.examples[r.value] + other.examples[r.value])[:EXAMPLES_PER_REASON]
        out.messages = (self.messages + other.messages)[: EXAMPLES_PER_REASON * len(Reason)]
        return out

    def to_dict(self) -> dict:
        return {
            "seen": self.seen,
            "kept": self.kept,
            "kept_seconds": self.kept_seconds,
            "counts": dict(self.counts),
            "examples": {k: list(v) for k, v in self.examples.items()},
            "messages": list(self.messages),
        }

    @classmethod
    def from_dict(cls, d: dict) -> FilterStats:
        out = cls(int(d["seen"]), int(d["kept"]), float(d["kept_seconds"]))
        out.counts.update({k: int(v) for k, v in d["counts"].items()})
        out.examples.update({k: list(v) for k, v in d["examples"].items()})
        out.messages = list(d.get("messages", []))
        return out

    def top_reasons(self, n: int = 3) -> list[tuple[str, int]]:
        ranked = sorted(((k, v) for k, v in self.counts.items() if v), key=lambda kv: -kv[1])
        return ranked[:n]

    def scalars(self, prefix: str = "data/") -> dict[str, float]:
        """Flat numbers for TensorBoard: kept/seen, hours kept, and a count per reason."""
        out = {f"{prefix}rows_seen": float(self.seen), f"{prefix}rows_kept": float(self.kept),
               f"{prefix}hours_kept": self.kept_seconds / 3600}
        out.update({f"{prefix}dropped/{k}": float(v) for k, v in self.counts.items()})
        return out

    def __str__(self) -> str:
        return self.summary()

    def summary(self) -> str:
        """One paragraph for the end-of-run log."""
        pct = 100 * self.dropped / self.seen if self.seen else 0.0
        lines = [f"{self.seen} rows seen, {self.kept} kept ({self.kept_seconds / 3600:.2f} h), "
                 f"{self.dropped} dropped ({pct:.1f}%)"]
        for reason, count in self.top_reasons(len(Reason)):
            lines.append(f"  {reason}: {count} (e.g. {', '.join(self.examples[reason])})")
        return "\n".join(lines)

    def explain_empty(self, source: str) -> str:
        """The error message for a source whose every row was dropped."""
        if not self.seen:
            return f"{source}: no rows at all; check data.path / the split names"
        top = "; ".join(
            f"{reason} x{count} (e.g. {', '.join(self.examples[reason][:3])}): {ADVICE[Reason(reason)]}"
            for reason, count in self.top_reasons()
        )
        return f"{source}: all {self.seen} rows were filtered out. Top reasons: {top}"

    def all_reduce(self, group=None) -> FilterStats:
        """Merge the stats of every rank (a collective: call it on all ranks). No-op without torch.distributed."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size(group) == 1:
            return self
        gathered: list[dict | None] = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, self.to_dict(), group=group)
        out = FilterStats()
        for d in gathered:
            out = out.merge(FilterStats.from_dict(d))
        return out
