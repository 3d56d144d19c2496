"""Test corpora for the data pipeline: the demo corpus plus a deliberately broken copy, and text encoders.

The broken copy adds one row per failure mode to the demo's train split, in both the "ready" and
the parquet layout. Other test_data_* modules import the fixtures from here.
"""
from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from amh.data.audio import AudioDecodeError, load_audio

SR = 22050
# Latin-script letters that no XTTS vocab has: [UNK] with and without the Amharic front-end.
UNKNOWN_TEXT = "Ærøskøbing Œuvre"


class CharEncoder:
    """Stand-in tokenizer: one id per character of a known alphabet, space = 2, anything else = [UNK] = 1."""

    def __init__(self, alphabet: str):
        self.ids = {c: 3 + i for i, c in enumerate(sorted(set(alphabet) - {" "}))}

    def __call__(self, text: str) -> list[int]:
        return [2 if c == " " else self.ids.get(c, 1) for c in text]


def _noise(seconds: float, amplitude: float = 0.1, seed: int = 0) -> np.ndarray:
    return (amplitude * np.random.default_rng(seed).standard_normal(round(seconds * SR))).astype(np.float32)


def _wav(audio: np.ndarray, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, SR, format="WAV", subtype=subtype)
    return buf.getvalue()


def broken_rows(good_wav: bytes, good_text: str) -> list[dict]:
    """One row per way a row can be bad, each with the reason the pipeline must give."""
    long_text = (good_text + " ") * (1 + 300 // max(1, len(good_text)))
    return [
        {"id": "broken_truncated", "audio": good_wav[: len(good_wav) * 6 // 10], "text": good_text, "reason": "decode_error"},
        {"id": "broken_not_audio", "audio": b"this is not audio at all " * 200, "text": good_text, "reason": "decode_error"},
        {"id": "broken_empty_text", "audio": good_wav, "text": "", "reason": "empty_text"},
        {"id": "broken_short", "audio": _wav(_noise(0.2)), "text": good_text, "reason": "too_short"},
        {"id": "broken_long", "audio": _wav(_noise(20.0)), "text": good_text, "reason": "too_long"},
        {"id": "broken_nan", "audio": _wav(np.full(round(1.5 * SR), np.nan, np.float32), "FLOAT"),
         "text": good_text, "reason": "non_finite"},
        {"id": "broken_unknown", "audio": good_wav, "text": UNKNOWN_TEXT, "reason": "unknown_token"},
        {"id": "broken_silence", "audio": _wav(np.zeros(2 * SR, np.float32)), "text": good_text, "reason": "silence"},
        {"id": "broken_text_long", "audio": good_wav, "text": long_text, "reason": "text_too_long"},
    ]


def expected_counts(rows: list[dict]) -> dict[str, int]:
    return dict(Counter(r["reason"] for r in rows))


def _demo_train(demo: Path) -> list[dict]:
    with open(demo / "ready" / "metadata_train.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="|"))


@pytest.fixture(scope="session")
def demo_train_rows(demo_corpus) -> list[dict]:
    """The demo's train split as {audio_file, text, speaker_name} (185 rows)."""
    return _demo_train(demo_corpus)


@pytest.fixture(scope="session")
def broken_ready(demo_corpus, tmp_path_factory) -> tuple[Path, list[dict]]:
    """A ready folder: the demo's train rows (wavs linked) + the broken rows (+ a missing file)."""
    root = tmp_path_factory.mktemp("broken_ready")
    os.symlink(demo_corpus / "ready" / "wavs", root / "wavs")
    (root / "broken").mkdir()
    good = _demo_train(demo_corpus)
    rows = broken_rows((demo_corpus / "ready" / good[0]["audio_file"]).read_bytes(), good[0]["text"])
    lines = [(g["audio_file"], g["text"], g["speaker_name"]) for g in good]
    for r in rows:
        path = f"broken/{r['id']}.wav"
        (root / path).write_bytes(r["audio"])
        r["id"] = path
        lines.append((path, r["text"], "am"))
    rows.append({"id": "broken/missing.wav", "reason": "decode_error"})
    lines.append(("broken/missing.wav", good[1]["text"], "am"))
    order = np.random.default_rng(0).permutation(len(lines))  # broken rows spread over shards
    with open(root / "metadata_train.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="|", lineterminator="\n")
        writer.writerow(("audio_file", "text", "speaker_name"))
        writer.writerows(lines[i] for i in order)
    (root / "metadata_eval.csv").write_text((demo_corpus / "ready" / "metadata_eval.csv").read_text(encoding="utf-8"),
                                            encoding="utf-8")
    return root, rows


@pytest.fixture(scope="session")
def broken_parquet(demo_corpus, tmp_path_factory) -> tuple[Path, list[dict]]:
    """A parquet folder: the demo's train shards + a shard of broken rows (+ a row of empty bytes)."""
    import datasets

    root = tmp_path_factory.mktemp("broken_parquet")
    (root / "train").mkdir()
    for shard in sorted((demo_corpus / "parquet" / "train").glob("*.parquet")):
        os.symlink(shard, root / "train" / shard.name)
    good = _demo_train(demo_corpus)
    rows = broken_rows((demo_corpus / "ready" / good[0]["audio_file"]).read_bytes(), good[0]["text"])
    rows.append({"id": "broken_empty_bytes", "audio": b"", "text": good[1]["text"], "reason": "decode_error"})
    features = datasets.Features({"audio": datasets.Audio(sampling_rate=SR), "text": datasets.Value("string"),
                                  "speaker": datasets.Value("string"), "duration": datasets.Value("float32"),
                                  "id": datasets.Value("string")})
    ds = datasets.Dataset.from_dict({
        "audio": [{"bytes": r["audio"], "path": f"{r['id']}.wav"} for r in rows], "text": [r["text"] for r in rows],
        "speaker": ["am"] * len(rows), "duration": [1.0] * len(rows), "id": [r["id"] for r in rows],
    }, features=features)
    ds.to_parquet(str(root / "train" / "train-99999-broken.parquet"))
    return root, rows


@pytest.fixture(scope="session")
def char_encoder() -> CharEncoder:
    from amh.fixtures.demo_corpus import load_sentences

    return CharEncoder("".join(load_sentences()))


@pytest.fixture(scope="session")
def real_encoder(tiny_release, tmp_path_factory):
    """The trainer's encoder: Amharic front-end + upstream VoiceBpeTokenizer on an extended tiny vocab."""
    from amh.fixtures.demo_corpus import load_sentences
    from amh.text.frontend import FrontendSettings
    from amh.xtts.vocab import extend_vocab
    from amh.xtts.text_encoder import TextEncoder

    vocab = tmp_path_factory.mktemp("vocab") / "vocab_am.json"
    extend_vocab(tiny_release / "vocab.json", load_sentences(), vocab, mode="chars")
    return TextEncoder(vocab, FrontendSettings())


# ---------------------------------------------------------------------------------------------
# The broken rows are broken the way they claim


def test_broken_rows_fail_as_designed(demo_corpus):
    good = _demo_train(demo_corpus)
    wav = (demo_corpus / "ready" / good[0]["audio_file"]).read_bytes()
    rows = {r["id"]: r for r in broken_rows(wav, good[0]["text"])}
    # libsndfile alone decodes the truncated WAV (a partial clip); the pipeline must refuse it.
    partial, _ = sf.read(io.BytesIO(rows["broken_truncated"]["audio"]))
    assert 0 < len(partial) < len(sf.read(io.BytesIO(wav))[0])
    for name in ("broken_truncated", "broken_not_audio"):
        with pytest.raises(AudioDecodeError):
            load_audio(rows[name]["audio"], SR)
    assert np.isnan(load_audio(rows["broken_nan"]["audio"], SR)).all()
    assert len(load_audio(rows["broken_short"]["audio"], SR)) == round(0.2 * SR)
    assert len(load_audio(rows["broken_long"]["audio"], SR)) == 20 * SR


def test_encoders_mark_the_unknown_text(char_encoder, real_encoder, demo_train_rows):
    for encode in (char_encoder, real_encoder):
        assert 1 in encode(UNKNOWN_TEXT)
        assert all(1 not in encode(r["text"]) for r in demo_train_rows)


def test_demo_corpus_manifest_matches_rows(demo_corpus, demo_train_rows):
    manifest = json.loads((demo_corpus / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["clips"]["train"] == len(demo_train_rows)
