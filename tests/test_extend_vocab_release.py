"""scripts/extend_vocab.py takes the release as a vocab.json, a release folder, or a Hub id (coqui/XTTS-v2)."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import extend_vocab  # noqa: E402


def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("ሰላም እንዴት ነህ\nዛሬ ጥሩ ቀን ነው\n", encoding="utf-8")
    return path


def added(out: Path, base: Path) -> set[str]:
    new = json.loads(out.read_text(encoding="utf-8"))["model"]["vocab"]
    old = json.loads(base.read_text(encoding="utf-8"))["model"]["vocab"]
    return set(new) - set(old)


@pytest.mark.parametrize("form", ["vocab.json", "release folder"])
def test_local_release_as_file_or_folder(tiny_release, tmp_path, form):
    base = tiny_release / "vocab.json" if form == "vocab.json" else tiny_release
    out = tmp_path / "vocab_am.json"
    assert extend_vocab.main(["--release", str(base), "--corpus", str(corpus(tmp_path)), "--out", str(out)]) == 0
    assert {"[am]", "ሰ", "ላ"} <= added(out, tiny_release / "vocab.json")


def test_hub_id_downloads_only_the_vocab(tiny_release, tmp_path, monkeypatch):
    import huggingface_hub

    asked = []

    def hf_hub_download(repo_id, filename, revision=None, **_):
        asked.append((repo_id, filename, revision))
        cached = tmp_path / "hub_cache" / filename
        cached.parent.mkdir(exist_ok=True)
        shutil.copyfile(tiny_release / filename, cached)
        return str(cached)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    out = tmp_path / "vocab_am.json"
    code = extend_vocab.main(["--base-vocab", "coqui/XTTS-v2", "--revision", "v2.0.3", "--corpus", str(corpus(tmp_path)),
                              "--out", str(out)])
    assert code == 0 and asked == [("coqui/XTTS-v2", "vocab.json", "v2.0.3")]
    assert "[am]" in added(out, tiny_release / "vocab.json")


def test_hub_errors_and_bad_paths_are_one_line(tmp_path, monkeypatch, capsys):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(**_):
        raise LocalEntryNotFoundError("cannot reach the Hub and no cached copy")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    args = ["--corpus", str(corpus(tmp_path)), "--out", str(tmp_path / "o.json")]
    assert extend_vocab.main(["--base-vocab", "coqui/XTTS-v2", *args]) == 2
    assert "no vocab.json from the Hub (LocalEntryNotFoundError" in capsys.readouterr().err
    assert extend_vocab.main(["--base-vocab", "./missing/vocab.json", *args]) == 2
    assert "neither a vocab.json, a release folder, nor a Hub repo id" in capsys.readouterr().err
    empty = tmp_path / "empty_release"
    empty.mkdir()
    assert extend_vocab.main(["--base-vocab", str(empty), *args]) == 2
    assert "a folder without vocab.json" in capsys.readouterr().err
