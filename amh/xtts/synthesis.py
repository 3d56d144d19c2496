"""Inference on an export with upstream XTTS code: load strictly, apply the training front-end, speak."""
from __future__ import annotations

from pathlib import Path

import numpy as np


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
