"""Vocabulary extension (amh/xtts/vocab.py, scripts/extend_vocab.py) on the tiny release's XTTS-format vocab."""
import importlib.util
import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from amh.text.frontend import FrontendSettings, TextFrontend
from amh.xtts.vocab import check_extension, extend_vocab

REPO = Path(__file__).resolve().parent.parent
MODES = {
    "chars": FrontendSettings(),
    "bpe": FrontendSettings(),
    "ipa": FrontendSettings(g2p="hybrid"),
}


@pytest.fixture(scope="module")
def sentences():
    from amh.fixtures.demo_corpus import load_sentences

    return load_sentences()


@pytest.fixture(scope="module")
def base_vocab(tiny_release) -> Path:
    return tiny_release / "vocab.json"


@pytest.fixture(scope="module")
def extended(base_vocab, sentences, tmp_path_factory):
    """Each mode's extended vocab and report, built once."""
    out = tmp_path_factory.mktemp("vocab")
    return {
        mode: extend_vocab(base_vocab, sentences, out / f"{mode}.json", mode=mode, frontend=fe, bpe_size=400)
        for mode, fe in MODES.items()
    }


def _xtts_tokenizer(vocab: Path):
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

    return VoiceBpeTokenizer(str(vocab))


def _encode_like_xtts(tokenizer: Tokenizer, text: str) -> list[int]:
    return tokenizer.encode("[am]" + text.replace(" ", "[SPACE]")).ids


@pytest.mark.parametrize("mode", MODES)
def test_old_tokens_keep_their_ids(extended, base_vocab, mode):
    old = Tokenizer.from_file(str(base_vocab)).get_vocab(with_added_tokens=True)
    new = Tokenizer.from_file(str(extended[mode].out)).get_vocab(with_added_tokens=True)
    assert all(new[token] == i for token, i in old.items())
    assert (new["[STOP]"], new["[UNK]"], new["[SPACE]"]) == (0, 1, 2)
    assert new["[am]"] >= len(old)
    check_extension(base_vocab, extended[mode].out)


@pytest.mark.parametrize("mode", MODES)
def test_ids_are_contiguous_and_match_upstreams_row_count(extended, mode):
    report = extended[mode]
    tokenizer = Tokenizer.from_file(str(report.out))
    assert all(tokenizer.id_to_token(i) is not None for i in range(report.new_size))
    assert _xtts_tokenizer(report.out).get_number_tokens() == report.new_size == tokenizer.get_vocab_size()


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_encodes_the_corpus_without_unk(extended, sentences, mode):
    report = extended[mode]
    tokenizer = Tokenizer.from_file(str(report.out))
    for text in TextFrontend(MODES[mode]).batch(sentences):
        ids = _encode_like_xtts(tokenizer, text)
        assert 1 not in ids, text
    assert report.coverage_after == 1.0
    assert report.coverage_before < 0.8  # the base vocab has no Ethiopic letters (and no ə, ɨ, ʼ ...)


@pytest.mark.parametrize("mode", MODES)
def test_round_trip_through_upstream_decode(extended, sentences, mode):
    xtts = _xtts_tokenizer(extended[mode].out)
    for text in TextFrontend(MODES[mode]).batch(sentences[:40]):
        ids = _encode_like_xtts(xtts.tokenizer, text)
        assert xtts.decode(ids) == "[am]" + text


def test_chars_mode_adds_characters_and_the_language_token_only(extended, base_vocab):
    report = extended["chars"]
    assert report.added_merges == 0
    assert report.added_tokens == len(report.added_chars) + 1
    assert 150 < len(report.added_chars) < 350  # a few hundred Ethiopic letters for real Amharic
    assert {"ሀ", "ለ", "ሰ", "ቋ"} <= set(report.added_chars)
    assert "ሐ" not in report.added_chars  # merged into ሀ by the front-end
    data = json.loads(report.out.read_text(encoding="utf-8"))
    am = [t for t in data["added_tokens"] if t["content"] == "[am]"]
    assert am == [{"id": report.new_size - 1, "content": "[am]", "single_word": False, "lstrip": False,
                   "rstrip": False, "normalized": False, "special": True}]  # fmt: skip
    assert data["model"]["vocab"]["[am]"] == report.new_size - 1


def test_bpe_compresses_and_keeps_merge_format_and_pre_tokenizer(extended, base_vocab):
    base = json.loads(base_vocab.read_text(encoding="utf-8"))
    for mode in ("bpe", "ipa"):
        report = extended[mode]
        data = json.loads(report.out.read_text(encoding="utf-8"))
        assert 0 < report.added_merges <= 400
        assert report.tokens_per_char_after < report.tokens_per_char_before
        assert data["model"]["merges"][: len(base["model"]["merges"])] == base["model"]["merges"]
        assert all(isinstance(m, str) and len(m.split(" ")) == 2 for m in data["model"]["merges"])
        assert data["pre_tokenizer"] == base["pre_tokenizer"] and data["normalizer"] == base["normalizer"]
    assert extended["bpe"].tokens_per_char_after < extended["chars"].tokens_per_char_after


def test_pair_merges_stay_pairs(base_vocab, sentences, tmp_path):
    data = json.loads(base_vocab.read_text(encoding="utf-8"))
    data["model"]["merges"] = [m.split(" ") for m in data["model"]["merges"]]
    base = tmp_path / "pairs.json"
    base.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    report = extend_vocab(base, sentences[:50], tmp_path / "out.json", mode="bpe", bpe_size=300)
    merges = json.loads(report.out.read_text(encoding="utf-8"))["model"]["merges"]
    assert report.added_merges > 0 and all(isinstance(m, list) and len(m) == 2 for m in merges)


def test_added_tokens_missing_from_model_vocab_are_pinned(base_vocab, sentences, tmp_path):
    """tokenizers gives an added token that model.vocab lacks a fresh id on load; appending to
    model.vocab would move it. The real id must be pinned (research notes §4.1, rule 5)."""
    data = json.loads(base_vocab.read_text(encoding="utf-8"))
    last = max(data["added_tokens"], key=lambda t: t["id"])
    del data["model"]["vocab"][last["content"]]
    last["id"] = 9999  # tokenizers ignores it: the token loads as id len(model.vocab)
    base = tmp_path / "unpinned.json"
    base.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    real_id = Tokenizer.from_file(str(base)).token_to_id(last["content"])
    assert real_id == len(data["model"]["vocab"])
    report = extend_vocab(base, sentences[:30], tmp_path / "out.json", mode="chars")
    assert Tokenizer.from_file(str(report.out)).token_to_id(last["content"]) == real_id
    assert json.loads(report.out.read_text(encoding="utf-8"))["model"]["vocab"][last["content"]] == real_id


def test_check_extension_rejects_moves_gaps_and_shared_ids():
    old = {"[STOP]": 0, "[UNK]": 1, "[SPACE]": 2, "a": 3}
    check_extension(old, {**old, "ሀ": 4, "[am]": 5})
    with pytest.raises(ValueError, match=r"'a': 3 -> 5"):
        check_extension(old, {**old, "a": 5, "ሀ": 3})
    with pytest.raises(ValueError, match="contiguously from 4"):
        check_extension(old, {**old, "ሀ": 5})
    with pytest.raises(ValueError, match="share the id"):
        check_extension(old, {**old, "ሀ": 4, "ለ": 4})


def test_report_prints(extended):
    text = str(extended["bpe"])
    assert "coverage (characters not [UNK])" in text and "-> 100.00%" in text
    assert f"+{extended['bpe'].added_tokens}" in text


def test_bad_arguments_say_what_to_do(base_vocab, tmp_path):
    with pytest.raises(ValueError, match="g2p='hybrid'"):
        extend_vocab(base_vocab, ["ሰላም"], tmp_path / "x.json", mode="ipa")
    with pytest.raises(ValueError, match="chars, bpe, ipa"):
        extend_vocab(base_vocab, ["ሰላም"], tmp_path / "x.json", mode="words")
    with pytest.raises(ValueError, match="empty"):
        extend_vocab(base_vocab, ["", "  "], tmp_path / "x.json")


# -------------------------------------------------------------------------------------- the CLI script


def _script():
    spec = importlib.util.spec_from_file_location("extend_vocab_script", REPO / "scripts" / "extend_vocab.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_reads_text_csv_and_parquet_corpora(base_vocab, sentences, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    script = _script()
    txt = tmp_path / "corpus.txt"
    txt.write_text("\n".join(sentences[:20]) + "\n\n", encoding="utf-8")
    csv_file = tmp_path / "metadata_train.csv"
    csv_file.write_text(
        "audio_file|text|speaker_name\n" + "".join(f'wavs/{i}.wav|"{s}"|am\n' for i, s in enumerate(sentences[:20])),
        encoding="utf-8",
    )
    parquet = tmp_path / "parquet" / "train"
    parquet.mkdir(parents=True)
    pq.write_table(pa.table({"text": sentences[:20], "id": list(range(20))}), parquet / "part-0.parquet")
    for corpus in (txt, csv_file, parquet.parent):
        assert script.read_corpus(corpus) == sentences[:20]

    out = tmp_path / "out.json"
    assert script.main(["--base-vocab", str(base_vocab), "--corpus", str(csv_file), "--out", str(out),
                        "--mode", "bpe", "--bpe-size", "300"]) == 0  # fmt: skip
    assert "vocab extension (bpe)" in capsys.readouterr().out
    check_extension(base_vocab, out)


def test_script_errors_name_the_file(tmp_path):
    script = _script()
    bad = tmp_path / "bad.csv"
    bad.write_text("wav|transcript\na.wav|ሰላም\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.csv: a '\|' CSV needs a header naming a 'text' column"):
        script.read_corpus(bad)
    with pytest.raises(FileNotFoundError, match="no such corpus"):
        script.read_corpus(tmp_path / "missing.txt")
