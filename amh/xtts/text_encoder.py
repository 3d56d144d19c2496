"""Text -> XTTS token ids through the Amharic front-end, usable inside DataLoader worker processes.

The upstream tokenizer is built lazily in the process that first encodes (and the front-end is
registered there too), so the object pickles as two small values under any start method.
"""
from __future__ import annotations

from pathlib import Path


class TextEncoder:
    def __init__(self, vocab: str | Path, settings):
        self.vocab = str(vocab)
        self.settings = settings
        self._tokenizer = None

    def __getstate__(self) -> dict:
        return {"vocab": self.vocab, "settings": self.settings, "_tokenizer": None}

    def __call__(self, text: str) -> list[int]:
        """Ids without [START]/[STOP] (the GPT adds them); unknown characters come out as [UNK]=1."""
        if self._tokenizer is None:
            from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

            from amh.xtts.language import register

            register(self.settings)
            self._tokenizer = VoiceBpeTokenizer(self.vocab)
        return self._tokenizer.encode(text, self.settings.language)
