"""amh.data.audio: decoding every format, mono mix, resampling, truncation and garbage."""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from amh.data.audio import AudioDecodeError, encode_flac, load_audio, read_bytes

SR = 22050


def tone(freq: float, seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    mono = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return mono if channels == 1 else np.stack([mono] * channels, axis=1)


def encoded(audio: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def peak_hz(wav: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.fft.rfftfreq(len(wav), 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize("fmt,rate,channels", [
    ("WAV", 22050, 1), ("WAV", 44100, 2), ("FLAC", 16000, 1), ("FLAC", 48000, 2), ("OGG", 24000, 1), ("MP3", 44100, 2),
])
def test_every_format_decodes_to_mono_22k_float32(fmt, rate, channels):
    wav = load_audio(encoded(tone(440.0, 2.0, rate, channels), rate, fmt), SR)
    assert wav.dtype == np.float32 and wav.ndim == 1
    # lossy codecs add a few ms of padding; the length is otherwise exact
    assert abs(len(wav) - 2 * SR) <= (0.06 * SR if fmt in ("MP3", "OGG") else 1)
    assert peak_hz(wav, SR) == pytest.approx(440.0, abs=2.0)  # a real resampler keeps the pitch
    assert np.abs(wav).max() == pytest.approx(0.5, abs=0.05)


def test_resampling_removes_content_above_the_new_nyquist():
    rate = 48000
    t = np.arange(rate) / rate
    audio = (0.4 * np.sin(2 * np.pi * 1000 * t) + 0.4 * np.sin(2 * np.pi * 16000 * t)).astype(np.float32)
    wav = load_audio(encoded(audio, rate, "WAV", "FLOAT"), SR)
    spectrum = np.abs(np.fft.rfft(wav))
    freqs = np.fft.rfftfreq(len(wav), 1 / SR)
    # 16 kHz is above 11.025 kHz: it must not fold back (aliasing would put it at 6.05 kHz)
    assert spectrum[np.abs(freqs - 6050) < 50].max() < 1e-3 * spectrum[np.abs(freqs - 1000) < 5].max()


def test_stereo_is_averaged():
    left, right = tone(300, 1.0, SR), np.zeros(SR, np.float32)
    wav = load_audio(encoded(np.stack([left, right], axis=1), SR, "WAV", "FLOAT"), SR)
    np.testing.assert_allclose(wav, left / 2, atol=1e-6)


def test_sources_bytes_path_and_dict(tmp_path):
    data = encoded(tone(200, 1.0, SR), SR, "FLAC")
    path = tmp_path / "a.flac"
    path.write_bytes(data)
    a = load_audio(data, SR)
    np.testing.assert_array_equal(a, load_audio(str(path), SR))
    np.testing.assert_array_equal(a, load_audio({"bytes": None, "path": str(path)}, SR))
    np.testing.assert_array_equal(a, load_audio({"bytes": data, "path": "ignored.flac"}, SR))
    assert read_bytes({"bytes": data, "path": "x.flac"}) == (data, "x.flac")


@pytest.mark.parametrize("source,message", [
    (b"", "empty"),
    (b"definitely not audio " * 50, "Format not recognised"),
    ({"bytes": None, "path": None}, "no audio bytes or path"),
    ("/nonexistent/clip.wav", "cannot read"),
    (None, "no audio"),
])
def test_undecodable_sources_raise_decode_errors(source, message):
    with pytest.raises(AudioDecodeError, match=message):
        load_audio(source, SR)


@pytest.mark.parametrize("keep", [0.95, 0.5, 0.1])
def test_truncated_wav_is_an_error_not_a_shorter_clip(keep):
    data = encoded(tone(200, 2.0, SR), SR, "WAV")
    with pytest.raises(AudioDecodeError, match="truncated WAV"):
        load_audio(data[: int(len(data) * keep)], SR)


def test_truncated_flac_is_an_error():
    data = encoded(tone(200, 2.0, SR), SR, "FLAC")
    with pytest.raises(AudioDecodeError):
        load_audio(data[: len(data) // 2], SR)


def test_streamed_wav_with_unset_size_decodes():
    data = bytearray(encoded(tone(200, 1.0, SR), SR, "WAV"))
    pos = data.index(b"data")
    data[pos + 4:pos + 8] = b"\xff\xff\xff\xff"  # what a pipe-writing encoder leaves
    assert len(load_audio(bytes(data), SR)) == SR


def test_non_finite_samples_survive_for_the_filter():
    audio = tone(200, 1.0, 44100)
    audio[100] = np.inf
    wav = load_audio(encoded(audio, 44100, "WAV", "FLOAT"), SR)
    assert not np.isfinite(wav).all()


def test_flac_round_trip_is_16_bit_exact():
    wav = tone(300, 1.0, SR)
    back, rate = sf.read(io.BytesIO(encode_flac(wav, SR)), dtype="float32")
    assert rate == SR and np.abs(back - wav).max() < 2 / 32768
