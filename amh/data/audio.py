"""Audio in and out: decode any file's bytes to mono float32 at the training rate, and encode FLAC.

Decoding uses soundfile (libsndfile: WAV, FLAC, OGG/Vorbis/Opus, MP3 and more), from bytes or a
path, so no torchcodec/FFmpeg is needed at training time. Resampling uses soxr (the resampler
librosa uses; far faster than torchaudio's sinc at the same quality). The result is *not* clipped:
the caller checks for NaN/inf first, because clipping would turn inf into 1.0.
"""
from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf
import soxr


class AudioDecodeError(ValueError):
    """The bytes are not decodable audio (or the file is truncated); the message says why."""


AudioSource = bytes | str | dict


def read_bytes(source: AudioSource) -> tuple[bytes, str]:
    """The encoded bytes of a source (bytes, a path, or a datasets Audio dict {bytes, path}) and a name."""
    if isinstance(source, dict):
        if source.get("bytes") is not None:
            return source["bytes"], source.get("path") or "<bytes>"
        source = source.get("path") or ""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "<bytes>"
    if isinstance(source, str) and source:
        try:
            with open(source, "rb") as f:
                return f.read(), source
        except OSError as err:
            raise AudioDecodeError(f"cannot read {source}: {err.strerror or err}") from None
    raise AudioDecodeError(f"no audio bytes or path in {type(source).__name__} {str(source)[:80]!r}")


def _check_bytes(data: bytes, name: str) -> None:
    """Refuse what libsndfile would misread: no bytes, or a WAV whose header promises more than the file holds."""
    if not data:
        raise AudioDecodeError(f"{name}: empty file")
    truncated = _wav_truncation(data)
    if truncated:
        raise AudioDecodeError(f"{name}: {truncated}")


def decode(data: bytes, name: str = "<bytes>") -> tuple[np.ndarray, int]:
    """(frames, channels) float32 and the file's sample rate. Raises AudioDecodeError."""
    _check_bytes(data, name)
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            wav = f.read(dtype="float32", always_2d=True)
            rate = f.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise AudioDecodeError(f"{name}: {err}") from None
    if wav.size == 0:
        raise AudioDecodeError(f"{name}: no samples")
    return wav, rate


def to_mono(wav: np.ndarray) -> np.ndarray:
    return wav[:, 0] if wav.shape[1] == 1 else wav.mean(axis=1, dtype=np.float32)


def resample(wav: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out:
        return wav
    return soxr.resample(wav, rate_in, rate_out, quality="HQ").astype(np.float32, copy=False)


def load_audio(source: AudioSource, sample_rate: int) -> np.ndarray:
    """Decode, mix to mono and resample to `sample_rate`. float32, not clipped, may hold NaN/inf."""
    data, name = read_bytes(source)
    wav, rate = decode(data, name)
    return resample(to_mono(wav), rate, sample_rate)  # NaN/inf survive resampling: the filter sees them


def audio_length(source: AudioSource, sample_rate: int) -> int | None:
    """Frames of the file from its header alone (no decoding), or None when its rate is not
    `sample_rate` (its length after resampling is then only known by decoding). Raises AudioDecodeError."""
    data, name = read_bytes(source)
    _check_bytes(data, name)
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            frames, rate = f.frames, f.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise AudioDecodeError(f"{name}: {err}") from None
    if frames <= 0:
        raise AudioDecodeError(f"{name}: no samples")
    return frames if rate == sample_rate else None


def encode_flac(wav: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> bytes:
    """FLAC bytes of a mono float waveform in [-1, 1]."""
    buf = io.BytesIO()
    sf.write(buf, np.asarray(wav, dtype=np.float32), sample_rate, format="FLAC", subtype=subtype)
    return buf.getvalue()


def _wav_truncation(data: bytes) -> str | None:
    """Why a RIFF/WAVE file is truncated, or None. libsndfile silently decodes the part that is
    there, which would pair a partial recording with its full transcript."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if chunk == b"data":
            if size in (0, 0xFFFFFFFF):  # streamed WAVs leave the size unset
                return None
            have = len(data) - pos - 8
            return None if have >= size else f"truncated WAV: data chunk declares {size} bytes, file has {have}"
        pos += 8 + size + (size & 1)
    return "WAV without a data chunk"
