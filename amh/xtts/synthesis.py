"""Inference on an export with upstream XTTS code: load strictly, check the inputs, apply the training
front-end, speak (long text in sentence-sized chunks).

Inputs are checked before anything is generated: an empty text or one with no character the model
knows, a speaker clip that cannot be read, is too short, silent or holds NaN, and an output path
soundfile cannot write all raise `SynthesisError`, one line naming the input and the fix.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

# The reference clip: long enough for the conditioning encoder, loud enough to carry a voice
# (the same floor as training's data.min_rms default).
MIN_SPEAKER_SECONDS = 1.0
MIN_SPEAKER_RMS = 1e-3
# Where a chunk may end: after a sentence end (Latin . ! ?, Ethiopic ። full stop, ፧ question mark,
# ፨ paragraph separator, ፤ semicolon); a sentence too long for one chunk is cut after a clause mark
# (፣ comma, ፥ colon, ፦ preface colon, Latin , ; :), then at spaces.
# Latin marks need a space after them, so that "2.5" and "1,000" stay whole.
_CUTS = (re.compile(r"(?<=[.!?])\s+|(?<=[።፧፨፤])\s*"), re.compile(r"(?<=[,;:])\s+|(?<=[፣፥፦])\s*"),
         re.compile(r"\s+"))


class SynthesisError(ValueError):
    """An input synthesis cannot use; the message names it and what to do."""


def load_export(export_dir: str | Path, device: str = "cpu"):
    """Upstream `Xtts` loaded from an export with strict=True, and the front-end settings it was trained with."""
    from TTS.tts.models.xtts import Xtts

    from amh.xtts.language import load_frontend_settings, register
    from amh.xtts.release import load_xtts_config

    export_dir = Path(export_dir)
    missing = [n for n in ("model.pth", "config.json", "vocab.json", "frontend.json") if not (export_dir / n).is_file()]
    if missing:
        raise SynthesisError(f"--export {export_dir}: not an export (no {', '.join(missing)}); train.py writes one "
                             "to OUTPUT_DIR/export")
    settings = load_frontend_settings(export_dir / "frontend.json")
    register(settings)
    config = load_xtts_config(export_dir / "config.json")
    model = Xtts(config)
    model.load_checkpoint(config, checkpoint_dir=str(export_dir), eval=True, strict=True)
    return model.to(device), settings


def check_output(path: str | Path) -> Path:
    """A path soundfile can write, its folder created if missing (so a long synthesis is not lost at the end)."""
    import soundfile as sf

    path = Path(path)
    if path.is_dir():
        raise SynthesisError(f"--out {path}: is a directory; give a file name such as {path / 'speech.wav'}")
    if path.suffix[1:].upper() not in sf.available_formats():
        raise SynthesisError(f"--out {path}: soundfile cannot write {path.suffix or 'a file without extension'!r}; "
                             "use .wav or .flac")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SynthesisError(f"--out {path}: cannot create the folder {path.parent} ({err.strerror})") from None
    return path


def check_speaker_wav(path: str | Path) -> None:
    """The reference clip exists, decodes, and is long, finite and loud enough to condition on."""
    from amh.data.audio import AudioDecodeError, load_audio

    path = Path(path)
    if not path.is_file():
        raise SynthesisError(f"speaker wav {path}: no such file (give a 3-30 s clip of the target voice)")
    rate = 22050  # what upstream's get_conditioning_latents loads at
    try:
        wav = load_audio(str(path), rate)
    except AudioDecodeError as err:
        raise SynthesisError(f"speaker wav {path}: cannot be read as audio ({err})") from None
    bad = int((~np.isfinite(wav)).sum())
    if bad:
        raise SynthesisError(f"speaker wav {path}: {bad} of {wav.size} samples are NaN or infinite; give a clean clip")
    if wav.size < MIN_SPEAKER_SECONDS * rate:
        raise SynthesisError(f"speaker wav {path}: {wav.size / rate:.2f} s is too short "
                             f"(at least {MIN_SPEAKER_SECONDS:g} s, 3-30 s is best)")
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64))))
    if rms < MIN_SPEAKER_RMS:
        raise SynthesisError(f"speaker wav {path}: silent (RMS {rms:.1e} < {MIN_SPEAKER_RMS:g}); give a clip of the voice")


def text_chunks(model, text: str, language: str) -> list[str]:
    """`text` in chunks the model can speak, after checking it has something to say.

    Upstream's `enable_text_splitting` cuts at sentences (spaCy's English sentencizer for every
    language without its own) and merges them up to the language's character limit, but it never
    checks the 400-token limit, where `Xtts.inference` dies on an assertion. Here each chunk must
    fit both: the character limit (`tokenizer.char_limits`, 150 for Amharic) and, counted by the
    tokenizer after the front-end (which expands numbers), fewer than `gpt_max_text_tokens` tokens.
    """
    tokenizer = model.tokenizer
    if not text or not text.strip():
        raise SynthesisError("--text is empty: give the text to speak")
    # As Xtts.inference sees it (lower-cased), through the front-end; every character the BPE
    # vocabulary can spell is one of its tokens, so a character without one comes out as [UNK].
    normalised = tokenizer.preprocess_text(text.strip().lower(), language)
    chars = {c for c in normalised if not c.isspace()}
    unknown = sorted(c for c in chars if tokenizer.tokenizer.token_to_id(c) is None)
    if not chars:
        raise SynthesisError(f"--text {text[:40]!r}: nothing left to say after the text front-end")
    if len(unknown) == len(chars):
        raise SynthesisError(f"--text {text[:40]!r}: no character of it is in the model's vocabulary "
                             f"(unknown: {''.join(unknown[:20])!r}); is it {language!r} text?")
    if unknown:
        log.warning("these characters are not in the model's vocabulary and reach it as [UNK]: %r", "".join(unknown))
    limit = tokenizer.char_limits.get(language, 250)
    max_tokens = int(model.args.gpt_max_text_tokens)

    def fits(chunk: str) -> bool:
        return len(chunk) <= limit and len(tokenizer.encode(chunk.strip().lower(), language)) < max_tokens

    return split_text(text.strip(), fits)


def split_text(text: str, fits: Callable[[str], bool], level: int = 0) -> list[str]:
    """Cut `text` into pieces that each `fits`: at sentence ends first, then clause marks, then spaces,
    merging neighbouring pieces while the merge still fits (as upstream merges sentences). The text
    between the cuts is kept as it was: the chunks put back together are the text."""
    text = text.strip()
    if fits(text):
        return [text]
    if level == len(_CUTS):
        raise SynthesisError(f"--text: the word {text[:40]!r} alone is longer than the model can say; split it")
    ends = [m.end() for m in _CUTS[level].finditer(text) if 0 < m.end() < len(text)]
    pieces = [text[a:b] for a, b in zip([0, *ends], [*ends, len(text)]) if text[a:b].strip()]
    if len(pieces) == 1:
        return split_text(text, fits, level + 1)
    chunks: list[str] = []  # each keeps its trailing space until the end, so merging is concatenation
    for piece in pieces:
        if chunks and fits((chunks[-1] + piece).strip()):
            chunks[-1] += piece
        elif fits(piece.strip()):
            chunks.append(piece)
        else:
            chunks.extend(f"{c} " for c in split_text(piece, fits, level + 1))
    return [c.strip() for c in chunks]


def synthesize(model, settings, text: str, speaker_wav: str | Path, *, temperature: float = 0.7) -> tuple[np.ndarray, int]:
    """Speak `text` in the voice of `speaker_wav`: inputs checked first, long text chunk by chunk, concatenated."""
    check_speaker_wav(speaker_wav)
    chunks = text_chunks(model, text, settings.language)
    if len(chunks) > 1:
        log.info("text split into %d chunks: %s", len(chunks), " | ".join(c[:30] for c in chunks))
    latents, speaker = model.get_conditioning_latents(audio_path=[str(speaker_wav)])
    wavs = [model.inference(chunk, settings.language, latents, speaker, temperature=temperature,
                            enable_text_splitting=False)["wav"] for chunk in chunks]
    return np.concatenate([np.asarray(w, dtype=np.float32).reshape(-1) for w in wavs]), \
        int(model.config.audio.output_sample_rate)


class EvalSynthesizer:
    """Speaks the configured test sentences with the weights being trained, for TensorBoard.

    A separate inference `Xtts` (HiFi-GAN and mel_stats from the release) on the main process: at
    each eval it takes the current GPT weights, so training modules are never re-wired for
    generation (upstream's test_run adds inference-only keys to the trained GPT's state dict).
    It is a whole second model (its own GPT copy, HiFi-GAN, speaker encoder: ~2 GB in fp32 at full
    size), so it lives on the CPU and visits the training device only while it speaks; the memory it
    used there goes back to the caching allocator, for training to reuse.
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
        self.model.eval()
        self.device = torch.device(device)
        self.model.gpt.init_gpt_for_inference(kv_cache=True)
        self.model.gpt.eval()
        self.sentences = sentences
        self.language = language
        self.sample_rate = int(config.audio.output_sample_rate)

    @torch.no_grad()
    def __call__(self, gpt: torch.nn.Module, speaker_wav: Path, seed: int = 0) -> list[np.ndarray]:
        # Moved first, so the trained weights are copied device to device, not through the host.
        self.model.to(self.device)
        try:
            return self._speak(gpt, speaker_wav, seed)
        finally:
            self.model.to("cpu")

    def _speak(self, gpt: torch.nn.Module, speaker_wav: Path, seed: int) -> list[np.ndarray]:
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
