"""Upstream XTTS learns "am" (alias "amh") through amh.xtts.register; front-end settings round-trip."""
import json

import pytest

from amh.text.frontend import FrontendSettings, canonical_language
from amh.xtts.vocab import extend_vocab
from amh.xtts import register
from amh.xtts.language import load_frontend_settings, registered_settings, save_frontend_settings, unregister

SENTENCES = [
    "ሰላም፡ለዓለም፡ሁሉ፡ይሁን።",
    "ዶ/ር አበራ በ፲፱፻፹፯ ዓ.ም ተወለዱ።",
    "ዳቦው 15 ብር ከ50 ሳንቲም ነው፤ ውድ አይደለም።",
    "ልጆቹ በ YouTube ላይ የአማርኛ ዘፈኖችን ያዳምጣሉ።",
]


@pytest.fixture(autouse=True)
def upstream_after_each_test():
    yield
    unregister()


@pytest.fixture(scope="module")
def vocab(tiny_release, tmp_path_factory):
    from amh.fixtures.demo_corpus import load_sentences

    out = tmp_path_factory.mktemp("vocab") / "vocab_am.json"
    return extend_vocab(tiny_release / "vocab.json", load_sentences() + SENTENCES, out, mode="bpe", bpe_size=300).out


def _tokenizer_class():
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

    return VoiceBpeTokenizer


def test_upstream_encodes_amharic_with_the_language_token_and_no_unk(vocab):
    register(FrontendSettings())
    tokenizer = _tokenizer_class()(str(vocab))
    am = tokenizer.tokenizer.token_to_id("[am]")
    for text in SENTENCES:
        ids = tokenizer.encode(text, "am")
        assert ids[0] == am and 1 not in ids
        assert tokenizer.encode(text, "amh") == ids == tokenizer.encode(text, "am-ET")
    assert tokenizer.decode(tokenizer.encode(SENTENCES[0], "am")) == "[am]ሰላም ለአለም ሁሉ ይሁን."


def test_other_languages_keep_upstreams_behaviour(vocab):
    before = _tokenizer_class()(str(vocab)).encode("The winter, in 2 days!", "en")
    register(FrontendSettings())
    assert _tokenizer_class()(str(vocab)).encode("The winter, in 2 days!", "en") == before


def test_patch_is_at_class_level_and_reaches_existing_instances(vocab):
    cls = _tokenizer_class()
    created_before = cls(str(vocab))
    with pytest.raises(NotImplementedError):
        created_before.encode("ሰላም", "am")  # upstream without registration
    register(FrontendSettings())
    assert created_before.encode("ሰላም", "am")[0] == created_before.tokenizer.token_to_id("[am]")
    assert {"am", "amh"} <= set(cls(str(vocab)).char_limits)  # new instances (Xtts.load_checkpoint's)


def test_register_is_idempotent_and_replaces_settings(vocab):
    cls = _tokenizer_class()
    upstream_encode = cls.encode
    register(FrontendSettings())
    register(FrontendSettings())
    assert cls._amh_originals["encode"] is upstream_encode
    tokenizer = cls(str(vocab))
    assert tokenizer.preprocess_text("ሰላም።", "amh") == "ሰላም."
    register(FrontendSettings(g2p="rules"))
    assert registered_settings() == FrontendSettings(g2p="rules")
    assert tokenizer.preprocess_text("ሰላም።", "amh") == "səlam."
    unregister()
    assert cls.encode is upstream_encode and registered_settings() is None


def test_a_vocab_without_the_language_token_is_refused(tiny_release):
    register(FrontendSettings())
    tokenizer = _tokenizer_class()(str(tiny_release / "vocab.json"))
    with pytest.raises(ValueError, match=r"no \[am\] token.*extend_vocab\.py"):
        tokenizer.encode("ሰላም", "am")


@pytest.mark.parametrize("code", ["am", "amh", "AM", "am-ET", "amh_Ethi"])
def test_amharic_codes_are_canonical_am(code):
    assert canonical_language(code) == "am"


def test_other_codes_pass_through():
    assert canonical_language("en") == "en" and canonical_language("zh-cn") == "zh-cn"
    with pytest.raises(ValueError):
        canonical_language("")


# --------------------------------------------------------------------------------- settings round trip


def test_frontend_settings_round_trip(tmp_path):
    settings = FrontendSettings(language="amh", g2p="hybrid", homophones=False, extra_abbreviations={"ሆ/ል": "ሆስፒታል"})
    assert settings.language == "am"
    path = save_frontend_settings(settings, tmp_path / "frontend.json")
    assert json.loads(path.read_text(encoding="utf-8"))["extra_abbreviations"] == {"ሆ/ል": "ሆስፒታል"}
    assert load_frontend_settings(path) == settings
    assert FrontendSettings.from_dict(settings.to_dict()) == settings


@pytest.mark.parametrize(
    "data, message",
    [
        ({"g2p": "festival"}, "hybrid, rules, epitran, espeak, transphone"),
        ({"latin": "romanise"}, "keep, drop"),
        ({"language": "ti"}, "Amharic"),
        ({"homophone": True}, "valid keys are language, homophones"),
        ({"expand_numbers": "yes"}, "expected true or false"),
    ],
)
def test_settings_refuse_unknown_values_naming_the_choices(data, message):
    with pytest.raises(ValueError, match=message):
        FrontendSettings.from_dict(data)


def test_load_names_the_file(tmp_path):
    bad = tmp_path / "frontend.json"
    bad.write_text('{"g2p": "festival"}', encoding="utf-8")
    with pytest.raises(ValueError, match="frontend.json: invalid front-end settings"):
        load_frontend_settings(bad)
    with pytest.raises(FileNotFoundError, match="frontend.json next to model.pth"):
        load_frontend_settings(tmp_path / "missing.json")
