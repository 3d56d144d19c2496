"""amh.load_tts: an export as a ready upstream TTS object that speaks "am" (no registration by hand)."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

import amh
from amh.xtts.language import registered_settings, unregister
from exports import make_export


@pytest.fixture(autouse=True)
def upstream_after():
    """Each test starts and ends with upstream's tokenizer (other test modules expect it)."""
    unregister()
    yield
    unregister()


@pytest.fixture(scope="module")
def export(tiny_release, demo_vocab, tmp_path_factory):
    return make_export(tiny_release, demo_vocab, tmp_path_factory.mktemp("load_tts") / "export")


@pytest.fixture
def reference(demo_corpus):
    return sorted((demo_corpus / "ready" / "wavs").iterdir())[0]


@pytest.mark.slow
def test_upstream_alone_refuses_am(export, reference, tmp_path):
    """What a user met before: plain TTS(model_path=...) does not know "am"."""
    from TTS.api import TTS

    tts = TTS(model_path=str(export), config_path=str(export / "config.json"), progress_bar=False)
    with pytest.raises(NotImplementedError, match="not supported"):
        tts.tts_to_file(text="ሰላም", language="am", speaker_wav=str(reference), file_path=str(tmp_path / "x.wav"))


@pytest.mark.slow
def test_load_tts_speaks_amharic_to_a_file(export, reference, tmp_path):
    from TTS.api import TTS

    tts = amh.load_tts(export, device="cpu")
    assert isinstance(tts, TTS) and "am" in tts.languages
    assert registered_settings().to_dict() == amh.xtts.language.load_frontend_settings(export / "frontend.json").to_dict()
    torch.manual_seed(0)
    out = tts.tts_to_file(text="ሰላም፣ እንዴት ነህ? 25 ብር", language="am", speaker_wav=str(reference),
                          file_path=str(tmp_path / "hello.wav"))
    wav, sr = sf.read(out)
    assert sr == 24000 and wav.size > 2400 and np.isfinite(wav).all()
    # The XTTS model behind it was loaded strictly from the export's weights.
    state = torch.load(export / "model.pth", weights_only=True)["model"]
    model = tts.synthesizer.tts_model
    torch.testing.assert_close(model.gpt.text_embedding.weight, state["gpt.text_embedding.weight"])


def test_load_tts_names_what_is_missing(tmp_path):
    broken = tmp_path / "export"
    broken.mkdir()
    for name in ("model.pth", "config.json", "vocab.json"):
        (broken / name).write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"missing frontend\.json.*scripts/export\.py"):
        amh.load_tts(broken)
