"""amh.xtts.vocab_choice: which vocab a run uses, and errors that name the real cause."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from amh.config import ConfigError, load_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def cfg_with(**overrides):
    return load_config(CONFIGS / "demo.yaml", [f"{k}={v}" for k, v in overrides.items()])


def test_vocab_found_in_the_ready_folder(tmp_path, tiny_release, demo_corpus, demo_vocab):
    from amh.xtts.vocab_choice import choose_vocab

    ready = tmp_path / "ready"
    ready.mkdir()
    shutil.copy(demo_vocab, ready / "vocab_extended_amharic.json")
    assert choose_vocab(cfg_with(**{"data.path": ready}), tiny_release) == ready / "vocab_extended_amharic.json"
    assert choose_vocab(cfg_with(**{"data.path": ready, "model.vocab": demo_vocab}), tiny_release) == demo_vocab


@pytest.mark.parametrize("source", ["ready", "parquet"])
def test_missing_data_path_is_named_not_blamed_on_the_vocab(tmp_path, tiny_release, source):
    """It used to say '<release>/vocab.json: has no [am] token'."""
    from amh.xtts.vocab_choice import choose_vocab

    with pytest.raises(ConfigError) as err:
        choose_vocab(cfg_with(**{"data.source": source, "data.path": tmp_path / "nope"}), tiny_release)
    assert str(err.value) == f"data.path: {str(tmp_path / 'nope')!r} is not a directory (data.source={source} " \
                             "needs a local folder)"


def test_vocab_that_is_not_json_names_the_file_and_position(tmp_path, tiny_release, demo_corpus):
    from amh.xtts.vocab_choice import choose_vocab

    bad = tmp_path / "vocab.json"
    bad.write_text('{"model": {"vocab": {"a": 1,\n  }\n', encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        choose_vocab(cfg_with(**{"data.path": demo_corpus / "ready", "model.vocab": bad}), tiny_release)
    message = str(err.value)
    assert message.startswith(f"{bad}: not a JSON vocab (") and "at line 2 column 3" in message, message
    bad.write_text('{"tokens": []}', encoding="utf-8")
    with pytest.raises(ConfigError, match="JSON, but not a tokenizer vocab.json"):
        choose_vocab(cfg_with(**{"data.path": demo_corpus / "ready", "model.vocab": bad}), tiny_release)


def test_release_vocab_without_the_language_token(tmp_path, tiny_release):
    from amh.xtts.vocab_choice import choose_vocab

    with pytest.raises(ConfigError, match=r"vocab.json: has no \[am\] token"):
        choose_vocab(cfg_with(**{"data.path": tmp_path}), tiny_release)
