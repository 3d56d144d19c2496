"""amh.eval: scoring text, CER/WER, corpus aggregation, the held-out sentence set, config, TensorBoard."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from amh.config import ConfigError, load_config
from amh.eval.score import BEST_METRIC_TAGS, SpeechScorer, Take, error_rates, timed_takes
from amh.eval.sentences import default_sentences_path, load_sentences
from amh.eval.text import scoring_text

REPO = Path(__file__).resolve().parent.parent


def test_both_sides_normalised_so_spelling_numbers_and_punctuation_are_not_errors():
    reference = "ሐኪሙ ለዶ/ር አበበ 25 ብር ከፈለ።"
    transcript = "ሀኪሙ ለዶክተር አበበ ሃያ አምስት ብር ከፈለ"  # another spelling of ሐ, words for digits, no marks
    assert scoring_text(reference) == scoring_text(transcript)
    assert error_rates([scoring_text(reference)], [scoring_text(transcript)]) == (0.0, 0.0)
    assert scoring_text("ነው።ሰላም፣ «እሺ»!") == "ነው ሰላም እሺ"  # a mark between words separates them
    assert scoring_text("The Weather, today!") == "the weather today"


def test_error_rates_are_corpus_level():
    # Words: 1 substitution + 1 deletion over 4 words; characters: b->x and " d" deleted, 3 of 7.
    assert error_rates(["a b c d"], ["a x c"]) == (pytest.approx(3 / 7), 0.5)
    cer, wer = error_rates(["a b c d", "e f"], ["a x c", "e f"])
    assert wer == pytest.approx(2 / 6)  # total edits / total words: not the mean of 0.5 and 0
    assert cer == pytest.approx(3 / 10)
    assert error_rates(["a b"], [""]) == (1.0, 1.0)


class Heard:
    """A recogniser that hears a fixed transcript per clip length (test double)."""

    name = "heard"

    def __init__(self, by_length: dict[int, str]):
        self.by_length = by_length
        self.calls: list[int] = []

    def transcribe(self, wavs, sample_rate):
        self.calls.append(sample_rate)
        return [self.by_length[len(w)] for w in wavs]


class Loudness:
    """A speaker 'embedding' of (rms, 1) (test double): equal clips are identical voices."""

    name = "loudness"

    def embed(self, wav, sample_rate):
        return np.array([float(np.sqrt(np.mean(np.square(wav)))), 1.0]) if len(wav) else np.zeros(2)


def test_scorer_aggregates_corpus_numbers_and_rows(tmp_path):
    ref = tmp_path / "ref.wav"
    sf.write(ref, np.full(8000, 0.1, np.float32), 16000)
    loud, quiet = np.full(16000, 0.1, np.float32), np.full(8000, 0.3, np.float32)
    recognizer = Heard({16000: "ሰላም ነው", 8000: ""})
    scorer = SpeechScorer(recognizer, Loudness())
    takes = [Take("ሰላም ነው።", loud, 16000, 0.5, ref, "s1"),  # 1 s of audio, heard right
             Take("እሺ", quiet, 16000, 1.5, ref, "s1")]  # 0.5 s, heard nothing
    scores = scorer.score(takes)
    rows = scores.sentences
    assert [r.transcript for r in rows] == ["ሰላም ነው", ""]
    assert (rows[0].cer, rows[0].wer, rows[1].cer, rows[1].wer) == (0.0, 0.0, 1.0, 1.0)
    assert scores.scalars["eval/wer"] == pytest.approx(1 / 3)  # 1 missed word of 3
    assert scores.scalars["eval/cer"] == pytest.approx(2 / 8)  # "ሰላም ነው" 6 characters, "እሺ" 2 missed
    assert rows[0].speaker_sim == pytest.approx(1.0)  # the same loudness as the reference
    assert rows[1].speaker_sim < 1.0
    assert scores.scalars["eval/speaker_sim"] == pytest.approx((rows[0].speaker_sim + rows[1].speaker_sim) / 2)
    assert rows[0].rtf == 0.5 and rows[1].rtf == 3.0
    assert scores.scalars["eval/rtf"] == pytest.approx(2.0 / 1.5)  # total time over total audio
    assert recognizer.calls == [16000]  # one call for all clips of a sample rate


def test_scorer_refuses_sentence_with_no_words(tmp_path):
    ref = tmp_path / "ref.wav"
    sf.write(ref, np.zeros(8000, np.float32), 16000)
    with pytest.raises(ValueError, match="no words left"):
        SpeechScorer(Heard({}), Loudness()).score([Take("።!", np.zeros(10), 16000, 0.1, ref)])


def test_empty_audio_has_infinite_rtf(tmp_path):
    ref = tmp_path / "ref.wav"
    sf.write(ref, np.full(8000, 0.1, np.float32), 16000)
    scores = SpeechScorer(Heard({0: ""}), Loudness()).score([Take("እሺ", np.zeros(0, np.float32), 16000, 0.2, ref)])
    assert math.isinf(scores.scalars["eval/rtf"]) and scores.scalars["eval/cer"] == 1.0


def test_timed_takes_time_each_sentence(tmp_path):
    def speak(text):
        return np.zeros(100 * len(text), np.float32), 1000

    takes = timed_takes(speak, ["ሀ", "ሀለ"], tmp_path / "ref.wav", speaker="s")
    assert [len(t.wav) for t in takes] == [100, 200] and all(t.synthesis_seconds >= 0 for t in takes)
    assert {t.speaker for t in takes} == {"s"} and takes[0].reference == tmp_path / "ref.wav"


def test_held_out_sentences_cover_the_front_end_and_are_not_training_sentences():
    held_out = load_sentences()
    training = {line.strip() for line in (REPO / "amh/fixtures/amharic_sentences.txt").read_text(encoding="utf-8").splitlines()}
    assert len(held_out) >= 25 and not set(held_out) & training
    assert not {scoring_text(s) for s in held_out} & {scoring_text(s) for s in training if s and not s.startswith("#")}
    joined = "".join(held_out)
    assert any(c.isdigit() for c in joined) and any(0x1369 <= ord(c) <= 0x137C for c in joined)  # digits, Ethiopic numerals
    assert sum("/" in s or ".ም" in s or ".ሜ" in s for s in held_out) >= 5  # abbreviations
    assert set("።፣፤፧?!«") <= set(joined)
    assert min(len(s.split()) for s in held_out) == 1 and max(len(s) for s in held_out) >= 100
    assert max(len(s) for s in held_out) <= 150  # XTTS's Amharic character limit: one chunk each


def test_sentence_file_errors_name_the_line(tmp_path):
    bad = tmp_path / "s.txt"
    bad.write_text("# comment\nሰላም\n።!\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"s\.txt:3"):
        load_sentences(bad)
    with pytest.raises(FileNotFoundError, match="--sentences"):
        load_sentences(tmp_path / "missing.txt")
    assert default_sentences_path().is_file()


def test_eval_config_section():
    real = load_config(REPO / "configs/amharic_110h.yaml", ["data.path=user/amharic"])
    assert real.eval.enabled and real.eval.asr_model == "facebook/mms-1b-all" and real.eval.asr_language == "amh"
    assert len(real.log.test_sentences) >= 5
    assert BEST_METRIC_TAGS[real.eval.best_metric] in ("eval/loss", "eval/cer")
    with pytest.raises(ConfigError, match="log.test_sentences"):
        load_config(REPO / "configs/demo.yaml", ["eval.enabled=true", "log.test_sentences=[]"])
    with pytest.raises(ConfigError, match="eval.asr_backend"):
        load_config(REPO / "configs/demo.yaml", ["eval.asr_backend=kaldi"])
    with pytest.raises(ConfigError, match="eval.best_metric"):
        load_config(REPO / "configs/demo.yaml", ["eval.best_metric=wer"])
    with pytest.raises(ConfigError, match="eval.best_metric='cer' needs eval.enabled"):
        load_config(REPO / "configs/demo.yaml", ["eval.enabled=false", "eval.best_metric=cer"])
    with pytest.raises(ConfigError, match="eval.speakers"):
        load_config(REPO / "configs/demo.yaml", ["eval.speakers=0"])


def test_tensorboard_clips_carry_what_was_said_and_heard(tmp_path):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from torch.utils.tensorboard import SummaryWriter

    from amh.eval.tensorboard import log_takes

    ref = tmp_path / "ref.wav"
    sf.write(ref, np.full(8000, 0.1, np.float32), 16000)
    takes = [Take("ሰላም ነው።", np.full(16000, 0.1, np.float32), 16000, 0.5, ref, "am_f3"),
             Take("እሺ", np.full(8000, 0.1, np.float32), 16000, 0.5, ref, "am_f3"),
             Take("እሺ", np.full(8000, 0.1, np.float32), 16000, 0.5, ref, "am_m3")]
    scores = SpeechScorer(Heard({16000: "ሰላም", 8000: "እሺ"}), Loudness()).score(takes)
    writer = SummaryWriter(tmp_path / "tb")
    log_takes(writer, takes, scores, step=7)
    writer.close()
    values = {}
    for path in (tmp_path / "tb").glob("events.out.tfevents.*"):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                values[value.tag] = (event.step, value)
    # As TensorBoard reads it (EventFileLoader migrates legacy audio): an audio-plugin tensor of
    # [wav bytes, label] with the description in its metadata.
    assert {t for t in values if not t.startswith("eval_speech/transcripts")} == {
        "eval_speech/am_f3/0", "eval_speech/am_f3/1", "eval_speech/am_m3/0"}  # numbered per speaker
    step, audio = values["eval_speech/am_f3/0"]
    assert step == 7 and audio.metadata.plugin_data.plugin_name == "audio"
    wav, sample_rate = sf.read(io.BytesIO(audio.tensor.string_val[0]))
    assert sample_rate == 16000 and len(wav) == 16000
    description = audio.metadata.summary_description
    assert "**said:** ሰላም ነው።" in description and "**heard:** ሰላም" in description and "WER 0.500" in description
    table = next(v for tag, (_, v) in values.items() if tag.startswith("eval_speech/transcripts"))
    assert "| am_f3 | ሰላም ነው። | ሰላም | 0.500 |" in table.tensor.string_val[0].decode()
