"""Inference on an export with upstream XTTS code: load strictly, apply the training front-end, speak."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def load_export(export_dir: str | Path, device: str = "cpu"):
    """Upstream `Xtts` loaded from an export with strict=True, and the front-end settings it was trained with."""
    from TTS.tts.models.xtts import Xtts

    from amh.xtts.language import load_frontend_settings, register
    from amh.xtts.release import load_xtts_config

    export_dir = Path(export_dir)
    settings = load_frontend_settings(export_dir / "frontend.json")
    register(settings)
    config = load_xtts_config(export_dir / "config.json")
    model = Xtts(config)
    model.load_checkpoint(config, checkpoint_dir=str(export_dir), eval=True, strict=True)
    return model.to(device), settings


def synthesize(model, settings, text: str, speaker_wav: str | Path, *, temperature: float = 0.7) -> tuple[np.ndarray, int]:
    if not Path(speaker_wav).is_file():
        raise FileNotFoundError(f"speaker wav {speaker_wav} does not exist (give a 3-30 s clip of the target voice)")
    latents, speaker = model.get_conditioning_latents(audio_path=[str(speaker_wav)])
    out = model.inference(text, settings.language, latents, speaker, temperature=temperature,
                          enable_text_splitting=False)
    return np.asarray(out["wav"], dtype=np.float32), int(model.config.audio.output_sample_rate)


class EvalSynthesizer:
    """Speaks the configured test sentences with the weights being trained, for TensorBoard.

    A separate inference `Xtts` (HiFi-GAN and mel_stats from the release) on the main process: at
    each eval it takes the current GPT weights, so training modules are never re-wired for
    generation (upstream's test_run adds inference-only keys to the trained GPT's state dict).
    """

    def __init__(self, release_dir: Path, vocab: Path, sentences: list[str], language: str, device):
        from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
        from TTS.tts.models.xtts import Xtts

        from amh.xtts.release import load_checkpoint_state, load_xtts_config

        config = load_xtts_config(Path(release_dir) / "config.json")
        config.model_args.tokenizer_file = str(vocab)
        self.model = Xtts(config)
        self.model.tokenizer = VoiceBpeTokenizer(str(vocab))
        self.model.init_models()
        base = {k: v for k, v in load_checkpoint_state(Path(release_dir) / "model.pth").items() if not k.startswith("gpt.")}
        missing, unexpected = self.model.load_state_dict(base, strict=False)
        if unexpected or any(not k.startswith("gpt.") for k in missing):
            raise ValueError(f"{release_dir}: vocoder weights do not fit: unexpected {unexpected[:3]}, missing {missing[:3]}")
        self.model.to(device).eval()
        self.model.gpt.init_gpt_for_inference(kv_cache=True)
        self.model.gpt.eval()
        self.sentences = sentences
        self.language = language
        self.sample_rate = int(config.audio.output_sample_rate)

    @torch.no_grad()
    def __call__(self, gpt: torch.nn.Module, speaker_wav: Path, seed: int = 0) -> list[np.ndarray]:
        # The inference GPT wraps the same modules with generation-only ones (gpt_inference.*, wte),
        # which the trained state lacks; everything else must match.
        missing, unexpected = self.model.gpt.load_state_dict(gpt.state_dict(), strict=False)
        missing = [k for k in missing if not k.startswith(("gpt_inference.", "gpt.wte."))]
        if missing or unexpected:
            raise ValueError(f"test-sentence synthesis: GPT weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
        latents, speaker = self.model.get_conditioning_latents(audio_path=[str(speaker_wav)])
        wavs = []
        device = next(self.model.parameters()).device
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # generation must not move the training RNG
            torch.manual_seed(seed)
            for text in self.sentences:
                out = self.model.inference(text, self.language, latents, speaker, temperature=0.7,
                                           enable_text_splitting=False)
                wavs.append(np.asarray(out["wav"], dtype=np.float32))
        return wavs
