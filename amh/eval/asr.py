"""Speech recognisers that transcribe synthesised speech: `transcribe(wavs, sample_rate) -> texts`.

- `TransformersRecognizer`: a Hugging Face speech-recognition checkpoint (Hub id or local folder),
  run by the `transformers` ASR pipeline. CTC models (wav2vec2 / MMS) and Whisper are told the
  language their own way: MMS loads the language's adapter and vocabulary (`target_lang="amh"`),
  Whisper is forced to transcribe in it (`generate_kwargs={"language": "am"}`).
  The project default, `facebook/mms-1b-all` with the `amh` adapter, is argued in docs/evaluation.md.
- `PocketsphinxRecognizer`: CMU PocketSphinx with the US-English model shipped inside its wheel,
  fully offline; with `vocabulary` it decodes a free loop over those words instead of its general
  language model (how the offline tests prove the CER/WER plumbing on espeak-ng speech).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import soxr

from amh.text.frontend import canonical_language

# Shorter clips are transcribed as "" without running a model: a wav2vec2 feature encoder needs at
# least 400 samples, and a model that spoke nothing has said no words.
MIN_SECONDS = 0.05


class Recognizer(Protocol):
    name: str

    def transcribe(self, wavs: Sequence[np.ndarray], sample_rate: int) -> list[str]: ...


def _mono_float32(wav: np.ndarray, sample_rate: int, target_rate: int) -> np.ndarray:
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise ValueError(f"expected a mono waveform (1-D array), got shape {wav.shape}")
    return soxr.resample(wav, sample_rate, target_rate) if sample_rate != target_rate else wav


class TransformersRecognizer:
    """A `transformers` ASR checkpoint: `model` is a Hub id ("facebook/mms-1b-all") or a local folder.

    `language` is the ISO 639-3 code MMS names its adapters by ("amh"); for Whisper it is turned
    into Whisper's code ("am"). Weights are fetched from the Hub by `from_pretrained` when `model`
    is not a local folder (set HF_HUB_OFFLINE=1 to forbid that).
    """

    def __init__(self, model: str, language: str = "amh", *, device: str = "cpu", batch_size: int = 1):
        from transformers import AutoConfig, AutoModelForCTC, AutoModelForSpeechSeq2Seq, AutoProcessor, pipeline

        try:
            config = AutoConfig.from_pretrained(model)
        except OSError as err:  # a missing folder or an unreachable Hub: the user's to fix, in one line
            from amh.errors import UserError

            first = str(err).strip().splitlines()[0]
            hint = " (`make fixtures` builds the demo's)" if "tiny_mms" in model else ""
            raise UserError(f"ASR model {model!r} (eval.asr_model, --asr-model) is neither a local checkpoint folder "
                            f"nor a Hub id that can be fetched from here{hint}; or set eval.enabled=false: {first}") from None
        processor = AutoProcessor.from_pretrained(model)
        self.generate_kwargs: dict = {}
        if config.model_type == "whisper":
            network = AutoModelForSpeechSeq2Seq.from_pretrained(model)
            self.generate_kwargs = {"language": canonical_language(language), "task": "transcribe"}
        else:
            adapters = getattr(config, "adapter_attn_dim", None) is not None
            # MMS: one shared encoder, a small adapter + CTC head per language. The head's size
            # differs from the default ("eng") one, hence ignore_mismatched_sizes (the MMS recipe).
            extra = dict(target_lang=language, ignore_mismatched_sizes=True) if adapters else {}
            network = AutoModelForCTC.from_pretrained(model, **extra)
            if adapters:
                processor.tokenizer.set_target_lang(language)
        self.pipeline = pipeline("automatic-speech-recognition", model=network.eval(), tokenizer=processor.tokenizer,
                                 feature_extractor=processor.feature_extractor, device=device)
        # Like the eval synthesizer, the model (~4 GB for mms-1b-all) lives on the CPU and visits the
        # training device only while it transcribes, so it takes no accelerator memory from training.
        network.to("cpu")
        self.sample_rate = int(processor.feature_extractor.sampling_rate)
        self.batch_size = batch_size
        self.name = f"transformers:{model}:{language}"

    def transcribe(self, wavs: Sequence[np.ndarray], sample_rate: int) -> list[str]:
        inputs = [_mono_float32(w, sample_rate, self.sample_rate) for w in wavs]
        texts = [""] * len(inputs)
        todo = [i for i, w in enumerate(inputs) if w.size >= MIN_SECONDS * self.sample_rate]
        if not todo:
            return texts
        kwargs = {"generate_kwargs": self.generate_kwargs} if self.generate_kwargs else {}
        self.pipeline.model.to(self.pipeline.device)
        try:
            # The default batch size 1 keeps a clip's transcript independent of the clips it is batched
            # with (padding changes a wav2vec2 model's output); batch_size > 1 trades that for speed.
            outputs = self.pipeline([{"raw": inputs[i], "sampling_rate": self.sample_rate} for i in todo],
                                    batch_size=self.batch_size, **kwargs)
        finally:
            self.pipeline.model.to("cpu")
        for i, out in zip(todo, outputs):
            texts[i] = out["text"].strip()
        return texts


class PocketsphinxRecognizer:
    """PocketSphinx's shipped US-English recogniser; `vocabulary` restricts it to a loop over those words."""

    sample_rate = 16000

    def __init__(self, vocabulary: Sequence[str] | None = None):
        from pocketsphinx import Decoder

        # logfn: PocketSphinx logs every utterance to stderr otherwise.
        self.decoder = Decoder(samprate=self.sample_rate, logfn="/dev/null")
        self.name = "pocketsphinx:en-us"
        if vocabulary is not None:
            words = sorted({w.lower() for w in vocabulary})
            unknown = [w for w in words if self.decoder.lookup_word(w) is None]
            if unknown or not words:
                raise ValueError(f"pocketsphinx vocabulary: {unknown or 'no words'} not in its en-us dictionary; "
                                 "give plain English words")
            grammar = "#JSGF V1.0;\ngrammar words;\npublic <utterance> = ( " + " | ".join(words) + " )* ;\n"
            self.decoder.add_jsgf_string("words", grammar)
            self.decoder.activate_search("words")
            self.name += f":{len(words)}-word loop"

    def transcribe(self, wavs: Sequence[np.ndarray], sample_rate: int) -> list[str]:
        texts = []
        for wav in wavs:
            pcm = _mono_float32(wav, sample_rate, self.sample_rate)
            self.decoder.start_utt()
            self.decoder.process_raw((np.clip(pcm, -1, 1) * 32767).astype(np.int16).tobytes(), full_utt=True)
            self.decoder.end_utt()
            hyp = self.decoder.hyp()
            texts.append(hyp.hypstr.strip() if hyp is not None else "")
        return texts


def build_recognizer(backend: str, model: str, language: str, *, device: str = "cpu") -> Recognizer:
    """The recogniser `eval.asr_backend` names ("transformers" or "pocketsphinx")."""
    if backend == "transformers":
        if Path(model).suffix in (".pt", ".pth", ".bin", ".safetensors"):
            raise ValueError(f"eval.asr_model={model!r}: give the checkpoint's folder or Hub id, not one weights file")
        return TransformersRecognizer(model, language, device=device)
    if backend == "pocketsphinx":  # its general US-English language model; `model` and `language` unused
        return PocketsphinxRecognizer()
    raise ValueError(f"eval.asr_backend={backend!r}: choose 'transformers' or 'pocketsphinx'")

