"""`load_tts(export_dir)`: an export as a ready upstream `TTS.api.TTS`, the language registered.

    import amh
    tts = amh.load_tts("runs/demo/export")
    tts.tts_to_file(text="ሰላም፣ እንዴት ነህ?", language="am", speaker_wav="ref.wav", file_path="hello.wav")

Upstream alone refuses "am" ("Language 'am' is not supported") because its tokenizer knows only its
own languages: `register` (amh.xtts.language) teaches it the export's front-end first, from the
export's frontend.json, so the text is processed exactly as in training.
"""
from __future__ import annotations

from pathlib import Path

EXPORT_FILES = ("model.pth", "config.json", "vocab.json", "frontend.json")


def check_export(export_dir: str | Path) -> Path:
    """The export folder, or FileNotFoundError naming what is missing and how to make it."""
    export_dir = Path(export_dir)
    missing = [name for name in EXPORT_FILES if not (export_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{export_dir}: not an amh-xtts export (missing {', '.join(missing)}); train.py writes one to "
            "OUTPUT_DIR/export, and `python scripts/export.py --checkpoint OUTPUT_DIR/checkpoints/step_N` "
            "makes one from any checkpoint")
    return export_dir


def load_tts(export_dir: str | Path, device: str | None = None):
    """Upstream `TTS.api.TTS` on the export (Xtts.load_checkpoint, strict), "am" registered.

    `device`: "cuda", "cpu", ... (None: CUDA when available). The XTTS model itself is
    `tts.synthesizer.tts_model`, for `inference(...)` and `get_conditioning_latents(...)`.
    """
    import torch
    from TTS.api import TTS

    from amh.xtts.language import load_frontend_settings, register

    export_dir = check_export(export_dir)
    # Before the model exists: the tokenizer that load_checkpoint creates must know "am" (char_limits).
    register(load_frontend_settings(export_dir / "frontend.json"))
    tts = TTS(model_path=str(export_dir), config_path=str(export_dir / "config.json"), progress_bar=False)
    return tts.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
