"""amh-xtts: fine-tune Coqui XTTS v2 on Amharic."""

from amh.xtts.load import load_tts  # noqa: E402 - the one-line way to use an export (imports TTS only when called)

__all__ = ["load_tts"]
