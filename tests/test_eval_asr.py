"""amh.eval.asr: real recognisers on real speech (PocketSphinx's shipped English model), and the
Amharic transformers path (MMS layout, adapter + per-language vocab) wired through a tiny random model."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from amh.eval.asr import PocketsphinxRecognizer, build_recognizer
from amh.eval.score import error_rates
from amh.eval.text import scoring_text
from eval_audio import espeak, noise

FIXTURES = Path(os.environ.get("AMH_FIXTURES_DIR", Path(__file__).resolve().parent.parent / "build" / "fixtures"))

ENGLISH = ["the weather is nice today", "please open the door", "i would like a cup of coffee",
           "my brother reads a book every night", "the train leaves at seven"]
# The recogniser decodes a loop over these words: the sentences' own and as many distractors.
DISTRACTORS = "yes no water house green small big run walk window sister morning bread river".split()


@pytest.fixture(scope="module")
def english_speech():
    return [espeak(text, "en-us+f3") for text in ENGLISH]


@pytest.fixture(scope="module")
def sphinx():
    words = {w for s in ENGLISH for w in s.split()} | set(DISTRACTORS)
    return PocketsphinxRecognizer(sorted(words))


def corpus_rates(recognizer, texts, clips):
    heard = [recognizer.transcribe([wav], sr)[0] for wav, sr in clips]
    return error_rates([scoring_text(t) for t in texts], [scoring_text(h) for h in heard]), heard


def test_pocketsphinx_reading_scores_far_better_than_wrong_sentence_or_noise(sphinx, english_speech):
    (cer, wer), heard = corpus_rates(sphinx, ENGLISH, english_speech)
    # Each reference scored against the speech of the next sentence: the same audio, wrong text.
    (cer_wrong, wer_wrong), _ = corpus_rates(sphinx, ENGLISH, english_speech[1:] + english_speech[:1])
    (cer_noise, wer_noise), _ = corpus_rates(sphinx, ENGLISH, [(noise(2.0, 16000, seed=i), 16000) for i in range(5)])
    print(f"heard {heard}\nclean CER {cer:.2f} WER {wer:.2f}; wrong CER {cer_wrong:.2f} WER {wer_wrong:.2f}; "
          f"noise CER {cer_noise:.2f} WER {wer_noise:.2f}")
    assert wer < 0.4 and cer < 0.3
    assert wer_wrong > 0.8 and cer_wrong > 0.6
    assert wer_noise > 0.9 and cer_noise > 0.8
    assert cer < cer_wrong / 2 and cer < cer_noise / 2


def test_pocketsphinx_vocabulary_must_be_in_its_dictionary():
    with pytest.raises(ValueError, match="qzxv"):
        PocketsphinxRecognizer(["hello", "qzxv"])


@pytest.fixture(scope="module")
def tiny_mms() -> Path:
    from amh.fixtures.tiny_mms import make_tiny_mms

    return make_tiny_mms(FIXTURES / "tiny_mms")


def test_mms_layout_loads_the_amharic_adapter_and_vocab(tiny_mms):
    from amh.fixtures.tiny_mms import AMHARIC, SPECIAL

    recognizer = build_recognizer("transformers", str(tiny_mms), "amh")
    model = recognizer.pipeline.model
    vocab = json.loads((tiny_mms / "vocab.json").read_text(encoding="utf-8"))
    # Loaded as for facebook/mms-1b-all: the "amh" head replaced the default "eng" one.
    assert model.target_lang == "amh"
    assert model.lm_head.out_features == len(vocab["amh"]) == len(SPECIAL) + len(AMHARIC) != len(vocab["eng"])
    assert recognizer.pipeline.tokenizer.get_vocab().keys() == vocab["amh"].keys()
    assert recognizer.sample_rate == 16000


def test_mms_transcribes_at_any_rate_in_ethiopic_letters(tiny_mms):
    recognizer = build_recognizer("transformers", str(tiny_mms), "amh")
    clips = [noise(1.5, 24000, seed=1), noise(2.0, 24000, seed=2), np.zeros(100, np.float32)]
    texts = recognizer.transcribe(clips, 24000)
    assert texts[0] and texts[1] and texts[2] == ""  # a clip too short to hold a word is heard as nothing
    assert all(0x1200 <= ord(c) <= 0x137F or c == " " for c in texts[0] + texts[1])
    assert recognizer.transcribe(clips[:1], 24000) == texts[:1]  # deterministic, independent of its batch


def test_asr_model_that_is_not_there_is_named_in_one_line():
    from amh.errors import UserError

    with pytest.raises(UserError, match=r"'build/fixtures/no_such_model' \(eval\.asr_model.*eval.enabled=false"):
        build_recognizer("transformers", "build/fixtures/no_such_model", "amh")
    with pytest.raises(ValueError, match="eval.asr_backend"):
        build_recognizer("kaldi", "x", "amh")

