"""amh.data.prepare + scripts/prepare_dataset.py: prepared shards, report, resume, precomputed codes."""
from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import amh.data.prepare as prep
from amh.config import DataConfig
from amh.data import build_loader
from amh.data.prepare import PrepareOptions, prepare
from amh.text.frontend import FrontendSettings, TextFrontend
from test_data_corpus import broken_ready, demo_train_rows, expected_counts, real_encoder  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parent.parent
NORMALIZE = TextFrontend(FrontendSettings()).normalize


def small_ready(root: Path, demo: Path, n_train: int = 10, n_eval: int = 4) -> Path:
    root.mkdir(parents=True)
    (root / "wavs").symlink_to(demo / "ready" / "wavs")
    for split, n in (("train", n_train), ("eval", n_eval)):
        lines = (demo / "ready" / f"metadata_{split}.csv").read_text(encoding="utf-8").splitlines()
        (root / f"metadata_{split}.csv").write_text("\n".join(lines[: n + 1]) + "\n", encoding="utf-8")
    return root


def shard_rows(out: Path, split: str, columns=("id",)) -> list[dict]:
    files = sorted((out / "data").glob(f"{split}-*.parquet"))
    return [r for f in files for r in pq.read_table(f, columns=list(columns)).to_pylist()]


def test_prepare_broken_copy_counts_and_reloads(tmp_path, broken_ready, demo_train_rows, real_encoder):
    root, rows = broken_ready
    cfg = DataConfig(source="ready", path=str(root))
    report = prepare(cfg, PrepareOptions(out=str(tmp_path / "out"), rows_per_shard=64, workers=2),
                     normalize=NORMALIZE, text_encoder=real_encoder, progress_bar=False)
    train = report["splits"]["train"]
    assert train["dropped"] == expected_counts(rows)
    assert train["rows_kept"] == len(demo_train_rows) and train["shards"] == math.ceil(len(demo_train_rows) / 64)
    assert set(train["speakers"]) == {"am", "am_f3", "am_m3", "am_klatt"}
    assert train["hours_kept"] == pytest.approx(sum(s["hours"] for s in train["speakers"].values()), abs=1e-3)
    assert json.loads((tmp_path / "out" / "prepare_report.json").read_text(encoding="utf-8")) == report

    written = shard_rows(tmp_path / "out", "train", ("id", "text", "duration", "n_text_tokens", "speaker"))
    assert sorted(r["id"] for r in written) == sorted(r["audio_file"] for r in demo_train_rows)
    source_text = {r["audio_file"]: r["text"] for r in demo_train_rows}
    for r in written:
        assert r["text"] == NORMALIZE(source_text[r["id"]])
        assert NORMALIZE(r["text"]) == r["text"]  # normalising twice (again at training) changes nothing
        assert r["n_text_tokens"] == len(real_encoder(r["text"]))

    # it trains: the loader reads it back as a parquet source, same ids and durations, all FLAC at 22.05 kHz
    lo = build_loader(DataConfig(source="parquet", path=str(tmp_path / "out"), num_workers=2), split="train",
                      batch_size=8, text_encoder=real_encoder, rank=0, world_size=1, seed=0)
    lengths = {i: int(n) for b in lo for i, n in zip(b["ids"], b["wav_lengths"])}
    assert lengths == {r["id"]: round(r["duration"] * 22050) for r in written}
    first = pq.read_table(next((tmp_path / "out" / "data").glob("train-*.parquet"))).to_pylist()[0]
    assert first["audio"]["bytes"][:4] == b"fLaC"


def test_prepared_folder_is_a_datasets_dataset_with_named_splits(tmp_path, demo_corpus, real_encoder):
    out = tmp_path / "out"
    prepare(DataConfig(source="ready", path=str(small_ready(tmp_path / "ready", demo_corpus))),
            PrepareOptions(out=str(out), rows_per_shard=4, workers=1), normalize=NORMALIZE,
            text_encoder=real_encoder, progress_bar=False)
    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))  # what the Hub does with the README's `configs`
    assert set(ds) == {"train", "eval"} and len(ds["train"]) == 10 and len(ds["eval"]) == 4
    assert isinstance(ds["train"].features["audio"], datasets.Audio)
    assert ds["train"].features["audio"].sampling_rate == 22050
    hub = DataConfig(source="hub", path=str(out), eval_split="eval")
    lo = build_loader(hub, split="eval", batch_size=2, text_encoder=real_encoder, rank=0, world_size=1, seed=0,
                      training=False)
    assert sum(len(b["ids"]) for b in lo) == 4


def test_interrupted_prepare_resumes_to_the_same_output(tmp_path, demo_corpus, real_encoder, monkeypatch):
    cfg = DataConfig(source="ready", path=str(small_ready(tmp_path / "ready", demo_corpus, 23, 3)))
    kwargs = dict(normalize=NORMALIZE, text_encoder=real_encoder, progress_bar=False)
    prepare(cfg, PrepareOptions(out=str(tmp_path / "whole"), rows_per_shard=5, workers=1), **kwargs)

    real_write, calls = prep._write_shard, []

    def dies_after_two(*args):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(args[0])
        real_write(*args)

    monkeypatch.setattr(prep, "_write_shard", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        prepare(cfg, PrepareOptions(out=str(tmp_path / "cut"), rows_per_shard=5, workers=1), **kwargs)
    monkeypatch.setattr(prep, "_write_shard", real_write)
    assert len(list((tmp_path / "cut" / "data").glob("train-*.parquet"))) == 2
    report = prepare(cfg, PrepareOptions(out=str(tmp_path / "cut"), rows_per_shard=5, workers=1), **kwargs)
    for split in ("train", "eval"):
        whole = [pq.read_table(f).to_pylist() for f in sorted((tmp_path / "whole" / "data").glob(f"{split}-*"))]
        cut = [pq.read_table(f).to_pylist() for f in sorted((tmp_path / "cut" / "data").glob(f"{split}-*"))]
        assert cut == whole
    assert report["splits"]["train"]["rows_kept"] == 23 and report["splits"]["train"]["shards"] == 5
    with pytest.raises(ValueError, match="prepared with other settings"):
        prepare(cfg, PrepareOptions(out=str(tmp_path / "cut"), rows_per_shard=6, workers=1), **kwargs)


def test_precomputed_codes_and_prompt_mels(tmp_path, demo_corpus, tiny_release, real_encoder):
    from amh.xtts.codes import AudioCodec

    codec = AudioCodec.from_release(tiny_release)
    out = tmp_path / "out"
    cfg = DataConfig(source="ready", path=str(small_ready(tmp_path / "ready", demo_corpus, 6, 2)))
    prepare(cfg, PrepareOptions(out=str(out), rows_per_shard=4, workers=1, codes_batch=3), normalize=NORMALIZE,
            text_encoder=real_encoder, codec=codec, progress_bar=False)
    rows = shard_rows(out, "train", ("id", "audio", "duration", "codes", "cond_start", "cond_end", "cond_mels"))
    assert len(rows) == 6
    import io

    import soundfile as sf

    for r in rows[:2]:
        wav, _ = sf.read(io.BytesIO(r["audio"]["bytes"]), dtype="float32")
        assert len(r["codes"]) == math.ceil(len(wav) / 1024)
        alone = codec.codes(torch.from_numpy(wav)[None, None])[0, : len(r["codes"])]
        assert (alone == torch.tensor(r["codes"])).float().mean() > 0.9  # batch padding may touch the last code
        mel = np.asarray(r["cond_mels"], np.float32)
        assert mel.shape == (517, 80)  # the prompt padded to 6 s, as upstream pads it
        cond = torch.zeros(1, 1, 6 * 22050)
        cond[0, 0, : r["cond_end"] - r["cond_start"]] = torch.from_numpy(wav[r["cond_start"]:r["cond_end"]])
        np.testing.assert_allclose(mel.T, codec.cond_mels(cond)[0].numpy(), atol=2e-2, rtol=1e-2)

    from amh.data.sources import carries_codes

    # With codes in both splits training keeps the DVAE off the device; a source without them does not.
    assert carries_codes(DataConfig(source="parquet", path=str(out)))
    assert not carries_codes(cfg)
    assert not carries_codes(DataConfig(source="parquet", path=str(demo_corpus / "parquet")))
    lo = build_loader(DataConfig(source="parquet", path=str(out), num_workers=0), split="train", batch_size=3,
                      text_encoder=real_encoder, rank=0, world_size=1, seed=0)
    stored = {r["id"]: r for r in rows}
    for b in lo:
        assert b["codes"].dtype == torch.long and b["cond_mels"].shape[1:] == (80, 517)
        for i, row_id in enumerate(b["ids"]):
            r = stored[row_id]
            assert b["codes"][i, : len(r["codes"])].tolist() == r["codes"]
            assert b["cond_idxs"][i].tolist() == [r["cond_start"], r["cond_end"]]


def test_prepared_training_batches_decode_no_audio_and_pad_prompts_like_the_online_path(
        tmp_path, demo_corpus, tiny_release, real_encoder, monkeypatch):
    import io

    import soundfile as sf

    import amh.data.samples as samples
    from amh.train.step import model_inputs
    from amh.xtts.codes import AudioCodec

    codec = AudioCodec.from_release(tiny_release)
    ready = small_ready(tmp_path / "ready", demo_corpus, 6, 2)
    out = tmp_path / "out"
    prepare(DataConfig(source="ready", path=str(ready)), PrepareOptions(out=str(out), rows_per_shard=4, workers=1),
            normalize=NORMALIZE, text_encoder=real_encoder, codec=codec, progress_bar=False)
    lengths = {r["id"]: len(sf.read(io.BytesIO(r["audio"]["bytes"]))[0]) for r in shard_rows(out, "train", ("id", "audio"))}
    args = dict(batch_size=3, text_encoder=real_encoder, rank=0, world_size=1, seed=0)
    prepared = DataConfig(source="parquet", path=str(out), num_workers=0)

    def no_decoding(*a, **k):
        raise AssertionError("a prepared training row was decoded")

    monkeypatch.setattr(samples, "load_audio", no_decoding)
    seen = 0
    for b in build_loader(prepared, split="train", **args):
        assert "wav" not in b and "cond" not in b  # nothing decoded, padded or copied
        assert b["wav_lengths"].tolist() == [lengths[i] for i in b["ids"]]  # from the FLAC header
        assert b["n_audio_samples"] == sum(lengths[i] for i in b["ids"])
        codes, cond_mels = model_inputs(b, codec)[2], model_inputs(b, codec)[4]
        assert codes is b["codes"] and cond_mels is b["cond_mels"]
        seen += len(b["ids"])
    assert seen == len(lengths)
    monkeypatch.undo()
    eval_batch = next(iter(build_loader(prepared, split="eval", training=False, **args)))
    assert "wav" in eval_batch  # eval keeps its audio: train.py takes a voice reference from it

    # The online path pads every prompt to data.max_conditioning_seconds too, so its prompt mels
    # have the prepared ones' shape (517 frames at 6 s) and, for the same span, their values.
    online = build_loader(DataConfig(source="ready", path=str(ready), num_workers=0), split="train", **args)
    for b in online:
        assert b["cond"].shape[-1] == 6 * 22050
        mels = codec.cond_mels(b["cond"])
        assert mels.shape[1:] == (80, 517)
        start, end = b["cond_idxs"][0].tolist()
        alone = torch.zeros(1, 1, 6 * 22050)
        alone[0, 0, : end - start] = b["wav"][0, 0, start:end]
        torch.testing.assert_close(mels[:1], codec.cond_mels(alone))


def test_cli_writes_a_report_and_fails_when_nothing_is_kept(tmp_path, demo_corpus, real_encoder):
    ready = small_ready(tmp_path / "ready", demo_corpus, 3, 1)
    vocab = real_encoder.vocab
    cmd = [sys.executable, str(REPO / "scripts" / "prepare_dataset.py"), "--out", str(tmp_path / "out"),
           "--vocab", vocab, "--workers", "1", "--no-progress", "data.source=ready", f"data.path={ready}"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "train: kept 3 of 3 rows" in done.stdout and "eval: kept 1 of 1 rows" in done.stdout
    bad = subprocess.run(cmd[:3] + [str(tmp_path / "out2")] + cmd[4:] + ["data.max_audio_seconds=0.6"],
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 1 and "dropped too_long: 3" in bad.stdout


def test_the_dvae_stays_off_the_device_until_a_batch_needs_it(tiny_release, monkeypatch, caplog):
    """For precomputed codes the codec puts only its mel transforms on the device ("meta" stands in for
    a GPU here); the first batch without codes moves the DVAE over, with a warning."""
    from amh.xtts.codes import AudioCodec

    assert AudioCodec.from_release(tiny_release, "meta").dvae_device.type == "meta"
    codec = AudioCodec.from_release(tiny_release, "meta", dvae_on_device=False)
    assert codec.dvae_device.type == "cpu" and codec.mel_stats.device.type == "meta"
    assert {b.device.type for name, b in codec.named_buffers() if not name.startswith("dvae.")} == {"meta"}
    monkeypatch.setattr(codec, "_mel", lambda transform, wav: wav)
    monkeypatch.setattr(codec.dvae, "get_codebook_indices", lambda mel: mel.long())
    monkeypatch.setattr(torch, "autocast", lambda *a, **k: contextlib.nullcontext())  # no autocast on "meta"
    codec.codes(torch.zeros(1, 2048, device="meta"))
    assert codec.dvae_device.type == "meta"
    assert "moving the DVAE to meta" in caplog.text
