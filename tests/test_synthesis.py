"""amh.xtts.synthesis + scripts/synthesize.py: inputs are checked before generating, long text is
spoken in chunks, and the eval synthesizer stays off the training device between evals."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from amh.xtts.synthesis import SynthesisError, split_text

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def export(tiny_release, demo_vocab, tmp_path_factory) -> Path:
    from amh.text.frontend import FrontendSettings
    from amh.xtts.export import export_model
    from amh.xtts.language import register
    from amh.xtts.release import build_xtts

    register(FrontendSettings())
    xtts, _ = build_xtts(tiny_release, demo_vocab, seed=0)
    state = {f"gpt.{k}": v for k, v in xtts.gpt.state_dict().items()}
    return export_model(release_dir=tiny_release, vocab=demo_vocab, gpt_state=state, frontend_settings=FrontendSettings(),
                        language="am", out_dir=tmp_path_factory.mktemp("synth") / "export")


@pytest.fixture(scope="module")
def loaded(export):
    from amh.xtts.synthesis import load_export

    return load_export(export)


@pytest.fixture(scope="module")
def ref(demo_corpus) -> Path:
    return sorted((demo_corpus / "ready" / "wavs").iterdir())[0]


def long_text(model) -> str:
    """Demo sentences, just enough of them to pass the model's token limit."""
    from amh.fixtures.demo_corpus import load_sentences

    sentences = []
    for sentence in load_sentences():
        sentences.append(sentence)
        if n_tokens(model, " ".join(sentences)) >= model.args.gpt_max_text_tokens:
            return " ".join(sentences)
    raise AssertionError("the demo sentences are too few")


def n_tokens(model, text: str) -> int:
    return len(model.tokenizer.encode(text.strip().lower(), "am"))


@pytest.mark.parametrize("text, message", [
    ("", "--text is empty"),
    ("   \n", "--text is empty"),
    ("日本語の文章", "no character of it is in the model's vocabulary"),
])
def test_text_with_nothing_to_say_is_refused(loaded, ref, text, message):
    """Empty text used to exit 0 with audio."""
    from amh.xtts.synthesis import synthesize

    model, settings = loaded
    with pytest.raises(SynthesisError, match=message):
        synthesize(model, settings, text, ref)


@pytest.mark.slow
def test_long_text_is_spoken_in_chunks_under_the_token_limit(loaded, ref):
    """Text over 400 tokens used to die on upstream's assertion inside Xtts.inference."""
    from amh.xtts.synthesis import synthesize, text_chunks

    model, settings = loaded
    text = long_text(model)
    assert n_tokens(model, text) >= model.args.gpt_max_text_tokens  # upstream's assertion would fire
    chunks = text_chunks(model, text, "am")
    assert len(chunks) > 1
    assert all(n_tokens(model, c) < model.args.gpt_max_text_tokens and len(c) <= 150 for c in chunks)
    assert "".join(chunks).replace(" ", "") == text.replace(" ", "")  # nothing lost, nothing reordered
    assert all(c.endswith(("።", "?", "!", "፧", "፤")) for c in chunks[:-1])  # cut at sentence ends
    torch.manual_seed(0)
    wav, sr = synthesize(model, settings, text, ref)
    assert sr == 24000 and wav.ndim == 1 and wav.size > 0 and np.isfinite(wav).all()


def test_split_text_cuts_at_ethiopic_sentence_then_clause_marks_then_spaces():
    fits = lambda s: len(s) <= 12  # noqa: E731
    assert split_text("ሀሀሀ። ለለለ፤ መመመ? ረረ", fits) == ["ሀሀሀ። ለለለ፤", "መመመ? ረረ"]
    assert split_text("ሀሀሀሀሀ፣ለለለለለ፣መመመመ።", fits) == ["ሀሀሀሀሀ፣ለለለለለ፣", "መመመመ።"]
    assert split_text("ሀሀሀሀ ለለለለ መመመመ ረረረረ", fits) == ["ሀሀሀሀ ለለለለ", "መመመመ ረረረረ"]
    assert split_text("2.5 ብር", fits) == ["2.5 ብር"]  # a decimal point is no sentence end
    with pytest.raises(SynthesisError, match="alone is longer than the model can say"):
        split_text("ሀ" * 13, fits)


def _write(path: Path, wav: np.ndarray, subtype: str = "FLOAT") -> Path:
    sf.write(path, wav, 22050, subtype=subtype)
    return path


def test_bad_speaker_wavs_are_refused_by_name(loaded, tmp_path):
    from amh.xtts.synthesis import synthesize

    model, settings = loaded
    tone = (0.3 * np.sin(np.arange(3 * 22050) * 0.05)).astype(np.float32)
    nan = tone.copy()
    nan[100:200] = np.nan
    cases = {
        _write(tmp_path / "nan.wav", nan): "100 of 66150 samples are NaN or infinite",
        _write(tmp_path / "silent.wav", np.zeros_like(tone)): "silent",
        _write(tmp_path / "short.wav", tone[:2000]): "too short",
        tmp_path / "missing.wav": "no such file",
    }
    (tmp_path / "text.wav").write_text("not audio")
    cases[tmp_path / "text.wav"] = "cannot be read as audio"
    for path, message in cases.items():
        with pytest.raises(SynthesisError) as err:
            synthesize(model, settings, "ሰላም", path)
        assert str(err.value).startswith(f"speaker wav {path}: ") and message in str(err.value), str(err.value)


def run_script(*args: str):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import synthesize as script
    finally:
        sys.path.pop(0)
    return script.main(list(args))


@pytest.mark.slow
def test_script_creates_the_out_folder_and_reports_bad_input_in_one_line(export, ref, tmp_path, capsys):
    """`--out` in a missing folder used to fail only after generating."""
    out = tmp_path / "new" / "dir" / "hello.wav"
    assert run_script("--export", str(export), "--speaker-wav", str(ref), "--text", "ሰላም፣ እንዴት ነህ?",
                      "--out", str(out), "--device", "cpu") == 0
    wav, sr = sf.read(out)
    assert sr == 24000 and wav.size > 0
    capsys.readouterr()
    for args, message in [
        (("--text", "  ", "--out", str(tmp_path / "a.wav")), "error: --text is empty: give the text to speak"),
        (("--text", "ሰላም", "--out", str(tmp_path / "a.xyz")), f"error: --out {tmp_path / 'a.xyz'}: soundfile cannot"),
        (("--text", "ሰላም", "--out", str(tmp_path)), f"error: --out {tmp_path}: is a directory"),
    ]:
        assert run_script("--export", str(export), "--speaker-wav", str(ref), *args, "--device", "cpu") == 2
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1, err
    assert run_script("--export", str(tmp_path), "--speaker-wav", str(ref), "--text", "ሰላም",
                      "--out", str(tmp_path / "b.wav"), "--device", "cpu") == 2
    assert "not an export (no model.pth" in capsys.readouterr().err


def _eval_synthesizer(tiny_release, demo_vocab, device):
    from amh.text.frontend import FrontendSettings
    from amh.xtts.language import register
    from amh.xtts.synthesis import EvalSynthesizer

    register(FrontendSettings())
    return EvalSynthesizer(tiny_release, demo_vocab, ["ሰላም፣ እንዴት ነህ?"], "am", device)


@pytest.mark.slow
def test_eval_synthesizer_visits_the_device_only_while_speaking(tiny_release, demo_vocab, ref, monkeypatch):
    from amh.xtts.release import build_xtts

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    synth = _eval_synthesizer(tiny_release, demo_vocab, device)
    assert {p.device.type for p in synth.model.parameters()} == {"cpu"}  # not resident after construction
    gpt = build_xtts(tiny_release, demo_vocab, seed=0)[0].gpt.to(device)
    events = []
    to, inference = synth.model.to, synth.model.inference
    monkeypatch.setattr(synth.model, "to", lambda d: events.append(("to", torch.device(d).type)) or to(d))

    def speaking(*a, **k):
        events.append(("speak", next(synth.model.parameters()).device.type))
        return inference(*a, **k)

    monkeypatch.setattr(synth.model, "inference", speaking)
    rng = torch.get_rng_state()
    wavs = synth(gpt, ref)
    assert len(wavs) == 1 and wavs[0].size > 0 and np.isfinite(wavs[0]).all()
    assert events == [("to", device.type), ("speak", device.type), ("to", "cpu")]
    assert {p.device.type for p in synth.model.parameters()} == {"cpu"}
    assert torch.equal(torch.get_rng_state(), rng)  # the training RNG did not move
    # The trained weights were the ones spoken with.
    trained = gpt.text_embedding.weight.detach().cpu()
    assert torch.equal(synth.model.gpt.text_embedding.weight, trained)


def test_some_unknown_characters_are_named_and_the_rest_is_spoken(loaded, caplog):
    from amh.xtts.synthesis import text_chunks

    model, _ = loaded
    with caplog.at_level("WARNING"):
        assert text_chunks(model, "ሰላም 日本", "am") == ["ሰላም 日本"]
    assert "not in the model's vocabulary and reach it as [UNK]: '日本'" in caplog.text
