"""The demo corpus: real Amharic speech from espeak-ng, as streamable parquet and a Coqui "ready" folder."""
from __future__ import annotations

import csv
import io
import json
import time
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from amh.fixtures import demo_corpus as dc

SPLITS = ("train", "eval")
MIN_RMS = 0.02  # speech peak-normalised to -1 dBFS sits near 0.1-0.2; silence or a click is far below


def ethiopic_share(text: str) -> float:
    letters = [c for c in text if c.isalpha()]
    return sum(0x1200 <= ord(c) <= 0x137F for c in letters) / len(letters)


def parquet_rows(corpus: Path, split: str) -> list[dict]:
    files = sorted((corpus / "parquet" / split).glob("*.parquet"))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def ready_rows(corpus: Path, split: str) -> list[dict]:
    with open(corpus / "ready" / f"metadata_{split}.csv", encoding="utf-8", newline="") as f:
        lines = f.read().splitlines()
    assert lines[0] == "audio_file|text|speaker_name"
    return list(csv.DictReader(lines, delimiter="|"))


# ---------------------------------------------------------------------------------------------
# The sentence file


def test_sentence_file_covers_what_the_text_front_end_must_handle():
    sentences = dc.load_sentences()
    text = "\n".join(sentences)
    assert len(sentences) >= 150
    assert not any(s.startswith("#") for s in sentences)
    for s in sentences:
        assert ethiopic_share(s) > 0.5, s
    # All seven orders of common consonants (base + 0..6 in the Ethiopic block).
    for base in "ሀለመረሰሸቀበተቸነኘአከወዘየደጀገጠጨፈጸፐ":
        missing = [chr(ord(base) + k) for k in range(7) if chr(ord(base) + k) not in text]
        assert not missing, f"{base}: orders {missing} never occur"
    for labialised in "ቋኳጓኋሏሟሯሷቧቷኗዟዷጧጇፏ":
        assert labialised in text
    assert any(unicodedata.category(c) == "No" and 0x1369 <= ord(c) <= 0x137C for c in text)  # ፩..፼
    assert any(c.isdigit() and c.isascii() for c in text)
    for mark in ("።", "፣", "፤", "?", "፡"):
        assert mark in text, mark
    for abbreviation in ("ዓ.ም", "ዶ/ር", "ወ/ሮ", "ት/ቤት"):
        assert abbreviation in text
    assert sum(any("a" <= c.lower() <= "z" for c in s) for s in sentences) >= 2


# ---------------------------------------------------------------------------------------------
# The corpus on disk


def test_every_clip_is_22k_mono_pcm16_in_range_trimmed_and_not_silent(demo_corpus):
    wavs = sorted((demo_corpus / "ready" / "wavs").glob("*.wav"))
    assert len(wavs) >= 150
    for path in wavs:
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "PCM_16"), path.name
        audio, _ = sf.read(path, dtype="float32")
        seconds = len(audio) / 22050
        assert 1.0 <= seconds <= 11.6, (path.name, seconds)
        assert dc.rms(audio) > MIN_RMS, path.name
        peak_db = 20 * np.log10(np.abs(audio).max())
        assert abs(peak_db - dc.PEAK_DBFS) < 0.1, (path.name, peak_db)
        # Trimmed, but ~0.1 s of silence kept: the first and last loud samples are 0.05..0.2 s in.
        loud = np.flatnonzero(np.abs(audio) > 0.01)
        assert loud[0] / 22050 < 0.2 and (len(audio) - loud[-1]) / 22050 < 0.2, path.name


def test_counts_speakers_and_splits(demo_corpus):
    rows = {split: parquet_rows(demo_corpus, split) for split in SPLITS}
    total = len(rows["train"]) + len(rows["eval"])
    assert total >= 150
    assert 0.05 <= len(rows["eval"]) / total <= 0.15
    speakers = {split: {r["speaker"] for r in rows[split]} for split in SPLITS}
    assert len(speakers["train"]) >= 3
    assert speakers["train"] == speakers["eval"]
    ids = [r["id"] for split in SPLITS for r in rows[split]]
    assert len(ids) == len(set(ids))
    manifest = json.loads((demo_corpus / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["clips"] == {"total": total, "train": len(rows["train"]), "eval": len(rows["eval"])}
    assert set(manifest["speakers"]) == speakers["train"]
    hours = sum(r["duration"] for split in SPLITS for r in rows[split]) / 3600
    assert manifest["hours"]["total"] == pytest.approx(hours, abs=1e-3)
    assert manifest["sentences_sha256"] == dc.sentences_sha256()


def test_texts_are_the_shipped_ethiopic_sentences(demo_corpus):
    sentences = set(dc.load_sentences())
    for split in SPLITS:
        for row in parquet_rows(demo_corpus, split):
            assert row["text"] in sentences, row["id"]
            assert ethiopic_share(row["text"]) > 0.5, row["id"]


def test_ready_folder_matches_parquet(demo_corpus):
    ready = demo_corpus / "ready"
    assert (ready / "lang.txt").read_text(encoding="utf-8") == "am"
    listed = set()
    for split in SPLITS:
        by_id = {r["id"]: r for r in parquet_rows(demo_corpus, split)}
        rows = ready_rows(demo_corpus, split)
        assert len(rows) == len(by_id)
        for row in rows:
            wav = ready / row["audio_file"]
            assert wav.is_file(), row["audio_file"]
            listed.add(wav.name)
            twin = by_id[wav.stem]
            assert (row["text"], row["speaker_name"]) == (twin["text"], twin["speaker"])
            assert wav.read_bytes() == twin["audio"]["bytes"]
            assert sf.info(wav).frames / 22050 == pytest.approx(twin["duration"], abs=1e-4)
    assert {p.name for p in (ready / "wavs").iterdir()} == listed


def test_coqui_formatter_reads_the_ready_folder(demo_corpus):
    formatters = pytest.importorskip("TTS.tts.datasets.formatters")
    ready = demo_corpus / "ready"
    for split in SPLITS:
        items = formatters.coqui(str(ready), f"metadata_{split}.csv")
        rows = ready_rows(demo_corpus, split)
        assert len(items) == len(rows)  # the formatter silently skips rows whose file is missing
        assert [(i["text"], i["speaker_name"]) for i in items] == [(r["text"], r["speaker_name"]) for r in rows]


# ---------------------------------------------------------------------------------------------
# Streaming with `datasets`


def _stream(corpus: Path):
    from datasets import load_dataset

    files = {split: sorted(str(p) for p in (corpus / "parquet" / split).glob("*.parquet")) for split in SPLITS}
    return load_dataset("parquet", data_files=files, streaming=True)


def test_streams_with_datasets(demo_corpus):
    from datasets import Audio

    streams = _stream(demo_corpus)
    assert isinstance(streams["train"].features["audio"], Audio)
    assert streams["train"].num_shards == dc.TRAIN_SHARDS  # what workers and ranks split between them
    for split in SPLITS:
        raw = streams[split].cast_column("audio", Audio(decode=False))
        seen = 0
        for row in raw:
            audio, sr = sf.read(io.BytesIO(row["audio"]["bytes"]), dtype="float32")
            assert sr == 22050 and len(audio) / sr == pytest.approx(row["duration"], abs=1e-4)
            assert ethiopic_share(row["text"]) > 0.5
            seen += 1
        assert seen == len(parquet_rows(demo_corpus, split))


def test_datasets_decodes_the_audio_feature(demo_corpus):
    pytest.importorskip("torchcodec", reason="datasets>=4 decodes Audio with torchcodec")
    row = next(iter(_stream(demo_corpus)["eval"]))
    decoded = row["audio"]
    assert decoded["sampling_rate"] == 22050
    wav = (demo_corpus / "ready" / "wavs" / f"{row['id']}.wav")
    expected, _ = sf.read(wav, dtype="float32")
    np.testing.assert_allclose(np.asarray(decoded["array"]).reshape(-1), expected, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Caching and determinism


def test_second_build_is_a_no_op(demo_corpus):
    manifest = demo_corpus / "manifest.json"
    before = manifest.stat().st_mtime_ns
    marker = demo_corpus / ".test_marker"
    marker.write_text("kept")
    try:
        start = time.perf_counter()
        assert dc.make_demo_corpus(demo_corpus) == demo_corpus
        assert time.perf_counter() - start < 1.0
        assert marker.exists() and manifest.stat().st_mtime_ns == before
    finally:
        marker.unlink()


def test_stale_corpus_is_rebuilt_atomically_and_identically(demo_corpus, tmp_path):
    out = tmp_path / "corpus"
    out.mkdir()
    stale = json.loads((demo_corpus / "manifest.json").read_text(encoding="utf-8"))
    stale["stamp"]["generator_version"] = "0"
    (out / "manifest.json").write_text(json.dumps(stale), encoding="utf-8")
    (out / "junk.txt").write_text("from an older build")
    assert dc.make_demo_corpus(out) == out
    assert not (out / "junk.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["corpus"]  # no temp or old dirs left behind
    fresh = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert fresh["stamp"] == json.loads((demo_corpus / "manifest.json").read_text(encoding="utf-8"))["stamp"]
    # Same seed, same bytes: the corpus is deterministic, so cached copies on any machine agree.
    for wav in sorted((demo_corpus / "ready" / "wavs").glob("*.wav")):
        assert (out / "ready" / "wavs" / wav.name).read_bytes() == wav.read_bytes(), wav.name
    for split in SPLITS:
        assert (out / "ready" / f"metadata_{split}.csv").read_bytes() == (demo_corpus / "ready" / f"metadata_{split}.csv").read_bytes()


def test_plan_is_seeded_and_balanced():
    lines = list(enumerate(dc.load_sentences(), start=1))
    first = dc.plan(lines, dc.DEFAULT_SPEAKERS, seed=0)
    assert first == dc.plan(lines, dc.DEFAULT_SPEAKERS, seed=0)
    assert first != dc.plan(lines, dc.DEFAULT_SPEAKERS, seed=1)
    per_speaker = [sum(u.voice == v for u in first) for v in dc.DEFAULT_SPEAKERS]
    assert max(per_speaker) - min(per_speaker) <= 1
    assert sorted(u.text for u in first) == sorted(dc.load_sentences())  # each sentence read once
    for voice in dc.DEFAULT_SPEAKERS:  # rate and pitch vary per utterance, not only per speaker
        assert len({(u.rate, u.pitch) for u in first if u.voice == voice}) > 10


# ---------------------------------------------------------------------------------------------
# Pieces


def test_resample_moves_rate_and_keeps_pitch():
    sr = 16000
    t = np.arange(sr) / sr
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out = dc.resample(tone, sr)
    assert len(out) == 22050
    spectrum = np.abs(np.fft.rfft(out))
    assert np.argmax(spectrum) * 22050 / len(out) == pytest.approx(440, abs=1)
    assert dc.resample(tone, 22050) is tone


def test_trim_keeps_a_tenth_of_a_second():
    sr = 22050
    speech = np.full(sr, 0.5, dtype=np.float32)
    padded = np.concatenate([np.zeros(sr, np.float32), speech, np.zeros(sr, np.float32)])
    trimmed = dc.trim_silence(padded, sr)
    assert len(trimmed) / sr == pytest.approx(1.2, abs=0.03)


def test_rate_is_chosen_so_every_clip_fits_or_the_reason_is_given():
    def read(text: str):
        return dc.synthesise(dc.Utterance("t", "am", "am", 1, text, rate=170, pitch=50))

    sentence = "ቡና ተፈልቶ ጎረቤቶች ሁሉ ተጠሩ። "  # ~2.7 s at rate 170
    slowed = read("ሰላም።")
    assert isinstance(slowed, dc.Clip) and slowed.utt.rate < 170 and slowed.duration >= 1.0
    hurried = read(sentence * 5)
    assert isinstance(hurried, dc.Clip) and hurried.utt.rate > 170 and hurried.duration <= 11.6
    assert "split it" in read(sentence * 12)
    assert read("።").startswith("silent")
    # espeak-ng 1.51 says nothing for Ethiopic numerals; it reads the normalised text, so they are spoken.
    assert dc.speech_text("፲፱፻፹፯") == "አንድ ሺህ ዘጠኝ መቶ ሰማንያ ሰባት"
    assert isinstance(read("፲፱፻፹፯"), dc.Clip)


def test_missing_espeak_names_the_fix(monkeypatch):
    monkeypatch.setattr(dc.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install espeak-ng"):
        dc.check_espeak(dc.DEFAULT_SPEAKERS)


def test_unknown_voice_variant_is_named():
    with pytest.raises(RuntimeError, match="'nosuchvoice'"):
        dc.check_espeak(("am", "am+nosuchvoice"))
