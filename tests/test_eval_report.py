"""scripts/evaluate.py: two tiny exports speak held-out sentences, the tiny MMS transcribes, the report is written."""
from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import pytest
import soundfile as sf

from eval_audio import espeak

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("AMH_FIXTURES_DIR", REPO / "build" / "fixtures"))
sys.path.insert(0, str(REPO / "scripts"))

import evaluate  # noqa: E402

SENTENCES = ["እሺ 5።"]  # one, short: a tiny export still vocodes with the full-size HiFi-GAN on CPU


@pytest.fixture(scope="module")
def speech_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("evaluate_inputs")
    sentences = d / "sentences.txt"
    sentences.write_text("# a comment line\n" + "\n".join(SENTENCES) + "\n", encoding="utf-8")
    speaker = d / "speaker.wav"
    sf.write(speaker, *espeak("ዛሬ ጠዋት ገበያ ሄጄ ሽንኩርትና ቲማቲም ገዛሁ።", "am"))
    return sentences, speaker


@pytest.fixture(scope="module")
def exports(tiny_release, tmp_path_factory) -> list[Path]:
    """Two exports of the tiny release: its GPT as built, and the same with other text embeddings."""
    import torch

    from amh.text.frontend import FrontendSettings
    from amh.xtts.vocab import extend_vocab
    from amh.xtts.export import export_model
    from amh.xtts.release import build_xtts

    d = tmp_path_factory.mktemp("evaluate_exports")
    vocab = extend_vocab(tiny_release / "vocab.json", SENTENCES, d / "vocab.json", mode="chars",
                         frontend=FrontendSettings()).out
    xtts, _ = build_xtts(tiny_release, vocab)
    state = {"gpt." + k: v for k, v in xtts.gpt.state_dict().items()}
    generator = torch.Generator().manual_seed(1)
    embedding = state["gpt.text_embedding.weight"]
    noisy = {**state, "gpt.text_embedding.weight": embedding + 0.02 * torch.randn(embedding.shape, generator=generator)}
    return [export_model(release_dir=tiny_release, vocab=vocab, gpt_state=gpt, frontend_settings=FrontendSettings(),
                         language="am", out_dir=d / name / "export") for name, gpt in (("a", state), ("b", noisy))]


@pytest.mark.slow
def test_report_compares_exports(exports, speech_inputs, tmp_path, capsys):
    from amh.fixtures.tiny_mms import make_tiny_mms

    sentences, speaker = speech_inputs
    asr = make_tiny_mms(FIXTURES / "tiny_mms")
    out = tmp_path / "report"
    code = evaluate.main(["--export", str(exports[0]), "--export", str(exports[1]), "--sentences", str(sentences),
                          "--speaker-wav", str(speaker), "--asr-model", str(asr), "--device", "cpu", "--out", str(out)])
    assert code == 0
    with open(out / "sentences.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["export"], r["text"]) for r in rows] == [(str(e), s) for e in exports for s in SENTENCES]
    assert rows[0]["reference_words"] == "እሺ አምስት"  # scored after the project's normaliser
    for row in rows:
        assert 0 <= float(row["cer"]) and 0 <= float(row["wer"]) and -1 <= float(row["speaker_sim"]) <= 1
        assert float(row["rtf"]) > 0 and (out / row["wav"]).is_file()
        assert all(0x1200 <= ord(c) <= 0x137F or c == " " for c in row["transcript"])  # the amh head spoke
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert all(f"| {e} | 1 |" in summary for e in exports) and "docs/evaluation.md" in summary
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert printed.count("CER") == 2 and "report:" in printed


def test_bad_inputs_exit_2_with_one_line(speech_inputs, tmp_path, capsys):
    sentences, speaker = speech_inputs
    base = ["--sentences", str(sentences), "--out", str(tmp_path / "r")]
    assert evaluate.main(["--export", str(tmp_path), "--speaker-wav", str(speaker), *base]) == 2
    assert "not an export" in capsys.readouterr().err
    assert evaluate.main(["--export", str(tmp_path), "--speaker-wav", str(tmp_path / "none.wav"), *base]) == 2
    assert "no such file" in capsys.readouterr().err
    assert evaluate.main(["--export", str(tmp_path), "--export", str(tmp_path), "--speaker-wav", str(speaker), *base]) == 2
    assert "each export once" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_text("።\n", encoding="utf-8")
    assert evaluate.main(["--export", str(tmp_path), "--speaker-wav", str(speaker), "--sentences", str(bad),
                          "--out", str(tmp_path / "r")]) == 2
    assert "bad.txt:1" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
