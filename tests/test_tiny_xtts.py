"""The tiny release has the real release's layout and loads in upstream XTTS code unchanged."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

DATA = Path(__file__).parent / "data"


def _load_upstream(release: Path):
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts

    config = XttsConfig()
    config.load_json(str(release / "config.json"))
    model = Xtts.init_from_config(config)
    model.load_checkpoint(config, checkpoint_dir=str(release), eval=True, strict=True)
    return model


def _layer_pattern(key: str) -> str:
    return re.sub(r"^gpt\.gpt\.h\.\d+\.", "gpt.gpt.h.*.", key)


def test_files_of_the_real_release(tiny_release):
    names = {p.name for p in tiny_release.iterdir() if not p.name.startswith(".")}
    assert names == {"model.pth", "config.json", "vocab.json", "dvae.pth", "mel_stats.pth"}
    ckpt = torch.load(tiny_release / "model.pth", weights_only=True)
    assert set(ckpt) == {"config", "model"}
    assert isinstance(ckpt["config"], dict)
    mel_stats = torch.load(tiny_release / "mel_stats.pth", weights_only=True)
    assert mel_stats.shape == (80,) and bool((mel_stats > 0).all())
    assert torch.equal(ckpt["model"]["mel_stats"].float(), mel_stats)


def test_vocab_has_the_real_special_ids(tiny_release):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny_release / "vocab.json"))
    assert tok.token_to_id("[STOP]") == 0
    assert tok.token_to_id("[UNK]") == 1
    assert tok.token_to_id("[SPACE]") == 2
    assert tok.token_to_id("[START]") is not None and tok.token_to_id("[en]") is not None
    # Ids are contiguous: every id below the row count has a token.
    n = max(tok.get_vocab().values()) + 1
    assert all(tok.id_to_token(i) is not None for i in range(n))


def test_key_set_equals_the_real_manifest_modulo_layer_count(tiny_release):
    manifest = json.loads((DATA / "xtts_v2_state_dict_manifest.json").read_text())
    assert len(manifest) == 963
    assert sum(k.startswith("gpt.") for k in manifest) == 426
    assert sum(k.startswith("hifigan_decoder.") for k in manifest) == 536
    assert manifest["gpt.text_embedding.weight"] == [6681, 1024]
    tiny = torch.load(tiny_release / "model.pth", weights_only=True)["model"]
    assert {_layer_pattern(k) for k in tiny} == {_layer_pattern(k) for k in manifest}
    # HiFi-GAN is not shrinkable through the config: its shapes are the real ones, except the
    # input conv, which takes the GPT's (tiny) width.
    for key, shape in manifest.items():
        if key.startswith("hifigan_decoder.") and key != "hifigan_decoder.waveform_decoder.conv_pre.weight":
            assert list(tiny[key].shape) == shape, key


def test_thirty_layer_variant_has_exactly_the_real_key_set(tmp_path):
    from amh.fixtures.tiny_xtts import TinySpec, build_tiny_xtts, tiny_vocab

    (tmp_path / "vocab.json").write_text(json.dumps(tiny_vocab()))
    model, _ = build_tiny_xtts(tmp_path / "vocab.json", TinySpec(layers=30))
    manifest = json.loads((DATA / "xtts_v2_state_dict_manifest.json").read_text())
    assert set(model.state_dict()) == set(manifest)


def test_dvae_matches_the_real_dvae_keys(tiny_release):
    manifest = json.loads((DATA / "dvae_state_dict_manifest.json").read_text())
    dvae = torch.load(tiny_release / "dvae.pth", weights_only=True)
    # The real dvae.pth lacks the discrete_loss buffers too (upstream loads it with strict=False).
    expected = {k for k in manifest if not k.startswith("discrete_loss.")}
    assert set(dvae) == expected


def test_weights_at_gpt2_scale(tiny_release):
    sd = torch.load(tiny_release / "model.pth", weights_only=True)["model"]
    std = sd["gpt.text_embedding.weight"].float().std().item()
    assert 0.018 < std < 0.022  # far from upstream's std-1 new rows and the seed's 1e-4


def test_upstream_loads_strictly_and_runs_inference(tiny_release, tmp_path):
    before = (tiny_release / "model.pth").stat().st_mtime_ns
    model = _load_upstream(tiny_release)
    ref = tmp_path / "ref.wav"
    sf.write(ref, (np.random.default_rng(0).standard_normal(22050 * 3) * 0.1).astype("float32"), 22050)
    latents, speaker = model.get_conditioning_latents(audio_path=[str(ref)])
    torch.manual_seed(0)
    out = model.inference("hello there", "en", latents, speaker, temperature=0.7)
    wav = np.asarray(out["wav"])
    assert wav.ndim == 1 and wav.size > 0 and np.isfinite(wav).all()
    # Upstream rewrites model.pth when its config is a pickled object; ours is a dict, so it must not.
    assert (tiny_release / "model.pth").stat().st_mtime_ns == before


def test_making_is_cached(tiny_release):
    from amh.fixtures.tiny_xtts import make_tiny_release

    before = (tiny_release / "model.pth").stat().st_mtime_ns
    make_tiny_release(tiny_release)
    assert (tiny_release / "model.pth").stat().st_mtime_ns == before
