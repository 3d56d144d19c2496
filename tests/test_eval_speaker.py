"""amh.eval.speaker: Resemblyzer's shipped encoder tells espeak-ng voices apart; the x-vector path loads."""
from __future__ import annotations

import numpy as np
import pytest

from amh.eval.speaker import ResemblyzerEncoder, TransformersXVector, build_speaker_encoder, cosine_similarity
from eval_audio import espeak

A = "ዛሬ ጠዋት ገበያ ሄጄ ሽንኩርትና ቲማቲም ገዛሁ፤ ከዚያም ወደ ቤት ተመለስኩ።"
B = "ነገ ከሰዓት በኋላ ከጓደኞቼ ጋር ኳስ ለመጫወት ወደ ሜዳ እንሄዳለን።"


@pytest.fixture(scope="module")
def encoder():
    return ResemblyzerEncoder()


def test_one_voice_is_more_similar_to_itself_than_to_another(encoder):
    # The demo corpus's voices (amh.fixtures.demo_corpus): a male and a female variant of espeak's Amharic.
    emb = {(voice, name): encoder.embed(*espeak(text, voice))
           for voice in ("am+m3", "am+f3") for name, text in (("A", A), ("B", B))}
    same = [cosine_similarity(emb[(v, "A")], emb[(v, "B")]) for v in ("am+m3", "am+f3")]
    different = [cosine_similarity(emb[("am+m3", a)], emb[("am+f3", b)]) for a, b in (("A", "B"), ("B", "A"))]
    print(f"same voice {same}, different voices {different}")
    assert min(same) > max(different) + 0.15
    assert all(np.isclose(np.linalg.norm(e), 1.0, atol=1e-4) for e in emb.values())


def test_silence_has_no_voice(encoder):
    voice = encoder.embed(*espeak(A, "am"))
    silent = encoder.embed(np.zeros(48000, np.float32), 16000)
    assert not silent.any() and cosine_similarity(voice, silent) == 0.0


def test_cosine_similarity():
    assert cosine_similarity(np.array([1.0, 0.0]), np.array([2.0, 0.0])) == pytest.approx(1.0)
    assert cosine_similarity(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == pytest.approx(0.0)
    assert cosine_similarity(np.array([1.0, 1.0]), np.array([-1.0, -1.0])) == pytest.approx(-1.0)


def test_transformers_xvector_loads_by_the_hub_code_path(tmp_path):
    """A tiny random x-vector model saved like a Hub checkpoint, loaded by the code that loads
    microsoft/wavlm-base-plus-sv; its embeddings are unit vectors of the configured size."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForXVector

    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                            tdnn_dim=(16, 16, 16, 16, 32), xvector_output_dim=24)
    Wav2Vec2ForXVector(config).save_pretrained(tmp_path)
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(tmp_path)
    encoder = build_speaker_encoder("transformers", str(tmp_path))
    assert isinstance(encoder, TransformersXVector)
    wav, sr = espeak(A, "am")
    vector = encoder.embed(wav, sr)
    assert vector.shape == (24,) and np.isclose(np.linalg.norm(vector), 1.0, atol=1e-5)
    assert not encoder.embed(np.zeros(sr, np.float32), sr).any()
    with pytest.raises(ValueError, match="eval.speaker_model"):
        build_speaker_encoder("transformers", None)
