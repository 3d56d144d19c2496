"""amh.data.sources: every layout streams the same canonical rows; errors name the key to change."""
from __future__ import annotations

import csv
import logging
from pathlib import Path

import datasets
import pytest

from amh.config import DataConfig
from amh.data.sources import SourceError, canonical_row, in_split, open_rows, split_name


def rows_of(cfg: DataConfig, split: str = "train") -> list[dict]:
    return [canonical_row(r, cfg) for r in open_rows(cfg, split)]


def by_stem(rows: list[dict]) -> dict[str, tuple]:
    return {Path(r["id"]).stem: (r["text"], r["speaker"]) for r in rows}


def test_parquet_and_ready_layouts_give_the_same_rows(demo_corpus):
    parquet = rows_of(DataConfig(source="parquet", path=str(demo_corpus / "parquet")))
    ready = rows_of(DataConfig(source="ready", path=str(demo_corpus / "ready")))
    assert len(parquet) == len(ready) == 185 and by_stem(parquet) == by_stem(ready)
    assert isinstance(parquet[0]["audio"], dict) and parquet[0]["audio"]["bytes"][:4] == b"RIFF"  # not decoded
    assert ready[0]["audio"]["bytes"] is None and Path(ready[0]["audio"]["path"]).is_file()
    evals = rows_of(DataConfig(source="parquet", path=str(demo_corpus / "parquet")), "eval")
    assert len(evals) == 20 and not set(by_stem(evals)) & set(by_stem(parquet))


def test_hub_loader_and_renamed_columns(tmp_path, demo_corpus):
    """`source: hub` goes through datasets.load_dataset(path, name, split, streaming=True); a local
    repo-shaped folder stands in for the Hub. Its columns are named differently, as on many Hub sets."""
    src = datasets.load_dataset("parquet", data_files={"train": str(demo_corpus / "parquet" / "eval" / "*.parquet")},
                                split="train", cache_dir=str(tmp_path / "cache"))
    src = src.rename_columns({"audio": "path_audio", "text": "sentence", "speaker": "client_id"}).remove_columns("id")
    (tmp_path / "data").mkdir()
    src.to_parquet(str(tmp_path / "data" / "validation-00000-of-00001.parquet"))
    src.to_parquet(str(tmp_path / "data" / "train-00000-of-00001.parquet"))
    cfg = DataConfig(source="hub", path=str(tmp_path), eval_split="validation", audio_column="path_audio",
                     text_column="sentence", speaker_column="client_id")
    rows = rows_of(cfg, "eval")
    assert len(rows) == 20 and {r["speaker"] for r in rows} == {"am", "am_f3", "am_m3", "am_klatt"}
    assert rows[0]["id"].endswith(".wav")  # no id column: the audio path names the row
    assert isinstance(rows[0]["audio"], dict) and rows[0]["audio"]["bytes"]
    with pytest.raises(SourceError, match="data.eval_split"):
        open_rows(DataConfig(source="hub", path=str(tmp_path), eval_split="dev", audio_column="path_audio",
                             text_column="sentence", speaker_column="client_id"), "eval")


def test_missing_column_names_the_key_and_the_columns(demo_corpus):
    with pytest.raises(SourceError, match=r"data.text_column='sentence'.*columns: \['audio', 'text'"):
        open_rows(DataConfig(source="parquet", path=str(demo_corpus / "parquet"), text_column="sentence"), "train")


def test_missing_speaker_column_is_one_speaker(demo_corpus, caplog):
    with caplog.at_level(logging.WARNING):
        rows = rows_of(DataConfig(source="parquet", path=str(demo_corpus / "parquet"), speaker_column="who"), "eval")
    assert {r["speaker"] for r in rows} == {""} and "every row is one speaker" in caplog.text


def test_save_to_disk_folder(tmp_path, demo_corpus):
    ds = datasets.load_dataset("parquet", data_files={"train": str(demo_corpus / "parquet" / "train" / "*.parquet"),
                                                      "eval": str(demo_corpus / "parquet" / "eval" / "*.parquet")},
                               cache_dir=str(tmp_path / "cache"))
    ds.save_to_disk(str(tmp_path / "disk"))
    cfg = DataConfig(source="parquet", path=str(tmp_path / "disk"))
    assert len(rows_of(cfg)) == 185 and len(rows_of(cfg, "eval")) == 20
    assert open_rows(cfg, "train").num_shards > 1


def test_audiofolder(tmp_path, demo_corpus):
    lines = (demo_corpus / "ready" / "metadata_eval.csv").read_text(encoding="utf-8").splitlines()[1:]
    folder = tmp_path / "train"
    folder.mkdir()
    with open(folder / "metadata.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("file_name", "sentence", "speaker"))
        for line in lines:
            audio_file, text, speaker = line.split("|")
            (folder / Path(audio_file).name).symlink_to(demo_corpus / "ready" / audio_file)
            writer.writerow((Path(audio_file).name, text, speaker))
    rows = rows_of(DataConfig(source="parquet", path=str(tmp_path), text_column="sentence"))
    assert len(rows) == len(lines) and {r["speaker"] for r in rows} == {"am", "am_f3", "am_m3", "am_klatt"}
    assert {Path(r["id"]).name for r in rows} == {Path(line.split("|")[0]).name for line in lines}


def test_ready_errors_and_headerless_csv(tmp_path, demo_corpus):
    with pytest.raises(SourceError, match="no metadata_eval.csv.*data.eval_split: null"):
        open_rows(DataConfig(source="ready", path=str(tmp_path)), "eval")
    lines = (demo_corpus / "ready" / "metadata_train.csv").read_text(encoding="utf-8").splitlines()[1:4]
    (tmp_path / "wavs").symlink_to(demo_corpus / "ready" / "wavs")
    (tmp_path / "metadata_train.csv").write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    rows = rows_of(DataConfig(source="ready", path=str(tmp_path)))
    assert [r["id"] for r in rows] == [line.split("|")[0] for line in lines]
    with pytest.raises(SourceError, match="not a directory"):
        open_rows(DataConfig(source="parquet", path=str(tmp_path / "nope")), "train")


def test_held_out_split_is_deterministic_and_per_speaker():
    cfg = DataConfig(source="parquet", path="x", eval_split=None, eval_fraction=0.1)
    assert split_name(cfg, "eval") == split_name(cfg, "train") == "train"
    rows = [{"id": f"u{i}", "speaker": f"s{i % 5}"} for i in range(5000)]
    held = [r for r in rows if in_split(r, "eval", cfg)]
    assert all(in_split(r, "train", cfg) != in_split(r, "eval", cfg) for r in rows)
    assert held == [r for r in rows if in_split(r, "eval", cfg)]
    for s in range(5):
        share = sum(r["speaker"] == f"s{s}" for r in held) / 1000
        assert 0.07 < share < 0.13
    assert all(in_split(r, "train", DataConfig(source="parquet", path="x")) for r in rows[:10])


def _ready_copy(tmp_path: Path, demo_corpus: Path, body: bytes) -> Path:
    root = tmp_path / "ready"
    root.mkdir()
    (root / "wavs").symlink_to(demo_corpus / "ready" / "wavs")
    (root / "metadata_train.csv").write_bytes(body)
    return root


def test_a_byte_that_is_not_utf8_drops_only_its_row_and_names_the_line(tmp_path, demo_corpus, caplog):
    """One bad byte used to raise UnicodeDecodeError for the whole file, with no file or line."""
    from amh.data import build_loader
    from test_data_corpus import CharEncoder

    lines = (demo_corpus / "ready" / "metadata_train.csv").read_bytes().splitlines(keepends=True)
    audio, text, speaker = lines[5].decode("utf-8").rstrip("\n").split("|")
    lines[5] = f"{audio}|".encode() + text.encode("utf-8")[:4] + b"\xff\xfe" + text.encode("utf-8")[4:] + \
        f"|{speaker}\n".encode()  # line 6 of the file
    root = _ready_copy(tmp_path, demo_corpus, b"".join(lines))
    cfg = DataConfig(source="ready", path=str(root), num_workers=0, shuffle_buffer=8, bucket_buffer=0)
    with caplog.at_level(logging.WARNING):
        rows = rows_of(cfg)
    assert len(rows) == len(lines) - 1  # every row is still there, the bad one marked
    bad = [r for r in rows if "\ufffd" in r["text"]]
    assert [r["id"] for r in bad] == [f"metadata_train.csv line 6: {audio}"]
    assert "1 line(s) hold bytes that are not UTF-8 (first: line 6)" in caplog.text
    from amh.fixtures.demo_corpus import load_sentences

    loader = build_loader(cfg, split="train", batch_size=4, text_encoder=CharEncoder("".join(load_sentences())),
                          rank=0, world_size=1, seed=0)
    ids = [i for b in loader for i in b["ids"]]
    stats = loader.filter_stats()
    assert stats.counts["text_error"] == 1 and stats.examples["text_error"] == [f"metadata_train.csv line 6: {audio}"]
    assert audio not in ids and len(ids) == stats.kept == len(lines) - 2
    assert any("line 6" in m and "not UTF-8" in m for m in stats.messages)


@pytest.mark.parametrize("delimiter", [",", "\t"])
def test_ready_csv_with_another_delimiter_is_named(tmp_path, demo_corpus, delimiter):
    body = (demo_corpus / "ready" / "metadata_train.csv").read_text(encoding="utf-8").replace("|", delimiter)
    root = _ready_copy(tmp_path, demo_corpus, body.encode("utf-8"))
    with pytest.raises(SourceError) as err:
        open_rows(DataConfig(source="ready", path=str(root)), "train")
    assert str(err.value) == (f"{root / 'metadata_train.csv'}: expected '|'-separated columns "
                              f"audio_file|text|speaker_name, found {delimiter!r}")


def test_missing_ready_folder_names_data_path(tmp_path):
    with pytest.raises(SourceError, match=r"^data.path='.*nope': not a directory \(data.source=ready"):
        open_rows(DataConfig(source="ready", path=str(tmp_path / "nope")), "train")
