"""One source row -> one training sample, or `Rejected` with the reason.

Runs in the DataLoader workers. Everything random about a sample (its prompt slice, which other
utterance conditions it) is drawn from a generator seeded by (seed, epoch, row id), so making the
same row twice gives the same sample: that is what lets a resumed run rebuild its buffers exactly.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from amh.config import DataConfig
from amh.data.audio import AudioDecodeError, audio_length, load_audio
from amh.data.conditioning import NO_SPAN, pick_reference, prompt_span
from amh.data.filters import Reason, Rejected, check_audio, check_length, check_text, check_tokens

TextEncoder = Callable[[str], list[int]]


@dataclass
class Sample:
    id: str
    speaker: str
    text_ids: np.ndarray  # int64, no [START]/[STOP]
    wav: np.ndarray | None  # float32 in [-1, 1] at data.sample_rate; None when codes and prompt mel are precomputed
    cond: np.ndarray | None  # float32 conditioning clip; None likewise
    cond_span: tuple[int, int]  # [start, end) of `cond` inside `wav`, or (-1, -1)
    codes: np.ndarray | None = None  # precomputed DVAE codes (prepare_dataset --codes-from)
    cond_mels: np.ndarray | None = None  # precomputed (80, frames) conditioning mel
    length: int | None = None  # samples of the clip when `wav` is None (read from the file's header)

    @property
    def n_samples(self) -> int:
        return len(self.wav) if self.wav is not None else self.length

    @property
    def n_cond(self) -> int:
        return len(self.cond) if self.cond is not None else self.cond_span[1] - self.cond_span[0]


def stable_hash(*parts: object) -> int:
    """A 64-bit hash that is the same in every process (Python's hash() is salted per process)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class SampleMaker:
    """Text -> token ids, audio -> mono float32 at the training rate, the checks, the prompt."""

    def __init__(self, cfg: DataConfig, text_encoder: TextEncoder, *, seed: int, training: bool,
                 keep_audio: bool = True):
        self.cfg = cfg
        self.text_encoder = text_encoder
        self.seed = seed
        self.training = training
        # False: a prepared row whose codes and prompt mel are both precomputed is not decoded
        # (nothing downstream reads its waveform); its length comes from the file's header.
        self.keep_audio = keep_audio
        self.min_cond = round(cfg.min_conditioning_seconds * cfg.sample_rate)
        self.max_cond = round(cfg.max_conditioning_seconds * cfg.sample_rate)

    @property
    def needs_references(self) -> bool:
        return self.cfg.conditioning == "same_speaker"

    def rng(self, row_id: str, epoch: int) -> np.random.Generator | None:
        return np.random.default_rng(stable_hash(self.seed, epoch, row_id)) if self.training else None

    def text_ids(self, row: dict) -> np.ndarray:
        text = check_text(row.get("text"))
        try:
            ids = list(self.text_encoder(text))
        except Exception as err:  # a bad row must not end the run; the reason says what happened
            raise Rejected(Reason.TEXT_ERROR, f"{type(err).__name__}: {err}") from None
        check_tokens(ids, text, self.cfg.max_text_tokens)
        return np.asarray(ids, dtype=np.int64)

    def waveform(self, row: dict) -> np.ndarray:
        try:
            wav = load_audio(row.get("audio"), self.cfg.sample_rate)
        except AudioDecodeError as err:
            raise Rejected(Reason.DECODE_ERROR, str(err)) from None
        check_audio(wav, self.cfg)
        return np.clip(wav, -1.0, 1.0, out=wav if wav.flags.writeable else None)

    def __call__(self, row: dict, *, epoch: int, references: Sequence[dict] = ()) -> Sample:
        """Raises Rejected. `references`: other rows of the same speaker (for same_speaker prompts)."""
        text_ids = self.text_ids(row)
        if not self.keep_audio and not self.needs_references and all(
                row.get(k) is not None for k in ("codes", "cond_mels", "cond_start")):
            sample = self._precomputed(row, text_ids)
            if sample is not None:
                return sample
        wav = self.waveform(row)
        rng = self.rng(row["id"], epoch)
        codes = np.asarray(row["codes"], dtype=np.int64) if row.get("codes") is not None else None
        sample = Sample(row["id"], row["speaker"], text_ids, wav, wav[:0], NO_SPAN, codes)
        if self.needs_references and self._prompt_from_reference(sample, references, rng):
            return sample
        if row.get("cond_mels") is not None and row.get("cond_start") is not None:
            # prepare_dataset fixed this sample's prompt and computed its mel
            start, end = int(row["cond_start"]), int(row["cond_end"])
            sample.cond_mels = np.asarray(row["cond_mels"], dtype=np.float32).T
        else:
            start, end = prompt_span(len(wav), self.min_cond, self.max_cond, rng)
        sample.cond, sample.cond_span = wav[start:end], (start, end)
        return sample

    def _precomputed(self, row: dict, text_ids: np.ndarray) -> Sample | None:
        """The sample of a prepared row without its audio; None when the file's rate is not the
        training rate (then only decoding and resampling give its length)."""
        try:
            length = audio_length(row.get("audio"), self.cfg.sample_rate)
        except AudioDecodeError as err:
            raise Rejected(Reason.DECODE_ERROR, str(err)) from None
        if length is None:
            return None
        check_length(length, self.cfg)
        return Sample(row["id"], row["speaker"], text_ids, None, None, (int(row["cond_start"]), int(row["cond_end"])),
                      np.asarray(row["codes"], dtype=np.int64), np.asarray(row["cond_mels"], dtype=np.float32).T,
                      length=length)

    def _prompt_from_reference(self, sample: Sample, references: Sequence[dict], rng) -> bool:
        ref = pick_reference(references, rng)
        if ref is None:
            return False
        try:
            ref_wav = self.waveform(ref)
        except Rejected:  # a broken reference: fall back to the utterance itself
            return False
        start, end = prompt_span(len(ref_wav), self.min_cond, self.max_cond, rng)
        sample.cond = ref_wav[start:end].copy()  # copy: don't keep the whole reference alive
        return True
