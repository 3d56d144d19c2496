"""Teach upstream XTTS the language "am" (alias "amh") through the Amharic text front-end.

`register(settings)` patches `TTS.tts.layers.xtts.tokenizer.VoiceBpeTokenizer` at class level, so the
tokenizer that `Xtts.load_checkpoint` creates gets it too: `encode(text, "am")` (or "amh", "am-ET") runs
the front-end and emits the `[am]` token; every other language goes to the original methods. Upstream
raises NotImplementedError for "am" otherwise, and XTTSDataset silently drops such samples.

The class attribute `_amh_frontend` is the one piece of global state this project keeps: upstream looks
methods up on the class, so that is where the settings must live. Registering again replaces the settings;
`unregister()` restores upstream.
"""
from __future__ import annotations

import json
from pathlib import Path

from amh.text.frontend import LANGUAGE, FrontendSettings, TextFrontend, canonical_language

__all__ = ["canonical_language", "load_frontend_settings", "register", "save_frontend_settings", "unregister"]

LANGUAGE_TOKEN = f"[{LANGUAGE}]"
# Upstream's per-language warning limit (characters per chunk, xtts.inference's sentence splitting).
# Each Ethiopic letter is a syllable, about two Latin letters, hence Hindi's/Arabic's range, not 250.
CHAR_LIMIT = 150
_PATCHED = ("__init__", "encode", "preprocess_text")


def _tokenizer_class():
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

    return VoiceBpeTokenizer


def _original(cls, name: str):
    return cls._amh_originals[name]


def _init(self, *args, **kwargs):
    _original(type(self), "__init__")(self, *args, **kwargs)
    for code in ("am", "amh"):  # xtts.inference indexes char_limits with the code the caller gave
        self.char_limits.setdefault(code, CHAR_LIMIT)


def _preprocess_text(self, txt, lang):
    if canonical_language(lang) == LANGUAGE:
        return type(self)._amh_frontend(txt)
    return _original(type(self), "preprocess_text")(self, txt, lang)


def _encode(self, txt, lang):
    if canonical_language(lang) != LANGUAGE:
        return _original(type(self), "encode")(self, txt, lang)
    if self.tokenizer.token_to_id(LANGUAGE_TOKEN) is None:
        raise ValueError(
            f"this vocab.json has no {LANGUAGE_TOKEN} token, so XTTS cannot be told the language; extend it "
            "first: python scripts/extend_vocab.py --base-vocab VOCAB --corpus CORPUS --out NEW_VOCAB"
        )
    self.check_input_length(txt, LANGUAGE)
    txt = self.preprocess_text(txt, LANGUAGE)
    # As upstream encode: language token first, spaces as the [SPACE] token.
    txt = f"{LANGUAGE_TOKEN}{txt}".replace(" ", "[SPACE]")
    return self.tokenizer.encode(txt).ids


def register(settings: FrontendSettings = FrontendSettings()) -> None:
    """Make upstream VoiceBpeTokenizer encode Amharic through `TextFrontend(settings)`.

    Idempotent; a second call with other settings replaces them. Call it before the model (and so its
    tokenizer) is created, so that the tokenizer's `char_limits` knows "am".
    """
    if not isinstance(settings, FrontendSettings):
        raise TypeError(f"register() expects FrontendSettings, got {type(settings).__name__}")
    cls = _tokenizer_class()
    if "_amh_originals" not in cls.__dict__:
        cls._amh_originals = {name: cls.__dict__[name] for name in _PATCHED}
        cls.__init__, cls.encode, cls.preprocess_text = _init, _encode, _preprocess_text
    cls._amh_frontend = TextFrontend(settings)


def unregister() -> None:
    """Restore upstream's methods (for tests and for processes that switch projects)."""
    cls = _tokenizer_class()
    originals = cls.__dict__.get("_amh_originals")
    if originals is None:
        return
    for name, method in originals.items():
        setattr(cls, name, method)
    del cls._amh_originals
    del cls._amh_frontend


def registered_settings() -> FrontendSettings | None:
    """The settings of the current registration, or None."""
    frontend = _tokenizer_class().__dict__.get("_amh_frontend")
    return frontend.settings if frontend is not None else None


def save_frontend_settings(settings: FrontendSettings, path: str | Path) -> Path:
    """Write `settings.to_dict()` as JSON (an export's frontend.json)."""
    path = Path(path)
    text = json.dumps(settings.to_dict(), ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


def load_frontend_settings(path: str | Path) -> FrontendSettings:
    """Read a frontend.json written by `save_frontend_settings`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no front-end settings; an export made by this project has frontend.json next to model.pth"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return FrontendSettings.from_dict(data)
    except (json.JSONDecodeError, ValueError, TypeError) as e:
        raise ValueError(f"{path}: invalid front-end settings: {e}") from e
